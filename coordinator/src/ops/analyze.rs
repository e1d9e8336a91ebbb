//! ANALYZE TABLE … COMPUTE DELTA STATISTICS: every file's statistics recomputed from its
//! rows on the executors (after `delta.dataSkippingNumIndexedCols` /
//! `delta.dataSkippingStatsColumns` change, or for files written without statistics) and
//! committed as `add`s of the same files with the new stats and `dataChange = false` (a
//! later `add` of a path replaces the earlier one). With `FOR COLUMNS`, only those columns'
//! statistics are recomputed and merged into the files' existing ones; they must be among
//! the columns the table's settings keep statistics for (readers ignore the others). Files with deletion
//! vectors keep their statistics: their stats describe every physical row, which the rows
//! read back (deleted ones skipped) cannot give.

use std::time::Duration;

use serde_json::{Map, Value};
use silt_common::request::AnalyzeRequest;
use silt_common::table::TableSnapshot;
use silt_common::task::{DataFile, Input, Sink, StatsSpec, Task, TaskOutput};
use silt_common::write::stats::{StatsCollector, data_file_schema};
use url::Url;

use super::dml::DmlOp;
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
};
use crate::plan::binpack;
use crate::txn::Txn;

/// Loads the table and plans.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: AnalyzeRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    snapshot.check_writable()?;
    let slots = executor_slots(ctx).await?;
    Ok(Box::new(plan(
        req,
        table_url,
        snapshot,
        PlanContext { slots, ..plan_ctx },
    )?))
}

/// A planned ANALYZE.
pub struct AnalyzeOp {
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    /// Columns given with `FOR COLUMNS` (as the schema spells them).
    columns: Vec<String>,
    stats: StatsSpec,
    files: Vec<DataFile>,
    skipped_dv: usize,
    outputs: Vec<TaskOutput>,
}

/// Plans an ANALYZE: pure, from the request and the snapshot.
pub fn plan(
    req: AnalyzeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
) -> Result<AnalyzeOp, JobError> {
    let file_schema = data_file_schema(&snapshot.arrow_schema, &snapshot.partition_columns);
    let collected = StatsCollector::try_new(&file_schema, &snapshot.properties.stats)?.columns();
    let mut columns = Vec::new();
    for c in &req.columns {
        let Some(f) = snapshot
            .arrow_schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(c.trim()))
        else {
            return Err(invalid(format!(
                "ANALYZE … FOR COLUMNS: `{c}` is not in the table"
            )));
        };
        if snapshot
            .partition_columns
            .iter()
            .any(|p| p.eq_ignore_ascii_case(f.name()))
        {
            return Err(invalid(format!(
                "ANALYZE … FOR COLUMNS: `{}` is a partition column (files hold no statistics for it)",
                f.name()
            )));
        }
        if !collected.contains(f.name()) {
            return Err(invalid(format!(
                "ANALYZE … FOR COLUMNS: `{}` is not among the columns the table keeps statistics \
                 for (delta.dataSkippingNumIndexedCols / delta.dataSkippingStatsColumns), so \
                 readers would ignore them; change those settings first",
                f.name()
            )));
        }
        columns.push(f.name().clone());
    }
    let mut stats = snapshot.properties.stats.clone();
    if !columns.is_empty() {
        stats.stats_columns = Some(columns.clone());
    }
    let (files, with_dv): (Vec<_>, Vec<_>) = snapshot
        .files
        .iter()
        .map(|f| f.file.clone())
        .partition(|f| f.deletion_vector.is_none());
    Ok(AnalyzeOp {
        table_url,
        ctx,
        columns,
        stats,
        files,
        skipped_dv: with_dv.len(),
        outputs: Vec::new(),
        snapshot,
    })
}

/// `new` stats JSON with `old`'s entries for the columns `new` does not have.
fn merge_stats(old: Option<&str>, new: &str) -> String {
    let (Some(old), Ok(mut new_v)) = (
        old.and_then(|o| serde_json::from_str::<Value>(o).ok()),
        serde_json::from_str::<Value>(new),
    ) else {
        return new.to_string();
    };
    for key in ["minValues", "maxValues", "nullCount"] {
        let Some(old_map) = old.get(key).and_then(Value::as_object) else {
            continue;
        };
        let merged = new_v
            .as_object_mut()
            .map(|o| o.entry(key).or_insert_with(|| Value::Object(Map::new())));
        if let Some(Value::Object(m)) = merged {
            for (k, v) in old_map {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    new_v.to_string()
}

impl Operation for AnalyzeOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        if self.files.is_empty() {
            return Ok(Vec::new());
        }
        let table = DmlOp::table_spec(&self.table_url, &self.snapshot);
        let total: u64 = self
            .files
            .iter()
            .map(|f| u64::try_from(f.size_bytes).unwrap_or(0))
            .sum();
        let per_task = binpack::task_bytes(total, self.ctx.slots);
        let mut tasks = Vec::new();
        let mut ordinal = 0u32;
        for group in binpack::consecutive(
            self.files.clone(),
            |f| u64::try_from(f.size_bytes).unwrap_or(0),
            per_task,
        ) {
            let n = group.len() as u32;
            tasks.push(Task {
                table: table.clone(),
                input: Input::TableFiles {
                    files: group,
                    touch: None,
                    row_ids: Some(ordinal),
                },
                transforms: Vec::new(),
                sink: Sink::FileStats(self.stats.clone()),
            });
            ordinal += n;
        }
        let note = format!("statistics of {} file(s)", self.files.len());
        Ok(vec![StagePlan::new("analyze", tasks).with_note(note)])
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        self.outputs.extend(result.outputs);
        Ok(Vec::new())
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        let mut adds: Vec<DataFile> = self.outputs.into_iter().flat_map(|o| o.adds).collect();
        if adds.is_empty() {
            return Ok(Outcome::Nothing {
                summary: format!(
                    "no file to analyze ({} with deletion vectors left as they are); nothing committed",
                    self.skipped_dv
                ),
                metrics: Default::default(),
            });
        }
        if !self.columns.is_empty() {
            let before: std::collections::HashMap<&str, Option<&str>> = self
                .files
                .iter()
                .map(|f| (f.path.as_str(), f.stats_json.as_deref()))
                .collect();
            for a in &mut adds {
                if let Some(new) = &a.stats_json {
                    let old = before.get(a.path.as_str()).copied().flatten();
                    a.stats_json = Some(merge_stats(old, new));
                }
            }
        }
        let mut params = Map::new();
        params.insert(
            "columns".into(),
            Value::String(serde_json::to_string(&self.columns).unwrap_or_default()),
        );
        let mut txn = Txn::new(&self.ctx.job_id, "COMPUTE STATS", params);
        txn.add_files(adds.iter(), false);
        txn.read_files(self.files.iter().map(|f| f.path.as_str()));
        txn.metric("numFilesAnalyzed", adds.len());
        txn.metric("numFilesSkipped", self.skipped_dv);
        txn.metric("executionTimeMs", elapsed.as_millis());
        let summary = format!(
            "statistics of {} file(s) recomputed{}{}",
            adds.len(),
            if self.columns.is_empty() {
                String::new()
            } else {
                format!(" for {}", self.columns.join(", "))
            },
            if self.skipped_dv > 0 {
                format!(
                    "; {} file(s) with deletion vectors left as they are",
                    self.skipped_dv
                )
            } else {
                String::new()
            }
        );
        Ok(Outcome::commit(
            txn,
            CommitTarget::on(&self.snapshot, self.snapshot.properties.clone()),
            summary,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_column_stats_merge_into_the_old_ones() {
        let old = r#"{"numRecords":3,"minValues":{"a":1,"b":"x"},"maxValues":{"a":9,"b":"z"},"nullCount":{"a":0,"b":1}}"#;
        let new =
            r#"{"numRecords":3,"minValues":{"b":"w"},"maxValues":{"b":"y"},"nullCount":{"b":0}}"#;
        let merged: Value = serde_json::from_str(&merge_stats(Some(old), new)).unwrap();
        assert_eq!(merged["minValues"]["a"], 1);
        assert_eq!(merged["minValues"]["b"], "w");
        assert_eq!(merged["maxValues"]["b"], "y");
        assert_eq!(merged["nullCount"]["b"], 0);
        assert_eq!(merged["nullCount"]["a"], 0);
        assert_eq!(merge_stats(None, new), new);
    }
}
