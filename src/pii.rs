//! Personal data in free text: phone numbers, e-mail addresses, identity numbers, payment card
//! and bank account numbers, written the Chinese or the English way, with fullwidth forms.
//! Two callers: the compliance check before a card is published (knowledge), and the masking of
//! customer turns before they are stored (conversation).
//!
//! Candidates come from regular expressions; each is then confirmed by what the number carries
//! (the Luhn digit of a payment card, the ISO 7064 digit and the birth date of a PRC resident ID,
//! the mod-97 digits of an IBAN, the shape of a phone number in its numbering plan) and by the
//! words just around it: "order 13800138000" is an order code, "account 00123456" an account.
//! A customer-service text is full of order, tracking and product codes that look like phone
//! numbers, and masking them would blind the agent who reads the conversation later.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// What a span of personal data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    EmailAddress,
    PhoneNumber,
    NationalId,
    PaymentCard,
    AccountNumber,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::EmailAddress => "email_address",
            PiiKind::PhoneNumber => "phone_number",
            PiiKind::NationalId => "national_id",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::AccountNumber => "account_number",
        }
    }

    /// What a masked text says in its place: a reader still sees that a number was given.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::EmailAddress => "[email]",
            PiiKind::PhoneNumber => "[phone]",
            PiiKind::NationalId => "[id]",
            PiiKind::PaymentCard => "[card]",
            PiiKind::AccountNumber => "[account]",
        }
    }
}

/// One piece of personal data: byte offsets into the text as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").unwrap()
});
/// Digits with the separators people write numbers with (space, dot, dash, slash, parentheses),
/// an optional leading `+`, and an optional final `X` (PRC IDs).
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?[0-9][[0-9] \-.()]{5,30}[[0-9]Xx]").unwrap());
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}|[0-9]{1,2}[-./][0-9]{1,2}[-./][0-9]{4})$",
    )
    .unwrap()
});
/// IBAN: country, check digits, then the account in groups of four. Word boundaries are ASCII
/// ones here and below: Chinese text glues a number to the word before it ("护照号E1234…").
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)")
        .unwrap()
});
/// UK National Insurance number. Any two letters: HMRC's own examples ("QQ 12 34 56 C") use a
/// prefix it never allocates, and people copy them into forms and chats.
static NINO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?-u:\b)").unwrap()
});
/// Hong Kong identity card: one or two letters, six digits, a check character in parentheses.
static HKID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)([A-Z]{1,2})([0-9]{6}) ?\(([0-9A])\)").unwrap());
/// A passport or other document number after its name: letters then digits.
static DOCUMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)[A-Z]{1,2}[0-9]{6,9}(?-u:\b)").unwrap());

/// Words that say what the number next to them is. The nearest one wins: "订单号 …，电话 …";
/// "X number" phrases are listed whole so that "account number 1234 5678, sort code …" is read
/// from the phrase just before the number, not from a word after it.
const CONTEXT: &[(&str, Context)] = &[
    ("phone number", Context::Phone),
    ("mobile number", Context::Phone),
    ("card number", Context::Card),
    ("account number", Context::Account),
    ("account no", Context::Account),
    ("passport number", Context::Id),
    ("order number", Context::Code),
    ("tracking number", Context::Code),
    ("reference number", Context::Code),
    ("ticket number", Context::Code),
    ("case number", Context::Code),
    ("serial number", Context::Code),
    ("invoice number", Context::Code),
    ("confirmation number", Context::Code),
    ("phone", Context::Phone),
    ("tel", Context::Phone),
    ("mobile", Context::Phone),
    ("cell", Context::Phone),
    ("call", Context::Phone),
    ("text me", Context::Phone),
    ("reach me", Context::Phone),
    ("whatsapp", Context::Phone),
    ("电话", Context::Phone),
    ("手机", Context::Phone),
    ("致电", Context::Phone),
    ("来电", Context::Phone),
    ("打给", Context::Phone),
    ("联系方式", Context::Phone),
    ("座机", Context::Phone),
    ("card", Context::Card),
    ("卡号", Context::Card),
    ("信用卡", Context::Card),
    ("银行卡", Context::Card),
    ("借记卡", Context::Card),
    ("account", Context::Account),
    ("acct", Context::Account),
    ("a/c", Context::Account),
    ("iban", Context::Account),
    ("routing", Context::Account),
    ("账号", Context::Account),
    ("帐号", Context::Account),
    ("账户", Context::Account),
    ("帐户", Context::Account),
    ("户号", Context::Account),
    ("会员号", Context::Account),
    ("身份证", Context::Id),
    ("证件号", Context::Id),
    ("id number", Context::Id),
    ("id no", Context::Id),
    ("passport", Context::Id),
    ("护照", Context::Id),
    ("ssn", Context::Id),
    ("social security", Context::Id),
    ("driver", Context::Id),
    ("驾驶证", Context::Id),
    ("order", Context::Code),
    ("订单", Context::Code),
    ("单号", Context::Code),
    ("tracking", Context::Code),
    ("shipment", Context::Code),
    ("parcel", Context::Code),
    ("运单", Context::Code),
    ("快递", Context::Code),
    ("物流", Context::Code),
    ("invoice", Context::Code),
    ("发票", Context::Code),
    ("receipt", Context::Code),
    ("ticket", Context::Code),
    ("工单", Context::Code),
    ("case", Context::Code),
    ("reference", Context::Code),
    ("ref", Context::Code),
    ("confirmation", Context::Code),
    ("booking", Context::Code),
    ("预订", Context::Code),
    ("sku", Context::Code),
    ("model", Context::Code),
    ("型号", Context::Code),
    ("serial", Context::Code),
    ("序列号", Context::Code),
    ("编号", Context::Code),
    ("批次", Context::Code),
    ("货号", Context::Code),
    ("coupon", Context::Code),
    ("voucher", Context::Code),
    ("优惠券", Context::Code),
    ("兑换码", Context::Code),
    ("code", Context::Code),
    ("验证码", Context::Code),
    ("zip", Context::Code),
    ("postcode", Context::Code),
    ("邮编", Context::Code),
    ("imei", Context::Code),
    ("amount", Context::Code),
    ("金额", Context::Code),
    ("transaction", Context::Code),
    ("交易", Context::Code),
    ("流水号", Context::Code),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Phone,
    Card,
    Account,
    Id,
    /// An order, tracking, product or other business code: not personal data.
    Code,
}

/// How far from a number (in characters) a word still says what it is.
const BEFORE: usize = 24;
const AFTER: usize = 12;
/// A business-code word must name the number itself ("order 2024…", "订单号：2024…"); further
/// off ("the code never came to 138…") it is about something else.
const CODE_BEFORE: usize = 16;
const CODE_AFTER: usize = 8;

/// Finds personal data. `allow` holds values that look personal but are the company's own (its
/// hotline, its support address), compared without separators and case.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    allow: Vec<String>,
}

impl Detector {
    pub fn new(allow: &[String]) -> Self {
        Detector {
            allow: allow.iter().map(|s| normalise(s)).collect(),
        }
    }

    /// Every span of personal data in `text`, in order, none overlapping.
    pub fn find(&self, text: &str) -> Vec<Span> {
        let folded = Folded::new(text);
        let t = folded.text.as_str();
        // ASCII lower case keeps every byte offset (the Chinese words have no case).
        let lower = t.to_ascii_lowercase();
        let mut found: Vec<(usize, usize, PiiKind)> = Vec::new();
        let free = |found: &[(usize, usize, PiiKind)], a: usize, b: usize| {
            !found.iter().any(|&(x, y, _)| a < y && x < b)
        };
        for m in EMAIL.find_iter(t) {
            if !self.allowed(m.as_str()) {
                found.push((m.start(), m.end(), PiiKind::EmailAddress));
            }
        }
        for m in IBAN.find_iter(t) {
            if iban(m.as_str()) && free(&found, m.start(), m.end()) {
                found.push((m.start(), m.end(), PiiKind::AccountNumber));
            }
        }
        for m in NINO.find_iter(t) {
            if free(&found, m.start(), m.end()) {
                found.push((m.start(), m.end(), PiiKind::NationalId));
            }
        }
        for c in HKID.captures_iter(t) {
            let m = c.get(0).expect("whole match");
            if hkid(&c[1], &c[2], &c[3]) && free(&found, m.start(), m.end()) {
                found.push((m.start(), m.end(), PiiKind::NationalId));
            }
        }
        for m in DOCUMENT.find_iter(t) {
            if free(&found, m.start(), m.end())
                && context(&lower, m.start(), m.end()) == Some(Context::Id)
            {
                found.push((m.start(), m.end(), PiiKind::NationalId));
            }
        }
        for m in NUMBER.find_iter(t) {
            // Trim what the pattern may have swallowed at the edges: "(" at the end, a ")" that
            // opens nothing.
            let mut s = m.as_str().trim_end_matches([' ', '-', '.', '(', '/']);
            let mut start = m.start();
            if s.ends_with(')') && !s.contains('(') {
                s = &s[..s.len() - 1];
            }
            if s.starts_with('(') && !s.contains(')') {
                s = &s[1..];
                start += 1;
            }
            let end = start + s.len();
            if !free(&found, start, end) || glued(t, start, end) {
                continue;
            }
            if let Some(kind) = self.number(&lower, start, s) {
                found.push((start, end, kind));
                continue;
            }
            // Two numbers in a row ("13800138000 13900139000", "13800138000 2 items") read as
            // one: try each part on its own.
            if s.contains(' ') {
                let mut at = start;
                for part in s.split(' ') {
                    let part_start = at;
                    at += part.len() + 1;
                    let digits = part.bytes().filter(u8::is_ascii_digit).count();
                    if digits < 7 || glued(t, part_start, part_start + part.len()) {
                        continue;
                    }
                    if let Some(kind) = self.number(&lower, part_start, part) {
                        found.push((part_start, part_start + part.len(), kind));
                    }
                }
            }
        }
        found.sort();
        found
            .into_iter()
            .map(|(start, end, kind)| Span {
                kind,
                start: folded.original(start),
                end: folded.original(end),
            })
            .collect()
    }

    /// `text` with each span of personal data replaced by its placeholder.
    pub fn mask(&self, text: &str) -> String {
        let spans = self.find(text);
        if spans.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in spans {
            out.push_str(&text[at..s.start]);
            out.push_str(s.kind.placeholder());
            at = s.end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn allowed(&self, s: &str) -> bool {
        self.allow.contains(&normalise(s))
    }

    /// What the number `s` at `start` of `t` is, if it is personal data.
    fn number(&self, t: &str, start: usize, s: &str) -> Option<PiiKind> {
        if self.allowed(s) || DATE.is_match(s) {
            return None;
        }
        let compact: Vec<u8> = s.bytes().filter(u8::is_ascii_alphanumeric).collect();
        let digits = compact.iter().filter(|b| b.is_ascii_digit()).count();
        let plain = compact.iter().all(u8::is_ascii_digit);
        let ctx = context(t, start, start + s.len());
        let groups: Vec<&str> = s
            .split([' ', '-', '.', '(', ')', '/'])
            .filter(|g| !g.is_empty())
            .collect();
        if ctx == Some(Context::Code) {
            return None;
        }
        if prc_id(&compact) || (ctx == Some(Context::Id) && (7..=18).contains(&digits)) {
            return Some(PiiKind::NationalId);
        }
        if !plain {
            return None;
        }
        if ssn(s) {
            return Some(PiiKind::NationalId);
        }
        // Cards print in fours (Amex 4-6-5); a number written that way is a card whatever its
        // check digit says.
        let card_groups = groups.len() >= 3
            && (groups.iter().all(|g| g.len() == 4)
                || groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [4, 6, 5]
                || (groups[..groups.len() - 1].iter().all(|g| g.len() == 4)
                    && groups.last().is_some_and(|g| g.len() <= 4)));
        let card_length = (13..=19).contains(&digits);
        if card_length
            && (card_groups
                || ctx == Some(Context::Card)
                || (luhn(&compact) && ctx != Some(Context::Phone) && !phone(s, &compact)))
        {
            return Some(PiiKind::PaymentCard);
        }
        if ctx == Some(Context::Account) && (6..=20).contains(&digits) {
            return Some(PiiKind::AccountNumber);
        }
        if ctx == Some(Context::Card) && (12..=19).contains(&digits) {
            return Some(PiiKind::AccountNumber);
        }
        if phone(s, &compact) || (ctx == Some(Context::Phone) && (7..=15).contains(&digits)) {
            return Some(PiiKind::PhoneNumber);
        }
        None
    }
}

/// Whether `s` (digits and separators) is shaped as a phone number somewhere people write to
/// kefu: a Chinese mobile or landline, a North American or British number, or any number after
/// an international `+` or `00`.
fn phone(s: &str, compact: &[u8]) -> bool {
    let d = std::str::from_utf8(compact).unwrap_or("");
    let n = d.len();
    let separated = s.contains([' ', '-', '.', '(', ')']);
    let groups: Vec<&str> = s
        .split([' ', '-', '.', '(', ')'])
        .filter(|g| !g.is_empty())
        .collect();
    // Version numbers, decimals and IP addresses have one-digit groups or dots; phone numbers
    // have neither, apart from a country code after "+".
    let country = usize::from(s.starts_with('+') || groups.first() == Some(&"1"));
    let one_digit_group = groups.iter().skip(country).any(|g| g.len() == 1);
    if s.starts_with('+') {
        return (8..=15).contains(&n);
    }
    if d.starts_with("00") && (10..=15).contains(&n) && separated {
        return true;
    }
    // China: mobile 1[3-9]x xxxx xxxx, after 86 or 0086 too, whole or in 3-4-4 (not dotted:
    // "192.168.167.85" has eleven digits too).
    let national = d
        .strip_prefix("0086")
        .or_else(|| d.strip_prefix("86").filter(|r| r.len() == 11))
        .unwrap_or(d);
    let b = national.as_bytes();
    let cn_prefix = matches!(groups.first(), Some(&("+86" | "86" | "0086")));
    let lengths: Vec<usize> = groups
        .iter()
        .skip(usize::from(cn_prefix))
        .map(|g| g.len())
        .collect();
    if b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && !s.contains('.')
        && (groups.len() == 1 || lengths == [11] || lengths == [3, 4, 4])
    {
        return true;
    }
    // Toll-free and shared-cost numbers (China's 400 and 800, North America's 8XX) belong to
    // businesses, never to a customer.
    let toll_free = ["400", "800", "888", "877", "866", "855", "844", "833"];
    let ten = d.strip_prefix('1').filter(|r| r.len() == 10).unwrap_or(d);
    if ten.len() == 10 && toll_free.iter().any(|p| ten.starts_with(p)) {
        return false;
    }
    if one_digit_group {
        return false;
    }
    if s.contains('.') && groups.len() != 3 {
        return false;
    }
    // China landline 0AA(A)-XXXXXXX(X), UK 0XXXX XXXXXX: a trunk 0 and separated groups.
    if d.starts_with('0') && (10..=12).contains(&n) && separated {
        return true;
    }
    // UK mobiles are written whole too: 07xxx xxxxxx.
    if d.starts_with("07") && n == 11 {
        return true;
    }
    // North America: [1] NXX NXX XXXX.
    let nanp = d.strip_prefix('1').filter(|r| r.len() == 10).unwrap_or(d);
    let nb = nanp.as_bytes();
    if nb.len() == 10 && nb[0] >= b'2' && nb[3] >= b'2' && (separated || s.len() == 10) {
        return !(s.len() == 10 && d.starts_with("20")); // 20xxxxxxxx: a date-stamped code
    }
    // Eight digits in two fours, as Hong Kong, Singapore and Chinese local numbers are written.
    n == 8 && groups.len() == 2 && groups.iter().all(|g| g.len() == 4)
}

/// The word nearest the span `start..end` of `t` (lower-cased) that says what it is: before it
/// within [`BEFORE`] characters, or after it within [`AFTER`]; before wins a tie.
fn context(t: &str, start: usize, end: usize) -> Option<Context> {
    let before_from = t[..start]
        .char_indices()
        .rev()
        .nth(BEFORE - 1)
        .map_or(0, |(i, _)| i);
    let before = &t[before_from..start];
    let after_to = t[end..]
        .char_indices()
        .nth(AFTER)
        .map_or(t.len(), |(i, _)| end + i);
    let after = &t[end..after_to];
    // A sentence or clause boundary ends what a word can describe.
    let before = before
        .rfind(['。', '；', ';', '\n', '!', '?', '！', '？'])
        .map_or(before, |i| &before[i..]);
    let after = after
        .find(['。', '，', ',', '；', ';', '\n', '!', '?', '！', '？'])
        .map_or(after, |i| &after[..i]);
    let mut best: Option<(usize, Context)> = None;
    for &(word, ctx) in CONTEXT {
        let (reach_before, reach_after) = match ctx {
            Context::Code => (CODE_BEFORE, CODE_AFTER),
            _ => (BEFORE, AFTER),
        };
        if let Some(i) = find_word(before, word, true) {
            let distance = before[i + word.len()..].chars().count();
            if distance <= reach_before && best.is_none_or(|(d, _)| distance < d) {
                best = Some((distance, ctx));
            }
        }
        if let Some(i) = find_word(after, word, false) {
            // After counts one further than the same distance before.
            let distance = after[..i].chars().count() + 1;
            if distance <= reach_after && best.is_none_or(|(d, _)| distance < d) {
                best = Some((distance, ctx));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// The last (or first) place `word` occurs in `hay` as a word of its own: an ASCII word must
/// not be part of a longer one ("cancel" is not "cell", "card" in "cardigan").
fn find_word(hay: &str, word: &str, last: bool) -> Option<usize> {
    let ascii = word.is_ascii();
    let whole = |i: usize| {
        !ascii
            || (!hay[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && !hay[i + word.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() && c != 's'))
    };
    let mut hits = hay
        .match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| whole(i));
    if last { hits.last() } else { hits.next() }
}

/// The text with fullwidth forms read as ASCII ("１３８００１３８０００", "＠": Chinese input
/// methods type them), one char for one, and the way back to the original's byte offsets.
struct Folded {
    text: String,
    /// For each char of `text`: its byte offset there and in the original.
    offsets: Vec<(usize, usize)>,
    original_len: usize,
}

impl Folded {
    fn new(original: &str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut offsets = Vec::with_capacity(original.len());
        for (i, c) in original.char_indices() {
            offsets.push((text.len(), i));
            text.push(halfwidth(c));
        }
        Folded {
            text,
            offsets,
            original_len: original.len(),
        }
    }

    /// The original's byte offset of the folded text's byte offset `at` (a char boundary).
    fn original(&self, at: usize) -> usize {
        match self.offsets.binary_search_by_key(&at, |&(f, _)| f) {
            Ok(i) => self.offsets[i].1,
            Err(_) => self.original_len,
        }
    }
}

/// The ASCII character a fullwidth form (U+FF01 to U+FF5E) stands for, and the ideographic
/// space as a space.
fn halfwidth(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

fn normalise(s: &str) -> String {
    let s: String = s.chars().map(halfwidth).collect();
    if s.contains('@') {
        s.trim().to_lowercase()
    } else {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_uppercase()
    }
}

/// A number glued to letters or to an identifier (`SKU-12345678`, `v2.0.12345678`) is a code.
fn glued(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    before.is_some_and(|c| c.is_ascii_alphanumeric() || "-_/#.".contains(c))
        || after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = (d - b'0') as u32;
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// PRC resident identity number: a region, a birth date, a sequence, and a check character
/// (GB 11643, ISO 7064 MOD 11-2).
fn prc_id(s: &[u8]) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8; 11] = b"10X98765432";
    if s.len() != 18 || !s[..17].iter().all(u8::is_ascii_digit) || !(b'1'..=b'8').contains(&s[0]) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&s[r])
            .ok()
            .and_then(|x| x.parse::<u32>().ok())
    };
    let (Some(year), Some(month), Some(day)) = (num(6..10), num(10..12), num(12..14)) else {
        return false;
    };
    if !(1900..=2100).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    let sum: u32 = s[..17]
        .iter()
        .zip(W)
        .map(|(&d, w)| (d - b'0') as u32 * w)
        .sum();
    C[(sum % 11) as usize] == s[17].to_ascii_uppercase()
}

/// US Social Security number as written, AAA-GG-SSSS, in the ranges the SSA issues.
fn ssn(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() != 3 || parts.iter().map(|p| p.len()).collect::<Vec<_>>() != [3, 2, 4] {
        return false;
    }
    parts[0] != "000"
        && parts[0] != "666"
        && !parts[0].starts_with('9')
        && parts[1] != "00"
        && parts[2] != "0000"
}

/// IBAN check digits: the country and check moved to the end, letters as numbers, mod 97 is 1.
fn iban(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&c.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in c[4..].iter().chain(&c[..4]) {
        let v = match b {
            b'0'..=b'9' => (b - b'0') as u32,
            b'A'..=b'Z' => (b - b'A') as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Hong Kong identity card check character (weights 9..2, a missing first letter as 36).
fn hkid(letters: &str, digits: &str, check: &str) -> bool {
    let l: Vec<u32> = letters.bytes().map(|b| (b - b'A') as u32 + 10).collect();
    let mut sum = match l.as_slice() {
        [a] => 36 * 9 + a * 8,
        [a, b] => a * 9 + b * 8,
        _ => return false,
    };
    for (i, d) in digits.bytes().enumerate() {
        sum += (d - b'0') as u32 * (7 - i as u32);
    }
    let want = match (11 - sum % 11) % 11 {
        10 => 'A',
        n => char::from_digit(n, 10).unwrap_or('?'),
    };
    check.starts_with(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        Detector::new(&["400-820-8820".into(), "help@shop.example".into()])
            .find(text)
            .into_iter()
            .map(|s| s.kind.as_str())
            .collect()
    }

    #[test]
    fn finds_personal_data_in_both_languages() {
        for (text, want) in [
            ("Call Li on 138 0013 8000 tomorrow.", "phone_number"),
            ("联系电话13800138000。", "phone_number"),
            ("Call +1 (415) 555-2671.", "phone_number"),
            ("my number is 415-555-2671", "phone_number"),
            ("ring 020 7946 0958 after 5", "phone_number"),
            ("座机010-62345678", "phone_number"),
            ("Write to jane.doe@gmail.com please", "email_address"),
            ("身份证号11010519491231002X已核实", "national_id"),
            ("SSN 123-45-6789", "national_id"),
            ("NI number QQ 12 34 56 C", "national_id"),
            ("护照号E12345678", "national_id"),
            ("Card 4111 1111 1111 1111 was charged.", "payment_card"),
            ("卡号6222021234567890128", "payment_card"),
            ("IBAN GB82 WEST 1234 5698 7654 32", "account_number"),
            ("account number 00123456", "account_number"),
            ("联系电话１３８００１３８０００。", "phone_number"),
            ("邮箱ｊａｎｅ＠ｇｍａｉｌ．ｃｏｍ", "email_address"),
        ] {
            assert_eq!(kinds(text), vec![want], "{text}");
        }
    }

    #[test]
    fn leaves_business_codes_alone() {
        for text in [
            "Order numbers look like ORD-2024-771234; product SKU-40012345678.",
            "Call our hotline 400-820-8820 or mail help@shop.example.",
            "Refunds take 7 to 10 days; since 2024-05-01 the fee is 12.50.",
            "Firmware 10.2.3.4567 fixes it.",
            "my order 13800138000 has not arrived",
            "订单号 202411031234567 还没发货",
            "tracking number 1Z999AA10123456784",
            "快递单号 SF1234567890123",
            "router at 192.168.100.254 keeps rebooting",
            "I paid 1,299.00 on 03/11/2024",
            "the code 123456 expired",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn masks_at_the_original_offsets() {
        let d = Detector::default();
        assert_eq!(
            d.mask("电话：１３８００１３８０００，邮箱 a@b.cn"),
            "电话：[phone]，邮箱 [email]"
        );
        assert_eq!(
            d.mask("order 20241103887, call 13900139000 13800138000"),
            "order 20241103887, call [phone] [phone]"
        );
    }
}
