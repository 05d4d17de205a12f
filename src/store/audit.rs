//! The audit log: who changed which card, how, and when. Written in the same transaction as the
//! change it records.

use rusqlite::{Transaction, params};
use serde::Serialize;

use super::{Store, StoreError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub card_id: Option<String>,
    pub version: Option<i64>,
    pub detail: serde_json::Value,
}

impl Store {
    pub fn audit_log(
        &self,
        card_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, at, actor, action, card_id, version, detail FROM audit WHERE (?1 IS NULL OR card_id = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![card_id, limit as i64], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                card_id: r.get(4)?,
                version: r.get(5)?,
                detail: serde_json::from_str(&r.get::<_, String>(6)?)
                    .unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

pub(super) fn audit(
    tx: &Transaction<'_>,
    at: &str,
    actor: &str,
    action: &str,
    card_id: Option<&str>,
    version: Option<i64>,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, card_id, version, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![at, actor, action, card_id, version, detail.to_string()],
    )?;
    Ok(())
}
