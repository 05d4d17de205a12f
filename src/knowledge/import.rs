//! Bulk import: JSON Lines (one card object a line) and Markdown with YAML front matter. Each
//! item stands alone: a bad line is reported with its reason and the good ones are still
//! imported, each committed on its own so an interrupted import keeps what it acknowledged.

use serde::{Deserialize, Serialize};

use super::card::CardInput;
use super::{Actor, Knowledge};
use crate::error::{Error, ErrorCode};

/// One item of an import source, parsed or not.
pub struct Item {
    /// Where it came from: `cards.jsonl:3`, `refunds.md`.
    pub source: String,
    pub card: Result<CardInput, String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemResult {
    pub source: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<crate::error::Finding>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub imported: usize,
    pub failed: usize,
    pub items: Vec<ItemResult>,
}

impl ImportReport {
    /// Whether the disk filled during the import: the items marked ok were kept, the others were
    /// not written (a card created but not published stays a draft, with its id).
    pub fn storage_full(&self) -> bool {
        self.items.iter().any(|i| {
            i.error
                .as_ref()
                .is_some_and(|e| e.code == ErrorCode::StorageFull)
        })
    }
}

pub fn parse_jsonl(name: &str, text: &str) -> Vec<Item> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| Item {
            source: format!("{name}:{}", i + 1),
            card: serde_json::from_str::<CardInput>(line).map_err(|e| e.to_string()),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    language: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
}

/// One Markdown card: optional `---` YAML front matter (title, tags, language, channels), then
/// the body. Without a `title`, the first `# Heading` is the title.
pub fn parse_markdown(name: &str, text: &str) -> Item {
    let card = (|| {
        let text = text.trim_start_matches('\u{feff}');
        let (fm, body) = match text.strip_prefix("---") {
            Some(rest) if rest.starts_with('\n') || rest.starts_with("\r\n") => {
                let end = rest
                    .find("\n---")
                    .ok_or("front matter opened with --- is never closed")?;
                let yaml = &rest[..end];
                let after = &rest[end + 4..];
                let body = after.split_once('\n').map_or("", |(_, b)| b);
                let fm: FrontMatter =
                    serde_yaml_ng::from_str(yaml).map_err(|e| format!("front matter: {e}"))?;
                (fm, body)
            }
            _ => (
                FrontMatter {
                    title: None,
                    tags: vec![],
                    language: None,
                    channels: vec![],
                },
                text,
            ),
        };
        let (title, body) = match fm.title {
            Some(t) => (t, body.to_string()),
            None => {
                let mut lines = body.lines();
                let first = lines.by_ref().find(|l| !l.trim().is_empty()).unwrap_or("");
                let title = first.strip_prefix("# ").ok_or(
                    "no title: add `title:` to the front matter or start with a `# Heading`",
                )?;
                (
                    title.trim().to_string(),
                    lines.collect::<Vec<_>>().join("\n"),
                )
            }
        };
        Ok(CardInput {
            title,
            body,
            tags: fm.tags,
            language: fm.language,
            channels: fm.channels,
        })
    })();
    Item {
        source: name.to_string(),
        card,
    }
}

fn failure(
    source: String,
    code: ErrorCode,
    message: String,
    details: Vec<crate::error::Finding>,
    id: Option<String>,
) -> ItemResult {
    ItemResult {
        source,
        ok: false,
        status: id.as_ref().map(|_| "draft".to_string()),
        id,
        error: Some(ItemError {
            code,
            message,
            details,
        }),
    }
}

/// Items in flight at once: enough for the embedding worker to fill a batch from one import,
/// while every item still commits on its own.
const IMPORT_CONCURRENCY: usize = 8;

impl Knowledge {
    /// Creates each item as a draft, and publishes it when `publish` is set. A card that fails
    /// its compliance checks stays as a draft (nothing is lost) and is reported with its findings.
    /// Results come back in the order of the items.
    pub async fn import(&self, items: Vec<Item>, publish: bool, actor: &Actor) -> ImportReport {
        use futures::StreamExt;
        let results: Vec<ItemResult> = futures::stream::iter(items)
            .map(|item| self.import_one(item, publish, actor))
            .buffered(IMPORT_CONCURRENCY)
            .collect()
            .await;
        let imported = results.iter().filter(|r| r.ok).count();
        ImportReport {
            imported,
            failed: results.len() - imported,
            items: results,
        }
    }

    async fn import_one(&self, item: Item, publish: bool, actor: &Actor) -> ItemResult {
        let input = match item.card {
            Ok(c) => c,
            Err(m) => return failure(item.source, ErrorCode::InvalidCard, m, vec![], None),
        };
        let card = match self.create(input, actor).await {
            Ok(c) => c,
            Err(e) => {
                return failure(item.source, e.code(), e.public_message(), vec![], None);
            }
        };
        if !publish {
            return ItemResult {
                source: item.source,
                ok: true,
                id: Some(card.id),
                status: Some("draft".into()),
                error: None,
            };
        }
        match self.publish(&card.id, actor).await {
            Ok(c) => ItemResult {
                source: item.source,
                ok: true,
                id: Some(c.id),
                status: Some(c.status.as_str().into()),
                error: None,
            },
            Err(Error::Compliance(findings)) => {
                let msg = Error::Compliance(findings.clone()).to_string();
                failure(
                    item.source,
                    ErrorCode::ComplianceFailed,
                    msg,
                    findings,
                    Some(card.id),
                )
            }
            Err(e) => failure(
                item.source,
                e.code(),
                e.public_message(),
                vec![],
                Some(card.id),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever a file holds, parsing reports a card or an error for it, never a panic.
        #[test]
        fn any_markdown_or_jsonl_parses_without_panicking(
            front in "(---\r?\n)?[ -~\n\u{4e00}-\u{4e20}\u{feff}]{0,200}(\n---\n)?",
            body in any::<String>(),
        ) {
            let text = format!("{front}{body}");
            let _ = parse_markdown("x.md", &text);
            let items = parse_jsonl("x.jsonl", &text);
            prop_assert_eq!(items.len(), text.lines().filter(|l| !l.trim().is_empty()).count());
        }
    }

    #[test]
    fn jsonl_reports_bad_lines_by_number() {
        let items = parse_jsonl(
            "c.jsonl",
            "{\"title\":\"a\",\"body\":\"b\"}\n\nnot json\n{\"titel\":\"x\",\"body\":\"y\"}\n",
        );
        assert_eq!(items.len(), 3);
        assert!(items[0].card.is_ok());
        assert_eq!(items[1].source, "c.jsonl:3");
        assert!(items[2].card.as_ref().unwrap_err().contains("titel"));
    }

    #[test]
    fn markdown_front_matter_and_heading() {
        let md = "---\ntitle: 退货政策\ntags: [refund, policy]\nlanguage: zh\nchannels: [chat]\n---\n签收后七天内可退货。\n";
        let c = parse_markdown("r.md", md).card.unwrap();
        assert_eq!(c.title, "退货政策");
        assert_eq!(c.tags, vec!["refund", "policy"]);
        assert_eq!(c.body.trim(), "签收后七天内可退货。");
        let c = parse_markdown("h.md", "# Reset your router\n\nHold the button for 10 s.\n")
            .card
            .unwrap();
        assert_eq!(c.title, "Reset your router");
        assert!(c.body.contains("Hold the button"));
        assert!(parse_markdown("x.md", "no title here").card.is_err());
        assert!(parse_markdown("y.md", "---\ntitle: x\n").card.is_err());
    }
}
