//! How far a transcript is from what was said: word error rate for English (and other scripts
//! with spaces), character error rate for Chinese. Used by `kefu eval` and the voice tests.

/// Word error rate: word-level edit distance over the number of words in `truth`. Case and
/// punctuation are ignored; apostrophes stay part of a word ("don't").
pub fn word_error_rate(truth: &str, hyp: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (t, h) = (words(truth), words(hyp));
    strsim::generic_levenshtein(&t, &h) as f64 / t.len().max(1) as f64
}

/// Character error rate over letters, digits and Chinese characters (spaces and punctuation
/// ignored). Whisper writes traditional characters for some Mandarin; both sides are folded to
/// simplified first, so 們 and 们 count as the same character.
pub fn char_error_rate(truth: &str, hyp: &str) -> f64 {
    let keep = |s: &str| -> Vec<char> {
        fast2s::convert(s)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect()
    };
    let (t, h) = (keep(truth), keep(hyp));
    strsim::generic_levenshtein(&t, &h) as f64 / t.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_count_words_or_characters() {
        assert_eq!(word_error_rate("Hello, world!", "hello world"), 0.0);
        assert_eq!(word_error_rate("one two three four", "one too three"), 0.5);
        assert_eq!(word_error_rate("I don't know", "I do not know"), 2.0 / 3.0);
        assert_eq!(char_error_rate("你好世界", "你好时界"), 0.25);
        assert_eq!(char_error_rate("这个问题", "這個問題。"), 0.0);
    }
}
