//! The single atomic Delta commit of a job, with conflict detection against concurrent
//! writers and leader fencing.
//!
//! silt serialises the commit itself: every action is a deltalake-core type serialised by
//! serde, except that `add`/`remove` paths are written exactly as they must appear in the log.
//! (deltalake-core keeps paths decoded in memory and re-encodes them on the way out, which
//! cannot reproduce the raw path another writer used, e.g. Spark's unencoded non-ASCII
//! partition directories; a `remove` whose path differs from its `add` leaves the file
//! active for readers that reconcile by path.) The bytes then go through deltalake-core's
//! log store, which writes `_delta_log/<version>.json` with put-if-absent.
//!
//! When another writer took the version first, the winning commits are checked here with
//! Delta's rules and the commit is retried at the next version, or the job fails with a
//! conflict error:
//! * a winning `metaData` or `protocol` change always conflicts;
//! * a winning `txn` for the same application id conflicts;
//! * a winning `remove` of a file this job also removes conflicts (delete/delete);
//! * if this job read data (overwrite, replaceWhere, dynamic partition overwrite), a winning
//!   data-changing `add` in the region it read conflicts (concurrent append);
//! * a job that changes metadata conflicts with any winning commit;
//! * blind appends never conflict with other appends.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use deltalake_core::DeltaTableError;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::transaction::TransactionError;
use deltalake_core::logstore::{CommitOrBytes, LogStoreRef};
use deltalake_core::protocol::DeltaOperation;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Map, Value};
use tracing::{info, warn};
use url::Url;

use crate::fence::LeaderFence;

/// Commit retries after losing a version race (each re-checks conflicts).
pub const MAX_COMMIT_ATTEMPTS: usize = 15;
/// Checkpoint interval when the table does not set `delta.checkpointInterval` (Delta Spark's).
pub const DEFAULT_CHECKPOINT_INTERVAL: i64 = 10;

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
    Transaction(#[from] TransactionError),
    #[error("commit failed: {0}")]
    Common(#[from] silt_common::Error),
    #[error("commit refused: {0}")]
    Refused(String),
}

/// One line of the commit: a deltalake-core action, with the raw log path for add/remove.
#[derive(Debug, Clone)]
pub struct LogAction {
    pub action: Action,
    /// For `add`/`remove`: the path exactly as it must appear in the log (URL-encoded).
    pub raw_path: Option<String>,
}

impl LogAction {
    pub fn new(action: Action) -> Self {
        Self {
            action,
            raw_path: None,
        }
    }

    pub fn with_raw_path(action: Action, raw_path: String) -> Self {
        Self {
            action,
            raw_path: Some(raw_path),
        }
    }

    fn to_json(&self) -> Result<Value, CommitError> {
        let mut v = serde_json::to_value(&self.action)
            .map_err(|e| CommitError::Refused(format!("cannot serialise an action: {e}")))?;
        if let Some(raw) = &self.raw_path {
            let key = if v.get("add").is_some() {
                "add"
            } else {
                "remove"
            };
            if let Some(inner) = v.get_mut(key).and_then(Value::as_object_mut) {
                inner.insert("path".into(), Value::String(raw.clone()));
            }
        }
        Ok(v)
    }

    fn is_data_change_remove(&self) -> bool {
        matches!(&self.action, Action::Remove(r) if r.data_change)
    }
}

/// Everything the committer needs.
pub struct CommitRequest {
    pub table_url: Url,
    pub actions: Vec<LogAction>,
    pub operation: DeltaOperation,
    /// Extra `commitInfo` fields (operationMetrics, engineInfo, …).
    pub commit_info: Map<String, Value>,
    pub read_set: ReadSet,
    /// Raw paths of files this job removes.
    pub removed_paths: HashSet<String>,
    pub txn_app_id: Option<String>,
    /// Whether this commit changes metadata or protocol (conflicts with any concurrent commit).
    pub changes_metadata: bool,
    /// Whether the table refuses removes (`delta.appendOnly = true`).
    pub append_only: bool,
    pub checkpoint_interval: i64,
    pub epoch: u64,
}

/// Commits the request on top of `read_version` (-1 creates the table). Returns the
/// committed version.
pub async fn commit(
    log_store: LogStoreRef,
    read_version: i64,
    req: CommitRequest,
    fence: &dyn LeaderFence,
) -> Result<i64, CommitError> {
    if req.append_only && req.actions.iter().any(LogAction::is_data_change_remove) {
        return Err(CommitError::Refused(
            "the table is append-only (delta.appendOnly = true) and this job would remove data; nothing was committed"
                .into(),
        ));
    }
    if read_version < -1 {
        return Err(CommitError::Refused(format!(
            "invalid read version {read_version}"
        )));
    }
    let lines = req
        .actions
        .iter()
        .map(LogAction::to_json)
        .collect::<Result<Vec<_>, _>>()?;
    // Decoded once: winning removes are compared by the file they name, however encoded.
    let removed: HashSet<String> = req.removed_paths.iter().map(|p| decode(p)).collect();
    let mut read_version = read_version;
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        fence.check(req.epoch).await?;
        let version = read_version + 1;
        let bytes = commit_bytes(&lines, &req, read_version)?;
        // `version` >= 0: read versions start at -1 (checked above) and only grow.
        match write_entry(&log_store, version as u64, bytes).await {
            Ok(()) => {
                checkpoint_if_due(&req, version).await;
                return Ok(version);
            }
            Err(TransactionError::VersionAlreadyExists(_)) => {
                warn!(
                    attempt,
                    read_version, "lost the commit race; checking winning commits"
                );
                // Each winning commit is read once, up to the first version not written yet.
                let mut v = version;
                while let Some(bytes) = log_store.read_commit_entry(v as u64).await? {
                    check_winning_commit(v, &bytes, &req, &removed)?;
                    v += 1;
                }
                read_version = v - 1;
                info!(next = v, "no conflict; retrying commit");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommitError::Conflict(format!(
        "gave up after {MAX_COMMIT_ATTEMPTS} lost commit races"
    )))
}

/// The commit file: the actions, then `commitInfo` as Delta Spark writes it.
fn commit_bytes(
    lines: &[Value],
    req: &CommitRequest,
    read_version: i64,
) -> Result<Bytes, CommitError> {
    let mut info = Map::new();
    info.insert(
        "timestamp".into(),
        Value::from(chrono::Utc::now().timestamp_millis()),
    );
    info.insert("operation".into(), Value::from(req.operation.name()));
    let params = req.operation.operation_parameters()?;
    info.insert(
        "operationParameters".into(),
        Value::Object(params.into_iter().collect()),
    );
    if read_version >= 0 {
        info.insert("readVersion".into(), Value::from(read_version));
    }
    let isolation = if req.operation.changes_data() {
        "Serializable"
    } else {
        "SnapshotIsolation"
    };
    info.insert("isolationLevel".into(), Value::from(isolation));
    let blind = matches!(req.read_set, ReadSet::Nothing)
        && req.removed_paths.is_empty()
        && !req.changes_metadata;
    info.insert("isBlindAppend".into(), Value::from(blind));
    for (k, v) in &req.commit_info {
        info.insert(k.clone(), v.clone());
    }
    info.insert(
        "txnId".into(),
        Value::from(uuid::Uuid::new_v4().to_string()),
    );
    let mut out = String::new();
    for line in lines
        .iter()
        .chain(std::iter::once(&serde_json::json!({ "commitInfo": info })))
    {
        let s = serde_json::to_string(line)
            .map_err(|e| CommitError::Refused(format!("cannot serialise the commit: {e}")))?;
        debug_assert!(!s.contains('\n'));
        out.push_str(&s);
        out.push('\n');
    }
    Ok(Bytes::from(out))
}

/// Writes `_delta_log/<version>.json` if it does not exist yet, through the log store (as
/// bytes with a conditional put, or via a temporary file for stores that rename).
async fn write_entry(
    log_store: &LogStoreRef,
    v: u64,
    bytes: Bytes,
) -> Result<(), TransactionError> {
    let op = uuid::Uuid::new_v4();
    let entry = if ["DefaultLogStore", "LakeFSLogStore"].contains(&log_store.name().as_str()) {
        CommitOrBytes::LogBytes(bytes)
    } else {
        let tmp = Path::from_iter(["_delta_log", &format!("_commit_{op}.json.tmp")]);
        log_store
            .object_store(Some(op))
            .put(&tmp, bytes.into())
            .await
            .map_err(TransactionError::from)?;
        CommitOrBytes::TmpCommit(tmp)
    };
    match log_store.write_commit_entry(v, entry.clone(), op).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = log_store.abort_commit_entry(v, entry, op).await;
            Err(e)
        }
    }
}

/// Writes a checkpoint when the version is a multiple of the interval, as Delta Spark does.
/// The commit has already happened: a failed checkpoint is logged, not returned.
async fn checkpoint_if_due(req: &CommitRequest, version: i64) {
    if version <= 0 || req.checkpoint_interval <= 0 || version % req.checkpoint_interval != 0 {
        return;
    }
    match checkpoint(&req.table_url, version).await {
        Ok(cleaned) => info!(
            version,
            expired_logs_removed = cleaned,
            "checkpoint written"
        ),
        Err(e) => warn!(version, "checkpoint failed (the commit stands): {e}"),
    }
}

/// Writes the checkpoint of `version` (deltalake-core's), then removes expired log files
/// when the table allows it (`delta.enableExpiredLogCleanup`, `delta.logRetentionDuration`).
async fn checkpoint(table_url: &Url, version: i64) -> Result<usize, CommitError> {
    let v = u64::try_from(version)
        .map_err(|_| CommitError::Refused(format!("bad version {version}")))?;
    let mut table = silt_common::table::table_builder(table_url)?.build()?;
    table.load_version(v).await?;
    deltalake_core::checkpoints::create_checkpoint(&table, None).await?;
    use deltalake_core::table::config::TablePropertiesExt;
    if table
        .snapshot()?
        .table_config()
        .enable_expired_log_cleanup()
    {
        return Ok(deltalake_core::checkpoints::cleanup_metadata(&table, None).await?);
    }
    Ok(0)
}

/// Checks one winning commit (its log file's bytes) against this job with Delta's rules.
/// `removed` holds the decoded paths of the files this job removes.
fn check_winning_commit(
    version: i64,
    bytes: &[u8],
    req: &CommitRequest,
    removed: &HashSet<String>,
) -> Result<(), CommitError> {
    let text = String::from_utf8_lossy(bytes);
    let mut actions = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: Value = serde_json::from_str(line).map_err(|e| {
            CommitError::Conflict(format!("cannot parse winning commit {version}: {e}"))
        })?;
        actions.push(action);
    }
    let operation = actions
        .iter()
        .find_map(|a| a.get("commitInfo")?.get("operation")?.as_str())
        .unwrap_or("unknown")
        .to_string();
    let conflict = |kind: &str, detail: String| {
        CommitError::Conflict(format!(
            "{kind}: version {version} ({operation}) committed concurrently {detail}; this job read version {} — nothing was committed, retry the job",
            version - 1
        ))
    };
    for action in &actions {
        if action.get("commitInfo").is_some() {
            continue;
        }
        if action.get("metaData").is_some() {
            return Err(conflict(
                "MetadataChangedException",
                "changed the table metadata".into(),
            ));
        }
        if action.get("protocol").is_some() {
            return Err(conflict(
                "ProtocolChangedException",
                "changed the table protocol".into(),
            ));
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
            && removed.contains(&decode(p))
        {
            return Err(conflict(
                "ConcurrentDeleteDeleteException",
                format!("removing file `{p}` that this job also removes"),
            ));
        }
        if let Some(add) = action.get("add") {
            let data_change = add
                .get("dataChange")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if data_change && read_set_hit(&req.read_set, add) {
                return Err(conflict(
                    "ConcurrentAppendException",
                    "adding data this job read".into(),
                ));
            }
        }
    }
    Ok(())
}

fn read_set_hit(read_set: &ReadSet, add: &Value) -> bool {
    match read_set {
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
    }
}

fn decode(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake_core::kernel::{Add, Remove};

    #[test]
    fn raw_paths_are_written_verbatim() {
        let add = Add {
            path: "data=😈/f.parquet".into(),
            size: 1,
            data_change: true,
            ..Default::default()
        };
        let line = LogAction::with_raw_path(Action::Add(add), "data=😈/f.parquet".into())
            .to_json()
            .unwrap();
        assert_eq!(line["add"]["path"], "data=😈/f.parquet");
        let rm = Remove {
            path: "s=%23h/f.parquet".into(),
            data_change: true,
            ..Default::default()
        };
        let line =
            LogAction::with_raw_path(Action::Remove(rm.clone()), "s=%2523h/f.parquet".into())
                .to_json()
                .unwrap();
        assert_eq!(line["remove"]["path"], "s=%2523h/f.parquet");
        // Without a raw path deltalake-core's own encoding applies.
        let line = LogAction::new(Action::Remove(rm)).to_json().unwrap();
        assert_eq!(line["remove"]["path"], "s=%2523h/f.parquet");
    }

    fn request(read_set: ReadSet, removed: &[&str], app: Option<&str>) -> CommitRequest {
        CommitRequest {
            table_url: Url::parse("file:///t/").unwrap(),
            actions: Vec::new(),
            operation: DeltaOperation::Write {
                mode: deltalake_core::protocol::SaveMode::Append,
                partition_by: None,
                predicate: None,
            },
            commit_info: Map::new(),
            read_set,
            removed_paths: removed.iter().map(|s| s.to_string()).collect(),
            txn_app_id: app.map(str::to_string),
            changes_metadata: false,
            append_only: false,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            epoch: 1,
        }
    }

    fn check(req: &CommitRequest, commit: &str) -> Result<(), CommitError> {
        let removed = req.removed_paths.iter().map(|p| decode(p)).collect();
        check_winning_commit(7, commit.as_bytes(), req, &removed)
    }

    #[test]
    fn winning_commits_conflict_by_delta_rules() {
        let info = r#"{"commitInfo":{"operation":"WRITE"}}"#;
        let add_p1 = format!(
            "{}\n{info}\n",
            r#"{"add":{"path":"p=1/f.parquet","partitionValues":{"p":"1"},"dataChange":true}}"#
        );
        let part = |v: &str| HashMap::from([("p".to_string(), Some(v.to_string()))]);

        // A blind append never conflicts with another append.
        assert!(check(&request(ReadSet::Nothing, &[], None), &add_p1).is_ok());
        // Data added where this job read: concurrent append.
        let err = check(
            &request(ReadSet::Partitions(vec![part("1")]), &[], None),
            &add_p1,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ConcurrentAppendException") && err.contains("version 7"),
            "{err}"
        );
        assert!(
            check(
                &request(ReadSet::Partitions(vec![part("2")]), &[], None),
                &add_p1
            )
            .is_ok()
        );
        // Compaction-style adds (dataChange = false) are not new data.
        let rearranged = add_p1.replace(r#""dataChange":true"#, r#""dataChange":false"#);
        assert!(check(&request(ReadSet::WholeTable, &[], None), &rearranged).is_ok());

        // The same file removed by both, however its path is encoded.
        let rm = format!(
            "{}\n{info}\n",
            r#"{"remove":{"path":"s=%2523h/f.parquet","dataChange":true}}"#
        );
        let err = check(
            &request(ReadSet::Nothing, &["s=%2523h/f.parquet"], None),
            &rm,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ConcurrentDeleteDeleteException"), "{err}");
        // `s=%23h/…` as a raw log path names another file (`s=#h`).
        assert!(check(&request(ReadSet::Nothing, &["s=%23h/f.parquet"], None), &rm).is_ok());
        // Spark writes non-ASCII literally, silt and delta-rs percent-encode it: same file.
        let rm_spark = format!(
            "{}\n{info}\n",
            r#"{"remove":{"path":"d=😈/f.parquet","dataChange":true}}"#
        );
        assert!(
            check(
                &request(ReadSet::Nothing, &["d=%F0%9F%98%88/f.parquet"], None),
                &rm_spark
            )
            .is_err()
        );
        assert!(check(&request(ReadSet::Nothing, &["other.parquet"], None), &rm).is_ok());

        // Metadata changes and the same txn app id always conflict.
        let md = format!("{}\n{info}\n", r#"{"metaData":{"id":"x"}}"#);
        assert!(check(&request(ReadSet::Nothing, &[], None), &md).is_err());
        let txn = format!("{}\n{info}\n", r#"{"txn":{"appId":"ingest","version":3}}"#);
        assert!(check(&request(ReadSet::Nothing, &[], Some("ingest")), &txn).is_err());
        assert!(check(&request(ReadSet::Nothing, &[], Some("other")), &txn).is_ok());
    }

    #[test]
    fn partition_read_sets_match_null_and_values() {
        let add = serde_json::json!({"partitionValues": {"p": "1", "q": null}});
        let part = |p: Option<&str>, q: Option<&str>| {
            HashMap::from([
                ("p".to_string(), p.map(str::to_string)),
                ("q".to_string(), q.map(str::to_string)),
            ])
        };
        assert!(read_set_hit(
            &ReadSet::Partitions(vec![part(Some("1"), None)]),
            &add
        ));
        assert!(!read_set_hit(
            &ReadSet::Partitions(vec![part(Some("2"), None)]),
            &add
        ));
        // An empty partition value is null in Delta.
        assert!(read_set_hit(
            &ReadSet::Partitions(vec![part(Some("1"), Some(""))]),
            &add
        ));
        assert!(read_set_hit(&ReadSet::WholeTable, &add));
        assert!(!read_set_hit(&ReadSet::Nothing, &add));
    }
}
