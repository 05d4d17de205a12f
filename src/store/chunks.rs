//! Retrieval chunks of published cards: their text, keyword terms (FTS5) and vectors, and the
//! cards an external vector index has not taken yet.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::cards::CardContent;
use super::{Store, StoreError, blob_vector, parse_list};

/// A retrieval unit of a published card: its text, keyword terms and vector.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub text: String,
    pub terms: String,
    pub vector: Vec<f32>,
}

/// A chunk as search presents it.
#[derive(Debug, Clone)]
pub struct ChunkRow {
    pub chunk_id: i64,
    pub card_id: String,
    pub language: String,
    pub title: String,
    pub text: String,
    pub vector: Vec<f32>,
}

/// A stored chunk with what a vector index needs to filter it.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub chunk_id: i64,
    pub card_id: String,
    pub vector: Vec<f32>,
    pub meta: ChunkMeta,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkMeta {
    pub language: String,
    pub tags: Vec<String>,
    pub channels: Vec<String>,
}

impl From<&CardContent> for ChunkMeta {
    fn from(c: &CardContent) -> Self {
        ChunkMeta {
            language: c.language.clone(),
            tags: c.tags.clone(),
            channels: c.channels.clone(),
        }
    }
}

/// Filters shared by keyword and vector search.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// The card must carry every one of these tags.
    pub tags: Vec<String>,
    pub language: Option<String>,
    /// The card must be usable on this channel (cards with no channels are usable on all).
    pub channel: Option<String>,
}

impl SearchFilter {
    pub fn accepts(&self, m: &ChunkMeta) -> bool {
        self.language.as_ref().is_none_or(|l| &m.language == l)
            && self.tags.iter().all(|t| m.tags.contains(t))
            && self
                .channel
                .as_ref()
                .is_none_or(|c| m.channels.is_empty() || m.channels.contains(c))
    }
}

impl Store {
    /// Remembers that the vector index missed this card's last change.
    pub fn mark_index_pending(&self, card_id: &str) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO index_pending (card_id, since) VALUES (?1, ?2) ON CONFLICT(card_id) DO NOTHING",
            params![card_id, self.now()],
        )?;
        Ok(())
    }

    pub fn index_pending(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT card_id FROM index_pending ORDER BY since, card_id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn clear_index_pending(&self, card_id: &str) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute("DELETE FROM index_pending WHERE card_id = ?1", [card_id])?;
        Ok(())
    }

    /// Every chunk with its vector and filter fields, for building an in-memory index.
    pub fn all_chunks(&self) -> Result<Vec<StoredChunk>, StoreError> {
        self.chunks_of(None)
    }

    /// The stored chunks of one card, in order.
    pub fn card_chunks(&self, card_id: &str) -> Result<Vec<StoredChunk>, StoreError> {
        self.chunks_of(Some(card_id))
    }

    fn chunks_of(&self, card_id: Option<&str>) -> Result<Vec<StoredChunk>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.card_id, c.vector, k.language, k.tags, k.channels FROM chunks c JOIN cards k ON k.id = c.card_id
              WHERE (?1 IS NULL OR c.card_id = ?1) ORDER BY c.card_id, c.seq",
        )?;
        let rows = stmt.query_map([card_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                meta_columns(r, 3)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (chunk_id, card_id, blob, meta) = r?;
            out.push(StoredChunk {
                chunk_id,
                card_id,
                vector: blob_vector(&blob),
                meta: meta.parse()?,
            });
        }
        Ok(out)
    }

    /// The chunks with these ids (those still stored), with their card's title and the vector.
    pub fn chunk_rows(&self, ids: &[i64]) -> Result<Vec<ChunkRow>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.card_id, k.language, k.title, c.text, c.vector FROM chunks c JOIN cards k ON k.id = c.card_id WHERE c.id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = stmt
                .query_row([id], |r| {
                    Ok(ChunkRow {
                        chunk_id: r.get(0)?,
                        card_id: r.get(1)?,
                        language: r.get(2)?,
                        title: r.get(3)?,
                        text: r.get(4)?,
                        vector: blob_vector(&r.get::<_, Vec<u8>>(5)?),
                    })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    /// How many chunks contain each term, and how many chunks there are: the inputs of IDF.
    pub fn term_frequencies(
        &self,
        terms: &[String],
    ) -> Result<(usize, HashMap<String, usize>), StoreError> {
        let conn = self.conn.lock();
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached("SELECT doc FROM chunk_vocab WHERE term = ?1")?;
        let mut df = HashMap::new();
        for t in terms {
            let n: Option<i64> = stmt.query_row([t], |r| r.get(0)).optional()?;
            df.insert(t.clone(), n.unwrap_or(0) as usize);
        }
        Ok((total as usize, df))
    }

    /// BM25 keyword search over chunk terms. `terms` are already normalised tokens; any of them
    /// may match. Returns (chunk id, card id, score) best first, the score positive.
    pub fn keyword_search(
        &self,
        terms: &[String],
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<(i64, String, f64)>, StoreError> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Quoted, so that FTS5 reads every term as a plain string, never as query syntax.
        let expr = terms
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR ");
        let conn = self.conn.lock();
        // FTS5 ranks inside the subquery (its `ORDER BY rank LIMIT` path); only the best rows
        // are joined. Only published cards have chunks, so no status check is needed.
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.card_id, -f.rank, k.language, k.tags, k.channels
               FROM (SELECT rowid, rank FROM chunk_terms WHERE chunk_terms MATCH ?1 ORDER BY rank LIMIT ?2) f
               JOIN chunks c ON c.id = f.rowid JOIN cards k ON k.id = c.card_id
              ORDER BY f.rank",
        )?;
        // Filters are applied to a generous candidate list rather than in SQL, so that the
        // keyword and vector paths share one definition of what a filter accepts.
        let rows = stmt.query_map(params![expr, (limit * 8).max(64) as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                meta_columns(r, 3)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (chunk_id, card_id, score, meta) = r?;
            if filter.accepts(&meta.parse()?) {
                out.push((chunk_id, card_id, score));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Published cards and how many chunks each has, for checking that an index agrees.
    /// Every published card with its chunk ids, ascending: what the vector index must hold.
    pub fn published_chunk_ids(&self) -> Result<Vec<(String, Vec<i64>)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT k.id, c.id FROM cards k LEFT JOIN chunks c ON c.card_id = k.id
             WHERE k.status = 'published' ORDER BY k.id, c.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        let mut out: Vec<(String, Vec<i64>)> = Vec::new();
        for row in rows {
            let (card, chunk) = row?;
            if out.last().is_none_or(|(c, _)| *c != card) {
                out.push((card, Vec::new()));
            }
            if let Some(id) = chunk {
                out.last_mut().expect("pushed above").1.push(id);
            }
        }
        Ok(out)
    }
}

/// The language, tags and channels columns of a card, as read from a row at `at..at + 3`.
struct MetaColumns(String, String, String);

fn meta_columns(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<MetaColumns> {
    Ok(MetaColumns(r.get(at)?, r.get(at + 1)?, r.get(at + 2)?))
}

impl MetaColumns {
    fn parse(self) -> Result<ChunkMeta, StoreError> {
        Ok(ChunkMeta {
            language: self.0,
            tags: parse_list(&self.1)?,
            channels: parse_list(&self.2)?,
        })
    }
}

pub(super) fn remove_chunks(tx: &Transaction<'_>, card_id: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM chunk_terms WHERE rowid IN (SELECT id FROM chunks WHERE card_id = ?1)",
        [card_id],
    )?;
    tx.execute("DELETE FROM chunks WHERE card_id = ?1", [card_id])?;
    Ok(())
}
