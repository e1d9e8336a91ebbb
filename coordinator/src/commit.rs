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
//! Delta's rules (Delta Spark's `ConflictChecker`) and the commit is retried at the next
//! version, or the job fails with a conflict error naming Delta's exception and the winning
//! version:
//! * a winning `protocol` or `metaData` change: `ProtocolChangedException`,
//!   `MetadataChangedException`;
//! * a winning `txn` for this job's application id: `ConcurrentTransactionException`;
//! * a winning data-changing `add` in the region this job read: `ConcurrentAppendException`.
//!   Which adds count depends on the isolation level: under `Serializable` all of them, under
//!   `WriteSerializable` (the default) not those of blind appends (unless this job changes
//!   metadata), under `SnapshotIsolation` none; a blind append itself never conflicts here.
//!   Whether an add falls in the region is decided per file from its partition values and
//!   statistics ([`silt_common::table::prune`]);
//! * a winning `remove` of a file this job read: `ConcurrentDeleteReadException` — unless the
//!   remove does not change data (`dataChange = false`, a compaction) and this job does not
//!   remove that file itself: its rows still exist unchanged, so retrying is provably safe;
//!   any data-changing remove when this job read the whole table conflicts too;
//! * a winning `remove` of a file this job also removes: `ConcurrentDeleteDeleteException`.

use std::collections::{HashMap, HashSet};

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use deltalake_core::DeltaTableError;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::transaction::TransactionError;
use deltalake_core::logstore::{CommitOrBytes, LogStoreRef};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Map, Value};
use silt_common::expr::Predicate;
use silt_common::table::IsolationLevel;
use silt_common::table::prune::{self, Verdict};
use silt_common::table::row_tracking;
use silt_common::task::DataFile;
use tracing::{info, warn};
use url::Url;

use crate::fence::LeaderFence;
use silt_common::table::decode_path as decode;

/// Commit retries after losing a version race (each re-checks conflicts).
pub const MAX_COMMIT_ATTEMPTS: usize = 15;

/// The region of the table a job's result depends on, for deciding whether a concurrently
/// added file would have changed it.
#[derive(Debug, Clone, Default)]
pub enum ReadRegion {
    /// Nothing: a blind append.
    #[default]
    Nothing,
    /// The whole table (full overwrite, DELETE/UPDATE without a condition).
    WholeTable,
    /// Files in these partitions (each a map of partition column → value).
    Partitions(Vec<HashMap<String, Option<String>>>),
    /// Rows for which this predicate may be true (DELETE/UPDATE/replaceWhere conditions).
    Predicate {
        predicate: Predicate,
        schema: SchemaRef,
        partition_columns: Vec<String>,
    },
}

impl ReadRegion {
    /// The rows a job's condition may select in `snapshot`'s table (`None`: every row).
    pub fn of_condition(
        predicate: Option<&Predicate>,
        snapshot: &silt_common::table::TableSnapshot,
    ) -> Self {
        match predicate {
            None => ReadRegion::WholeTable,
            Some(p) => ReadRegion::Predicate {
                predicate: p.clone(),
                schema: snapshot.arrow_schema.clone(),
                partition_columns: snapshot.partition_columns.clone(),
            },
        }
    }
}

/// What a job read: the region (for concurrent appends) and the files (for concurrent
/// deletes).
#[derive(Debug, Clone, Default)]
pub struct ReadSet {
    pub region: ReadRegion,
    /// Raw log paths of the files whose rows the job read or depends on.
    pub files: HashSet<String>,
}

impl ReadSet {
    /// A blind append's read set: nothing.
    pub fn nothing() -> Self {
        Self::default()
    }

    pub fn is_nothing(&self) -> bool {
        matches!(self.region, ReadRegion::Nothing) && self.files.is_empty()
    }
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("concurrent modification: {0}")]
    Conflict(String),
    /// A winning commit removed files this job read or removes: an operation whose work
    /// splits into independent parts may commit the parts without them (see
    /// `driver::Outcome::Commit::replan`).
    #[error("concurrent modification: {message}")]
    FilesRemoved {
        message: String,
        /// Decoded paths of this job's files the winner removed.
        paths: HashSet<String>,
    },
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
    /// A winning commit is this job's own, made by its run under an earlier leader (see
    /// [`find_job_commit`]): the job has committed, as that version.
    #[error("the job already committed version {version}")]
    AlreadyCommitted { version: i64 },
}

/// One line of the commit: a deltalake-core action, with the raw log path for add/remove.
#[derive(Debug, Clone)]
pub struct LogAction {
    pub action: Action,
    /// For `add`/`remove`/`cdc`: the path exactly as it must appear in the log (URL-encoded).
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
            let key = ["add", "cdc"]
                .into_iter()
                .find(|k| v.get(*k).is_some())
                .unwrap_or("remove");
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
    /// Delta's operation name (`WRITE`, `DELETE`, `UPDATE`, `SET TBLPROPERTIES`, …).
    pub operation: String,
    /// `commitInfo.operationParameters`.
    pub parameters: Map<String, Value>,
    /// Extra `commitInfo` fields (operationMetrics, engineInfo, …).
    pub commit_info: Map<String, Value>,
    pub read_set: ReadSet,
    /// Raw paths of files this job removes.
    pub removed_paths: HashSet<String>,
    pub txn_app_id: Option<String>,
    /// Whether this commit changes metadata or protocol.
    pub changes_metadata: bool,
    /// The table's isolation level; `SnapshotIsolation` is used instead when no action of
    /// the commit changes data.
    pub isolation_level: IsolationLevel,
    /// Whether the table refuses removes (`delta.appendOnly = true`).
    pub append_only: bool,
    pub checkpoint_interval: i64,
    /// `delta.enableInCommitTimestamps`: `commitInfo` first, with a monotonic
    /// `inCommitTimestamp`.
    pub in_commit_timestamps: bool,
    /// A column-mapped table's schema: winning commits key partition values and statistics
    /// physically.
    pub column_mapping: Option<arrow::datatypes::SchemaRef>,
    /// Row tracking: the row-id high-water mark at the read version. Each attempt gives the
    /// files it adds fresh ids past the mark as of the version it is written at (winning
    /// commits may have raised it) and records the new mark.
    pub row_tracking: Option<i64>,
    pub epoch: u64,
}

impl CommitRequest {
    /// The same request on a table that tracks rows (`Some(high-water mark)`), or not.
    pub fn tracking_rows(mut self, high_water_mark: Option<i64>) -> Self {
        self.row_tracking = high_water_mark;
        self
    }

    /// The actions of an attempt at `version`: with row tracking, the adds given their row
    /// ids past `high_water_mark`, and the new mark recorded (a `domainMetadata` action).
    fn attempt_lines<'a>(
        &self,
        lines: &'a [Value],
        version: i64,
        high_water_mark: Option<i64>,
    ) -> Result<std::borrow::Cow<'a, [Value]>, CommitError> {
        let Some(mark) = high_water_mark else {
            return Ok(std::borrow::Cow::Borrowed(lines));
        };
        let mut out = lines.to_vec();
        let mut adds: Vec<&mut Value> = out.iter_mut().filter_map(|l| l.get_mut("add")).collect();
        let new_mark = row_tracking::assign(&mut adds, mark, version)
            .map_err(|e| CommitError::Refused(e.to_string()))?;
        if new_mark > mark {
            out.push(serde_json::json!({
                "domainMetadata": {
                    "domain": row_tracking::DOMAIN,
                    "configuration": row_tracking::domain_configuration(new_mark),
                    "removed": false,
                }
            }));
        }
        Ok(std::borrow::Cow::Owned(out))
    }

    /// `delta.rowTracking.preserved`: whether no row was copied or updated (silt gives
    /// copied and updated rows fresh ids): true unless the commit both removes files and
    /// adds new ones.
    fn row_ids_preserved(&self) -> bool {
        let removes: HashSet<String> = self
            .actions
            .iter()
            .filter_map(|a| match &a.action {
                Action::Remove(r) => Some(r.path.clone()),
                _ => None,
            })
            .collect();
        removes.is_empty()
            || self.actions.iter().all(|a| match &a.action {
                Action::Add(add) => removes.contains(&add.path),
                _ => true,
            })
    }

    /// Whether any action changes data (an add or remove with `dataChange = true`).
    fn changes_data(&self) -> bool {
        self.actions.iter().any(|a| match &a.action {
            Action::Add(add) => add.data_change,
            Action::Remove(rm) => rm.data_change,
            _ => false,
        })
    }

    /// The isolation level this commit runs at (Delta downgrades rearrangements).
    pub fn effective_isolation(&self) -> IsolationLevel {
        if self.changes_data() || self.changes_metadata {
            self.isolation_level
        } else {
            IsolationLevel::SnapshotIsolation
        }
    }

    /// Whether the commit only adds data without reading any (`commitInfo.isBlindAppend`).
    fn is_blind_append(&self) -> bool {
        self.read_set.is_nothing() && self.removed_paths.is_empty()
    }
}

/// What a successful commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub version: i64,
    /// Commits by other writers checked after losing a race for a version.
    pub winning_commits_checked: u32,
}

/// Commits the request on top of `read_version` (-1 creates the table). Returns the
/// committed version.
pub async fn commit(
    log_store: LogStoreRef,
    read_version: i64,
    req: CommitRequest,
    fence: &dyn LeaderFence,
) -> Result<Committed, CommitError> {
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
    let mut checked = 0u32;
    let mut row_id_mark = req.row_tracking;
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        let version = read_version + 1;
        crate::driver::crash_point("fence");
        match req.commit_info.get(JOB_ID_FIELD).and_then(Value::as_str) {
            Some(job) => {
                let run = req
                    .commit_info
                    .get(RUN_ID_FIELD)
                    .and_then(Value::as_str)
                    .unwrap_or(job);
                fence
                    .check_commit(req.epoch, job, &format!("{run}@{version}"))
                    .await?
            }
            None => fence.check(req.epoch).await?,
        }
        crate::driver::crash_point("commit");
        let in_commit_timestamp = if req.in_commit_timestamps {
            Some(next_in_commit_timestamp(&log_store, read_version).await?)
        } else {
            None
        };
        let attempt_lines = req.attempt_lines(&lines, version, row_id_mark)?;
        let bytes = commit_bytes(&attempt_lines, &req, read_version, in_commit_timestamp)?;
        // `version` >= 0: read versions start at -1 (checked above) and only grow.
        match write_entry(&log_store, version as u64, bytes).await {
            Ok(()) => {
                checkpoint_if_due(&req, version).await;
                return Ok(Committed {
                    version,
                    winning_commits_checked: checked,
                });
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
                    // Row ids the winner gave are taken: ours go past its mark.
                    if let Some(mark) = row_id_mark
                        && let Some(theirs) = row_tracking::high_water_mark_in_commit(
                            &String::from_utf8_lossy(&bytes),
                        )
                        .map_err(|e| CommitError::Refused(e.to_string()))?
                    {
                        row_id_mark = Some(mark.max(theirs));
                    }
                    checked += 1;
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

/// The `commitInfo` field naming the silt job that made a commit.
pub const JOB_ID_FIELD: &str = "siltJobId";

/// The `commitInfo` field naming the run of a job run again after a failover (absent for a
/// job's first run).
pub const RUN_ID_FIELD: &str = "siltRunId";

/// Commits read back looking for a job's commit after a failover: at most this many.
const JOB_COMMIT_SCAN: i64 = 1_000;

/// The version job `job_id` (accepted at `since_ms`) committed, if it did: the table's log
/// read back from its latest commit to the first made before the job was accepted (a
/// minute of clock skew allowed). `None` when the table does not exist or cannot be read.
pub async fn find_job_commit(table_uri: &str, job_id: &str, since_ms: i64) -> Option<i64> {
    let (_, snapshot) = crate::ops::existing_table(table_uri).await.ok()?;
    let log_store = snapshot.table.log_store();
    let mut v = snapshot.version;
    while v >= 0 && snapshot.version - v < JOB_COMMIT_SCAN {
        let bytes = log_store.read_commit_entry(v as u64).await.ok()??;
        let text = String::from_utf8_lossy(&bytes);
        let info = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|a| a.get("commitInfo").cloned());
        if let Some(info) = info {
            if info.get(JOB_ID_FIELD).and_then(Value::as_str) == Some(job_id) {
                return Some(v);
            }
            if info
                .get("timestamp")
                .and_then(Value::as_i64)
                .is_some_and(|t| t < since_ms - 60_000)
            {
                return None;
            }
        }
        v -= 1;
    }
    None
}

/// The in-commit timestamp of the commit after `read_version`: now, but past the previous
/// commit's (Delta's rule: strictly increasing, in milliseconds).
async fn next_in_commit_timestamp(
    log_store: &LogStoreRef,
    read_version: i64,
) -> Result<i64, CommitError> {
    let now = chrono::Utc::now().timestamp_millis();
    if read_version < 0 {
        return Ok(now);
    }
    let previous = match log_store.read_commit_entry(read_version as u64).await? {
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|a| a.get("commitInfo")?.get("inCommitTimestamp")?.as_i64()),
        None => None,
    };
    Ok(previous.map_or(now, |p| now.max(p + 1)))
}

/// The commit file: the actions, then `commitInfo` as Delta Spark writes it (first, with
/// its `inCommitTimestamp`, when the table has in-commit timestamps).
fn commit_bytes(
    lines: &[Value],
    req: &CommitRequest,
    read_version: i64,
    in_commit_timestamp: Option<i64>,
) -> Result<Bytes, CommitError> {
    let mut info = Map::new();
    if let Some(ict) = in_commit_timestamp {
        info.insert("inCommitTimestamp".into(), Value::from(ict));
    }
    info.insert(
        "timestamp".into(),
        Value::from(in_commit_timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp_millis())),
    );
    info.insert("operation".into(), Value::from(req.operation.clone()));
    info.insert(
        "operationParameters".into(),
        Value::Object(req.parameters.clone()),
    );
    if read_version >= 0 {
        info.insert("readVersion".into(), Value::from(read_version));
    }
    info.insert(
        "isolationLevel".into(),
        Value::from(req.effective_isolation().as_str()),
    );
    info.insert("isBlindAppend".into(), Value::from(req.is_blind_append()));
    for (k, v) in &req.commit_info {
        info.insert(k.clone(), v.clone());
    }
    if req.row_tracking.is_some() {
        info.insert(
            "tags".into(),
            serde_json::json!({
                row_tracking::PRESERVED_TAG: req.row_ids_preserved().to_string()
            }),
        );
    }
    info.insert(
        "txnId".into(),
        Value::from(uuid::Uuid::new_v4().to_string()),
    );
    let info = serde_json::json!({ "commitInfo": info });
    let ordered: Vec<&Value> = if in_commit_timestamp.is_some() {
        std::iter::once(&info).chain(lines).collect()
    } else {
        lines.iter().chain(std::iter::once(&info)).collect()
    };
    // Compact JSON escapes newlines inside strings: each action stays on its line.
    let mut out: Vec<u8> = Vec::new();
    for line in ordered {
        serde_json::to_writer(&mut out, line)
            .map_err(|e| CommitError::Refused(format!("cannot serialise the commit: {e}")))?;
        out.push(b'\n');
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
    let commit_info = actions.iter().find_map(|a| a.get("commitInfo"));
    // A job run again after a failover: a commit of the job by another of its runs (the
    // first run has no run id) means the job has committed, whichever run this is: the
    // first run, stalled while no coordinator led, may reach its commit after a later run
    // (a run's own earlier commits, batches, are not such).
    let run_of = |info: &Map<String, Value>| -> Option<(String, String)> {
        let job = info.get(JOB_ID_FIELD)?.as_str()?;
        let run = info
            .get(RUN_ID_FIELD)
            .and_then(Value::as_str)
            .unwrap_or(job);
        Some((job.to_string(), run.to_string()))
    };
    if let Some((job, run)) = run_of(&req.commit_info)
        && let Some((their_job, their_run)) =
            commit_info.and_then(Value::as_object).and_then(run_of)
        && their_job == job
        && their_run != run
    {
        return Err(CommitError::AlreadyCommitted { version });
    }
    let operation = commit_info
        .and_then(|c| c.get("operation")?.as_str())
        .unwrap_or("unknown")
        .to_string();
    let winner_blind = is_blind_append(commit_info, &actions);
    let conflict = |kind: &str, detail: String| {
        CommitError::Conflict(format!(
            "{kind}: version {version} ({operation}) committed concurrently {detail}; this job read version {} — nothing was committed, retry the job",
            version - 1
        ))
    };
    let read_files: HashSet<String> = req.read_set.files.iter().map(|p| decode(p)).collect();
    let files_removed = |kind: &str, p: &str, detail: &str, paths: HashSet<String>| match conflict(
        kind,
        format!("removing file `{p}` {detail}"),
    ) {
        CommitError::Conflict(message) => CommitError::FilesRemoved { message, paths },
        other => other,
    };
    // Which winning adds can conflict, by this commit's isolation level.
    let check_adds = match req.effective_isolation() {
        IsolationLevel::SnapshotIsolation => false,
        IsolationLevel::Serializable => true,
        IsolationLevel::WriteSerializable => !winner_blind || req.changes_metadata,
    };
    // In Delta Spark's order: protocol, metadata, transactions, added files, then removed
    // files (read, then removed by both), whatever the order of the actions in the commit.
    for action in &actions {
        if action.get("protocol").is_some() {
            return Err(conflict(
                "ProtocolChangedException",
                "changed the table protocol".into(),
            ));
        }
    }
    for action in &actions {
        if action.get("metaData").is_some() {
            return Err(conflict(
                "MetadataChangedException",
                "changed the table metadata".into(),
            ));
        }
    }
    for action in &actions {
        if let Some(txn) = action.get("txn")
            && let Some(app) = &req.txn_app_id
            && txn.get("appId").and_then(Value::as_str) == Some(app)
        {
            return Err(conflict(
                "ConcurrentTransactionException",
                format!("with the same txn app id `{app}`"),
            ));
        }
    }
    for add in actions.iter().filter_map(|a| a.get("add")) {
        let data_change = add
            .get("dataChange")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let logical;
        let add = match &req.column_mapping {
            Some(schema) => {
                logical = logical_add(add, schema);
                &logical
            }
            None => add,
        };
        if check_adds && data_change && add_in_region(&req.read_set.region, add) {
            let path = add.get("path").and_then(Value::as_str).unwrap_or("?");
            return Err(conflict(
                "ConcurrentAppendException",
                format!("adding file `{path}` in the region this job read"),
            ));
        }
    }
    let removes: Vec<(&str, bool)> = actions
        .iter()
        .filter_map(|a| a.get("remove"))
        .filter_map(|rm| {
            let p = rm.get("path").and_then(Value::as_str)?;
            let data_change = rm
                .get("dataChange")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            Some((p, data_change))
        })
        .collect();
    // Every file of this job the winner removed, for operations that can do without them.
    let gone: HashSet<String> = removes
        .iter()
        .map(|(p, _)| decode(p))
        .filter(|p| read_files.contains(p) || removed.contains(p))
        .collect();
    for &(p, data_change) in &removes {
        let path = decode(p);
        let read_it = read_files.contains(&path)
            || (data_change && matches!(req.read_set.region, ReadRegion::WholeTable));
        // A compaction that rewrote a file this job only read keeps its rows as they were:
        // safe to commit on top of it.
        if read_it && (data_change || removed.contains(&path)) {
            return Err(files_removed(
                "ConcurrentDeleteReadException",
                p,
                "that this job read",
                gone,
            ));
        }
    }
    for &(p, _) in &removes {
        if removed.contains(&decode(p)) {
            return Err(files_removed(
                "ConcurrentDeleteDeleteException",
                p,
                "that this job also removes",
                gone,
            ));
        }
    }
    Ok(())
}

/// Whether a winning commit is a blind append: as its `commitInfo.isBlindAppend` says, or,
/// for writers that do not say (delta-rs), a plain `WRITE` in `Append` mode that only adds
/// files (an append reads nothing). Anything else counts as having read the table, as Delta
/// Spark counts it.
fn is_blind_append(commit_info: Option<&Value>, actions: &[Value]) -> bool {
    let Some(info) = commit_info else {
        return false;
    };
    if let Some(b) = info.get("isBlindAppend").and_then(Value::as_bool) {
        return b;
    }
    info.get("operation").and_then(Value::as_str) == Some("WRITE")
        && info
            .get("operationParameters")
            .and_then(|p| p.get("mode"))
            .and_then(Value::as_str)
            == Some("Append")
        && actions
            .iter()
            .all(|a| a.get("add").is_some() || a.get("commitInfo").is_some())
}

/// A winning `add` of a column-mapped table with its partition values and statistics keyed
/// by logical names, as the region this job read is.
fn logical_add(add: &Value, schema: &arrow::datatypes::Schema) -> Value {
    use silt_common::table::column_mapping::{Direction, partition_values, stats_json};
    let mut add = add.clone();
    if let Some(Value::Object(pv)) = add.get_mut("partitionValues") {
        let keyed: std::collections::BTreeMap<String, Value> =
            std::mem::take(pv).into_iter().collect();
        *pv = partition_values(&keyed, schema, Direction::ToLogical)
            .into_iter()
            .collect();
    }
    if let Some(Value::String(stats)) = add.get_mut("stats") {
        *stats = stats_json(stats, schema, Direction::ToLogical);
    }
    add
}

/// Whether a winning `add` (its JSON) falls into the region this job read.
fn add_in_region(region: &ReadRegion, add: &Value) -> bool {
    match region {
        ReadRegion::Nothing => false,
        ReadRegion::WholeTable => true,
        ReadRegion::Partitions(parts) => {
            let pv = partition_values_of(add);
            parts.iter().any(|p| {
                p.iter().all(|(k, v)| {
                    pv.get(k).cloned().flatten().filter(|s| !s.is_empty())
                        == v.clone().filter(|s| !s.is_empty())
                })
            })
        }
        ReadRegion::Predicate {
            predicate,
            schema,
            partition_columns,
        } => {
            let file = DataFile {
                path: add
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                partition_values: partition_values_of(add)
                    .into_iter()
                    .map(|(k, v)| (k, v.filter(|s| !s.is_empty())))
                    .collect(),
                size_bytes: add.get("size").and_then(Value::as_i64).unwrap_or(0),
                modification_time_ms: 0,
                stats_json: add.get("stats").and_then(Value::as_str).map(str::to_string),
                num_records: -1,
                deletion_vector: None,
            };
            // When in doubt (a bad predicate evaluation), the file is in the region.
            prune::classify(predicate, schema, partition_columns, &[&file])
                .map(|v| v.first() != Some(&Verdict::NoMatch))
                .unwrap_or(true)
        }
    }
}

fn partition_values_of(add: &Value) -> HashMap<String, Option<String>> {
    add.get("partitionValues")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake_core::kernel::{Add, Remove};
    use std::sync::Arc;

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

    #[test]
    fn in_commit_timestamps_put_commit_info_first() {
        let req = request(ReadRegion::Nothing, &[], None);
        let lines = vec![serde_json::json!({"add": {"path": "a"}})];
        let text = String::from_utf8(
            commit_bytes(&lines, &req, 3, Some(1_700_000_000_123))
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first["commitInfo"]["inCommitTimestamp"],
            1_700_000_000_123i64
        );
        assert_eq!(first["commitInfo"]["timestamp"], 1_700_000_000_123i64);
        let text =
            String::from_utf8(commit_bytes(&lines, &req, 3, None).unwrap().to_vec()).unwrap();
        assert!(
            text.lines().next().unwrap().starts_with("{\"add\""),
            "{text}"
        );
        assert!(!text.contains("inCommitTimestamp"));
    }

    fn request(region: ReadRegion, removed: &[&str], app: Option<&str>) -> CommitRequest {
        CommitRequest {
            table_url: Url::parse("file:///t/").unwrap(),
            actions: vec![LogAction::new(Action::Add(Add {
                path: "new.parquet".into(),
                data_change: true,
                ..Default::default()
            }))],
            operation: "DELETE".into(),
            parameters: Map::new(),
            commit_info: Map::new(),
            read_set: ReadSet {
                region,
                files: HashSet::new(),
            },
            removed_paths: removed.iter().map(|s| s.to_string()).collect(),
            txn_app_id: app.map(str::to_string),
            changes_metadata: false,
            isolation_level: IsolationLevel::WriteSerializable,
            append_only: false,
            checkpoint_interval: 10,
            in_commit_timestamps: false,
            column_mapping: None,
            row_tracking: None,
            epoch: 1,
        }
    }

    fn check(req: &CommitRequest, commit: &str) -> Result<(), CommitError> {
        let removed = req.removed_paths.iter().map(|p| decode(p)).collect();
        check_winning_commit(7, commit.as_bytes(), req, &removed)
    }

    fn conflict_kind(r: Result<(), CommitError>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(CommitError::Conflict(m)) | Err(CommitError::FilesRemoved { message: m, .. }) => {
                assert!(m.contains("version 7"), "{m}");
                m.split(':').next().unwrap_or_default().to_string()
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    /// A winning commit by another run of the same job (a failover's) is the job's commit,
    /// whether this is the job's first run or a later one; its own run's earlier commits
    /// and other jobs' commits are checked as any.
    #[test]
    fn a_commit_by_another_run_of_the_job_is_the_jobs() {
        let by = |run: Option<&str>| {
            let mut req = request(ReadRegion::Nothing, &[], None);
            req.commit_info
                .insert(JOB_ID_FIELD.into(), Value::from("j1"));
            if let Some(run) = run {
                req.commit_info
                    .insert(RUN_ID_FIELD.into(), Value::from(run));
            }
            req
        };
        let winner = |job: &str, run: Option<&str>| {
            let run = run.map_or(String::new(), |r| format!(r#","siltRunId":"{r}""#));
            format!(
                "{}\n{{\"commitInfo\":{{\"operation\":\"WRITE\",\"siltJobId\":\"{job}\"{run}}}}}\n",
                r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#
            )
        };
        let already = |r: Result<(), CommitError>| {
            matches!(r, Err(CommitError::AlreadyCommitted { version: 7 }))
        };
        // A later run finds the first run's commit, and the first run a later run's.
        assert!(already(check(&by(Some("j1-r2")), &winner("j1", None))));
        assert!(already(check(&by(None), &winner("j1", Some("j1-r2")))));
        assert!(already(check(
            &by(Some("j1-r3")),
            &winner("j1", Some("j1-r2"))
        )));
        // The same run's earlier commit, or another job's: a conflict as any.
        for (req, commit) in [
            (by(None), winner("j1", None)),
            (by(Some("j1-r2")), winner("j1", Some("j1-r2"))),
            (by(None), winner("j2", None)),
            (by(Some("j1-r2")), winner("j2", Some("j1-r2"))),
        ] {
            assert_eq!(
                conflict_kind(check(&req, &commit)),
                "ProtocolChangedException"
            );
        }
    }

    const INFO: &str = r#"{"commitInfo":{"operation":"WRITE","isBlindAppend":false}}"#;
    const BLIND: &str = r#"{"commitInfo":{"operation":"WRITE","isBlindAppend":true}}"#;

    fn add_p1(info: &str) -> String {
        format!(
            "{}\n{info}\n",
            r#"{"add":{"path":"p=1/f.parquet","partitionValues":{"p":"1"},"dataChange":true,"stats":"{\"numRecords\":3,\"minValues\":{\"x\":100},\"maxValues\":{\"x\":200},\"nullCount\":{\"x\":0}}"}}"#
        )
    }

    fn part(v: &str) -> HashMap<String, Option<String>> {
        HashMap::from([("p".to_string(), Some(v.to_string()))])
    }

    #[test]
    fn concurrent_appends_by_region_and_isolation_level() {
        // A blind append never conflicts with another append.
        assert_eq!(
            conflict_kind(check(
                &request(ReadRegion::Nothing, &[], None),
                &add_p1(INFO)
            )),
            "ok"
        );
        // Data added where this job read: concurrent append.
        let read_p1 = || request(ReadRegion::Partitions(vec![part("1")]), &[], None);
        assert_eq!(
            conflict_kind(check(&read_p1(), &add_p1(INFO))),
            "ConcurrentAppendException"
        );
        let read_p2 = request(ReadRegion::Partitions(vec![part("2")]), &[], None);
        assert_eq!(conflict_kind(check(&read_p2, &add_p1(INFO))), "ok");
        // WriteSerializable lets a blind append into the read region through; Serializable
        // does not; SnapshotIsolation (a rearranging commit) ignores appends.
        assert_eq!(conflict_kind(check(&read_p1(), &add_p1(BLIND))), "ok");
        let mut serializable = read_p1();
        serializable.isolation_level = IsolationLevel::Serializable;
        assert_eq!(
            conflict_kind(check(&serializable, &add_p1(BLIND))),
            "ConcurrentAppendException"
        );
        let mut rearranging = read_p1();
        rearranging.actions = vec![LogAction::new(Action::Add(Add {
            path: "c.parquet".into(),
            data_change: false,
            ..Default::default()
        }))];
        assert_eq!(
            rearranging.effective_isolation(),
            IsolationLevel::SnapshotIsolation
        );
        assert_eq!(conflict_kind(check(&rearranging, &add_p1(INFO))), "ok");
        // Compaction-style adds (dataChange = false) are not new data.
        let rearranged = add_p1(INFO).replace(r#""dataChange":true"#, r#""dataChange":false"#);
        assert_eq!(
            conflict_kind(check(
                &request(ReadRegion::WholeTable, &[], None),
                &rearranged
            )),
            "ok"
        );
    }

    #[test]
    fn appends_that_do_not_say_are_blind_when_they_only_add() {
        let delta_rs =
            r#"{"commitInfo":{"operation":"WRITE","operationParameters":{"mode":"Append"}}}"#;
        let mut read_p1 = request(ReadRegion::Partitions(vec![part("1")]), &[], None);
        assert_eq!(conflict_kind(check(&read_p1, &add_p1(delta_rs))), "ok");
        let overwrite = delta_rs.replace("Append", "Overwrite");
        assert_eq!(
            conflict_kind(check(&read_p1, &add_p1(&overwrite))),
            "ConcurrentAppendException"
        );
        let merge = r#"{"commitInfo":{"operation":"MERGE"}}"#;
        assert_eq!(
            conflict_kind(check(&read_p1, &add_p1(merge))),
            "ConcurrentAppendException"
        );
        read_p1.isolation_level = IsolationLevel::Serializable;
        assert_eq!(
            conflict_kind(check(&read_p1, &add_p1(delta_rs))),
            "ConcurrentAppendException"
        );
    }

    #[test]
    fn predicate_regions_use_partition_values_and_statistics() {
        let schema: SchemaRef = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("p", arrow::datatypes::DataType::Int32, true),
        ]));
        let region = |sql: &str| ReadRegion::Predicate {
            predicate: Predicate::compile(sql, &schema).unwrap(),
            schema: schema.clone(),
            partition_columns: vec!["p".into()],
        };
        let winner = add_p1(INFO);
        for (sql, kind) in [
            ("x < 50", "ok"),
            ("x >= 150", "ConcurrentAppendException"),
            ("p = 2", "ok"),
            ("p = 1 AND x > 300", "ok"),
            ("p = 1", "ConcurrentAppendException"),
        ] {
            assert_eq!(
                conflict_kind(check(&request(region(sql), &[], None), &winner)),
                kind,
                "{sql}"
            );
        }
    }

    #[test]
    fn concurrent_removes_of_read_and_removed_files() {
        let rm = |path: &str, data_change: bool| {
            format!("{{\"remove\":{{\"path\":\"{path}\",\"dataChange\":{data_change}}}}}\n{INFO}\n")
        };
        // The same file removed by both, however its path is encoded.
        let r = request(ReadRegion::Nothing, &["s=%2523h/f.parquet"], None);
        assert_eq!(
            conflict_kind(check(&r, &rm("s=%2523h/f.parquet", true))),
            "ConcurrentDeleteDeleteException"
        );
        // `s=%23h/…` as a raw log path names another file (`s=#h`).
        let r = request(ReadRegion::Nothing, &["s=%23h/f.parquet"], None);
        assert_eq!(
            conflict_kind(check(&r, &rm("s=%2523h/f.parquet", true))),
            "ok"
        );
        // Spark writes non-ASCII literally, silt and delta-rs percent-encode it: same file.
        let r = request(ReadRegion::Nothing, &["d=%F0%9F%98%88/f.parquet"], None);
        assert_eq!(
            conflict_kind(check(&r, &rm("d=😈/f.parquet", true))),
            "ConcurrentDeleteDeleteException"
        );

        // A file this job read (and kept) removed by a data change: delete-read.
        let mut read = request(ReadRegion::Nothing, &[], None);
        read.read_set.files.insert("a.parquet".into());
        assert_eq!(
            conflict_kind(check(&read, &rm("a.parquet", true))),
            "ConcurrentDeleteReadException"
        );
        // The conflict names the job's files the winner removed (decoded), so that work
        // made of independent parts can commit the others.
        match check(&read, &rm("a.parquet", true)) {
            Err(CommitError::FilesRemoved { paths, .. }) => {
                assert_eq!(paths, HashSet::from(["a.parquet".to_string()]))
            }
            other => panic!("{other:?}"),
        }
        // …by a compaction: its rows are unchanged, so it is safe.
        assert_eq!(conflict_kind(check(&read, &rm("a.parquet", false))), "ok");
        // A compaction of a file this job removes is not.
        let mut both = request(ReadRegion::Nothing, &["a.parquet"], None);
        both.read_set.files.insert("a.parquet".into());
        assert_eq!(
            conflict_kind(check(&both, &rm("a.parquet", false))),
            "ConcurrentDeleteReadException"
        );
        // Reading the whole table depends on every file.
        let whole = request(ReadRegion::WholeTable, &[], None);
        assert_eq!(
            conflict_kind(check(&whole, &rm("z.parquet", true))),
            "ConcurrentDeleteReadException"
        );
        assert_eq!(conflict_kind(check(&whole, &rm("z.parquet", false))), "ok");
    }

    #[test]
    fn metadata_protocol_and_txn_conflicts() {
        let md = format!("{}\n{INFO}\n", r#"{"metaData":{"id":"x"}}"#);
        assert_eq!(
            conflict_kind(check(&request(ReadRegion::Nothing, &[], None), &md)),
            "MetadataChangedException"
        );
        let proto = format!("{}\n{INFO}\n", r#"{"protocol":{"minReaderVersion":1}}"#);
        assert_eq!(
            conflict_kind(check(&request(ReadRegion::Nothing, &[], None), &proto)),
            "ProtocolChangedException"
        );
        let txn = format!("{}\n{INFO}\n", r#"{"txn":{"appId":"ingest","version":3}}"#);
        assert_eq!(
            conflict_kind(check(
                &request(ReadRegion::Nothing, &[], Some("ingest")),
                &txn
            )),
            "ConcurrentTransactionException"
        );
        assert_eq!(
            conflict_kind(check(
                &request(ReadRegion::Nothing, &[], Some("other")),
                &txn
            )),
            "ok"
        );
    }

    #[test]
    fn partition_regions_match_null_and_values() {
        let add = serde_json::json!({"partitionValues": {"p": "1", "q": null}});
        let part = |p: Option<&str>, q: Option<&str>| {
            HashMap::from([
                ("p".to_string(), p.map(str::to_string)),
                ("q".to_string(), q.map(str::to_string)),
            ])
        };
        assert!(add_in_region(
            &ReadRegion::Partitions(vec![part(Some("1"), None)]),
            &add
        ));
        assert!(!add_in_region(
            &ReadRegion::Partitions(vec![part(Some("2"), None)]),
            &add
        ));
        // An empty partition value is null in Delta.
        assert!(add_in_region(
            &ReadRegion::Partitions(vec![part(Some("1"), Some(""))]),
            &add
        ));
        assert!(add_in_region(&ReadRegion::WholeTable, &add));
        assert!(!add_in_region(&ReadRegion::Nothing, &add));
    }

    /// A fence that, before each commit attempt, lets another writer take the version the
    /// attempt is about to write: every attempt loses a real race (a blind append).
    struct RacingFence {
        dir: std::path::PathBuf,
        races: std::sync::atomic::AtomicU32,
        /// Actions of the racer's commit besides its `commitInfo` (JSON lines).
        winner: &'static str,
    }

    #[async_trait::async_trait]
    impl LeaderFence for RacingFence {
        fn epoch(&self) -> u64 {
            1
        }
        async fn check(&self, _epoch: u64) -> Result<(), crate::fence::Fenced> {
            let log = self.dir.join("_delta_log");
            let next = (0..)
                .find(|v| !log.join(format!("{v:020}.json")).exists())
                .unwrap_or(0);
            std::fs::write(
                log.join(format!("{next:020}.json")),
                format!(
                    "{}{}\n",
                    self.winner, r#"{"commitInfo":{"operation":"WRITE","isBlindAppend":true}}"#
                ),
            )
            .unwrap();
            self.races.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn lost_races_are_retried_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(
            log.join(format!("{:020}.json", 0)),
            concat!(
                r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#,
                "\n",
                r#"{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"x\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}}]}","partitionColumns":[],"configuration":{},"createdTime":0}}"#,
                "\n"
            ),
        )
        .unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let table = silt_common::table::table_builder(&url)
            .unwrap()
            .build()
            .unwrap();
        let fence = RacingFence {
            dir: dir.path().to_path_buf(),
            races: Default::default(),
            winner: "",
        };
        let mut req = request(ReadRegion::Nothing, &[], None);
        req.table_url = url.clone();
        let err = commit(table.log_store(), 0, req, &fence).await.unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "gave up after {MAX_COMMIT_ATTEMPTS} lost commit races"
            )),
            "{err}"
        );
        assert_eq!(
            fence.races.load(std::sync::atomic::Ordering::SeqCst) as usize,
            MAX_COMMIT_ATTEMPTS
        );
        // Every version was taken by the racer; none by this job.
        for v in 1..=MAX_COMMIT_ATTEMPTS {
            let text = std::fs::read_to_string(log.join(format!("{v:020}.json"))).unwrap();
            assert!(!text.contains("new.parquet"), "version {v}: {text}");
        }

        // With one lost race, the commit lands at the next version after checking the winner.
        let dir2 = tempfile::tempdir().unwrap();
        copy_log(&log, &dir2.path().join("_delta_log"), 0);
        let url2 = Url::from_directory_path(dir2.path()).unwrap();
        let table2 = silt_common::table::table_builder(&url2)
            .unwrap()
            .build()
            .unwrap();
        let once = OnceRacingFence(RacingFence {
            dir: dir2.path().to_path_buf(),
            races: Default::default(),
            winner: "",
        });
        let mut req = request(ReadRegion::Nothing, &[], None);
        req.table_url = url2;
        let done = commit(table2.log_store(), 0, req, &once).await.unwrap();
        assert_eq!(
            done,
            Committed {
                version: 2,
                winning_commits_checked: 1
            }
        );

        // Row tracking: the winner gave row ids up to 99; the retried commit's file takes
        // ids past them, its version as commit version, and records the new mark.
        let dir3 = tempfile::tempdir().unwrap();
        copy_log(&log, &dir3.path().join("_delta_log"), 0);
        let url3 = Url::from_directory_path(dir3.path()).unwrap();
        let table3 = silt_common::table::table_builder(&url3)
            .unwrap()
            .build()
            .unwrap();
        let once = OnceRacingFence(RacingFence {
            dir: dir3.path().to_path_buf(),
            races: Default::default(),
            winner: concat!(
                r#"{"domainMetadata":{"domain":"delta.rowTracking","configuration":"{\"rowIdHighWaterMark\":99}","removed":false}}"#,
                "\n"
            ),
        });
        let mut req = request(ReadRegion::Nothing, &[], None).tracking_rows(Some(9));
        req.table_url = url3;
        if let Action::Add(add) = &mut req.actions[0].action {
            add.stats = Some(r#"{"numRecords":5}"#.into());
        }
        let done = commit(table3.log_store(), 0, req, &once).await.unwrap();
        assert_eq!(done.version, 2);
        let text = std::fs::read_to_string(dir3.path().join(format!("_delta_log/{:020}.json", 2)))
            .unwrap();
        let actions: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let add = actions.iter().find_map(|a| a.get("add")).unwrap();
        assert_eq!(add["baseRowId"], 100, "{text}");
        assert_eq!(add["defaultRowCommitVersion"], 2, "{text}");
        assert_eq!(
            row_tracking::high_water_mark_in_commit(&text).unwrap(),
            Some(104),
            "{text}"
        );
        let info = actions.iter().find_map(|a| a.get("commitInfo")).unwrap();
        assert_eq!(info["tags"][row_tracking::PRESERVED_TAG], "true", "{text}");
    }

    fn copy_log(from: &std::path::Path, to: &std::path::Path, upto: u64) {
        std::fs::create_dir_all(to).unwrap();
        for v in 0..=upto {
            let name = format!("{v:020}.json");
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }

    /// Races only the first attempt.
    struct OnceRacingFence(RacingFence);

    #[async_trait::async_trait]
    impl LeaderFence for OnceRacingFence {
        fn epoch(&self) -> u64 {
            1
        }
        async fn check(&self, epoch: u64) -> Result<(), crate::fence::Fenced> {
            if self.0.races.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                self.0.check(epoch).await
            } else {
                Ok(())
            }
        }
    }
}
