//! Is what the model wrote supported by what it was given? The check after generation: a reply
//! that states a number (a price, a count of days, a limit, a phone number) that none of the
//! cards it was given, nor the customer, wrote is not sent. Numbers first because an invented
//! number is the most harmful invention in customer service (a refund "within 3 days" that the
//! card says takes 10) and the one a small model makes most (the near-miss questions of
//! eval/README.md: confident replies with made-up fees and limits).
//!
//! Exact, not a judge: the reply's numbers are matched against the sources' numbers after
//! normalisation ("3,000" is 3000, "10.0" is 10), with the number words of the sources read as
//! digits ("two weeks", "一年", "十五天"), since the model often turns one into the other. Only
//! the reply's digits count as claims; list markers ("1.", "2)") do not.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?").expect("valid regex")
});
static LIST_MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*\d{1,2}[.)、]\s*").expect("valid regex"));
static EN_WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z]+").expect("valid regex"));
static ZH_NUMERAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[零一二两三四五六七八九十百千]+").expect("valid regex"));

/// "3,000" → "3000", "010" → "10", "9.90" → "9.9", "10.0" → "10".
fn normalise(n: &str) -> String {
    let n = n.replace(',', "");
    let (int, frac) = match n.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (n.as_str(), ""),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

fn english_number(word: &str) -> Option<u32> {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let w = word.to_lowercase();
    if let Some(i) = WORDS.iter().position(|x| *x == w) {
        return Some(i as u32);
    }
    match w.as_str() {
        "thirty" => Some(30),
        "forty" => Some(40),
        "fifty" => Some(50),
        "sixty" => Some(60),
        "ninety" => Some(90),
        "hundred" => Some(100),
        "thousand" => Some(1000),
        "once" => Some(1),
        "twice" => Some(2),
        "single" => Some(1),
        "double" => Some(2),
        _ => None,
    }
}

/// A run of Chinese numerals as a number: 十五 = 15, 二十 = 20, 两 = 2, 三百 = 300.
fn chinese_number(run: &str) -> Option<u32> {
    let digit = |c: char| "零一二三四五六七八九".find(c).map(|i| (i / 3) as u32);
    let (mut total, mut current) = (0u32, 0u32);
    for c in run.chars() {
        match c {
            '两' => current = 2,
            '十' | '百' | '千' => {
                let unit = match c {
                    '十' => 10,
                    '百' => 100,
                    _ => 1000,
                };
                total += current.max(1) * unit;
                current = 0;
            }
            _ => current = digit(c)?,
        }
    }
    Some(total + current)
}

/// The numbers a reply claims: its digits, without list markers.
pub fn claimed(text: &str) -> Vec<String> {
    let text = LIST_MARKER.replace_all(text, "");
    NUMBER
        .find_iter(&text)
        .map(|m| normalise(m.as_str()))
        .collect()
}

/// The numbers the sources state, in digits or in words.
pub fn stated<'a>(sources: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    let mut out = HashSet::new();
    for s in sources {
        out.extend(NUMBER.find_iter(s).map(|m| normalise(m.as_str())));
        out.extend(
            EN_WORD
                .find_iter(s)
                .filter_map(|w| english_number(w.as_str()))
                .map(|n| n.to_string()),
        );
        out.extend(
            ZH_NUMERAL
                .find_iter(s)
                .filter_map(|r| chinese_number(r.as_str()))
                .map(|n| n.to_string()),
        );
    }
    out
}

/// The numbers of `reply` that none of the sources states, in order, each once.
pub fn unsupported_numbers(reply: &str, stated: &HashSet<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    claimed(reply)
        .into_iter()
        .filter(|n| !stated.contains(n) && seen.insert(n.clone()))
        .collect()
}

/// Where the last whole sentence of `text` ends (after its punctuation), from `from` on: what a
/// stream may release once it is checked.
pub fn sentence_end(text: &str, from: usize) -> Option<usize> {
    text.get(from..)?
        .char_indices()
        .filter(|(i, c)| {
            matches!(c, '。' | '！' | '？' | '\n' | '；')
                || (matches!(c, '.' | '!' | '?')
                    // "9.99" is not the end of a sentence: a period must be followed by space.
                    && text[from + i + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_some_and(char::is_whitespace))
        })
        .map(|(i, c)| from + i + c.len_utf8())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_the_reply_must_be_in_the_sources() {
        let card = "Standard delivery is free on orders over 49. Below that it costs 4.99. \
                    Orders between 99 and 3,000 can be paid in instalments.";
        let s = stated([card, "I ordered two cables yesterday"]);
        assert!(unsupported_numbers("Delivery is free over 49; otherwise 4.99.", &s).is_empty());
        assert!(unsupported_numbers("Orders up to 3000 qualify.", &s).is_empty());
        assert!(unsupported_numbers("You ordered 2 cables.", &s).is_empty());
        assert_eq!(
            unsupported_numbers(
                "Yes, Sunday delivery costs 19.99 and takes 2 to 3 days.",
                &s
            ),
            vec!["19.99", "3"]
        );
        // List markers are not claims.
        assert!(unsupported_numbers("1. Open My Orders.\n2) Pay 4.99.", &s).is_empty());
    }

    #[test]
    fn number_words_of_the_sources_count_as_digits() {
        let s = stated(["手机享受一年厂家保修，电池保修半年。超过十五天需付费，两张副卡。"]);
        for n in ["1", "15", "2"] {
            assert!(s.contains(n), "{n} in {s:?}");
        }
        let s = stated(["It takes two weeks, and thirty days to return."]);
        assert!(unsupported_numbers("2 weeks and 30 days", &s).is_empty());
        assert_eq!(chinese_number("二十"), Some(20));
        assert_eq!(chinese_number("三百"), Some(300));
        assert_eq!(normalise("010.50"), "10.5");
    }

    #[test]
    fn a_stream_releases_whole_sentences() {
        let t = "It costs 9.99 today. Then 4";
        assert_eq!(sentence_end(t, 0), Some("It costs 9.99 today.".len()));
        assert_eq!(
            sentence_end("退款 1 到 3 天到账。然后", 0),
            Some("退款 1 到 3 天到账。".len())
        );
        assert_eq!(sentence_end("no end yet", 0), None);
    }
}
