//! The intents an admin defined (the built-in taxonomy ships with kefu and is not stored): a
//! name, a description and the example utterances the intent head learns from.

use rusqlite::params;
use serde::Serialize;

use super::audit::audit;
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredIntent {
    pub name: String,
    pub description: String,
    pub examples: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub fn intents(&self) -> Result<Vec<StoredIntent>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT name, description, examples, created_at, updated_at FROM intents ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            let examples: String = r.get(2)?;
            Ok(StoredIntent {
                name: r.get(0)?,
                description: r.get(1)?,
                examples: serde_json::from_str(&examples).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates the intent, or replaces its description and examples; audited.
    pub fn put_intent(
        &self,
        name: &str,
        description: &str,
        examples: &[String],
        actor: &str,
    ) -> Result<StoredIntent, StoreError> {
        let now = self.now();
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let examples_json =
            serde_json::to_string(examples).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO intents (name, description, examples, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET description = excluded.description,
                 examples = excluded.examples, updated_at = excluded.updated_at",
            params![name, description, examples_json, now],
        )?;
        let created_at: String = tx.query_row(
            "SELECT created_at FROM intents WHERE name = ?1",
            [name],
            |r| r.get(0),
        )?;
        audit(
            &tx,
            &now,
            actor,
            "intent_defined",
            None,
            None,
            &serde_json::json!({"intent": name, "examples": examples.len()}),
        )?;
        tx.commit()?;
        Ok(StoredIntent {
            name: name.to_string(),
            description: description.to_string(),
            examples: examples.to_vec(),
            created_at,
            updated_at: now,
        })
    }

    /// Removes the intent; false when there was none. Audited.
    pub fn delete_intent(&self, name: &str, actor: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let removed = tx.execute("DELETE FROM intents WHERE name = ?1", [name])? > 0;
        if removed {
            audit(
                &tx,
                &now,
                actor,
                "intent_removed",
                None,
                None,
                &serde_json::json!({"intent": name}),
            )?;
        }
        tx.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_is_created_replaced_listed_and_removed_with_an_audit_trail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ex = vec!["a".to_string(), "b".into()];
        store
            .put_intent("warranty", "claims", &ex, "admin")
            .unwrap();
        let again = store
            .put_intent("warranty", "claims under warranty", &ex[..1], "admin")
            .unwrap();
        let all = store.intents().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].description, "claims under warranty");
        assert_eq!(all[0].examples, vec!["a"]);
        assert_eq!(all[0].created_at, again.created_at);
        assert!(store.delete_intent("warranty", "admin").unwrap());
        assert!(!store.delete_intent("warranty", "admin").unwrap());
        assert!(store.intents().unwrap().is_empty());
        let actions: Vec<String> = store
            .audit_log(None, 10)
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(actions.iter().filter(|a| *a == "intent_defined").count(), 2);
        assert!(actions.contains(&"intent_removed".to_string()));
    }
}
