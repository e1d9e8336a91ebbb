//! Durable jobs. A leader elected through etcd keeps a record of every job it accepts under
//! `/silt/<cluster>/jobs/<id>/` (the request as submitted, and the job's state), written in
//! transactions that succeed only while the leader key is still the one of its epoch: a
//! deposed leader cannot write a record. A new leader reads them all
//! ([`crate::Coordinator::take_over`]): it finishes each job that was in flight (a job whose
//! commit landed before the failover is marked succeeded with that version; the others run
//! again, with files of their own), and answers for the finished ones.

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::job::JobState;

/// What etcd keeps of a job, besides its request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub id: String,
    pub state: JobState,
    /// The epoch of the leader that wrote the record.
    pub epoch: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub summary: String,
    /// How many leaders ran the job.
    #[serde(default)]
    pub runs: u32,
}

/// The etcd key where the leader records that a job is about to commit (in the fenced
/// transaction before each commit attempt, [`crate::fence::LeaderFence::check_commit`]).
pub fn intent_key(cluster: &str, job: &str) -> String {
    format!("/silt/{cluster}/jobs/{job}/intent")
}

/// A job as the journal keeps it.
#[derive(Debug, Clone)]
pub struct Kept {
    pub record: JobRecord,
    /// The request's bytes.
    pub request: Option<Vec<u8>>,
    /// The last commit intent recorded (`<run>@<version>`): none means the job never
    /// reached a commit attempt.
    pub intent: Option<String>,
}

/// A job journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("this coordinator no longer leads: the job record was not written")]
    Fenced,
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("corrupt job record at `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Where a leader keeps its jobs.
#[async_trait]
pub trait JobJournal: Send + Sync {
    /// Writes a job's record, and with a new job its request (the wire message's bytes).
    async fn write(&self, record: &JobRecord, request: Option<&[u8]>) -> Result<(), JournalError>;
    /// Every job kept.
    async fn load(&self) -> Result<Vec<Kept>, JournalError>;
    /// Forgets jobs.
    async fn remove(&self, ids: &[String]) -> Result<(), JournalError>;
}

/// The journal in etcd of the leader of epoch `created` (the revision that created the
/// leader key).
pub struct EtcdJournal {
    client: Client,
    prefix: String,
    leader_key: String,
    created: i64,
}

impl EtcdJournal {
    pub fn new(client: Client, cluster: &str, leader_key: String, created: i64) -> Self {
        Self {
            client,
            prefix: format!("/silt/{cluster}/jobs/"),
            leader_key,
            created,
        }
    }

    fn key(&self, id: &str, part: &str) -> String {
        format!("{}{id}/{part}", self.prefix)
    }

    /// Runs `ops` only while this leader's key stands.
    async fn fenced(&self, ops: Vec<TxnOp>) -> Result<(), JournalError> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.leader_key.clone(),
                CompareOp::Equal,
                self.created,
            )])
            .and_then(ops);
        if self.client.clone().txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(JournalError::Fenced)
        }
    }
}

#[async_trait]
impl JobJournal for EtcdJournal {
    async fn write(&self, record: &JobRecord, request: Option<&[u8]>) -> Result<(), JournalError> {
        let json = serde_json::to_vec(record).map_err(|e| JournalError::Corrupt {
            key: self.key(&record.id, "record"),
            reason: e.to_string(),
        })?;
        let mut ops = vec![TxnOp::put(self.key(&record.id, "record"), json, None)];
        if let Some(r) = request {
            ops.push(TxnOp::put(
                self.key(&record.id, "request"),
                r.to_vec(),
                None,
            ));
        }
        self.fenced(ops).await
    }

    async fn load(&self) -> Result<Vec<Kept>, JournalError> {
        let resp = self
            .client
            .clone()
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        type Parts = (Option<JobRecord>, Option<Vec<u8>>, Option<String>);
        let mut records = std::collections::BTreeMap::<String, Parts>::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).to_string();
            let Some((id, part)) = key
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let entry = records.entry(id.to_string()).or_default();
            match part {
                "record" => {
                    let r: JobRecord =
                        serde_json::from_slice(kv.value()).map_err(|e| JournalError::Corrupt {
                            key: key.clone(),
                            reason: e.to_string(),
                        })?;
                    entry.0 = Some(r);
                }
                "request" => entry.1 = Some(kv.value().to_vec()),
                "intent" => entry.2 = Some(String::from_utf8_lossy(kv.value()).to_string()),
                _ => {}
            }
        }
        Ok(records
            .into_values()
            .filter_map(|(record, request, intent)| {
                record.map(|record| Kept {
                    record,
                    request,
                    intent,
                })
            })
            .collect())
    }

    async fn remove(&self, ids: &[String]) -> Result<(), JournalError> {
        // A transaction holds a bounded number of operations: a batch at a time.
        for chunk in ids.chunks(50) {
            let ops = chunk
                .iter()
                .map(|id| {
                    TxnOp::delete(
                        format!("{}{id}/", self.prefix),
                        Some(etcd_client::DeleteOptions::new().with_prefix()),
                    )
                })
                .collect();
            self.fenced(ops).await?;
        }
        Ok(())
    }
}
