//! Text preparation for retrieval: cutting cards into passages, and the keyword terms that let
//! exact strings (order numbers, product codes) and Chinese words match without a segmenter;
//! which language a text is in; shortening for summaries. Shared by knowledge, conversation and
//! api, below all of them.

pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff | 0x20000..=0x2fa1f)
}

/// `zh` when a fifth or more of the letters are CJK, else `en`: enough to pick the prompt and
/// filters for the two languages customers write here; anything else should be given explicitly.
pub fn detect_language(text: &str) -> &'static str {
    let (mut cjk, mut letters) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
            letters += 1;
        } else if c.is_alphabetic() {
            letters += 1;
        }
    }
    if letters > 0 && cjk * 5 >= letters {
        "zh"
    } else {
        "en"
    }
}

/// Estimated model tokens per passage. e5 reads at most 512; shorter passages make the cited
/// passage precise and keep one topic per vector.
const PASSAGE_TOKENS: usize = 180;

/// A rough token count: XLM-R splits an English word into ~1.3 pieces and a Chinese character
/// into ~1. Only used to size passages, never to truncate model input.
pub fn estimate_tokens(s: &str) -> usize {
    let cjk = s.chars().filter(|&c| is_cjk(c)).count();
    let words = s
        .split(|c: char| c.is_whitespace() || is_cjk(c))
        .filter(|w| !w.is_empty())
        .count();
    cjk + words * 13 / 10
}

/// Splits into sentences, keeping the terminator with its sentence.
pub fn sentences(paragraph: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = paragraph.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let end = i + c.len_utf8();
        let hard = matches!(c, '。' | '！' | '？' | '；' | '\n');
        let soft =
            matches!(c, '.' | '!' | '?' | ';') && it.peek().is_none_or(|&(_, n)| n.is_whitespace());
        if hard || soft {
            let s = paragraph[start..end].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = end;
        }
    }
    let rest = paragraph[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Cuts a card body into passages of about [`PASSAGE_TOKENS`]: paragraphs are kept whole when
/// they fit, long ones are cut at sentence ends, and a passage that had to be cut repeats the
/// previous sentence so a fact split across the cut is still found.
pub fn passages(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut cur_tokens = 0;
    let sep = |cur: &[&str]| {
        if cur
            .iter()
            .any(|s| s.chars().any(|c| c.is_ascii_alphabetic()))
        {
            " "
        } else {
            ""
        }
    };
    for para in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let units: Vec<&str> = if estimate_tokens(para) <= PASSAGE_TOKENS {
            vec![para]
        } else {
            sentences(para)
        };
        for unit in units {
            let t = estimate_tokens(unit);
            if cur_tokens + t > PASSAGE_TOKENS && !cur.is_empty() {
                out.push(cur.join(sep(&cur)));
                let last = *cur.last().unwrap();
                let carry = estimate_tokens(last);
                cur.clear();
                cur_tokens = 0;
                if carry < PASSAGE_TOKENS / 3 && carry + t <= PASSAGE_TOKENS {
                    cur.push(last);
                    cur_tokens = carry;
                }
            }
            cur.push(unit);
            cur_tokens += t;
        }
    }
    if !cur.is_empty() {
        out.push(cur.join(sep(&cur)));
    }
    out
}

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "me", "my", "of", "on", "or", "our", "the", "this", "to", "was", "we",
    "what", "when", "where", "which", "with", "you", "your",
];

/// Chinese function-word bigrams: in almost every question, so they only add noise matches.
const CJK_STOP: &[&str] = &[
    "怎么",
    "如何",
    "什么",
    "可以",
    "需要",
    "我的",
    "一下",
    "为什么",
    "是否",
    "请问",
    "能不",
    "不能",
    "我们",
    "你们",
    "这个",
    "那个",
    "的话",
];

/// Keyword terms: lower-cased words (English stop words dropped), codes also in a compact form
/// (`ORD-2024-77` gives `ord`, `2024`, `77` and `ord202477`), and Chinese as overlapping
/// character bigrams (single characters when alone), the standard segmenter-free index for CJK.
pub fn terms(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = lower.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_cjk(c) {
            let start = i;
            while i < chars.len() && is_cjk(chars[i]) {
                i += 1;
            }
            let run = &chars[start..i];
            if run.len() == 1 {
                out.push(run[0].to_string());
            }
            for w in run.windows(2) {
                let bigram: String = w.iter().collect();
                if !CJK_STOP.contains(&bigram.as_str()) {
                    out.push(bigram);
                }
            }
        } else if c.is_alphanumeric() {
            // A code: alphanumeric parts joined by - _ . / without spaces.
            let mut parts: Vec<String> = Vec::new();
            let mut part = String::new();
            while i < chars.len() {
                let ch = chars[i];
                if ch.is_alphanumeric() && !is_cjk(ch) {
                    part.push(ch);
                    i += 1;
                } else if "-_./".contains(ch)
                    && i + 1 < chars.len()
                    && chars[i + 1].is_alphanumeric()
                    && !is_cjk(chars[i + 1])
                    && !part.is_empty()
                {
                    parts.push(std::mem::take(&mut part));
                    i += 1;
                } else {
                    break;
                }
            }
            if !part.is_empty() {
                parts.push(part);
            }
            if parts.len() > 1 && parts.iter().any(|p| p.chars().any(|c| c.is_ascii_digit())) {
                out.push(parts.concat());
            }
            for p in parts {
                if !STOPWORDS.contains(&p.as_str()) {
                    out.push(p);
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Distinct terms, for a query.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut t = terms(text);
    let mut seen = std::collections::HashSet::new();
    t.retain(|x| seen.insert(x.clone()));
    t
}

/// The first `chars` characters of `s`, with an ellipsis when it was longer.
pub fn shorten(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_cover_codes_words_and_chinese() {
        let t = terms("Reset the router RT-AX58U, order ORD-2024-77812. 退款政策");
        for want in [
            "reset",
            "router",
            "rtax58u",
            "rt",
            "ax58u",
            "ord202477812",
            "2024",
            "退款",
            "款政",
            "政策",
        ] {
            assert!(t.contains(&want.to_string()), "{want} missing from {t:?}");
        }
        assert!(!t.contains(&"the".to_string()));
        assert_eq!(terms("退"), vec!["退"]);
    }

    #[test]
    fn passages_respect_the_budget_and_keep_everything() {
        let para = "The router restarts itself when the firmware updates. ".repeat(30);
        let body = format!("Short intro.\n\n{para}\n\n最后一段。");
        let ps = passages(&body);
        assert!(ps.len() > 1, "{ps:?}");
        for p in &ps {
            assert!(estimate_tokens(p) <= PASSAGE_TOKENS, "{p}");
        }
        assert!(ps[0].starts_with("Short intro."));
        assert!(ps.last().unwrap().ends_with("最后一段。"));
        let zh = "第一句话。".repeat(100);
        assert!(passages(&zh).iter().all(|p| !p.contains(' ')));
    }
}
