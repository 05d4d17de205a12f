//! Compliance checks run before a card reaches customers: personal data (phone numbers, e-mail
//! addresses, national ID numbers, payment card numbers) must not be in a published card.
//! Cards are often drafted from real conversations, which is exactly how such data slips in.
//!
//! Candidates are found with regular expressions and then confirmed with the checksums the
//! numbers carry (Luhn for payment cards, ISO 7064 for PRC resident IDs), so product codes and
//! order numbers are not flagged as cards or IDs. Numbers the company publishes on purpose
//! (its hotline, its support address) go in `[compliance] allow`.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::Finding;
use crate::store::CardContent;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").unwrap()
});
/// Digits with the separators people write numbers with (space, dot, dash, parentheses), an
/// optional leading `+`, and an optional final `X` (PRC IDs).
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?\d[\d \-.()]{6,30}[\dXx]").unwrap());
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$").unwrap());

pub struct Checker {
    allow: Vec<String>,
}

fn normalise(s: &str) -> String {
    if s.contains('@') {
        s.trim().to_lowercase()
    } else {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_uppercase()
    }
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

/// PRC resident identity number: 17 digits and a check character (GB 11643, ISO 7064 MOD 11-2).
fn prc_id(s: &[u8]) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8; 11] = b"10X98765432";
    if s.len() != 18 || !s[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = s[..17]
        .iter()
        .zip(W)
        .map(|(&d, w)| (d - b'0') as u32 * w)
        .sum();
    C[(sum % 11) as usize] == s[17].to_ascii_uppercase()
}

/// A number glued to letters or to an identifier (`SKU-12345678`, `v2.0.12345678`) is a code.
fn glued(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    before.is_some_and(|c| c.is_ascii_alphanumeric() || "-_/#.".contains(c))
        || after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
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

fn excerpt(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let keep = if chars.len() > 8 { 2 } else { 1 };
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < keep || i >= chars.len() - keep {
                c
            } else {
                '*'
            }
        })
        .collect()
}

impl Checker {
    pub fn new(allow: &[String]) -> Self {
        Checker {
            allow: allow.iter().map(|s| normalise(s)).collect(),
        }
    }

    pub fn check(&self, c: &CardContent) -> Vec<Finding> {
        let mut out = self.check_field("title", &c.title);
        out.extend(self.check_field("body", &c.body));
        out
    }

    fn check_field(&self, field: &str, original: &str) -> Vec<Finding> {
        // Read with fullwidth forms as ASCII ("１３８００１３８０００", "＠"): a Chinese input
        // method types them, and they are the same number. One char for one, so character
        // offsets are the original's.
        let folded: String = original.chars().map(halfwidth).collect();
        let text = folded.as_str();
        let mut found: Vec<(usize, usize, &'static str)> = Vec::new();
        for m in EMAIL.find_iter(text) {
            if !self.allow.contains(&normalise(m.as_str())) {
                found.push((m.start(), m.end(), "email_address"));
            }
        }
        for m in NUMBER.find_iter(text) {
            // Trim separators the pattern may have swallowed at the end, e.g. "(".
            let s = m.as_str().trim_end_matches([' ', '-', '.', '(']);
            let (start, end) = (m.start(), m.start() + s.len());
            if found.iter().any(|&(a, b, _)| start < b && a < end) || glued(text, start, end) {
                continue;
            }
            let compact: Vec<u8> = s.bytes().filter(|b| b.is_ascii_alphanumeric()).collect();
            if self.allow.contains(&normalise(s)) || DATE.is_match(s) {
                continue;
            }
            let digits = compact.iter().filter(|b| b.is_ascii_digit()).count();
            let plain = compact.iter().all(u8::is_ascii_digit);
            let separated = s.contains([' ', '-', '.', '(']) || s.starts_with('+');
            // Version numbers and decimals have one-digit groups ("10.2.3.4567"); phone numbers
            // do not, apart from a country code after "+".
            let one_digit_group = s
                .trim_start_matches('+')
                .split([' ', '-', '.', '(', ')'])
                .skip(usize::from(s.starts_with('+')))
                .any(|g| g.len() == 1);
            let kind = if prc_id(&compact) {
                "national_id"
            } else if plain && (13..=19).contains(&digits) && luhn(&compact) {
                "payment_card"
            } else if plain
                && ((10..=15).contains(&digits)
                    || ((8..=9).contains(&digits) && separated && !one_digit_group))
            {
                "phone_number"
            } else {
                continue;
            };
            found.push((start, end, kind));
        }
        found.sort();
        found
            .into_iter()
            .map(|(start, end, check)| {
                let (start, end) = (text[..start].chars().count(), text[..end].chars().count());
                let seen: String = original.chars().skip(start).take(end - start).collect();
                Finding {
                    check: check.into(),
                    field: field.into(),
                    start,
                    end,
                    excerpt: excerpt(&seen),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(text: &str) -> Vec<String> {
        let c = CardContent {
            title: "t".into(),
            body: text.into(),
            tags: vec![],
            language: "en".into(),
            channels: vec![],
        };
        Checker::new(&["400-820-8820".into(), "help@shop.example".into()])
            .check(&c)
            .into_iter()
            .map(|f| f.check)
            .collect()
    }

    #[test]
    fn finds_personal_data() {
        assert_eq!(
            checks("Call Li on 138 0013 8000 tomorrow."),
            vec!["phone_number"]
        );
        assert_eq!(checks("联系电话13800138000。"), vec!["phone_number"]);
        assert_eq!(checks("Call +1 (415) 555-2671."), vec!["phone_number"]);
        assert_eq!(
            checks("Write to jane.doe@gmail.com please"),
            vec!["email_address"]
        );
        assert_eq!(
            checks("身份证号11010519491231002X已核实"),
            vec!["national_id"]
        );
        assert_eq!(
            checks("Card 4111 1111 1111 1111 was charged."),
            vec!["payment_card"]
        );
        // Typed with fullwidth forms, as Chinese input methods do (issue 16).
        assert_eq!(
            checks("联系电话１３８００１３８０００。"),
            vec!["phone_number"]
        );
        assert_eq!(
            checks("邮箱ｊａｎｅ＠ｇｍａｉｌ．ｃｏｍ"),
            vec!["email_address"]
        );
    }

    #[test]
    fn leaves_business_text_alone() {
        assert!(
            checks("Order numbers look like ORD-2024-771234; product SKU-40012345678.").is_empty()
        );
        assert!(checks("Call our hotline 400-820-8820 or mail help@shop.example.").is_empty());
        assert!(checks("Refunds take 7 to 10 days; since 2024-05-01 the fee is 12.50.").is_empty());
        assert!(checks("Firmware 10.2.3.4567 fixes it.").is_empty());
    }

    #[test]
    fn reports_char_offsets_and_masks() {
        let c = CardContent {
            title: "t".into(),
            body: "电话：13800138000".into(),
            tags: vec![],
            language: "zh".into(),
            channels: vec![],
        };
        let f = &Checker::new(&[]).check(&c)[0];
        assert_eq!((f.start, f.end), (3, 14));
        assert_eq!(f.excerpt, "13*******00");
        let c = CardContent {
            body: "电话：１３８００１３８０００".into(),
            ..c
        };
        let f = &Checker::new(&[]).check(&c)[0];
        assert_eq!((f.start, f.end), (3, 14));
        assert_eq!(f.excerpt, "１３*******００");
    }
}
