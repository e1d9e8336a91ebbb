//! OPTIMIZE: bin-packing compaction, or multi-dimensional clustering with `ZORDER BY`.
//!
//! Compaction rewrites the small files of each partition selected by a partition predicate
//! together into files near the target size. Clustering samples the clustering columns,
//! derives the curve's bounds, and sorts each partition's unclustered files along the curve:
//! a small partition in one task, a large one through a range exchange so that every
//! executor takes a stretch of the curve; the files it writes are tagged so that later runs
//! leave them alone. Both write with `dataChange = false`; a table with nothing to do gets no
//! commit.
//!
//! The work is made of independent *units* (a compaction bin, a clustered partition), each
//! committed whole or not at all. Commits are at snapshot isolation, as Delta's OPTIMIZE
//! does, and depend only on the files rewritten: concurrent appends and changes to other
//! files never fail it; when a concurrent DELETE/UPDATE/MERGE removed files some units
//! rewrote, the driver commits the other units and the rest is left for the next run. With
//! a maximum commit interval the units run in batches, one after another, and what is done
//! is committed between batches once the interval has passed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::Schema;
use futures::{StreamExt, TryStreamExt};
use serde_json::Map;
use silt_common::cluster::CurveSpec;
use silt_common::expr::Predicate;
use silt_common::request::OptimizeRequest;
use silt_common::source::read_split_sampled;
use silt_common::table::prune::point_reads;
use silt_common::table::{ActiveFile, IsolationLevel, TableSnapshot, file_split};
use silt_common::task::{DataFile, FileSpec, Input, MapOutputRef, RangeRoute, Route, Sink, Task};
use silt_common::write::stats::{StatsCollector, data_file_schema};
use url::Url;

use super::dml::DmlOp;
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
};
use crate::plan::binpack;
use crate::plan::clustering::{self, ClusterPlan, Sample};
use crate::plan::compaction::{CompactionConfig, plan_bins};
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
    if snapshot.clustering.is_some() {
        // Delta Spark refuses it too: a clustered table is clustered by its own columns.
        return Err(invalid(format!(
            "the table uses liquid clustering (clustered by {:?}): ZORDER BY is not allowed on it; OPTIMIZE without ZORDER BY compacts it; nothing was changed",
            snapshot.clustering_columns()?
        )));
    }
    let work = ClusterWork::of(&req, &snapshot)?;
    let to_sample = clustering::files_to_sample(
        &work.groups,
        work.scope.target,
        clustering::MAX_SAMPLED_FILES,
    );
    let sample = read_sample(&table_url, &snapshot, &to_sample, &work.columns).await?;
    Ok(Box::new(plan_clustering(
        req, table_url, snapshot, plan_ctx, work, &sample,
    )?))
}

/// What OPTIMIZE does.
/// One independent part of an OPTIMIZE: files rewritten together, committed together.
#[derive(Debug, Clone)]
struct Unit {
    files: Vec<ActiveFile>,
    how: How,
    /// The files its tasks wrote (once they have run).
    adds: Vec<DataFile>,
    bytes_spilled: u64,
    done: bool,
    committed: bool,
}

#[derive(Debug, Clone)]
enum How {
    /// A compaction bin: one task.
    Bin,
    /// A partition sorted along the curve by one task.
    Sort,
    /// A partition range-exchanged to `reducers` tasks (exchange partitions from `offset`).
    Exchange {
        reducers: u32,
        splits: Vec<u64>,
        offset: u32,
    },
}

impl Unit {
    fn new(files: Vec<ActiveFile>, how: How) -> Self {
        Self {
            files,
            how,
            adds: Vec::new(),
            bytes_spilled: 0,
            done: false,
            committed: false,
        }
    }

    fn bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| u64::try_from(f.file.size_bytes).unwrap_or(0))
            .sum()
    }

    fn tasks(&self) -> usize {
        match &self.how {
            How::Exchange { reducers, .. } => *reducers as usize,
            How::Bin | How::Sort => 1,
        }
    }
}

/// Clustering's parameters.
#[derive(Debug, Clone)]
struct Clustering {
    curve: CurveSpec,
    /// Exchange partitions of all exchanged partitions.
    partitions: u32,
    skipped: usize,
    /// Values of each clustering column the quality report probes.
    probes: Vec<ArrayRef>,
}

/// A planned OPTIMIZE.
pub struct OptimizeOp {
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    predicate: Option<Predicate>,
    target: u64,
    clustering: Option<Clustering>,
    units: Vec<Unit>,
    /// Units by batch (in order); batches run one after another when commits are batched.
    batches: Vec<Vec<usize>>,
    next_batch: usize,
    /// Commit after a batch once this long has passed since the last commit.
    max_commit_interval: Option<Duration>,
    /// The units each running stage's tasks serve, in task order.
    stage_units: HashMap<String, Vec<usize>>,
    considered: usize,
    commits: usize,
    /// `REORG … APPLY (PURGE)`.
    purge: bool,
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
    let file_schema = data_file_schema(schema, &snapshot.partition_columns);
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
    // Each file's read is a task of its own: decoding is CPU work, and polled together in
    // one stream the files would decode one after another on one thread. The parts are
    // taken in the files' order, so the sample (and the plan) does not depend on timing.
    let read = futures::stream::iter(files.iter().cloned())
        .map(|f| {
            let schema = schema.clone();
            let table_url = table_url.clone();
            tokio::spawn(async move {
                let split = file_split(&table_url, &f.file)?;
                let rows = f.file.num_records.max(0) as usize;
                let stride = rows.div_ceil(clustering::SAMPLE_ROWS_PER_FILE).max(1) as u64;
                let stream = read_split_sampled(&split, schema.clone(), 64 * 1024, stride).await?;
                let kept: Vec<RecordBatch> = stream.try_collect().await?;
                let key: Vec<_> = f.file.partition_values.clone().into_iter().collect();
                Ok::<_, silt_common::Error>((key, kept))
            })
        })
        .buffered(8)
        .map(|joined| {
            joined
                .map_err(|e| silt_common::Error::internal(format!("a sample read failed: {e}")))?
        });
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
    let files: Vec<ActiveFile> = if req.purge {
        // REORG … APPLY (PURGE): the files with deleted rows, packed up to the target.
        cfg = CompactionConfig::purge(scope.target);
        scope
            .files
            .iter()
            .filter(|f| f.file.deletion_vector.is_some())
            .cloned()
            .collect()
    } else {
        scope.files.clone()
    };
    let units = plan_bins(&files, &cfg)
        .into_iter()
        .map(|b| Unit::new(b.files, How::Bin))
        .collect();
    Ok(OptimizeOp::new(
        req, table_url, snapshot, ctx, scope, units, None,
    ))
}

/// What a clustering run works on, from the request and the snapshot (pure): the files it
/// considers, the clustering columns, and the groups of files to cluster.
pub struct ClusterWork {
    scope: Scope,
    columns: Vec<String>,
    groups: Vec<clustering::Group>,
    /// Files left alone as already clustered.
    skipped: usize,
}

impl ClusterWork {
    pub fn of(req: &OptimizeRequest, snapshot: &TableSnapshot) -> Result<Self, JobError> {
        let scope = Scope::of(req, snapshot)?;
        let columns = clustering_columns(req, snapshot)?;
        let (groups, skipped) = clustering::groups(&scope.files, &columns, req.curve, req.full);
        Ok(Self {
            scope,
            columns,
            groups,
            skipped,
        })
    }
}

/// Plans clustering: pure, from the request, the snapshot, what it works on and the sample
/// of its groups.
pub fn plan_clustering(
    req: OptimizeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    work: ClusterWork,
    sample: &Sample,
) -> Result<OptimizeOp, JobError> {
    let ClusterWork {
        scope,
        columns,
        groups,
        skipped,
    } = work;
    let ClusterPlan {
        curve,
        groups,
        partitions,
    } = clustering::plan(groups, &columns, req.curve, sample, scope.target)?;
    let units = groups
        .into_iter()
        .map(|g| {
            let how = if g.reducers <= 1 {
                How::Sort
            } else {
                How::Exchange {
                    reducers: g.reducers,
                    splits: g.splits,
                    offset: g.offset,
                }
            };
            Unit::new(g.group.files, how)
        })
        .collect();
    let clustering = Clustering {
        curve,
        partitions,
        skipped,
        probes: probe_values(sample, columns.len()),
    };
    Ok(OptimizeOp::new(
        req,
        table_url,
        snapshot,
        ctx,
        scope,
        units,
        Some(clustering),
    ))
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
    fn new(
        req: OptimizeRequest,
        table_url: Url,
        snapshot: TableSnapshot,
        ctx: PlanContext,
        scope: Scope,
        units: Vec<Unit>,
        clustering: Option<Clustering>,
    ) -> Self {
        let max_commit_interval = req.max_commit_interval_ms.map(Duration::from_millis);
        // Batched: about four tasks per slot per batch, so that each batch keeps every
        // executor busy and a commit follows every few minutes of work at most.
        let per_batch = match max_commit_interval {
            Some(_) => 4 * ctx.slots.max(1) as usize,
            None => usize::MAX,
        };
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut tasks = 0usize;
        for (i, u) in units.iter().enumerate() {
            match batches.last_mut() {
                Some(b) if tasks + u.tasks() <= per_batch || b.is_empty() => {
                    tasks += u.tasks();
                    b.push(i);
                }
                _ => {
                    tasks = u.tasks();
                    batches.push(vec![i]);
                }
            }
        }
        Self {
            table_url,
            considered: scope.files.len(),
            snapshot,
            ctx,
            predicate: scope.predicate,
            target: scope.target,
            clustering,
            units,
            batches,
            next_batch: 0,
            max_commit_interval,
            stage_units: HashMap::new(),
            commits: 0,
            purge: req.purge,
        }
    }

    fn files_out(&self, sort_by: Option<CurveSpec>) -> FileSpec {
        FileSpec {
            // Bins and reducers are sized by the compressed bytes they read, so each writes
            // one file of about the target size; the writer rolls by its uncompressed
            // estimate, which runs well above the compressed size, so it only rolls a
            // task's file far past the target (a skewed stretch of the curve).
            target_file_size_bytes: self.target.saturating_mul(4),
            sort_by,
            // Rows are only moved: they satisfied the table's checks when written.
            checks: Vec::new(),
            // Rows are only moved: no change to record.
            change_data: false,
            ..DmlOp::files_out(&self.snapshot, &self.ctx)
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

    /// The stages of the next batch (none when every batch has run).
    fn next_stages(&mut self) -> Vec<StagePlan> {
        let Some(batch) = self.batches.get(self.next_batch).cloned() else {
            return Vec::new();
        };
        self.next_batch += 1;
        let b = self.next_batch;
        let mut stages = Vec::new();
        match &self.clustering {
            None => {
                let sink = Sink::DataFiles(self.files_out(None));
                let tasks: Vec<Task> = batch
                    .iter()
                    .map(|&u| self.read_task(&self.units[u].files, sink.clone()))
                    .collect();
                let note = format!(
                    "{} bin(s) of {} file(s){}",
                    tasks.len(),
                    self.considered,
                    self.batch_note()
                );
                let name = format!("compact-{b}");
                self.stage_units.insert(name.clone(), batch);
                stages.push(StagePlan::new(&name, tasks).with_note(note));
            }
            Some(c) => {
                let sorted = Sink::DataFiles(self.files_out(Some(c.curve.clone())));
                let local: Vec<usize> = batch
                    .iter()
                    .copied()
                    .filter(|&u| matches!(self.units[u].how, How::Sort))
                    .collect();
                let exchanged: Vec<usize> = batch
                    .iter()
                    .copied()
                    .filter(|&u| matches!(self.units[u].how, How::Exchange { .. }))
                    .collect();
                if !local.is_empty() {
                    let tasks: Vec<Task> = local
                        .iter()
                        .map(|&u| self.read_task(&self.units[u].files, sorted.clone()))
                        .collect();
                    let note = format!(
                        "{} partition(s) sorted along the {} curve by one task each{}",
                        local.len(),
                        c.curve.curve.name(),
                        self.batch_note()
                    );
                    let name = format!("cluster-{b}");
                    self.stage_units.insert(name.clone(), local);
                    stages.push(StagePlan::new(&name, tasks).with_note(note));
                }
                if !exchanged.is_empty() {
                    let map_bytes: u64 = exchanged.iter().map(|&u| self.units[u].bytes()).sum();
                    let tasks = binpack::task_count(map_bytes, self.ctx.slots);
                    let mut maps = Vec::new();
                    let mut reducers = 0;
                    for &u in &exchanged {
                        let How::Exchange {
                            reducers: r,
                            splits,
                            offset,
                        } = &self.units[u].how
                        else {
                            continue;
                        };
                        reducers += r;
                        let sink = Sink::Exchange {
                            route: Route::Range(RangeRoute {
                                curve: c.curve.clone(),
                                splits: splits.clone(),
                                offset: *offset,
                            }),
                            partitions: c.partitions,
                        };
                        // The unit's share of the map tasks, balanced by bytes.
                        let share = (tasks as u64 * self.units[u].bytes())
                            .div_ceil(map_bytes.max(1))
                            .max(1) as usize;
                        for files in binpack::balanced(
                            self.units[u].files.clone(),
                            |f| u64::try_from(f.file.size_bytes).unwrap_or(0),
                            share,
                        ) {
                            maps.push(self.read_task(&files, sink.clone()));
                        }
                    }
                    let note = format!(
                        "{} partition(s) ({map_bytes} bytes) range-exchanged into {reducers} \
                         stretch(es) of the {} curve{}",
                        exchanged.len(),
                        c.curve.curve.name(),
                        self.batch_note()
                    );
                    let name = format!("cluster-map-{b}");
                    self.stage_units.insert(name.clone(), exchanged);
                    stages.push(StagePlan::new(&name, maps).with_note(note));
                }
            }
        }
        stages
    }

    fn batch_note(&self) -> String {
        if self.batches.len() > 1 {
            format!(" (batch {} of {})", self.next_batch, self.batches.len())
        } else {
            String::new()
        }
    }

    /// The reduce stage of an exchanged batch whose maps finished.
    fn reduce_stage(&mut self, map_stage: &str, result: &StageResult) -> Vec<StagePlan> {
        let Some(c) = &self.clustering else {
            return Vec::new();
        };
        let map_outputs: Vec<MapOutputRef> = result
            .outputs
            .iter()
            .filter_map(|o| o.exchange_output.as_ref().map(|m| m.location.clone()))
            .collect();
        let sorted = Sink::DataFiles(self.files_out(Some(c.curve.clone())));
        let table = DmlOp::table_spec(&self.table_url, &self.snapshot);
        let mut reducers: Vec<(u32, usize)> = Vec::new();
        for &u in self.stage_units.get(map_stage).into_iter().flatten() {
            if let How::Exchange {
                reducers: n,
                offset,
                ..
            } = &self.units[u].how
            {
                reducers.extend((*offset..offset + n).map(|partition| (partition, u)));
            }
        }
        // Largest first (the bytes the maps wrote for each), so that no large reducer
        // starts last and leaves the other slots idle at the end of the stage.
        let bytes_of = |partition: u32| -> u64 {
            result
                .outputs
                .iter()
                .filter_map(|o| o.exchange_output.as_ref())
                .filter_map(|m| m.partition_bytes.get(partition as usize))
                .sum()
        };
        reducers.sort_by_key(|&(partition, _)| std::cmp::Reverse(bytes_of(partition)));
        let mut tasks = Vec::with_capacity(reducers.len());
        let mut served = Vec::with_capacity(reducers.len());
        for (partition, u) in reducers {
            tasks.push(Task {
                table: table.clone(),
                input: Input::Exchange {
                    map_outputs: map_outputs.clone(),
                    partition,
                },
                transforms: Vec::new(),
                sink: sorted.clone(),
            });
            served.push(u);
        }
        let name = map_stage.replacen("cluster-map", "cluster-reduce", 1);
        self.stage_units.insert(name.clone(), served);
        vec![StagePlan::new(&name, tasks)]
    }

    /// Records a stage's outputs against its units; a unit is done when every stage of
    /// its batch that serves it finished.
    fn record(&mut self, result: StageResult) {
        let Some(units) = self.stage_units.remove(&result.name) else {
            return;
        };
        let exchange_map = result.name.starts_with("cluster-map");
        for (u, out) in units.iter().zip(result.outputs) {
            if exchange_map {
                continue;
            }
            let unit = &mut self.units[*u];
            unit.adds.extend(out.adds);
            unit.bytes_spilled += out.metrics.bytes_spilled;
        }
        if !exchange_map {
            for u in units {
                self.units[u].done = true;
            }
        }
    }

    /// The commit of the done, uncommitted units, without those touching `excluded` files.
    fn commit_of(&self, excluded: &HashSet<String>, elapsed: Duration) -> Option<(Txn, String)> {
        let units: Vec<&Unit> = self
            .units
            .iter()
            .filter(|u| u.done && !u.committed)
            .filter(|u| {
                !u.files
                    .iter()
                    .any(|f| excluded.contains(&silt_common::table::decode_path(&f.file.path)))
            })
            .collect();
        if units.is_empty() {
            return None;
        }
        let removed: Vec<&ActiveFile> = units.iter().flat_map(|u| &u.files).collect();
        let adds: Vec<&DataFile> = units.iter().flat_map(|u| &u.adds).collect();
        let mut params = Map::new();
        params.insert(
            "predicate".into(),
            predicate_parameter(self.predicate.as_ref().map(|p| p.sql())),
        );
        let columns: Vec<String> = self
            .clustering
            .as_ref()
            .map(|c| c.curve.columns.clone())
            .unwrap_or_default();
        params.insert(
            "zOrderBy".into(),
            serde_json::Value::String(serde_json::to_string(&columns).unwrap_or_default()),
        );
        let operation = if self.purge {
            // Spark's REORG: its predicate and `applyPurge` (no clustering parameters).
            params.remove("zOrderBy");
            params.insert("applyPurge".into(), serde_json::Value::Bool(true));
            "REORG"
        } else {
            "OPTIMIZE"
        };
        let mut txn = Txn::new(&self.ctx.job_id, operation, params);
        txn.add_files(adds.iter().copied(), false);
        txn.remove_files(removed.iter().copied(), false);
        // OPTIMIZE depends on exactly the files it rewrites: a concurrent change to any
        // other file leaves its result right.
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
        txn.metric("numBatches", self.next_batch.max(1));
        txn.metric("totalConsideredFiles", self.considered);
        txn.metric(
            "totalFilesSkipped",
            self.considered
                .saturating_sub(self.units.iter().map(|u| u.files.len()).sum()),
        );
        txn.metric(
            "numDeletionVectorsRemoved",
            removed
                .iter()
                .filter(|f| f.file.deletion_vector.is_some())
                .count(),
        );
        txn.metric(
            "numBytesSpilled",
            units.iter().map(|u| u.bytes_spilled).sum::<u64>(),
        );
        txn.metric("executionTimeMs", elapsed.as_millis());
        let left_out = self.units.iter().filter(|u| u.done && !u.committed).count() - units.len();
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
        if left_out > 0 {
            summary.push_str(&format!(
                "; {left_out} part(s) left out: a concurrent commit removed their files"
            ));
        }
        if let Some(c) = &self.clustering {
            txn.tag_adds(clustering::tags(
                &self.ctx.job_id,
                &c.curve.columns,
                c.curve.curve,
            ));
            let gone: HashSet<&str> = removed.iter().map(|f| f.file.path.as_str()).collect();
            let quality = self.quality(&c.curve.columns, &c.probes, &gone, &adds);
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
                c.curve.curve.name(),
                shown.join(", ")
            ));
        }
        Some((txn, summary))
    }

    /// Commits the done units (an interim or the final commit).
    fn commit_outcome(self: Box<Self>, elapsed: Duration) -> Outcome {
        let Some((txn, summary)) = self.commit_of(&HashSet::new(), elapsed) else {
            return Outcome::Nothing {
                summary: String::new(),
                metrics: Default::default(),
            };
        };
        // Delta's OPTIMIZE commits at snapshot isolation: appends never conflict with it.
        let mut properties = self.snapshot.properties.clone();
        properties.isolation_level = IsolationLevel::SnapshotIsolation;
        let target = CommitTarget::on(&self.snapshot, properties);
        Outcome::Commit {
            txn: Box::new(txn),
            target,
            summary,
            replan: Some(Box::new(move |excluded| {
                Ok(self
                    .commit_of(excluded, elapsed)
                    .map(|(t, s)| (Box::new(t), s)))
            })),
        }
    }

    /// The files a random point predicate on each clustering column reads, as a fraction
    /// of the table's files after the commit (mean over the probes).
    fn quality(
        &self,
        columns: &[String],
        probes: &[ArrayRef],
        removed: &HashSet<&str>,
        adds: &[&DataFile],
    ) -> Vec<(String, f64)> {
        let files: Vec<&DataFile> = self
            .snapshot
            .files
            .iter()
            .map(|f| &f.file)
            .filter(|f| !removed.contains(f.path.as_str()))
            .chain(adds.iter().copied())
            .collect();
        let mut out = Vec::new();
        for (column, values) in columns.iter().zip(probes) {
            if files.is_empty() || values.is_empty() {
                continue;
            }
            let Ok(reads) = point_reads(
                column,
                values,
                &self.snapshot.arrow_schema,
                &self.snapshot.partition_columns,
                &files,
            ) else {
                continue;
            };
            if !reads.is_empty() {
                let read: usize = reads.iter().sum();
                out.push((
                    column.clone(),
                    read as f64 / (reads.len() * files.len()) as f64,
                ));
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
        Ok(self.next_stages())
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        let mut next = Vec::new();
        if result.name.starts_with("cluster-map") {
            next = self.reduce_stage(&result.name.clone(), &result);
        }
        self.record(result);
        // The batch is over when none of its stages remain: then the next batch starts.
        if next.is_empty() && self.stage_units.is_empty() {
            next = self.next_stages();
        }
        Ok(next)
    }

    fn interim_commit(&mut self, since_last_commit: Duration) -> Result<Option<Outcome>, JobError> {
        let Some(interval) = self.max_commit_interval else {
            return Ok(None);
        };
        // Once every stage has run, the final commit (finish) takes what is left.
        let all_run = self.next_batch >= self.batches.len() && self.stage_units.is_empty();
        if since_last_commit < interval || all_run {
            return Ok(None);
        }
        let Some((txn, summary)) = self.commit_of(&HashSet::new(), since_last_commit) else {
            return Ok(None);
        };
        for u in self.units.iter_mut().filter(|u| u.done && !u.committed) {
            u.committed = true;
        }
        self.commits += 1;
        let mut properties = self.snapshot.properties.clone();
        properties.isolation_level = IsolationLevel::SnapshotIsolation;
        Ok(Some(Outcome::commit(
            txn,
            CommitTarget::on(&self.snapshot, properties),
            format!(
                "interim commit after {} of {} batch(es): {summary}",
                self.next_batch - 1,
                self.batches.len()
            ),
        )))
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        if self.units.iter().all(|u| u.committed) {
            let summary = match &self.clustering {
                _ if self.commits > 0 => format!("all {} batch(es) committed", self.commits),
                None => format!(
                    "nothing to compact ({} file(s) considered); nothing committed",
                    self.considered
                ),
                Some(c) => format!(
                    "nothing to cluster ({} file(s) considered, {} already clustered by \
                     these columns); nothing committed",
                    self.considered, c.skipped
                ),
            };
            return Ok(Outcome::Nothing {
                summary,
                metrics: Default::default(),
            });
        }
        Ok(self.commit_outcome(elapsed))
    }
}
