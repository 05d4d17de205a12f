"""Writes eval/pii_strings.jsonl: customer-service strings in English and Chinese with the
personal data in them labelled (issue 22), for `kefu eval --suites pii`.

Each line: {"text", "lang", "split", "pii": [{"kind", "form", "text"}]}. `pii` lists every span that a
store must mask; the tricky negatives (order, tracking and product codes that look like phone
numbers, dates, amounts, versions, addresses of machines) have none. The templates of the
held-out split are never looked at while tuning the detector: the dev split's are.

The values are made up but valid where a real one is (Luhn digits, PRC ID check characters,
IBAN check digits), so that a detector that checks them is measured fairly; a few card numbers
deliberately fail Luhn, written in fours as people copy them from the card.

Run: python3 eval/make_pii_strings.py > eval/pii_strings.jsonl
"""
import json
import random

rng = random.Random(22)


def luhn_complete(prefix, length):
    digits = [int(c) for c in prefix]
    while len(digits) < length - 1:
        digits.append(rng.randrange(10))
    for check in range(10):
        cand = digits + [check]
        total = 0
        for i, d in enumerate(reversed(cand)):
            if i % 2 == 1:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return "".join(map(str, cand))


def prc_id():
    region = rng.choice(["110105", "310104", "440305", "510107", "330106", "420102"])
    y, m, d = rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29)
    body = f"{region}{y:04d}{m:02d}{d:02d}{rng.randrange(1000):03d}"
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    c = "10X98765432"[sum(int(a) * b for a, b in zip(body, w)) % 11]
    return body + c


def iban(country, bban):
    s = bban + country + "00"
    n = int("".join(str(int(ch, 36)) for ch in s))
    check = 98 - n % 97
    raw = f"{country}{check:02d}{bban}"
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def cn_mobile(fmt):
    n = "1" + rng.choice("3456789") + "".join(str(rng.randrange(10)) for _ in range(9))
    return {
        "plain": n,
        "space": f"{n[:3]} {n[3:7]} {n[7:]}",
        "dash": f"{n[:3]}-{n[3:7]}-{n[7:]}",
        "plus": f"+86 {n}",
        "plus_dash": f"+86-{n[:3]}-{n[3:7]}-{n[7:]}",
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) for c in n),
    }[fmt]


def us_phone(fmt):
    a = f"{rng.randrange(2, 10)}{rng.randrange(10)}{rng.randrange(10)}"
    b = f"{rng.randrange(2, 10)}{rng.randrange(10)}{rng.randrange(10)}"
    c = f"{rng.randrange(10000):04d}"
    return {
        "paren": f"({a}) {b}-{c}",
        "dash": f"{a}-{b}-{c}",
        "dot": f"{a}.{b}.{c}",
        "plus": f"+1 {a} {b} {c}",
        "one": f"1-{a}-{b}-{c}",
    }[fmt]


def uk_phone(fmt):
    return {
        "london": f"020 {rng.randrange(7000, 8999)} {rng.randrange(1000, 9999)}",
        "mobile": f"07{rng.randrange(100, 999)} {rng.randrange(100000, 999999)}",
        "plus": f"+44 20 {rng.randrange(7000, 8999)} {rng.randrange(1000, 9999)}",
    }[fmt]


def cn_landline():
    area = rng.choice(["010", "021", "0755", "020", "028"])
    local = str(rng.randrange(20000000, 89999999)) if len(area) == 3 else str(rng.randrange(2000000, 8999999))
    return rng.choice([f"{area}-{local}", f"({area}) {local}", f"{area} {local}"])


def card(kind):
    if kind == "visa4":
        n = luhn_complete("4" + str(rng.randrange(10 ** 5)).zfill(5), 16)
        return " ".join(n[i:i + 4] for i in range(0, 16, 4))
    if kind == "mc_dash":
        n = luhn_complete("5" + str(rng.randrange(1, 6)), 16)
        return "-".join(n[i:i + 4] for i in range(0, 16, 4))
    if kind == "unionpay":
        return luhn_complete("62" + str(rng.randrange(10 ** 4)).zfill(4), 19)
    if kind == "amex":
        n = luhn_complete("37", 15)
        return f"{n[:4]} {n[4:10]} {n[10:]}"
    if kind == "plain16":
        return luhn_complete("4", 16)
    if kind == "fours_nocheck":
        n = "".join(str(rng.randrange(10)) for _ in range(16))
        return " ".join(n[i:i + 4] for i in range(0, 16, 4))


def email():
    user = rng.choice(["jane.doe", "li.wei", "wang_fang88", "m.smith", "chen.jing", "tom+orders", "zhangsan2019"])
    host = rng.choice(["gmail.com", "qq.com", "163.com", "outlook.com", "example.co.uk", "sina.com.cn"])
    return f"{user}@{host}"


def order_code():
    return rng.choice([
        f"{rng.randrange(2023, 2026)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{rng.randrange(10 ** 6):06d}",
        f"{rng.randrange(10 ** 9, 10 ** 10)}",
        f"{rng.randrange(2 * 10 ** 10, 9 * 10 ** 10)}",
    ])


def mobile_like():
    """An order code that has the shape of a Chinese mobile number."""
    return cn_mobile("plain")


# (template, kinds): {} slots are filled in order by the generators named in kinds; a kind
# starting with "-" is a value that is not personal data.
GEN = {
    "cn_mobile_plain": lambda: cn_mobile("plain"), "cn_mobile_space": lambda: cn_mobile("space"),
    "cn_mobile_dash": lambda: cn_mobile("dash"), "cn_mobile_plus": lambda: cn_mobile("plus"),
    "cn_mobile_plus_dash": lambda: cn_mobile("plus_dash"), "cn_mobile_fw": lambda: cn_mobile("fullwidth"),
    "us_paren": lambda: us_phone("paren"), "us_dash": lambda: us_phone("dash"), "us_dot": lambda: us_phone("dot"),
    "us_plus": lambda: us_phone("plus"), "us_one": lambda: us_phone("one"),
    "uk_london": lambda: uk_phone("london"), "uk_mobile": lambda: uk_phone("mobile"), "uk_plus": lambda: uk_phone("plus"),
    "cn_land": cn_landline, "email": email, "prc_id": prc_id,
    "visa4": lambda: card("visa4"), "mc_dash": lambda: card("mc_dash"), "unionpay": lambda: card("unionpay"),
    "amex": lambda: card("amex"), "plain16": lambda: card("plain16"), "fours_nocheck": lambda: card("fours_nocheck"),
    "ssn": lambda: f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
    "nino": lambda: f"{rng.choice(['AB', 'JG', 'QQ', 'SK'])} {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.choice('ABCD')}",
    "iban_gb": lambda: iban("GB", "WEST" + "".join(str(rng.randrange(10)) for _ in range(14))),
    "iban_de": lambda: iban("DE", "".join(str(rng.randrange(10)) for _ in range(18))),
    "acct8": lambda: f"{rng.randrange(10 ** 7, 10 ** 8)}",
    "acct_cn": lambda: "".join(str(rng.randrange(10)) for _ in range(rng.choice([12, 14, 17]))),
    "passport_cn": lambda: f"E{rng.randrange(10 ** 7, 10 ** 8)}",
    "passport_us": lambda: f"{rng.randrange(10 ** 8, 10 ** 9)}",
    "-order": order_code, "-mobile_like": mobile_like,
    "-tracking_ups": lambda: f"1Z{rng.randrange(10 ** 5):05d}AA{rng.randrange(10 ** 9, 10 ** 10)}",
    "-sf": lambda: f"SF{rng.randrange(10 ** 12, 10 ** 13)}",
    "-date": lambda: f"{rng.randrange(2023, 2026)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
    "-ip": lambda: f"192.168.{rng.randrange(256)}.{rng.randrange(256)}",
    "-version": lambda: f"{rng.randrange(1, 12)}.{rng.randrange(10)}.{rng.randrange(10)}.{rng.randrange(1000, 9999)}",
    "-amount": lambda: f"{rng.randrange(1, 99)},{rng.randrange(100, 999)}.{rng.randrange(10, 99)}",
    "-sku": lambda: f"SKU-{rng.randrange(10 ** 7, 10 ** 11)}",
    "-imei": lambda: luhn_complete("35" + str(rng.randrange(10 ** 6)).zfill(6), 15),
    "-invoice": lambda: f"INV-{rng.randrange(2023, 2026)}{rng.randrange(1, 13):02d}-{rng.randrange(1000, 9999)}",
    "-hotline": lambda: rng.choice(["400-820-8820", "95588", "10086"]),
    "-otp": lambda: f"{rng.randrange(100000, 999999)}",
    "-zip": lambda: rng.choice(["100080", "200120", "94105", "SW1A 1AA", "518057"]),
    "-timestamp": lambda: f"{rng.randrange(1, 12)}:{rng.randrange(10, 59)}",
    "-ticket": lambda: f"{rng.randrange(10 ** 7, 10 ** 9)}",
    "-serial": lambda: f"{rng.randrange(10 ** 9, 10 ** 12)}",
}

DEV = [
    ("en", "You can reach me on {} after 6pm.", ["cn_mobile_space"]),
    ("en", "My phone number is {}.", ["us_paren"]),
    ("en", "call me back at {} please, it's urgent", ["us_dash"]),
    ("en", "Mobile: {}", ["uk_mobile"]),
    ("en", "I'm in London, my number is {}", ["uk_london"]),
    ("en", "Text me on {} when the engineer is coming", ["us_plus"]),
    ("en", "Please send the invoice to {} instead of my work address.", ["email"]),
    ("en", "My card {} was charged twice!", ["visa4"]),
    ("en", "The payment card ending... actually the full number is {}", ["mc_dash"]),
    ("en", "my SSN is {} if you need it for the credit check", ["ssn"]),
    ("en", "Refund to my bank please, IBAN {}", ["iban_gb"]),
    ("en", "account number {} sort code 20-00-00", ["acct8"]),
    ("en", "Order {} still hasn't shipped.", ["-order"]),
    ("en", "my order number is {} and it's late", ["-mobile_like"]),
    ("en", "Tracking number {} shows no movement since Monday", ["-tracking_ups"]),
    ("en", "The router at {} keeps dropping the connection", ["-ip"]),
    ("en", "I updated to firmware {} and now it won't boot", ["-version"]),
    ("en", "I was charged {} on {} which is wrong", ["-amount", "-date"]),
    ("en", "Product {} is out of stock again", ["-sku"]),
    ("en", "The verification code {} expired before I could use it", ["-otp"]),
    ("en", "Call {} or email {} — either works.", ["us_dot", "email"]),
    ("en", "ticket {} was closed without a reply", ["-ticket"]),
    ("en", "IMEI {} is blocked, can you check?", ["-imei"]),
    ("zh", "我的手机号是{}，请尽快回电。", ["cn_mobile_plain"]),
    ("zh", "联系电话：{}", ["cn_mobile_dash"]),
    ("zh", "打{}找我就行", ["cn_mobile_plus"]),
    ("zh", "手机{}（全角输入）", ["cn_mobile_fw"]),
    ("zh", "办公室座机{}，工作日都在", ["cn_land"]),
    ("zh", "邮箱是{}，发票发这里", ["email"]),
    ("zh", "身份证号{}，实名认证一直失败", ["prc_id"]),
    ("zh", "退款请打到我的银行卡{}", ["unionpay"]),
    ("zh", "我的账号{}被冻结了", ["acct_cn"]),
    ("zh", "护照号码{}，订机票用", ["passport_cn"]),
    ("zh", "订单号{}一直没发货", ["-order"]),
    ("zh", "订单{}还在路上吗？", ["-mobile_like"]),
    ("zh", "快递单号{}显示已签收但我没收到", ["-sf"]),
    ("zh", "我在{}下的单，金额{}元", ["-date", "-amount"]),
    ("zh", "客服热线{}打不通", ["-hotline"]),
    ("zh", "验证码{}收不到", ["-otp"]),
    ("zh", "型号{}的路由器怎么重置？", ["-sku"]),
    ("zh", "电话{}，订单号{}，麻烦查一下", ["cn_mobile_plain", "-order"]),
    ("zh", "发票号{}开错了", ["-invoice"]),
    ("zh", "序列号{}的设备保修到什么时候", ["-serial"]),
]

HELDOUT = [
    ("en", "Please ring {} — that's my husband's mobile.", ["uk_plus"]),
    ("en", "best number to reach me: {}", ["us_one"]),
    ("en", "I'm abroad, whatsapp {}", ["cn_mobile_plus_dash"]),
    ("en", "Hi, it's Jane ({}), the delivery never came", ["email"]),
    ("en", "I typed my card number {} and the payment failed", ["fours_nocheck"]),
    ("en", "Charge it to {} please", ["amex"]),
    ("en", "the card {} was stolen, block it now", ["plain16"]),
    ("en", "National Insurance {} for the form", ["nino"]),
    ("en", "Here are my details: {} and {}", ["email", "us_paren"]),
    ("en", "My passport number is {}, the booking is under that", ["passport_us"]),
    ("en", "Please pay the refund to {}", ["iban_de"]),
    ("en", "Reference {} — still waiting for the refund", ["-ticket"]),
    ("en", "I ordered on {} at {} and nothing arrived", ["-date", "-timestamp"]),
    ("en", "order #{} arrived damaged", ["-mobile_like"]),
    ("en", "The serial number {} is on the back of the box", ["-serial"]),
    ("en", "My zip is {} but the form says invalid", ["-zip"]),
    ("en", "invoice {} has the wrong VAT", ["-invoice"]),
    ("en", "Software version {} crashes on start", ["-version"]),
    ("en", "parcel {} was returned to sender", ["-tracking_ups"]),
    ("en", "I can't log in, my email is {} and phone {}", ["email", "uk_mobile"]),
    ("zh", "请联系我：{}", ["cn_mobile_space"]),
    ("zh", "有事打我电话 {} 或者发邮件到 {}", ["cn_mobile_plain", "email"]),
    ("zh", "我的信用卡{}被盗刷了三笔", ["visa4"]),
    ("zh", "证件号：{}", ["prc_id"]),
    ("zh", "银行卡号 {} 户名张三", ["unionpay"]),
    ("zh", "手机号{}，收不到短信", ["cn_mobile_dash"]),
    ("zh", "我换号了，新号码{}", ["cn_mobile_plain"]),
    ("zh", "公司电话{}转8021", ["cn_land"]),
    ("zh", "会员账户{}的积分不见了", ["acct_cn"]),
    ("zh", "单号{}，什么时候能到？", ["-order"]),
    ("zh", "运单{}卡在中转站三天了", ["-sf"]),
    ("zh", "订单编号{}申请退款", ["-mobile_like"]),
    ("zh", "邮编{}能送到吗", ["-zip"]),
    ("zh", "路由器地址{}登不上", ["-ip"]),
    ("zh", "固件{}升级失败", ["-version"]),
    ("zh", "付款{}元，{}扣的款", ["-amount", "-date"]),
    ("zh", "工单{}没人处理", ["-ticket"]),
    ("zh", "打了{}没人接", ["-hotline"]),
    ("zh", "身份证{}，电话{}，帮我改一下实名", ["prc_id", "cn_mobile_fw"]),
]


def kind_of(form):
    """The kind the detector reports for a generator's values."""
    if form == "email":
        return "email_address"
    if form in ("prc_id", "ssn", "nino") or form.startswith("passport"):
        return "national_id"
    if form in ("visa4", "mc_dash", "unionpay", "amex", "plain16", "fours_nocheck"):
        return "payment_card"
    if form.startswith("iban") or form.startswith("acct"):
        return "account_number"
    return "phone_number"


def render(template, kinds):
    values = [GEN[k]() for k in kinds]
    text = template.format(*values)
    pii = [{"kind": kind_of(k), "form": k, "text": v} for k, v in zip(kinds, values) if not k.startswith("-")]
    return text, pii


def main():
    seen = set()
    for split, templates, copies in (("dev", DEV, 3), ("heldout", HELDOUT, 3)):
        for lang, template, kinds in templates:
            for _ in range(copies):
                text, pii = render(template, kinds)
                if text in seen:
                    continue
                seen.add(text)
                print(json.dumps({"text": text, "lang": lang, "split": split, "pii": pii}, ensure_ascii=False))


if __name__ == "__main__":
    main()
