//! Text preparation for retrieval: cutting cards into passages, and the keyword terms that let
//! exact strings (order numbers, product codes) and Chinese words match without a segmenter;
//! which language a text is in; shortening for summaries. Shared by knowledge, conversation and
//! api, below all of them.

pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff | 0x20000..=0x2fa1f)
}

/// The language of a turn as it arrived: the main one (ISO 639-1 where it has one, else
/// 639-3) with a confidence in [0, 1], and the other of Chinese and English when the text mixes
/// them ("我的order还没到").
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LanguageGuess {
    pub language: String,
    pub confidence: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_with: Option<String>,
}

/// Guesses a text's language with whatlang's trigram model, where Chinese and English are told
/// apart by their scripts first: a customer who types a product name in English inside a Chinese
/// sentence writes Chinese (and the guess says it is mixed). `None` for a text without letters.
pub fn guess_language(text: &str) -> Option<LanguageGuess> {
    let cjk = text.chars().filter(|&c| is_cjk(c)).count();
    let latin_words = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() > 1)
        .count();
    // A Latin word carries about as much as two Chinese characters.
    let (zh, en) = (cjk as f32, 2.0 * latin_words as f32);
    let info = DETECTOR.detect(text);
    if zh + en == 0.0 && info.is_none() {
        return None;
    }
    let share_zh = if zh + en > 0.0 { zh / (zh + en) } else { 0.0 };
    let mixed = |other: &str, minority: f32| (minority >= 0.15).then(|| other.to_string());
    let kana_or_hangul = text
        .chars()
        .any(|c| matches!(c as u32, 0x3040..=0x30ff | 0xac00..=0xd7af));
    if cjk > 0 && !kana_or_hangul && share_zh >= 0.5 {
        return Some(LanguageGuess {
            language: "zh".into(),
            confidence: share_zh,
            mixed_with: mixed("en", 1.0 - share_zh),
        });
    }
    // Trigram statistics need more text than a support question has ("Can you tell me how to
    // change my Wi-Fi password?" reads as Dutch to whatlang); English function words do not.
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphabetic() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let english = words
        .iter()
        .filter(|w| ENGLISH_FUNCTION_WORDS.contains(&w.as_str()))
        .count() as f32
        / words.len().max(1) as f32;
    if cjk == 0 && english >= 0.25 {
        return Some(LanguageGuess {
            language: "en".into(),
            confidence: (english * 2.0).min(1.0),
            mixed_with: None,
        });
    }
    let info = info?;
    let language = iso_639_1(info.lang())
        .unwrap_or(info.lang().code())
        .to_string();
    let mixed_with = (language == "en").then(|| mixed("zh", share_zh)).flatten();
    Some(LanguageGuess {
        language,
        confidence: info.confidence() as f32,
        mixed_with,
    })
}

/// The commonest English words that carry grammar, not topic (not "a" or "no", which Spanish,
/// Italian and Portuguese use as much).
const ENGLISH_FUNCTION_WORDS: &[&str] = &[
    "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but",
    "by", "can", "could", "did", "do", "does", "for", "from", "get", "got", "had", "has", "have",
    "he", "her", "his", "how", "i", "i'm", "if", "in", "is", "it", "it's", "just", "me", "my",
    "not", "now", "of", "ok", "on", "or", "our", "please", "she", "so", "still", "thank", "thanks",
    "that", "the", "them", "there", "they", "this", "to", "up", "was", "we", "what", "when",
    "where", "which", "who", "why", "will", "with", "would", "yes", "you", "your",
];

/// Only the languages a customer-service deployment meets: whatlang's 69 include neighbours it
/// picks for short questions (Afrikaans for "Can you tell me how to change my Wi-Fi password?";
/// Dutch with this list, hence the function words in [`guess_language`]).
static DETECTOR: std::sync::LazyLock<whatlang::Detector> = std::sync::LazyLock::new(|| {
    use whatlang::Lang::*;
    whatlang::Detector::with_allowlist(vec![
        Eng, Cmn, Jpn, Kor, Spa, Fra, Deu, Rus, Por, Ita, Nld, Vie, Tha, Ind, Tur, Ara, Pol,
    ])
});

/// The two-letter code of the languages customers here write in most, for the API.
fn iso_639_1(lang: whatlang::Lang) -> Option<&'static str> {
    use whatlang::Lang::*;
    Some(match lang {
        Eng => "en",
        Cmn => "zh",
        Jpn => "ja",
        Kor => "ko",
        Spa => "es",
        Fra => "fr",
        Deu => "de",
        Rus => "ru",
        Por => "pt",
        Ita => "it",
        Nld => "nl",
        Vie => "vi",
        Tha => "th",
        Ind => "id",
        Tur => "tr",
        Ara => "ar",
        Pol => "pl",
        _ => return None,
    })
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

#[cfg(test)]
mod language_tests {
    use super::*;

    #[test]
    fn guesses_the_language_with_a_confidence_and_notices_mixing() {
        for short in [
            "Can you tell me how to change my Wi-Fi password?",
            "OK, I will try that now.",
            "Open the app, go to Wi-Fi settings and choose a new password.",
            "thanks",
            "Where is my parcel?",
        ] {
            let g = guess_language(short).unwrap();
            assert_eq!(g.language, "en", "{short}: {g:?}");
        }
        let g = guess_language("My parcel has not arrived and nobody answers the phone.").unwrap();
        assert_eq!((g.language.as_str(), g.mixed_with), ("en", None));
        assert!(g.confidence > 0.5, "{}", g.confidence);
        let g = guess_language("我的快递三天了还没到，客服电话也打不通。").unwrap();
        assert_eq!((g.language.as_str(), g.mixed_with), ("zh", None));
        assert!(g.confidence > 0.9);
        let g = guess_language("我的order还没到，tracking number查不到").unwrap();
        assert_eq!(g.language, "zh");
        assert_eq!(g.mixed_with.as_deref(), Some("en"));
        let g = guess_language("Mi pedido no ha llegado todavía, ¿dónde está?").unwrap();
        assert_eq!(g.language, "es");
        let g = guess_language("注文した商品がまだ届きません。").unwrap();
        assert_eq!(g.language, "ja");
        assert_eq!(guess_language("12345 !!"), None);
    }
}
