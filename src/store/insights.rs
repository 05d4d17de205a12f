//! What the stored answers, turns and feedback say in aggregate: the analytics reports, each
//! card's record (cited, rated, followed by a hand-off), the review queue ordered by that record,
//! and the handed-off questions that knowledge gaps are clustered from.
//!
//! A card's open flags are derived, not stored: the down-ratings, with their comments, of answers
//! that cited it since it last changed. Editing the card answers them; erasing a customer or the
//! retention sweep removes them with the feedback they are.

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::cards::CardStatus;
use super::{Store, StoreError};
use crate::vocab::Granularity;

/// A half-open time range `[from, to)` in the stored format (RFC 3339, UTC).
#[derive(Debug, Clone)]
pub struct Range {
    pub from: String,
    pub to: String,
}

/// A report: named columns and rows of values, shaped as JSON objects or as CSV by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

/// The SQL expression for the bucket a timestamp column falls in (its start, in the stored
/// format's prefix: `2026-12-01T03:00`, `2026-12-01`, or the week's Monday).
fn bucket(g: Granularity, column: &str) -> String {
    match g {
        Granularity::Hour => format!("substr({column}, 1, 13) || ':00'"),
        Granularity::Day => format!("substr({column}, 1, 10)"),
        Granularity::Week => format!("date({column}, '-6 days', 'weekday 1')"),
    }
}

/// A share in [0, 1], or null when there is nothing to share.
fn share(part: i64, whole: i64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!((part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
    }
}

/// One card's record over a range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CardRecord {
    pub card_id: String,
    pub title: String,
    pub status: CardStatus,
    pub language: String,
    /// Answers that cited it.
    pub cited: u64,
    pub rated_up: u64,
    pub rated_down: u64,
    /// Answers that cited it and were handed off, or were followed by a hand-off in the same
    /// conversation.
    pub handoffs_after: u64,
    /// Down-ratings of answers citing it since the card last changed.
    pub open_flags: u64,
    /// Resolved conversations it was mined from or merged with.
    pub evidence: u64,
}

/// A down-rating that flags a card.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Flag {
    pub answer_id: String,
    pub question: String,
    pub comment: Option<String>,
    pub at: String,
}

/// A question the service handed to a person (or whose answer was rated down).
#[derive(Debug, Clone, PartialEq)]
pub struct HandedOff {
    pub answer_id: String,
    pub conversation_id: String,
    pub question: String,
    pub at: String,
}

/// Each card's record over the answers in `[?1, ?2)`, aggregated once per card (not a scan of
/// every answer per card; `MATERIALIZED`, or SQLite runs each per card). `answers.citations` is a
/// JSON list; `cites` has one row per citation. Open flags count the down-ratings, whenever the
/// answer was given, since the card last changed.
const RECORDS: &str = "WITH cites AS (
        SELECT a.id AS answer_id, a.rowid AS arow, a.conversation_id, a.at, a.handoff,
               json_extract(j.value, '$.card_id') AS card_id
        FROM answers a, json_each(a.citations) j
        WHERE a.at >= ?1 AND a.at < ?2),
    cited AS MATERIALIZED (
        SELECT card_id, COUNT(*) AS n,
               SUM(handoff = 1 OR EXISTS (
                   SELECT 1 FROM answers h
                   WHERE h.conversation_id = cites.conversation_id AND h.handoff = 1
                     AND (h.at > cites.at OR (h.at = cites.at AND h.rowid > cites.arow)))) AS after
        FROM cites GROUP BY card_id),
    rated AS MATERIALIZED (
        SELECT x.card_id, SUM(f.rating = 'up') AS up, SUM(f.rating = 'down') AS down
        FROM cites x JOIN feedback f ON f.answer_id = x.answer_id GROUP BY x.card_id),
    flags AS MATERIALIZED (
        SELECT d.card_id, COUNT(*) AS n
        FROM (SELECT json_extract(j.value, '$.card_id') AS card_id, f.at
              FROM feedback f JOIN answers a ON a.id = f.answer_id, json_each(a.citations) j
              WHERE f.rating = 'down') d
        JOIN cards k ON k.id = d.card_id
        WHERE d.at >= k.updated_at GROUP BY d.card_id),
    ev AS MATERIALIZED (SELECT card_id, COUNT(*) AS n FROM card_evidence GROUP BY card_id)
    SELECT c.id, c.title, c.status, c.language, COALESCE(cited.n, 0), COALESCE(rated.up, 0),
           COALESCE(rated.down, 0), COALESCE(cited.after, 0),
           COALESCE(flags.n, 0), COALESCE(ev.n, 0)
    FROM cards c
    LEFT JOIN cited ON cited.card_id = c.id
    LEFT JOIN rated ON rated.card_id = c.id
    LEFT JOIN flags ON flags.card_id = c.id
    LEFT JOIN ev ON ev.card_id = c.id";

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CardRecord> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
    Ok(CardRecord {
        card_id: r.get(0)?,
        title: r.get(1)?,
        status: CardStatus::parse(&r.get::<_, String>(2)?).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(2, "status".into(), rusqlite::types::Type::Text)
        })?,
        language: r.get(3)?,
        cited: n(4)?,
        rated_up: n(5)?,
        rated_down: n(6)?,
        handoffs_after: n(7)?,
        open_flags: n(8)?,
        evidence: n(9)?,
    })
}

/// All of time, for a card's whole record.
fn ever() -> Range {
    Range {
        from: String::new(),
        to: "~".into(),
    }
}

impl Store {
    /// Customer turns by bucket, channel and language: conversations and turns.
    pub fn volume(&self, r: &Range, g: Granularity) -> Result<Table, StoreError> {
        let sql = format!(
            "SELECT {b}, channel, COALESCE(language, 'unknown'), COUNT(DISTINCT conversation_id), COUNT(*)
             FROM turns WHERE role = 'customer' AND at >= ?1 AND at < ?2
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            b = bucket(g, "at")
        );
        let columns = ["bucket", "channel", "language", "conversations", "turns"];
        table(&self.conn.lock(), &columns, &sql, r, |row| {
            Ok(vec![
                text(row, 0)?,
                text(row, 1)?,
                text(row, 2)?,
                count(row, 3)?,
                count(row, 4)?,
            ])
        })
    }

    /// Answers by bucket and channel: how many, how many without a person, and that share.
    pub fn deflection(&self, r: &Range, g: Granularity) -> Result<Table, StoreError> {
        let sql = format!(
            "SELECT {b}, channel, COUNT(*), SUM(handoff = 0) FROM answers
             WHERE at >= ?1 AND at < ?2 GROUP BY 1, 2 ORDER BY 1, 2",
            b = bucket(g, "at")
        );
        let columns = ["bucket", "channel", "answers", "answered", "deflection"];
        table(&self.conn.lock(), &columns, &sql, r, |row| {
            let (all, answered): (i64, i64) = (row.get(2)?, row.get(3)?);
            Ok(vec![
                text(row, 0)?,
                text(row, 1)?,
                json!(all),
                json!(answered),
                share(answered, all),
            ])
        })
    }

    /// Hand-offs by bucket and reason.
    pub fn handoffs(&self, r: &Range, g: Granularity) -> Result<Table, StoreError> {
        let sql = format!(
            "SELECT {b}, COALESCE(handoff_reason, 'unknown'), COUNT(*) FROM answers
             WHERE handoff = 1 AND at >= ?1 AND at < ?2 GROUP BY 1, 2 ORDER BY 1, 2",
            b = bucket(g, "at")
        );
        let columns = ["bucket", "reason", "handoffs"];
        table(&self.conn.lock(), &columns, &sql, r, |row| {
            Ok(vec![text(row, 0)?, text(row, 1)?, count(row, 2)?])
        })
    }

    /// Ratings by bucket (of the rating's time): up, down, and the share up.
    pub fn satisfaction(&self, r: &Range, g: Granularity) -> Result<Table, StoreError> {
        let sql = format!(
            "SELECT {b}, SUM(rating = 'up'), SUM(rating = 'down') FROM feedback
             WHERE at >= ?1 AND at < ?2 GROUP BY 1 ORDER BY 1",
            b = bucket(g, "at")
        );
        let columns = ["bucket", "up", "down", "satisfaction"];
        table(&self.conn.lock(), &columns, &sql, r, |row| {
            let (up, down): (i64, i64) = (row.get(1)?, row.get(2)?);
            Ok(vec![
                text(row, 0)?,
                json!(up),
                json!(down),
                share(up, up + down),
            ])
        })
    }

    /// Customer turns read for sentiment, by bucket: each label's count and the mean valence.
    pub fn sentiment(&self, r: &Range, g: Granularity) -> Result<Table, StoreError> {
        let sql = format!(
            "SELECT {b}, COUNT(*), SUM(sentiment = 'negative'), SUM(sentiment = 'neutral'),
                    SUM(sentiment = 'positive'), AVG(valence)
             FROM turns WHERE role = 'customer' AND sentiment IS NOT NULL AND at >= ?1 AND at < ?2
             GROUP BY 1 ORDER BY 1",
            b = bucket(g, "at")
        );
        let columns = [
            "bucket",
            "turns",
            "negative",
            "neutral",
            "positive",
            "mean_valence",
        ];
        table(&self.conn.lock(), &columns, &sql, r, |row| {
            let mean: Option<f64> = row.get(5)?;
            Ok(vec![
                text(row, 0)?,
                count(row, 1)?,
                count(row, 2)?,
                count(row, 3)?,
                count(row, 4)?,
                json!(mean.map(|m| (m * 10_000.0).round() / 10_000.0)),
            ])
        })
    }

    /// Customer turns showing each emotion, by bucket.
    pub fn emotions(&self, r: &Range, g: Granularity) -> Result<Table, StoreError> {
        let sql = format!(
            "SELECT {b}, e.value, COUNT(*) FROM turns t, json_each(t.emotions, '$.present') e
             WHERE t.role = 'customer' AND t.emotions IS NOT NULL AND t.at >= ?1 AND t.at < ?2
             GROUP BY 1, 2 ORDER BY 1, 2",
            b = bucket(g, "t.at")
        );
        let columns = ["bucket", "emotion", "turns"];
        table(&self.conn.lock(), &columns, &sql, r, |row| {
            Ok(vec![text(row, 0)?, text(row, 1)?, count(row, 2)?])
        })
    }

    /// Customer turns by intent in the range and in the window of the same length before it,
    /// most frequent first. A topic spikes when it at least doubled and has `min_spike` turns.
    pub fn topics(&self, r: &Range, previous: &Range, min_spike: u64) -> Result<Table, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT intent, SUM(at >= ?1 AND at < ?2) AS now, SUM(at >= ?3 AND at < ?4) AS before
             FROM turns WHERE role = 'customer' AND intent IS NOT NULL AND at >= ?3 AND at < ?2
             GROUP BY intent HAVING now > 0 ORDER BY now DESC, intent",
        )?;
        let rows = st
            .query_map(params![r.from, r.to, previous.from, previous.to], |row| {
                let (now, before): (i64, i64) = (row.get(1)?, row.get(2)?);
                Ok(vec![
                    text(row, 0)?,
                    json!(now),
                    json!(before),
                    share(now - before, before),
                    json!(now as u64 >= min_spike && now >= 2 * before),
                ])
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Table {
            columns: vec!["intent", "turns", "previous", "change", "spike"],
            rows,
        })
    }

    /// The record of every card cited in the range, most cited first (then best rated); or,
    /// for `weakest`, of every card rated down or handed off after, the most of both first.
    pub fn card_records(&self, r: &Range, weakest: bool) -> Result<Vec<CardRecord>, StoreError> {
        let mut records = records(&self.conn.lock(), r, "1")?;
        if weakest {
            records.retain(|c| c.rated_down + c.handoffs_after > 0);
            records.sort_by_key(|c| {
                (
                    std::cmp::Reverse((c.rated_down + c.handoffs_after, c.rated_down, c.cited)),
                    c.card_id.clone(),
                )
            });
        } else {
            records.retain(|c| c.cited > 0);
            records.sort_by_key(|c| {
                (
                    std::cmp::Reverse((c.cited, c.rated_up as i64 - c.rated_down as i64)),
                    c.card_id.clone(),
                )
            });
        }
        Ok(records)
    }

    /// One card's record over all of time, with its open flags, newest first; None when there
    /// is no such card.
    pub fn card_record(&self, id: &str) -> Result<Option<(CardRecord, Vec<Flag>)>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(&format!("{RECORDS} WHERE c.id = ?3"))?;
        let all = ever();
        let Some(record) = st
            .query_map(params![all.from, all.to, id], record_from_row)?
            .next()
            .transpose()?
        else {
            return Ok(None);
        };
        Ok(Some((record, open_flags(&conn, id)?)))
    }

    /// The review queue: cards in review and published cards with open flags, each with its
    /// record and flags, the most pressing first (open flags, down-ratings, hand-offs after,
    /// then the conversations that taught it), at most `limit`.
    pub fn review_queue(&self, limit: usize) -> Result<Vec<(CardRecord, Vec<Flag>)>, StoreError> {
        let conn = self.conn.lock();
        let mut records = records(&conn, &ever(), "c.status IN ('in_review', 'published')")?;
        records.retain(|r| r.status == CardStatus::InReview || r.open_flags > 0);
        records.sort_by_key(|c| {
            (
                std::cmp::Reverse((
                    c.open_flags,
                    c.rated_down,
                    c.handoffs_after,
                    c.evidence,
                    c.cited,
                )),
                c.card_id.clone(),
            )
        });
        records.truncate(limit);
        records
            .into_iter()
            .map(|r| {
                let flags = open_flags(&conn, &r.card_id)?;
                Ok((r, flags))
            })
            .collect()
    }

    /// Questions handed off for want of a card, and questions whose answers were rated down,
    /// in the range, newest first, at most `limit`.
    pub fn gap_questions(&self, r: &Range, limit: usize) -> Result<Vec<HandedOff>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT a.id, a.conversation_id, a.question, a.at FROM answers a
             WHERE a.at >= ?1 AND a.at < ?2 AND (a.handoff_reason = 'no_relevant_card'
                OR EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = a.id AND f.rating = 'down'))
             ORDER BY a.at DESC, a.rowid DESC LIMIT ?3",
        )?;
        let rows = st
            .query_map(params![r.from, r.to, limit as i64], |row| {
                Ok(HandedOff {
                    answer_id: row.get(0)?,
                    conversation_id: row.get(1)?,
                    question: row.get(2)?,
                    at: row.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The cards mined from any of these conversations (a draft exists for their gap).
    pub fn cards_mined_from(&self, conversations: &[String]) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT DISTINCT card_id FROM card_evidence WHERE conversation_id = ?1 ORDER BY card_id",
        )?;
        let mut out: Vec<String> = Vec::new();
        for c in conversations {
            for id in st.query_map([c], |r| r.get::<_, String>(0))? {
                let id = id?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
}

/// Runs a report's query over the range (`?1`, `?2`) and makes each row with `f`.
fn table(
    conn: &Connection,
    columns: &[&'static str],
    sql: &str,
    r: &Range,
    f: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Vec<Value>>,
) -> Result<Table, StoreError> {
    let mut st = conn.prepare(sql)?;
    let rows = st
        .query_map(params![r.from, r.to], |row| f(row))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table {
        columns: columns.to_vec(),
        rows,
    })
}

fn text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Value> {
    Ok(json!(row.get::<_, String>(i)?))
}

fn count(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Value> {
    Ok(json!(row.get::<_, i64>(i)?))
}

/// The records of the cards matching `filter` (an SQL condition on `c`), over the range.
fn records(conn: &Connection, r: &Range, filter: &str) -> Result<Vec<CardRecord>, StoreError> {
    let mut st = conn.prepare(&format!("{RECORDS} WHERE {filter}"))?;
    let records = st
        .query_map(params![r.from, r.to], record_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}

/// The down-ratings, with comments, of answers citing the card since it last changed.
fn open_flags(conn: &Connection, card_id: &str) -> Result<Vec<Flag>, StoreError> {
    let mut st = conn.prepare(
        "SELECT a.id, a.question, f.comment, f.at
         FROM feedback f JOIN answers a ON a.id = f.answer_id, json_each(a.citations) j, cards c
         WHERE f.rating = 'down' AND c.id = ?1 AND json_extract(j.value, '$.card_id') = c.id
           AND f.at >= c.updated_at
         ORDER BY f.at DESC, f.id DESC",
    )?;
    let flags = st
        .query_map([card_id], |r| {
            Ok(Flag {
                answer_id: r.get(0)?,
                question: r.get(1)?,
                comment: r.get(2)?,
                at: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CardContent;
    use crate::store::answers::{AnswerRecord, Citation};
    use crate::store::conversations::{Party, TurnSignals};
    use crate::vocab::{Channel, HandoffReason};

    fn answer(
        id: &str,
        conv: &str,
        cites: &[&str],
        handoff: Option<HandoffReason>,
    ) -> AnswerRecord {
        AnswerRecord {
            id: id.into(),
            conversation_id: conv.into(),
            customer_id: None,
            channel: Channel::Chat,
            question: format!("question {id}"),
            answer: format!("answer {id}"),
            citations: cites
                .iter()
                .map(|c| Citation {
                    card_id: c.to_string(),
                    title: "T".into(),
                    score: 0.9,
                })
                .collect(),
            handoff: handoff.is_some(),
            handoff_reason: handoff,
            confidence: 0.8,
            model: None,
            question_signals: TurnSignals::default(),
            answer_language: None,
        }
    }

    #[test]
    fn a_card_record_counts_citations_ratings_and_handoffs_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let content = |t: &str| CardContent {
            title: t.into(),
            body: "b".into(),
            tags: vec![],
            language: "en".into(),
            channels: vec![],
        };
        for id in ["c1", "c2"] {
            s.create_card(id, &content(id), "t", "create", json!({}))
                .unwrap();
        }
        s.conn
            .lock()
            .execute("UPDATE cards SET status = 'published'", [])
            .unwrap();
        let staff = Party::Staff(None);
        // c1 cited twice; the first conversation then handed off; c2 cited once.
        s.record_answer(&answer("a1", "v1", &["c1"], None), &staff)
            .unwrap();
        s.record_answer(
            &answer("a2", "v1", &[], Some(HandoffReason::NoRelevantCard)),
            &staff,
        )
        .unwrap();
        s.record_answer(&answer("a3", "v2", &["c1", "c2"], None), &staff)
            .unwrap();
        s.add_feedback("a1", &staff, "down", Some("wrong fee"), "t")
            .unwrap();
        s.add_feedback("a3", &staff, "up", None, "t").unwrap();

        let (c1, flags) = s.card_record("c1").unwrap().unwrap();
        assert_eq!(
            (
                c1.cited,
                c1.rated_up,
                c1.rated_down,
                c1.handoffs_after,
                c1.open_flags
            ),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].comment.as_deref(), Some("wrong fee"));
        assert_eq!(flags[0].question, "question a1");
        let (c2, _) = s.card_record("c2").unwrap().unwrap();
        assert_eq!((c2.cited, c2.rated_up, c2.handoffs_after), (1, 1, 0));
        assert!(s.card_record("nope").unwrap().is_none());

        // The flagged card leads the review queue; an unflagged published card is not in it.
        let queue = s.review_queue(10).unwrap();
        let ids: Vec<&str> = queue.iter().map(|(r, _)| r.card_id.as_str()).collect();
        assert_eq!(ids, ["c1"]);
        let all = ever();
        let weak = s.card_records(&all, true).unwrap();
        assert_eq!(weak.len(), 1);
        let top: Vec<String> = s
            .card_records(&all, false)
            .unwrap()
            .into_iter()
            .map(|r| r.card_id)
            .collect();
        assert_eq!(top, ["c1", "c2"]);

        // Changing the card answers its flags.
        s.conn
            .lock()
            .execute("UPDATE cards SET updated_at = '9999' WHERE id = 'c1'", [])
            .unwrap();
        assert_eq!(s.card_record("c1").unwrap().unwrap().0.open_flags, 0);
        assert!(s.review_queue(10).unwrap().is_empty());

        // The reports over the same answers.
        let d = s.deflection(&all, Granularity::Week).unwrap();
        assert_eq!(d.rows.len(), 1);
        assert_eq!(
            &d.rows[0][1..],
            [json!("chat"), json!(3), json!(2), json!(0.6667)]
        );
        let h = s.handoffs(&all, Granularity::Hour).unwrap();
        assert_eq!(&h.rows[0][1..], [json!("no_relevant_card"), json!(1)]);
        let sat = s.satisfaction(&all, Granularity::Day).unwrap();
        assert_eq!(&sat.rows[0][1..], [json!(1), json!(1), json!(0.5)]);
        let v = s.volume(&all, Granularity::Day).unwrap();
        let turns: i64 = v.rows.iter().map(|r| r[4].as_i64().unwrap()).sum();
        assert_eq!(turns, 3, "one customer turn per answer");
        let gaps = s.gap_questions(&all, 10).unwrap();
        let asked: Vec<&str> = gaps.iter().map(|q| q.answer_id.as_str()).collect();
        assert_eq!(
            asked,
            ["a2", "a1"],
            "handed off, then rated down; newest first"
        );
    }

    #[test]
    fn buckets_start_at_the_hour_day_and_monday() {
        let conn = Connection::open_in_memory().unwrap();
        let at = "'2026-12-03T15:42:07.5Z'"; // a Thursday
        for (g, want) in [
            (Granularity::Hour, "2026-12-03T15:00"),
            (Granularity::Day, "2026-12-03"),
            (Granularity::Week, "2026-11-30"),
        ] {
            let got: String = conn
                .query_row(&format!("SELECT {}", bucket(g, at)), [], |r| r.get(0))
                .unwrap();
            assert_eq!(got, want, "{g}");
        }
        let monday: String = conn
            .query_row(
                &format!(
                    "SELECT {}",
                    bucket(Granularity::Week, "'2026-11-30T00:00:00Z'")
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(monday, "2026-11-30");
    }
}
