//! Running a task: rows from its input ([`inputs`]) pass through its transforms
//! ([`transforms`]) into its sink ([`sinks`]). Every operation is a combination of these
//! parts; nothing here is specific to one operation.
//!
//! Memory: inputs stream batch by batch; the data file writer bounds what it buffers
//! (`memory_limit_bytes`), closing its largest open file early when over; a map task buffers
//! at most half of it before cutting blocks, and the executor's shuffle store spills blocks
//! to local disk past its own budget; reducers decode one fetched block at a time. A MERGE
//! task's join and its writer each get half of the limit.

mod dv;
mod inputs;
mod merge;
mod sinks;
mod transforms;

use std::collections::HashSet;
use std::time::Instant;

use silt_common::cleanup;
use silt_common::schema::delta_json_to_arrow;
use silt_common::task::{
    Input, Sink, TaskMetrics, TaskOutput, TaskSpec, attempt_data_prefix, attempt_vector_dir,
};
use silt_common::{Error, Result};
use url::Url;

use crate::faults::{Faults, Hit, Point};
use crate::shuffle::{Fetcher, ShuffleStore};
pub use sinks::TaskLimits;

/// What tasks run with: per-task limits, fault hooks (tests), and the executor's exchange
/// parts (its map output store, its shuffle address, the fetcher of other executors'
/// outputs).
#[derive(Clone)]
pub struct TaskEnv {
    pub limits: TaskLimits,
    pub faults: Faults,
    pub shuffle: ShuffleStore,
    pub shuffle_address: String,
    pub fetcher: Fetcher,
}

/// Rows per batch read from sources (large batches keep conforming and writing cheap).
const SOURCE_BATCH_ROWS: usize = 64 * 1024;
/// Rows per batch read back from table files: a rewrite holds a batch of every column of a
/// file while filtering or updating it, so smaller batches bound its memory.
const TABLE_BATCH_ROWS: usize = 16 * 1024;

/// Runs one task attempt to completion. On failure, whatever the attempt wrote is deleted
/// (best effort) before the error is returned. `faults` are test hooks (none in production).
pub async fn run_task(spec: &TaskSpec, env: &TaskEnv) -> Result<TaskOutput> {
    let started = Instant::now();
    let task = &spec.task;
    let faults = &env.faults;
    if let Hit::Fail(e) | Hit::FailKeepingFiles(e) = faults.at(Point::Start, spec).await {
        return Err(e);
    }
    let schema = delta_json_to_arrow(&task.table.schema_json)?;
    let table_url = parse_url(&task.table.uri)?;
    let pipeline = transforms::Pipeline::compile(&task.transforms, &schema)?;
    let mut sink = sinks::open(spec, &schema, env)?;
    let mut metrics = TaskMetrics::default();
    let drained = inputs::drain(
        spec,
        env,
        &table_url,
        &schema,
        &pipeline,
        &mut sink,
        &mut metrics,
    )
    .await;
    let (removes, report) = match drained {
        Ok(drained) => match faults.at(Point::BeforeClose, spec).await {
            Hit::Continue => drained,
            Hit::Fail(e) | Hit::FailKeepingFiles(e) => {
                sink.abort().await;
                return Err(e);
            }
        },
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    let mut out = sink.finish(metrics).await?;
    match faults.at(Point::AfterClose, spec).await {
        Hit::Continue => {}
        Hit::FailKeepingFiles(e) => return Err(e),
        Hit::Fail(e) => {
            cleanup_attempt(spec, env).await;
            return Err(e);
        }
    }
    // Files whose rows are marked stay (their deletion vectors are written later).
    if !matches!(task.sink, Sink::MarkRows { .. }) {
        out.removes.extend(removes);
    }
    out.identity_values = pipeline.identity_values();
    out.touched_files = report.touched_files;
    out.matched_source_rows = report.matched_source_rows;
    if matches!(task.input, Input::TableFiles { .. }) {
        out.metrics.rows_copied = out
            .metrics
            .rows_written
            .saturating_sub(out.metrics.rows_updated);
    }
    out.metrics.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(out)
}

/// Deletes whatever an attempt wrote (its data files, found by name, or its exchange
/// output), for attempts that were cancelled mid-way and could not clean up themselves.
pub async fn cleanup_attempt(spec: &TaskSpec, env: &TaskEnv) {
    let tag = spec.attempt_tag();
    match &spec.task.sink {
        Sink::DataFiles(files) | Sink::MarkRows { write: Some(files) } => {
            remove_named(
                spec,
                &format!("{}-", attempt_data_prefix(&files.file_prefix, &tag)),
            )
            .await
        }
        Sink::DeletionVectors {
            file_prefix,
            rewrite,
        } => {
            remove_named(spec, &attempt_vector_dir(file_prefix, &tag)).await;
            if let Some(files) = rewrite {
                remove_named(
                    spec,
                    &format!("{}-", attempt_data_prefix(&files.file_prefix, &tag)),
                )
                .await;
            }
        }
        Sink::Exchange { .. } => env.shuffle.remove(&spec.job_id, &tag),
        Sink::DeleteObjects | Sink::FileStats(_) | Sink::MarkRows { write: None } => {}
    }
}

async fn remove_named(spec: &TaskSpec, prefix: &str) {
    if let Ok(table) = parse_url(&spec.task.table.uri) {
        cleanup::remove_files_named(&table, prefix, &HashSet::new()).await;
    }
}

fn parse_url(s: &str) -> Result<Url> {
    Url::parse(s).map_err(|e| Error::invalid(format!("bad URL `{s}`: {e}")))
}
