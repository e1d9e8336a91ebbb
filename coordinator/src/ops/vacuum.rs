//! VACUUM: deletes the files no version within the retention needs (`plan/vacuum.rs`
//! decides which), spread over the executors as deletion tasks, between a `VACUUM START`
//! and a `VACUUM END` commit as Delta writes them. A dry run lists the files and deletes
//! nothing; a run with nothing to delete commits nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use silt_common::request::VacuumRequest;
use silt_common::storage::store_for;
use silt_common::table::{TableSnapshot, decode_path};
use silt_common::task::{Input, Sink, Task};
use url::Url;

use super::dml::DmlOp;
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
    job_file_prefix,
};
use crate::job::QueryResult;
use crate::plan::vacuum::{LogFiles, Object, is_hidden, to_delete};
use crate::txn::Txn;

/// Paths per deletion task.
const PATHS_PER_TASK: usize = 10_000;

/// Lists the table and its log's files, then plans.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: VacuumRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    let slots = executor_slots(ctx).await?;
    let log = log_files(&table_url, &snapshot).await?;
    let objects = list_objects(&table_url, &snapshot.partition_columns).await?;
    // Files of jobs running on this cluster are never deleted, however short the retention.
    let in_flight: Vec<String> = ctx
        .scheduler
        .active_jobs()
        .iter()
        .map(|j| format!("{}-", job_file_prefix(j)))
        .collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    Ok(Box::new(plan(
        req,
        table_url,
        snapshot,
        PlanContext { slots, ..plan_ctx },
        VacuumInputs {
            log,
            objects,
            in_flight,
            now_ms,
        },
    )?))
}

/// What VACUUM plans on, gathered by [`prepare`].
pub struct VacuumInputs {
    pub log: LogFiles,
    pub objects: Vec<Object>,
    pub in_flight: Vec<String>,
    pub now_ms: i64,
}

/// The current version's files (with their deletion vectors) and the log's tombstones.
async fn log_files(table_url: &Url, snapshot: &TableSnapshot) -> Result<LogFiles, JobError> {
    let root = table_url.as_str().trim_end_matches('/').to_string() + "/";
    let relative = |raw: &str| -> String {
        let decoded = decode_path(raw);
        decoded
            .strip_prefix(&root)
            .or_else(|| decoded.strip_prefix(table_url.path()))
            .map(|p| p.trim_start_matches('/').to_string())
            .unwrap_or(decoded.clone())
    };
    let mut active = HashSet::new();
    for f in &snapshot.files {
        active.insert(relative(&f.file.path));
        if let Some(dv) = &f.file.deletion_vector
            && dv.storage_type != "i"
        {
            let resolved = silt_common::table::dv::resolve(dv, table_url)?;
            active.insert(relative(&resolved.path_or_inline_dv));
        }
    }
    let state = snapshot.table.snapshot()?;
    let log_store = snapshot.table.log_store();
    let tombstones: HashMap<String, i64> = state
        .all_tombstones(log_store.as_ref())
        .map_ok(|t| (relative(&t.path()), t.deletion_timestamp().unwrap_or(0)))
        .try_collect()
        .await?;
    Ok(LogFiles { active, tombstones })
}

/// Every object under the table root outside hidden directories (the log is never listed),
/// top-level directories listed concurrently.
async fn list_objects(
    table_url: &Url,
    partition_columns: &[String],
) -> Result<Vec<Object>, JobError> {
    let (store, root) = store_for(table_url)?;
    let top = store
        .list_with_delimiter(Some(&root))
        .await
        .map_err(silt_common::Error::from)?;
    let rel = |p: &object_store::path::Path| -> String {
        p.prefix_match(&root)
            .map(|parts| {
                parts
                    .map(|x| x.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| p.to_string())
    };
    let object = |m: &object_store::ObjectMeta| Object {
        path: rel(&m.location),
        size: m.size,
        modified_ms: m.last_modified.timestamp_millis(),
    };
    let mut out: Vec<Object> = top.objects.iter().map(object).collect();
    let dirs: Vec<_> = top
        .common_prefixes
        .into_iter()
        .filter(|d| !is_hidden(&rel(d), partition_columns))
        .collect();
    let listed: Vec<Vec<Object>> = futures::stream::iter(dirs)
        .map(|d| {
            let store = store.clone();
            async move {
                store
                    .list(Some(&d))
                    .map_ok(|m| object(&m))
                    .try_collect::<Vec<_>>()
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .map_err(silt_common::Error::from)?;
    out.extend(listed.into_iter().flatten());
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A planned VACUUM.
pub struct VacuumOp {
    req: VacuumRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    retention_ms: i64,
    delete: Vec<Object>,
    started: bool,
    deleted: u64,
    dirs: usize,
}

/// Plans a VACUUM: pure, from the request, the snapshot and what was listed.
pub fn plan(
    req: VacuumRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    inputs: VacuumInputs,
) -> Result<VacuumOp, JobError> {
    let table_ms = snapshot.properties.deleted_file_retention_ms;
    let retention_ms = match req.retain_hours {
        Some(h) if !(h.is_finite() && h >= 0.0) => {
            return Err(invalid(format!("RETAIN {h} HOURS: hours must be >= 0")));
        }
        Some(h) => (h * 3_600_000.0) as i64,
        None => table_ms,
    };
    if req.enforce_retention && retention_ms < table_ms {
        return Err(invalid(format!(
            "VACUUM … RETAIN {} HOURS is below the table's delta.deletedFileRetentionDuration \
             ({} hours): readers of recent versions and running writers could lose files; \
             `silt sql --allow-short-retention` skips this check",
            retention_ms as f64 / 3_600_000.0,
            table_ms as f64 / 3_600_000.0
        )));
    }
    let delete = to_delete(
        &inputs.objects,
        &inputs.log,
        &snapshot.partition_columns,
        inputs.now_ms - retention_ms,
        &inputs.in_flight,
    );
    let dirs = inputs
        .objects
        .iter()
        .filter_map(|o| o.path.rsplit_once('/').map(|(d, _)| d.to_string()))
        .collect::<HashSet<_>>()
        .len()
        + 1;
    Ok(VacuumOp {
        req,
        table_url,
        snapshot,
        ctx,
        retention_ms,
        delete,
        started: false,
        deleted: 0,
        dirs,
    })
}

impl VacuumOp {
    fn bytes(&self) -> u64 {
        self.delete.iter().map(|o| o.size).sum()
    }

    fn target(&self) -> CommitTarget {
        CommitTarget::on(&self.snapshot, self.snapshot.properties.clone())
    }
}

impl Operation for VacuumOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    /// `VACUUM START`, before any file is deleted.
    fn interim_commit(&mut self, _since: Duration) -> Result<Option<Outcome>, JobError> {
        if self.started || self.req.dry_run || self.delete.is_empty() {
            return Ok(None);
        }
        self.started = true;
        let mut params = Map::new();
        params.insert(
            "retentionCheckEnabled".into(),
            Value::Bool(self.req.enforce_retention),
        );
        params.insert(
            "specifiedRetentionMillis".into(),
            Value::from(self.retention_ms),
        );
        params.insert(
            "defaultRetentionMillis".into(),
            Value::from(self.snapshot.properties.deleted_file_retention_ms),
        );
        let mut txn = Txn::new(&self.ctx.job_id, "VACUUM START", params);
        txn.metric("numFilesToDelete", self.delete.len());
        txn.metric("sizeOfDataToDelete", self.bytes());
        let summary = format!("{} file(s) to delete", self.delete.len());
        Ok(Some(Outcome::commit(txn, self.target(), summary)))
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        if self.req.dry_run || self.delete.is_empty() {
            return Ok(Vec::new());
        }
        let table = DmlOp::table_spec(&self.table_url, &self.snapshot);
        let tasks: Vec<Task> = self
            .delete
            .chunks(PATHS_PER_TASK)
            .map(|chunk| Task {
                table: table.clone(),
                input: Input::Objects {
                    paths: chunk.iter().map(|o| o.path.clone()).collect(),
                },
                transforms: Vec::new(),
                sink: Sink::DeleteObjects,
            })
            .collect();
        let note = format!(
            "{} file(s), {} bytes, older than the {}-hour retention",
            self.delete.len(),
            self.bytes(),
            self.retention_ms as f64 / 3_600_000.0
        );
        Ok(vec![StagePlan::new("vacuum", tasks).with_note(note)])
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        self.deleted += result
            .outputs
            .iter()
            .map(|o| o.metrics.files_deleted)
            .sum::<u64>();
        Ok(Vec::new())
    }

    fn finish(self: Box<Self>, _elapsed: Duration) -> Result<Outcome, JobError> {
        if self.req.dry_run || self.delete.is_empty() {
            let rows: Vec<Vec<Value>> = self
                .delete
                .iter()
                .map(|o| vec![Value::from(o.path.clone()), Value::from(o.size)])
                .collect();
            let summary = if self.delete.is_empty() {
                "nothing to delete; nothing committed".to_string()
            } else {
                format!(
                    "dry run: {} file(s), {} bytes would be deleted",
                    self.delete.len(),
                    self.bytes()
                )
            };
            return Ok(Outcome::Rows {
                summary,
                result: QueryResult {
                    columns: vec!["path".into(), "size".into()],
                    rows,
                },
            });
        }
        let mut params = Map::new();
        params.insert("status".into(), Value::from("COMPLETED"));
        let mut txn = Txn::new(&self.ctx.job_id, "VACUUM END", params);
        txn.metric("numDeletedFiles", self.deleted);
        txn.metric("numVacuumedDirectories", self.dirs);
        let summary = format!(
            "{} file(s), {} bytes deleted (retention {} hours)",
            self.deleted,
            self.bytes(),
            self.retention_ms as f64 / 3_600_000.0
        );
        Ok(Outcome::commit(txn, self.target(), summary))
    }
}
