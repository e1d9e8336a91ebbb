//! OPTIMIZE: bin-packing compaction, or multi-dimensional clustering with `ZORDER BY`.
//!
//! Compaction rewrites the small files of each partition selected by a partition predicate
//! together into files near the target size. Clustering samples the clustering columns,
//! derives the curve's bounds, and sorts each partition's unclustered files along the curve:
//! a small partition in one task, a large one through a range exchange so that every
//! executor takes a stretch of the curve; the files it writes are tagged so that later runs
//! leave them alone. Both write with `dataChange = false`; a table with nothing to do gets no
//! commit. Commits at snapshot isolation, as Delta's OPTIMIZE does: concurrent appends never
//! fail it; a concurrent removal of a file it rewrote does.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::Schema;
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use serde_json::Map;
use silt_common::cluster::CurveSpec;
use silt_common::expr::Predicate;
use silt_common::request::OptimizeRequest;
use silt_common::source::read_split;
use silt_common::table::prune::{Verdict, classify};
use silt_common::table::{ActiveFile, IsolationLevel, TableSnapshot, file_split};
use silt_common::task::{
    DataFile, FileSpec, Input, MapOutputRef, RangeRoute, Route, Sink, Task, TaskOutput,
};
use silt_common::write::stats::StatsCollector;
use url::Url;

use super::dml::DmlOp;
use super::{executor_slots, existing_table, quote_ident};
use crate::JobContext;
use crate::commit::ReadRegion;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
};
use crate::plan::binpack;
use crate::plan::clustering::{self, ClusterPlan, Sample};
use crate::plan::compaction::{Bin, CompactionConfig, plan_bins};
use crate::plan::rewrite;
use crate::txn::{Txn, predicate_parameter};

/// Delta's OPTIMIZE target file size when the table sets none.
pub const DEFAULT_OPTIMIZE_TARGET: u64 = 1 << 30;
/// Random point predicates per clustering column in the quality report.
const QUALITY_PROBES: usize = 100;

/// Loads the table, samples it when clustering, and plans.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: OptimizeRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    snapshot.check_writable()?;
    let slots = executor_slots(ctx).await?;
    let plan_ctx = PlanContext { slots, ..plan_ctx };
    if req.zorder_by.is_empty() {
        return Ok(Box::new(plan(req, table_url, snapshot, plan_ctx)?));
    }
    let scope = Scope::of(&req, &snapshot)?;
    let columns = clustering_columns(&req, &snapshot)?;
    let (groups, _) = clustering::groups(&scope.files, &columns, req.curve, req.full);
    let to_sample =
        clustering::files_to_sample(&groups, scope.target, clustering::MAX_SAMPLED_FILES);
    let sample = read_sample(&table_url, &snapshot, &to_sample, &columns).await?;
    Ok(Box::new(plan_clustering(
        req, table_url, snapshot, plan_ctx, &sample,
    )?))
}

/// What OPTIMIZE does.
enum Work {
    Compact(Vec<Bin>),
    Cluster {
        plan: ClusterPlan,
        skipped: usize,
        /// Values of each clustering column the quality report probes.
        probes: Vec<ArrayRef>,
    },
}

/// A planned OPTIMIZE.
pub struct OptimizeOp {
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    predicate: Option<Predicate>,
    target: u64,
    work: Work,
    considered: usize,
    outputs: Vec<TaskOutput>,
}

/// The files an OPTIMIZE considers and the size it writes.
struct Scope {
    predicate: Option<Predicate>,
    files: Vec<ActiveFile>,
    target: u64,
}

impl Scope {
    fn of(req: &OptimizeRequest, snapshot: &TableSnapshot) -> Result<Scope, JobError> {
        let predicate = req
            .predicate
            .as_deref()
            .map(|p| Predicate::compile(p, &snapshot.arrow_schema))
            .transpose()?;
        if let Some(p) = &predicate
            && !p.only_references(&snapshot.partition_columns)
        {
            let others: Vec<String> = p
                .columns()
                .into_iter()
                .filter(|c| !is_partition_column(snapshot, c))
                .collect();
            return Err(invalid(format!(
                "OPTIMIZE … WHERE may only use partition columns ({}); `{}` is not one",
                if snapshot.partition_columns.is_empty() {
                    "the table has none".to_string()
                } else {
                    snapshot.partition_columns.join(", ")
                },
                others.join("`, `")
            )));
        }
        let selection = rewrite::select_files(snapshot, predicate.as_ref())?;
        let files = selection
            .whole
            .into_iter()
            .chain(selection.candidates)
            .collect();
        let target = req
            .target_size
            .or(snapshot.properties.target_file_size_bytes)
            .unwrap_or(DEFAULT_OPTIMIZE_TARGET);
        if target == 0 {
            return Err(invalid("the target file size must be positive"));
        }
        Ok(Scope {
            predicate,
            files,
            target,
        })
    }
}

fn is_partition_column(snapshot: &TableSnapshot, c: &str) -> bool {
    snapshot
        .partition_columns
        .iter()
        .any(|pc| pc.eq_ignore_ascii_case(c))
}

/// The clustering columns as the schema spells them: each must exist, not be a partition
/// column, and have min/max statistics (else clustering by it could never skip a file).
fn clustering_columns(
    req: &OptimizeRequest,
    snapshot: &TableSnapshot,
) -> Result<Vec<String>, JobError> {
    let schema = &snapshot.arrow_schema;
    let file_schema = Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !is_partition_column(snapshot, f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let with_stats =
        StatsCollector::try_new(&file_schema, &snapshot.properties.stats)?.min_max_columns();
    let mut out: Vec<String> = Vec::new();
    for c in &req.zorder_by {
        let c = c.trim().trim_matches('`').trim_matches('"');
        let Some(field) = schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(c))
        else {
            return Err(invalid(format!(
                "ZORDER BY column `{c}` is not in the table"
            )));
        };
        let name = field.name().clone();
        if is_partition_column(snapshot, &name) {
            return Err(invalid(format!(
                "ZORDER BY column `{name}` is a partition column; partitions are already \
                 apart, cluster by other columns"
            )));
        }
        if !with_stats.contains(&name) {
            return Err(invalid(format!(
                "ZORDER BY column `{name}` has no min/max statistics (see \
                 delta.dataSkippingNumIndexedCols / delta.dataSkippingStatsColumns), so \
                 clustering by it could not skip files"
            )));
        }
        if out.contains(&name) {
            return Err(invalid(format!("ZORDER BY names `{name}` twice")));
        }
        out.push(name);
    }
    Ok(out)
}

/// Reads the clustering columns of `files`, keeping about
/// [`clustering::SAMPLE_ROWS_PER_FILE`] rows of each, evenly spaced.
async fn read_sample(
    table_url: &Url,
    snapshot: &TableSnapshot,
    files: &[ActiveFile],
    columns: &[String],
) -> Result<Sample, JobError> {
    let fields: Vec<_> = columns
        .iter()
        .filter_map(|c| snapshot.arrow_schema.field_with_name(c).ok().cloned())
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let read = futures::stream::iter(files.iter().cloned())
        .map(|f| {
            let schema = schema.clone();
            async move {
                let split = file_split(table_url, &f.file)?;
                let rows = f.file.num_records.max(0) as usize;
                let stride = rows.div_ceil(clustering::SAMPLE_ROWS_PER_FILE).max(1) as u64;
                let mut stream = read_split(&split, schema.clone(), 64 * 1024).await?;
                let mut kept = Vec::new();
                let mut seen = 0u64;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let n = batch.num_rows() as u64;
                    let first = (stride - seen % stride) % stride;
                    let idx = UInt64Array::from_iter_values((first..n).step_by(stride as usize));
                    seen += n;
                    let columns = schema
                        .fields()
                        .iter()
                        .map(|fl| {
                            let col = batch.column_by_name(fl.name()).ok_or_else(|| {
                                silt_common::Error::internal(format!(
                                    "sampled rows lack `{}`",
                                    fl.name()
                                ))
                            })?;
                            Ok(arrow::compute::take(col.as_ref(), &idx, None)?)
                        })
                        .collect::<silt_common::Result<Vec<_>>>()?;
                    kept.push(RecordBatch::try_new(schema.clone(), columns)?);
                }
                let key: Vec<_> = f.file.partition_values.clone().into_iter().collect();
                Ok::<_, silt_common::Error>((key, kept))
            }
        })
        .buffer_unordered(8);
    let parts: Vec<_> = read.try_collect().await?;
    let mut sample = Sample::new();
    for (key, batches) in parts {
        sample.entry(key).or_default().extend(batches);
    }
    Ok(sample)
}

/// Plans a compaction: pure, from the request and the snapshot.
pub fn plan(
    req: OptimizeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
) -> Result<OptimizeOp, JobError> {
    let scope = Scope::of(&req, &snapshot)?;
    let mut cfg = CompactionConfig::for_target(scope.target);
    if let Some(min) = req.min_file_size {
        cfg.min_file_size = min;
    }
    let bins = plan_bins(&scope.files, &cfg);
    Ok(OptimizeOp {
        table_url,
        considered: scope.files.len(),
        snapshot,
        ctx,
        predicate: scope.predicate,
        target: scope.target,
        work: Work::Compact(bins),
        outputs: Vec::new(),
    })
}

/// Plans clustering: pure, from the request, the snapshot and the sample.
pub fn plan_clustering(
    req: OptimizeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    sample: &Sample,
) -> Result<OptimizeOp, JobError> {
    let scope = Scope::of(&req, &snapshot)?;
    let columns = clustering_columns(&req, &snapshot)?;
    let (groups, skipped) = clustering::groups(&scope.files, &columns, req.curve, req.full);
    let plan = clustering::plan(groups, &columns, req.curve, sample, scope.target)?;
    let probes = probe_values(sample, columns.len());
    Ok(OptimizeOp {
        table_url,
        considered: scope.files.len(),
        snapshot,
        ctx,
        predicate: scope.predicate,
        target: scope.target,
        work: Work::Cluster {
            plan,
            skipped,
            probes,
        },
        outputs: Vec::new(),
    })
}

/// Up to [`QUALITY_PROBES`] non-null sampled values per column, spread over the sample.
fn probe_values(sample: &Sample, columns: usize) -> Vec<ArrayRef> {
    (0..columns)
        .map(|i| {
            let arrays: Vec<ArrayRef> = sample
                .values()
                .flatten()
                .map(|b| b.column(i).clone())
                .collect();
            let refs: Vec<&dyn arrow::array::Array> = arrays.iter().map(|a| a.as_ref()).collect();
            let all = match arrow::compute::concat(&refs) {
                Ok(a) => a,
                Err(_) => {
                    return arrow::array::new_null_array(&arrow::datatypes::DataType::Null, 0);
                }
            };
            let valid: Vec<u64> = (0..all.len() as u64)
                .filter(|&r| all.is_valid(r as usize))
                .collect();
            let n = valid.len().min(QUALITY_PROBES);
            // A fixed odd stride: spread, reproducible, not aligned with the files' order.
            let idx: Vec<u64> = (0..n)
                .map(|k| valid[(k * 7919 + 13) % valid.len()])
                .collect();
            arrow::compute::take(all.as_ref(), &UInt64Array::from(idx), None)
                .unwrap_or_else(|_| arrow::array::new_null_array(all.data_type(), 0))
        })
        .collect()
}

impl OptimizeOp {
    fn files_out(&self, sort_by: Option<CurveSpec>) -> FileSpec {
        FileSpec {
            // Bins and reducers are sized by the compressed bytes they read, so each writes
            // one file of about the target size; the writer rolls by its uncompressed
            // estimate, which runs well above the compressed size, so it only rolls a
            // task's file far past the target (a skewed stretch of the curve).
            target_file_size_bytes: self.target.saturating_mul(4),
            sort_by,
            ..DmlOp::files_out(&self.snapshot, &self.ctx)
        }
    }

    /// The files this OPTIMIZE rewrites.
    fn rewritten(&self) -> Vec<ActiveFile> {
        match &self.work {
            Work::Compact(bins) => bins.iter().flat_map(|b| b.files.clone()).collect(),
            Work::Cluster { plan, .. } => plan
                .groups
                .iter()
                .flat_map(|g| g.group.files.clone())
                .collect(),
        }
    }

    fn read_task(&self, files: &[ActiveFile], sink: Sink) -> Task {
        Task {
            table: DmlOp::table_spec(&self.table_url, &self.snapshot),
            input: Input::TableFiles {
                files: files.iter().map(|f| f.file.clone()).collect(),
                touch: None,
                row_ids: None,
            },
            transforms: Vec::new(),
            sink,
        }
    }

    /// The files a random point predicate on each clustering column reads, as a fraction
    /// of the table's files after the commit (mean over the probes).
    fn quality(
        &self,
        columns: &[String],
        probes: &[ArrayRef],
        adds: &[&DataFile],
    ) -> Vec<(String, f64)> {
        let removed: std::collections::HashSet<String> =
            self.rewritten().into_iter().map(|f| f.file.path).collect();
        let files: Vec<&DataFile> = self
            .snapshot
            .files
            .iter()
            .map(|f| &f.file)
            .filter(|f| !removed.contains(&f.path))
            .chain(adds.iter().copied())
            .collect();
        let mut out = Vec::new();
        for (column, values) in columns.iter().zip(probes) {
            if files.is_empty() || values.is_empty() {
                continue;
            }
            let mut read = 0usize;
            let mut probed = 0usize;
            for i in 0..values.len() {
                let Ok(value) = ScalarValue::try_from_array(values, i) else {
                    continue;
                };
                let Ok(literal) = datafusion::sql::unparser::Unparser::default()
                    .expr_to_sql(&datafusion::prelude::lit(value))
                else {
                    continue;
                };
                let sql = format!("{} = {literal}", quote_ident(column));
                let Ok(p) = Predicate::compile(&sql, &self.snapshot.arrow_schema) else {
                    continue;
                };
                let Ok(verdicts) = classify(
                    &p,
                    &self.snapshot.arrow_schema,
                    &self.snapshot.partition_columns,
                    &files,
                ) else {
                    continue;
                };
                read += verdicts.iter().filter(|v| **v != Verdict::NoMatch).count();
                probed += 1;
            }
            if probed > 0 {
                out.push((column.clone(), read as f64 / (probed * files.len()) as f64));
            }
        }
        out
    }
}

impl Operation for OptimizeOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        match &self.work {
            Work::Compact(bins) => {
                if bins.is_empty() {
                    return Ok(Vec::new());
                }
                let sink = Sink::DataFiles(self.files_out(None));
                let tasks: Vec<Task> = bins
                    .iter()
                    .map(|b| self.read_task(&b.files, sink.clone()))
                    .collect();
                let note = format!("{} bin(s) of {} file(s)", tasks.len(), self.considered);
                Ok(vec![StagePlan::new("compact", tasks).with_note(note)])
            }
            Work::Cluster { plan, .. } => {
                let sorted = Sink::DataFiles(self.files_out(Some(plan.curve.clone())));
                let local: Vec<Task> = plan
                    .groups
                    .iter()
                    .filter(|g| g.reducers <= 1)
                    .map(|g| self.read_task(&g.group.files, sorted.clone()))
                    .collect();
                let exchanged: Vec<_> = plan.groups.iter().filter(|g| g.reducers > 1).collect();
                let map_bytes: u64 = exchanged.iter().map(|g| g.group.bytes()).sum();
                let per_task = binpack::task_bytes(map_bytes, self.ctx.slots);
                let mut maps = Vec::new();
                for g in &exchanged {
                    let sink = Sink::Exchange {
                        route: Route::Range(RangeRoute {
                            curve: plan.curve.clone(),
                            splits: g.splits.clone(),
                            offset: g.offset,
                        }),
                        partitions: plan.partitions,
                    };
                    for files in binpack::consecutive(
                        g.group.files.clone(),
                        |f| u64::try_from(f.file.size_bytes).unwrap_or(0),
                        per_task,
                    ) {
                        maps.push(self.read_task(&files, sink.clone()));
                    }
                }
                let mut stages = Vec::new();
                if !local.is_empty() {
                    let note = format!(
                        "{} partition(s) sorted along the {} curve by one task each",
                        local.len(),
                        plan.curve.curve.name()
                    );
                    stages.push(StagePlan::new("cluster", local).with_note(note));
                }
                if !maps.is_empty() {
                    let note = format!(
                        "{} partition(s) ({} bytes) range-exchanged into {} stretch(es) of \
                         the {} curve",
                        exchanged.len(),
                        map_bytes,
                        plan.partitions,
                        plan.curve.curve.name()
                    );
                    stages.push(StagePlan::new("cluster-map", maps).with_note(note));
                }
                Ok(stages)
            }
        }
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        if result.name != "cluster-map" {
            self.outputs.extend(result.outputs);
            return Ok(Vec::new());
        }
        let Work::Cluster { plan, .. } = &self.work else {
            return Ok(Vec::new());
        };
        let map_outputs: Vec<MapOutputRef> = result
            .outputs
            .iter()
            .filter_map(|o| o.exchange_output.as_ref().map(|m| m.location.clone()))
            .collect();
        let sorted = Sink::DataFiles(self.files_out(Some(plan.curve.clone())));
        let table = DmlOp::table_spec(&self.table_url, &self.snapshot);
        let reduces: Vec<Task> = (0..plan.partitions)
            .map(|partition| Task {
                table: table.clone(),
                input: Input::Exchange {
                    map_outputs: map_outputs.clone(),
                    partition,
                },
                transforms: Vec::new(),
                sink: sorted.clone(),
            })
            .collect();
        Ok(vec![StagePlan::new("cluster-reduce", reduces)])
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        let removed = self.rewritten();
        if removed.is_empty() {
            let summary = match &self.work {
                Work::Compact(_) => format!(
                    "nothing to compact ({} file(s) considered); nothing committed",
                    self.considered
                ),
                Work::Cluster { skipped, .. } => format!(
                    "nothing to cluster ({} file(s) considered, {skipped} already clustered \
                     by these columns); nothing committed",
                    self.considered
                ),
            };
            return Ok(Outcome::Nothing {
                summary,
                metrics: Default::default(),
            });
        }
        let adds: Vec<&DataFile> = self.outputs.iter().flat_map(|o| &o.adds).collect();
        let mut params = Map::new();
        params.insert(
            "predicate".into(),
            predicate_parameter(self.predicate.as_ref().map(|p| p.sql())),
        );
        let columns: Vec<String> = match &self.work {
            Work::Cluster { plan, .. } => plan.curve.columns.clone(),
            Work::Compact(_) => Vec::new(),
        };
        params.insert(
            "zOrderBy".into(),
            serde_json::Value::String(serde_json::to_string(&columns).unwrap_or_default()),
        );
        let mut txn = Txn::new(&self.ctx.job_id, "OPTIMIZE", params);
        txn.add_files(adds.iter().copied(), false);
        txn.remove_files(&removed, false);
        txn.read_region(ReadRegion::of_condition(
            self.predicate.as_ref(),
            &self.snapshot,
        ));
        txn.read_files(removed.iter().map(|f| f.file.path.as_str()));
        let mut sizes: Vec<i64> = adds.iter().map(|a| a.size_bytes.max(0)).collect();
        sizes.sort_unstable();
        let pct = |q: usize| {
            sizes
                .get((sizes.len().saturating_sub(1)) * q / 100)
                .copied()
        };
        let removed_bytes: i64 = removed.iter().map(|f| f.file.size_bytes.max(0)).sum();
        let added_bytes: i64 = sizes.iter().sum();
        txn.metric("numAddedFiles", adds.len());
        txn.metric("numRemovedFiles", removed.len());
        txn.metric("numAddedBytes", added_bytes);
        txn.metric("numRemovedBytes", removed_bytes);
        for (name, q) in [
            ("minFileSize", 0),
            ("p25FileSize", 25),
            ("p50FileSize", 50),
            ("p75FileSize", 75),
            ("maxFileSize", 100),
        ] {
            txn.metric(name, pct(q).unwrap_or(0));
        }
        txn.metric("numBatches", 1);
        txn.metric("totalConsideredFiles", self.considered);
        txn.metric("totalFilesSkipped", self.considered - removed.len());
        txn.metric(
            "numDeletionVectorsRemoved",
            removed
                .iter()
                .filter(|f| f.file.deletion_vector.is_some())
                .count(),
        );
        let spilled: u64 = self.outputs.iter().map(|o| o.metrics.bytes_spilled).sum();
        txn.metric("numBytesSpilled", spilled);
        txn.metric("executionTimeMs", elapsed.as_millis());
        let mut summary = format!(
            "{} file(s) {} into {} ({} -> {} bytes)",
            removed.len(),
            if columns.is_empty() {
                "compacted"
            } else {
                "clustered"
            },
            adds.len(),
            removed_bytes,
            added_bytes
        );
        if let Work::Cluster { plan, probes, .. } = &self.work {
            txn.tag_adds(clustering::tags(
                &self.ctx.job_id,
                &plan.curve.columns,
                plan.curve.curve,
            ));
            let quality = self.quality(&plan.curve.columns, probes, &adds);
            let shown: Vec<String> = quality
                .iter()
                .map(|(c, q)| format!("{c} {:.1}%", q * 100.0))
                .collect();
            for (c, q) in &quality {
                txn.metric(
                    &format!("filesReadPerPointPredicate.{c}"),
                    format!("{q:.4}"),
                );
            }
            summary.push_str(&format!(
                "; along the {} curve; a point predicate reads {} of the files",
                plan.curve.curve.name(),
                shown.join(", ")
            ));
        }
        // Delta's OPTIMIZE commits at snapshot isolation: appends never conflict with it.
        let mut properties = self.snapshot.properties.clone();
        properties.isolation_level = IsolationLevel::SnapshotIsolation;
        Ok(Outcome::Commit {
            txn: Box::new(txn),
            target: CommitTarget::on(&self.snapshot, properties),
            summary,
        })
    }
}
