//! What DELETE and UPDATE share: the table and its condition, the files the condition
//! touches, the rewrite stage (copy-on-write: files holding a matching row are rewritten;
//! with deletion vectors: matching rows are marked, and a second stage writes the vectors),
//! and the commit bookkeeping (removes, adds, read set, Delta's common metrics).

use std::collections::HashMap;
use std::time::Duration;

use silt_common::expr::Predicate;
use silt_common::table::{ActiveFile, TableSnapshot};
use silt_common::task::{DataFile, FileSpec, TableSpec, Task, TaskMetrics, TaskOutput};
use url::Url;

use super::write::DEFAULT_TARGET_FILE_SIZE;
use crate::commit::ReadRegion;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult,
};
use crate::plan::dv::{self, DV_STAGE, DvCounts};
use crate::plan::rewrite::FileSelection;
use crate::txn::{Txn, predicate_parameter};

/// Name of the stage that rewrites touched files.
pub const REWRITE_STAGE: &str = "rewrite";

/// Which DML statement a [`DmlOp`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    Delete,
    Update,
}

/// A planned DELETE or UPDATE and its progress.
pub struct DmlOp {
    pub kind: DmlKind,
    pub table_url: Url,
    pub snapshot: TableSnapshot,
    pub predicate: Option<Predicate>,
    pub selection: FileSelection,
    pub tasks: Vec<Task>,
    pub ctx: PlanContext,
    pub outputs: Vec<TaskOutput>,
    /// Deletion vectors: the files whose rows tasks mark, by ordinal (empty: copy-on-write).
    pub marked_files: Vec<DataFile>,
    /// Outputs of the stage writing deletion vectors.
    pub dv_outputs: Vec<TaskOutput>,
    /// Rows the marking tasks marked deleted.
    pub marked_rows: u64,
    /// Wall time of the rewrite stage.
    pub rewrite_elapsed: Duration,
}

impl DmlOp {
    /// A planned statement, before any stage ran.
    pub fn new(
        kind: DmlKind,
        table_url: Url,
        snapshot: TableSnapshot,
        predicate: Option<Predicate>,
        selection: FileSelection,
        tasks: Vec<Task>,
        ctx: PlanContext,
    ) -> Self {
        Self {
            kind,
            table_url,
            snapshot,
            predicate,
            selection,
            tasks,
            ctx,
            outputs: Vec::new(),
            marked_files: Vec::new(),
            dv_outputs: Vec::new(),
            marked_rows: 0,
            rewrite_elapsed: Duration::ZERO,
        }
    }

    /// The same, with `files` (by ordinal) the ones whose rows tasks mark in deletion vectors.
    pub fn marking(mut self, files: Vec<DataFile>) -> Self {
        self.marked_files = files;
        self
    }

    /// The one-line outcome: `what` happened to rows, then the files given a new deletion
    /// vector (`vectors`), and those removed (`removed`, the vectors' files included) and
    /// added.
    pub fn summary(what: &str, removed: usize, vectors: usize, m: &TaskMetrics) -> String {
        let marked = if vectors > 0 {
            format!("{vectors} file(s) with a new deletion vector, ")
        } else {
            String::new()
        };
        format!(
            "{what}; {marked}{} file(s) removed, {} added, {} row(s) copied",
            removed.saturating_sub(vectors),
            m.files_written,
            m.rows_copied
        )
    }

    /// Files given a new deletion vector by this statement.
    pub fn vectors_written(&self) -> usize {
        self.dv_outputs.iter().map(|o| o.adds.len()).sum()
    }

    /// The statement's transaction: Delta's operation name and `predicate` parameter.
    pub fn transaction(&self) -> Txn {
        let operation = match self.kind {
            DmlKind::Delete => "DELETE",
            DmlKind::Update => "UPDATE",
        };
        let mut params = serde_json::Map::new();
        params.insert(
            "predicate".into(),
            predicate_parameter(self.predicate.as_ref().map(|p| p.sql())),
        );
        Txn::new(&self.ctx.job_id, operation, params)
    }

    /// The commit of a filled transaction.
    pub fn commit(&self, txn: Txn, summary: String) -> Outcome {
        Outcome::commit(
            txn,
            CommitTarget::on(&self.snapshot, self.snapshot.properties.clone()),
            summary,
        )
    }

    /// The table as tasks carry it.
    pub fn table_spec(table_url: &Url, snapshot: &TableSnapshot) -> TableSpec {
        TableSpec {
            uri: table_url.to_string(),
            schema_json: snapshot.schema_json.clone(),
            partition_columns: snapshot.partition_columns.clone(),
        }
    }

    /// How rewritten files are written: the table's target size, statistics settings and
    /// checks (CHECK constraints, invariants).
    pub fn files_out(snapshot: &TableSnapshot, ctx: &PlanContext) -> FileSpec {
        FileSpec {
            target_file_size_bytes: snapshot
                .properties
                .target_file_size_bytes
                .unwrap_or(DEFAULT_TARGET_FILE_SIZE),
            stats: snapshot.properties.stats.clone(),
            file_prefix: ctx.file_prefix(),
            sort_by: None,
            checks: snapshot.checks(),
            iso_timestamp_partitions: snapshot.iso_timestamp_partitions(),
            change_data: snapshot.properties.change_data_feed,
        }
    }

    /// Counters of every task (rewriting, marking, writing vectors), added up.
    pub fn task_metrics(&self) -> TaskMetrics {
        TaskMetrics::total(
            self.outputs
                .iter()
                .chain(&self.dv_outputs)
                .map(|o| &o.metrics),
        )
    }

    /// The active files the rewrite tasks read in full (they held a touched row).
    pub fn rewritten_files(&self) -> Vec<ActiveFile> {
        let by_path: HashMap<&str, &ActiveFile> = self
            .snapshot
            .files
            .iter()
            .map(|f| (f.file.path.as_str(), f))
            .collect();
        self.outputs
            .iter()
            .chain(&self.dv_outputs)
            .flat_map(|o| &o.removes)
            .filter_map(|f| by_path.get(f.path.as_str()).map(|a| (*a).clone()))
            .collect()
    }

    /// Fills the transaction with the adds, the removes and what was read, and the metrics
    /// DELETE and UPDATE share. `removed` are the files the commit removes.
    pub fn fill(&self, txn: &mut Txn, removed: &[ActiveFile], elapsed: Duration) {
        let adds: Vec<_> = self
            .outputs
            .iter()
            .chain(&self.dv_outputs)
            .flat_map(|o| &o.adds)
            .collect();
        txn.add_files(adds.iter().copied(), true);
        txn.remove_files(removed, true);
        txn.read_region(ReadRegion::of_condition(
            self.predicate.as_ref(),
            &self.snapshot,
        ));
        txn.read_files(
            self.selection
                .whole
                .iter()
                .chain(&self.selection.candidates)
                .map(|f| f.file.path.as_str()),
        );
        let (written, gone) = DvCounts::files(&adds, removed);
        txn.metric("numAddedFiles", written.len());
        txn.metric("numRemovedFiles", gone.len());
        txn.metric(
            "numAddedBytes",
            written.iter().map(|a| a.size_bytes.max(0)).sum::<i64>(),
        );
        txn.metric(
            "numRemovedBytes",
            gone.iter().map(|r| r.file.size_bytes.max(0)).sum::<i64>(),
        );
        txn.add_change_files(
            "numAddedChangeFiles",
            self.outputs
                .iter()
                .chain(&self.dv_outputs)
                .flat_map(|o| &o.cdc_files),
        );
        DvCounts::of(&adds, removed).record(txn, "");
        // Scan: until the touched files were known (planning plus the tasks' scan passes);
        // rewrite: the rest of the rewrite stage.
        let scan_in_tasks = self
            .outputs
            .iter()
            .map(|o| o.metrics.scan_ms)
            .max()
            .unwrap_or(0);
        let rewrite_ms = (self.rewrite_elapsed.as_millis() as u64).saturating_sub(scan_in_tasks);
        let total_ms = elapsed.as_millis() as u64;
        txn.metric("executionTimeMs", total_ms);
        txn.metric("scanTimeMs", total_ms.saturating_sub(rewrite_ms));
        txn.metric("rewriteTimeMs", rewrite_ms);
    }
}

impl Operation for DmlOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        Ok(if self.tasks.is_empty() {
            Vec::new()
        } else {
            vec![StagePlan::new(REWRITE_STAGE, self.tasks.clone())]
        })
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        self.rewrite_elapsed += result.elapsed;
        if result.name == DV_STAGE {
            self.dv_outputs.extend(result.outputs);
            return Ok(Vec::new());
        }
        self.outputs.extend(result.outputs);
        if self.marked_files.is_empty() {
            return Ok(Vec::new());
        }
        let marked = dv::gather(&self.outputs)?;
        self.marked_rows = marked.values().map(|r| r.len()).sum();
        dv::stage(
            &Self::table_spec(&self.table_url, &self.snapshot),
            &self.marked_files,
            marked,
            &Self::files_out(&self.snapshot, &self.ctx),
            self.ctx.slots,
        )
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        match self.kind {
            DmlKind::Delete => super::delete::finish(*self, elapsed),
            DmlKind::Update => super::update::finish(*self, elapsed),
        }
    }
}
