//! The single atomic Delta commit of a job, with conflict detection against concurrent
//! writers and leader fencing.
//!
//! deltalake-core writes the commit with put-if-absent. When another writer took the next
//! version first, the winning commits are checked here with Delta's rules and the commit is
//! retried at the next version, or the job fails with a conflict error:
//! * a winning `metaData` or `protocol` change always conflicts;
//! * a winning `txn` for the same application id conflicts;
//! * a winning `remove` of a file this job also removes (or read) conflicts (delete/delete);
//! * if this job read data (overwrite, replaceWhere, dynamic partition overwrite), a winning
//!   data-changing `add` in the region it read conflicts (concurrent append);
//! * blind appends never conflict with other appends.

use std::collections::{HashMap, HashSet};

use deltalake_core::kernel::Action;
use deltalake_core::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;
use tracing::{info, warn};

use crate::fence::LeaderFence;

/// Commit retries after losing a version race (each re-checks conflicts).
pub const MAX_COMMIT_ATTEMPTS: usize = 15;

/// Which part of the table the job's result depends on.
#[derive(Debug, Clone)]
pub enum ReadSet {
    /// A blind append: depends on nothing.
    Nothing,
    /// The whole table (full overwrite).
    WholeTable,
    /// Files in these partitions (each a map of partition column → value).
    Partitions(Vec<HashMap<String, Option<String>>>),
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("concurrent modification: {0}")]
    Conflict(String),
    #[error(transparent)]
    Fenced(#[from] crate::fence::Fenced),
    #[error("commit failed: {0}")]
    Delta(#[from] DeltaTableError),
    #[error("commit failed: {0}")]
    Common(#[from] silt_common::Error),
}

/// Everything the committer needs.
pub struct CommitRequest {
    pub actions: Vec<Action>,
    pub operation: DeltaOperation,
    pub app_metadata: HashMap<String, Value>,
    pub read_set: ReadSet,
    /// Raw paths of files this job removes.
    pub removed_paths: HashSet<String>,
    pub txn_app_id: Option<String>,
    /// Whether this commit changes metadata or protocol (conflicts with any concurrent commit).
    pub changes_metadata: bool,
    pub epoch: u64,
}

/// Commits to `table` (loaded at the read version, or `None` to create the table at `log_store`).
pub async fn commit(
    table: Option<&mut DeltaTable>,
    log_store: deltalake_core::logstore::LogStoreRef,
    req: CommitRequest,
    fence: &dyn LeaderFence,
) -> Result<i64, CommitError> {
    let Some(table) = table else {
        fence.check(req.epoch).await?;
        let finalized = CommitBuilder::default()
            .with_actions(req.actions.clone())
            .with_app_metadata(req.app_metadata.clone())
            .with_max_retries(0)
            .build(None, log_store, req.operation.clone())
            .await
            .map_err(|e| match version_taken(&e) {
                true => CommitError::Conflict(
                    "another writer created the table concurrently".to_string(),
                ),
                false => CommitError::Delta(e),
            })?;
        return Ok(finalized.version as i64);
    };
    let mut read_version = table.version().map_or(-1, |v| v as i64);
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        fence.check(req.epoch).await?;
        let state = table.snapshot()?;
        let result = CommitBuilder::default()
            .with_actions(req.actions.clone())
            .with_app_metadata(req.app_metadata.clone())
            .with_max_retries(0)
            .build(Some(state), log_store.clone(), req.operation.clone())
            .await;
        match result {
            Ok(finalized) => return Ok(finalized.version as i64),
            Err(e) if version_taken(&e) => {
                table.update_state().await?;
                let latest = table.version().map_or(read_version, |v| v as i64);
                warn!(
                    attempt,
                    read_version, latest, "lost the commit race; checking winning commits"
                );
                for v in (read_version + 1)..=latest {
                    check_winning_commit(table, v, &req).await?;
                }
                read_version = latest;
                info!(next = latest + 1, "no conflict; retrying commit");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommitError::Conflict(format!(
        "gave up after {MAX_COMMIT_ATTEMPTS} lost commit races"
    )))
}

fn version_taken(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::VersionAlreadyExists(_) | TransactionError::MaxCommitAttempts(_)
        }
    ) || matches!(e, DeltaTableError::VersionAlreadyExists(_))
}

async fn check_winning_commit(
    table: &DeltaTable,
    version: i64,
    req: &CommitRequest,
) -> Result<(), CommitError> {
    let store = table.log_store().object_store(None);
    let path = Path::from(format!("_delta_log/{version:020}.json"));
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| CommitError::Common(silt_common::Error::ObjectStore(e)))?
        .bytes()
        .await
        .map_err(|e| CommitError::Common(silt_common::Error::ObjectStore(e)))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut operation = String::from("unknown");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: Value = serde_json::from_str(line).map_err(|e| {
            CommitError::Conflict(format!("cannot parse winning commit {version}: {e}"))
        })?;
        if let Some(ci) = action.get("commitInfo") {
            if let Some(op) = ci.get("operation").and_then(Value::as_str) {
                operation = op.to_string();
            }
        }
    }
    let conflict = |kind: &str, detail: String| {
        CommitError::Conflict(format!(
            "{kind}: version {version} ({operation}) committed concurrently {detail}; this job read version {} — nothing was committed, retry the job",
            version - 1
        ))
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        if action.get("metaData").is_some() {
            return Err(conflict("MetadataChangedException", "changed the table metadata".into()));
        }
        if action.get("protocol").is_some() {
            return Err(conflict("ProtocolChangedException", "changed the table protocol".into()));
        }
        if req.changes_metadata {
            return Err(conflict(
                "MetadataChangedException",
                "while this job changes the table metadata".into(),
            ));
        }
        if let Some(txn) = action.get("txn")
            && let Some(app) = &req.txn_app_id
            && txn.get("appId").and_then(Value::as_str) == Some(app)
        {
            return Err(conflict(
                "ConcurrentTransactionException",
                format!("with the same txn app id `{app}`"),
            ));
        }
        if let Some(rm) = action.get("remove")
            && let Some(p) = rm.get("path").and_then(Value::as_str)
            && (req.removed_paths.contains(p) || req.removed_paths.contains(&decode(p)))
        {
            return Err(conflict(
                "ConcurrentDeleteDeleteException",
                format!("removing file `{p}` that this job also removes"),
            ));
        }
        if let Some(add) = action.get("add") {
            let data_change = add.get("dataChange").and_then(Value::as_bool).unwrap_or(true);
            if !data_change {
                continue;
            }
            let hit = match &req.read_set {
                ReadSet::Nothing => false,
                ReadSet::WholeTable => true,
                ReadSet::Partitions(parts) => {
                    let pv: HashMap<String, Option<String>> = add
                        .get("partitionValues")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                                .collect()
                        })
                        .unwrap_or_default();
                    parts.iter().any(|p| {
                        p.iter().all(|(k, v)| {
                            pv.get(k).cloned().flatten().filter(|s| !s.is_empty())
                                == v.clone().filter(|s| !s.is_empty())
                        })
                    })
                }
            };
            if hit {
                return Err(conflict(
                    "ConcurrentAppendException",
                    "adding data this job read".into(),
                ));
            }
        }
    }
    Ok(())
}

fn decode(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}
