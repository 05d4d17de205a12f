//! What an author may send for a card, and the checks that turn it into stored content.

use serde::Deserialize;

use crate::error::{Error, ErrorCode};
use crate::store::CardContent;
use crate::text::detect_language;
use crate::vocab::Channel;

const MAX_TITLE_CHARS: usize = 200;
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 64;

/// A new card. Unknown fields are refused, so a typo (`"titel"`) is an error, not a silent drop.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// BCP 47 language tag (`en`, `zh`, `zh-Hant`). Detected from the text when absent.
    #[serde(default)]
    pub language: Option<String>,
    /// Channels the card may answer on (`chat`, `social`, `email`, `voice`); empty: all of them.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// A change to a card: only the fields given change. `expected_version` guards against
/// overwriting an edit made meanwhile (409 when the card moved on).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub tags: Option<Vec<String>>,
    pub language: Option<String>,
    pub channels: Option<Vec<String>>,
    pub expected_version: Option<i64>,
}

impl CardPatch {
    pub fn apply(&self, c: &CardContent) -> CardInput {
        CardInput {
            title: self.title.clone().unwrap_or_else(|| c.title.clone()),
            body: self.body.clone().unwrap_or_else(|| c.body.clone()),
            tags: self.tags.clone().unwrap_or_else(|| c.tags.clone()),
            language: Some(self.language.clone().unwrap_or_else(|| c.language.clone())),
            channels: self.channels.clone().unwrap_or_else(|| c.channels.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.body.is_none()
            && self.tags.is_none()
            && self.language.is_none()
            && self.channels.is_none()
    }
}

/// A language a caller asks a reply in: a BCP 47 tag (`en`, `zh-TW`), never free text (it is
/// written into the model's instructions).
pub fn check_reply_language(tag: &str) -> Result<(), Error> {
    let t = tag.trim();
    if t.is_empty() {
        return Ok(()); // the same as none: the question's own language
    }
    if t.len() > 35 || !valid_language(&t.to_lowercase()) {
        return Err(Error::invalid(format!(
            "language {:?} is not a language tag such as \"en\" or \"zh-TW\"",
            crate::text::shorten(t, 40)
        )));
    }
    Ok(())
}

fn valid_language(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl CardInput {
    /// Checks and normalises the input. `max_body_bytes` is the configured card size limit.
    pub fn validate(self, max_body_bytes: usize) -> Result<CardContent, Error> {
        let title = self.title.trim().to_string();
        if title.is_empty() {
            return Err(Error::bad(
                ErrorCode::InvalidCard,
                "title must not be empty",
            ));
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(Error::bad(
                ErrorCode::InvalidCard,
                format!("title is longer than {MAX_TITLE_CHARS} characters"),
            ));
        }
        if title.contains('\n') {
            return Err(Error::bad(
                ErrorCode::InvalidCard,
                "title must be a single line",
            ));
        }
        let body = self.body.trim().to_string();
        if body.is_empty() {
            return Err(Error::bad(ErrorCode::InvalidCard, "body must not be empty"));
        }
        within_size(&body, max_body_bytes)?;
        if self.tags.len() > MAX_TAGS {
            return Err(Error::bad(
                ErrorCode::InvalidCard,
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        let mut tags = Vec::new();
        for t in self.tags {
            let t = t.trim().to_lowercase();
            if t.is_empty() || t.chars().count() > MAX_TAG_CHARS || t.chars().any(char::is_control)
            {
                return Err(Error::bad(
                    ErrorCode::InvalidCard,
                    format!("tag {t:?} must be 1 to {MAX_TAG_CHARS} printable characters"),
                ));
            }
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let language = match self.language {
            Some(l) => {
                let l = l.trim().to_string();
                let (head, tail) = l
                    .split_once('-')
                    .map_or((l.as_str(), None), |(h, t)| (h, Some(t)));
                let l = match tail {
                    Some(t) => format!("{}-{t}", head.to_ascii_lowercase()),
                    None => head.to_ascii_lowercase(),
                };
                if !valid_language(&l) {
                    return Err(Error::bad(
                        ErrorCode::InvalidCard,
                        format!("language {l:?} is not a language tag such as \"en\" or \"zh\""),
                    ));
                }
                l
            }
            None => detect_language(&format!("{title}\n{body}")).to_string(),
        };
        let mut channels = Vec::new();
        for c in self.channels {
            let c = c.trim().to_lowercase();
            // A card answers customers: the agent desk reads every card whatever its channels.
            if !c.parse().is_ok_and(Channel::is_customer_facing) {
                return Err(Error::bad(
                    ErrorCode::InvalidCard,
                    format!(
                        "channel {c:?} is not one of {}",
                        crate::vocab::join(&Channel::CUSTOMER_FACING, ", ")
                    ),
                ));
            }
            if !channels.contains(&c) {
                channels.push(c);
            }
        }
        channels.sort();
        Ok(CardContent {
            title,
            body,
            tags,
            language,
            channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(title: &str, body: &str) -> CardInput {
        CardInput {
            title: title.into(),
            body: body.into(),
            tags: vec![],
            language: None,
            channels: vec![],
        }
    }

    #[test]
    fn normalises_and_detects() {
        let mut i = input("  退款政策 ", "商品签收后七天内可以申请无理由退货。");
        i.tags = vec!["Refund".into(), "refund".into()];
        i.channels = vec!["email".into(), "chat".into()];
        let c = i.validate(1000).unwrap();
        assert_eq!(c.title, "退款政策");
        assert_eq!(c.language, "zh");
        assert_eq!(c.tags, vec!["refund"]);
        assert_eq!(c.channels, vec!["chat", "email"]);
        assert_eq!(
            input("Reset", "Open settings")
                .validate(1000)
                .unwrap()
                .language,
            "en"
        );
    }

    #[test]
    fn refuses_what_cannot_be_stored() {
        assert!(input(" ", "b").validate(100).is_err());
        assert!(input("t", "").validate(100).is_err());
        assert!(input("t", &"x".repeat(101)).validate(100).is_err());
        let mut bad = input("t", "b");
        bad.channels = vec!["fax".into()];
        assert!(bad.validate(100).is_err());
        let mut lang = input("t", "b");
        lang.language = Some("english!".into());
        assert!(lang.clone().validate(100).is_err());
        lang.language = Some("zh-Hant".into());
        assert_eq!(lang.validate(100).unwrap().language, "zh-Hant");
    }
}

/// A card body fits `limits.max_card_bytes`.
pub fn within_size(body: &str, max_body_bytes: usize) -> Result<(), Error> {
    if body.len() > max_body_bytes {
        return Err(Error::bad(
            ErrorCode::CardTooLarge,
            format!(
                "body is {} bytes, over the limit of {max_body_bytes}: split the card into smaller ones",
                body.len()
            ),
        ));
    }
    Ok(())
}

/// A card body's Markdown as HTML, for the editor's preview. Raw HTML in the body is shown as
/// text, never passed through: a body may come from a mined conversation, that is, from a
/// customer.
pub fn preview_html(body: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag};
    // Links only to the web and mail: `javascript:` and `data:` would run or carry code.
    let safe = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        !lower.contains(':')
            || ["http:", "https:", "mailto:"]
                .iter()
                .any(|s| lower.starts_with(s))
    };
    let events = Parser::new(body).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        // The link's text still shows; only where it points is dropped.
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        e => e,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// One line of a diff between two versions of a card's text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DiffLine {
    pub op: DiffOp,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffOp {
    Equal,
    Insert,
    Delete,
}

/// Line diff of two texts (Patience, as `git diff --patience` reads edits of prose best).
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    use similar::{Algorithm, ChangeTag, TextDiff};
    TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .diff_lines(old, new)
        .iter_all_changes()
        .map(|c| DiffLine {
            op: match c.tag() {
                ChangeTag::Equal => DiffOp::Equal,
                ChangeTag::Insert => DiffOp::Insert,
                ChangeTag::Delete => DiffOp::Delete,
            },
            text: c.value().trim_end_matches('\n').to_string(),
        })
        .collect()
}

#[cfg(test)]
mod preview_tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_raw_html_is_text() {
        let html = preview_html("**Refunds** take 7 days.\n\n<script>alert(1)</script>");
        assert!(html.contains("<strong>Refunds</strong>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let html = preview_html("[x](javascript:alert(1)) [y](https://example.com/a)");
        assert!(!html.contains("javascript"), "{html}");
        assert!(html.contains("href=\"https://example.com/a\""), "{html}");
    }

    #[test]
    fn a_changed_line_is_a_delete_and_an_insert() {
        let d = diff_lines("a\nb\nc\n", "a\nB\nc\n");
        let ops: Vec<_> = d.iter().map(|l| (l.op, l.text.as_str())).collect();
        assert_eq!(
            ops,
            [
                (DiffOp::Equal, "a"),
                (DiffOp::Delete, "b"),
                (DiffOp::Insert, "B"),
                (DiffOp::Equal, "c")
            ]
        );
    }
}
