//! The answer and agent-assist templates (prompts/*.j2), loaded at start and reloadable without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::error::{Error, ErrorCode, Result};

/// Templates built into the binary, used when no prompts folder is configured or present, and
/// the list of names a folder must provide.
const BUILTIN: [(&str, &str); 9] = [
    ("_grounding.j2", include_str!("../../prompts/_grounding.j2")),
    (
        "answer.chat.j2",
        include_str!("../../prompts/answer.chat.j2"),
    ),
    (
        "answer.social.j2",
        include_str!("../../prompts/answer.social.j2"),
    ),
    (
        "answer.email.j2",
        include_str!("../../prompts/answer.email.j2"),
    ),
    (
        "answer.voice.j2",
        include_str!("../../prompts/answer.voice.j2"),
    ),
    ("handoff.j2", include_str!("../../prompts/handoff.j2")),
    ("suggest.j2", include_str!("../../prompts/suggest.j2")),
    ("coaching.j2", include_str!("../../prompts/coaching.j2")),
    ("draft.j2", include_str!("../../prompts/draft.j2")),
];

pub struct Prompts {
    dir: Option<PathBuf>,
    env: RwLock<Arc<minijinja::Environment<'static>>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PromptsInfo {
    /// Where the templates came from: a folder, or `built-in`.
    pub source: String,
    pub templates: Vec<String>,
}

fn load(dir: Option<&Path>) -> Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    for (name, builtin) in BUILTIN {
        let source = match dir {
            Some(d) => {
                let p = d.join(name);
                std::fs::read_to_string(&p).map_err(|e| {
                    Error::bad(
                        ErrorCode::InvalidPrompts,
                        format!("cannot read template {}: {e}", p.display()),
                    )
                })?
            }
            None => builtin.to_string(),
        };
        env.add_template_owned(name, source)
            .map_err(|e| Error::bad(ErrorCode::InvalidPrompts, format!("template {name}: {e}")))?;
    }
    Ok(env)
}

impl Prompts {
    /// Loads from `dir`, else from ./prompts when it holds the templates, else the built-ins.
    pub fn open(dir: Option<&Path>) -> Result<Self> {
        let dir = match dir {
            Some(d) => Some(d.to_path_buf()),
            None => Some(PathBuf::from("prompts")).filter(|d| d.join("answer.chat.j2").is_file()),
        };
        let env = load(dir.as_deref())?;
        Ok(Prompts {
            dir,
            env: RwLock::new(Arc::new(env)),
        })
    }

    /// Re-reads the folder. A template that fails to parse leaves the current ones in use.
    pub fn reload(&self) -> Result<PromptsInfo> {
        let env = load(self.dir.as_deref())?;
        *self.env.write() = Arc::new(env);
        tracing::info!(source = %self.source(), "prompt templates reloaded");
        Ok(self.info())
    }

    fn source(&self) -> String {
        self.dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "built-in".into())
    }

    pub fn info(&self) -> PromptsInfo {
        PromptsInfo {
            source: self.source(),
            templates: BUILTIN.iter().map(|(n, _)| n.to_string()).collect(),
        }
    }

    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String> {
        let env = self.env.read().clone();
        let t = env
            .get_template(name)
            .map_err(|e| Error::bad(ErrorCode::InvalidPrompts, e.to_string()))?;
        t.render(ctx)
            .map(|s| s.trim().to_string())
            .map_err(|e| Error::bad(ErrorCode::InvalidPrompts, format!("template {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_render_cards_and_language() {
        let p = Prompts::open(None).unwrap();
        let s = p
            .render(
                "answer.email.j2",
                minijinja::context! {
                    cards => vec![minijinja::context!{ n => 1, title => "Refunds", body => "Five days." }],
                    language_name => "English",
                },
            )
            .unwrap();
        assert!(s.contains("e-mail"), "{s}");
        assert!(s.contains("# Refunds\nFive days."), "{s}");
        assert!(s.contains("Reply in English."), "{s}");
        let h = p
            .render(
                "handoff.j2",
                minijinja::context! { language => "zh", reason => "no_relevant_card" },
            )
            .unwrap();
        assert!(h.contains("人工客服"), "{h}");
    }

    #[test]
    fn a_broken_template_is_refused_and_the_old_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        for (name, src) in BUILTIN {
            std::fs::write(dir.path().join(name), src).unwrap();
        }
        let p = Prompts::open(Some(dir.path())).unwrap();
        std::fs::write(dir.path().join("answer.chat.j2"), "{% if %}").unwrap();
        assert!(p.reload().is_err());
        let s = p
            .render(
                "answer.chat.j2",
                minijinja::context! { cards => Vec::<()>::new(), language_name => "English" },
            )
            .unwrap();
        assert!(s.contains("chat window"));
        std::fs::write(
            dir.path().join("answer.chat.j2"),
            "CHANGED {{ language_name }}",
        )
        .unwrap();
        p.reload().unwrap();
        let s = p
            .render(
                "answer.chat.j2",
                minijinja::context! { language_name => "English" },
            )
            .unwrap();
        assert_eq!(s, "CHANGED English");
    }
}
