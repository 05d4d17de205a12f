//! Background jobs: one row per piece of work, claimed by one worker at a time. A job is unique by
//! kind and subject, so asking twice for the same work (a conversation resolved, reopened and
//! resolved again) queues it once. Claiming is one `UPDATE … RETURNING` under the connection's
//! lock: no two workers of this process get the same row. Several nodes need the PostgreSQL
//! store's `FOR UPDATE SKIP LOCKED` (the scale-out issue).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};
use crate::vocab::{JobKind, JobState};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    /// What it works on (for `draft_from_conversation`: the conversation id).
    pub subject: String,
    pub state: JobState,
    pub attempts: i64,
    /// What it did, once done.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why its last attempt failed.
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
}

const COLUMNS: &str = "id, kind, subject, state, attempts, result, error, created_at, updated_at";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let result: Option<String> = r.get(5)?;
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        state: r.get(3)?,
        attempts: r.get(4)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
        error: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

impl Store {
    /// Queues the job unless the same work is already queued, running or done. A failed job
    /// is queued again (a new attempt). Returns whether it is queued now.
    pub fn enqueue_job(&self, kind: JobKind, subject: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let changed = self.conn.lock().execute(
            "INSERT INTO jobs (kind, subject, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(kind, subject) DO UPDATE SET state = excluded.state,
                 updated_at = excluded.updated_at, error = NULL
             WHERE jobs.state = ?5",
            params![kind, subject, JobState::Queued, now, JobState::Failed],
        )?;
        Ok(changed > 0)
    }

    /// Takes the oldest queued job and marks it running, or `None` when nothing waits.
    pub fn claim_job(&self) -> Result<Option<Job>, StoreError> {
        let now = self.now();
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!(
                    "UPDATE jobs SET state = ?1, attempts = attempts + 1, updated_at = ?2
                     WHERE id = (SELECT id FROM jobs WHERE state = ?3 ORDER BY id LIMIT 1)
                     RETURNING {COLUMNS}"
                ),
                params![JobState::Running, now, JobState::Queued],
                job_from_row,
            )
            .optional()?)
    }

    /// Records a job's end: done with its result, or failed with why.
    pub fn finish_job(
        &self,
        id: i64,
        outcome: Result<serde_json::Value, String>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let (state, result, error) = match outcome {
            Ok(v) => (JobState::Done, Some(v.to_string()), None),
            Err(e) => (JobState::Failed, None, Some(e)),
        };
        self.conn.lock().execute(
            "UPDATE jobs SET state = ?2, result = ?3, error = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, state, result, error, now],
        )?;
        Ok(())
    }

    /// Puts jobs that were running back in the queue: their worker stopped (a restart) before
    /// it finished them. Call before the first claim. Returns how many.
    pub fn requeue_running_jobs(&self) -> Result<usize, StoreError> {
        let now = self.now();
        Ok(self.conn.lock().execute(
            "UPDATE jobs SET state = ?1, updated_at = ?2 WHERE state = ?3",
            params![JobState::Queued, now, JobState::Running],
        )?)
    }

    /// The newest jobs first, optionally only those in one state.
    pub fn jobs(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![state, limit as i64], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let mut counts = JobCounts::default();
        for row in stmt.query_map([], |r| Ok((r.get::<_, JobState>(0)?, r.get::<_, i64>(1)?)))? {
            let (state, n) = row?;
            *match state {
                JobState::Queued => &mut counts.queued,
                JobState::Running => &mut counts.running,
                JobState::Done => &mut counts.done,
                JobState::Failed => &mut counts.failed,
            } = n.max(0) as u64;
        }
        Ok(counts)
    }

    /// Resolved conversations with at least one agent turn that no job has taken up: what
    /// `kefu mine` queues (conversations resolved before mining was switched on).
    pub fn unmined_resolved_conversations(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT c.id FROM conversations c
             WHERE c.resolved_at IS NOT NULL
               AND EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = c.id AND t.role = ?1)
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = ?2 AND j.subject = c.id)
             ORDER BY c.resolved_at",
        )?;
        let rows = stmt.query_map(
            params![crate::vocab::Role::Agent, JobKind::DraftFromConversation],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_queued_once_claimed_once_and_requeued_after_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.enqueue_job(JobKind::DraftFromConversation, "c1").unwrap());
        assert!(!s.enqueue_job(JobKind::DraftFromConversation, "c1").unwrap());
        let j = s.claim_job().unwrap().unwrap();
        assert_eq!(
            (j.subject.as_str(), j.state, j.attempts),
            ("c1", JobState::Running, 1)
        );
        assert!(
            s.claim_job().unwrap().is_none(),
            "a running job is not claimed twice"
        );
        assert_eq!(s.requeue_running_jobs().unwrap(), 1);
        let j = s.claim_job().unwrap().unwrap();
        assert_eq!(j.attempts, 2);
        s.finish_job(j.id, Err("model gone".into())).unwrap();
        assert_eq!(s.job_counts().unwrap().failed, 1);
        assert!(
            s.enqueue_job(JobKind::DraftFromConversation, "c1").unwrap(),
            "a failed job may run again"
        );
        let j = s.claim_job().unwrap().unwrap();
        s.finish_job(j.id, Ok(serde_json::json!({"card": "x"})))
            .unwrap();
        assert!(
            !s.enqueue_job(JobKind::DraftFromConversation, "c1").unwrap(),
            "done is done"
        );
        let listed = s.jobs(Some(JobState::Done), 10).unwrap();
        assert_eq!(listed[0].result, Some(serde_json::json!({"card": "x"})));
    }
}
