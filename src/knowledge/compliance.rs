//! Compliance checks run before a card reaches customers: personal data (phone numbers, e-mail
//! addresses, national ID numbers, payment card numbers) must not be in a published card.
//! Cards are often drafted from real conversations, which is exactly how such data slips in.
//!
//! The detection is [`crate::pii`]'s, the same that masks stored turns: candidates confirmed by
//! the checksums the numbers carry and the words around them, so product codes and order
//! numbers are not flagged. Numbers the company publishes on purpose (its hotline, its support
//! address) go in `[compliance] allow`.

use crate::error::Finding;
use crate::pii::Detector;
use crate::store::CardContent;

pub struct Checker {
    detector: Detector,
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
            detector: Detector::new(allow),
        }
    }

    pub fn check(&self, c: &CardContent) -> Vec<Finding> {
        let mut out = self.check_field("title", &c.title);
        out.extend(self.check_field("body", &c.body));
        out
    }

    /// Findings with character offsets (what an editor highlights) and a masked excerpt.
    fn check_field(&self, field: &str, text: &str) -> Vec<Finding> {
        self.detector
            .find(text)
            .into_iter()
            .map(|s| Finding {
                check: s.kind.as_str().into(),
                field: field.into(),
                start: text[..s.start].chars().count(),
                end: text[..s.end].chars().count(),
                excerpt: excerpt(&text[s.start..s.end]),
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
