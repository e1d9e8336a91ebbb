//! Table operations. Each is a small type implementing [`Operation`]: an async `prepare`
//! gathers what it plans on (the table snapshot, a source listing), then a pure planner turns
//! `(snapshot, request, config)` into stages, and `finish` fills the transaction. The
//! lifecycle around them (stages, retries, cancellation, cleanup, the commit) is the
//! driver's ([`crate::driver`]).
//!
//! Where a new operation goes: a module here with `prepare` and its `Operation`, one arm in
//! [`prepare`], its request type in `silt_common::request`, its wire message in `silt.proto`
//! (converted in `silt-proto`), and its statement in `silt_common::sql`.

pub mod analyze;
pub mod auto_compact;
pub mod delete;
pub mod describe;
pub mod dml;
pub mod merge;
pub mod optimize;
pub mod properties;
pub mod update;
pub mod vacuum;
pub mod write;

use std::time::Duration;

use silt_common::request::JobRequest;
use silt_common::storage::parse_location;
use silt_common::table::{TableSnapshot, load_table};
use url::Url;

use crate::JobContext;
use crate::driver::{JobError, Operation, PlanContext, invalid};

/// Prepares the operation a request asks for.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: JobRequest,
) -> Result<Box<dyn Operation>, JobError> {
    match req {
        JobRequest::Write(r) => write::prepare(ctx, plan_ctx, r).await,
        JobRequest::Delete(r) => delete::prepare(ctx, plan_ctx, r).await,
        JobRequest::Update(r) => update::prepare(ctx, plan_ctx, r).await,
        JobRequest::AlterTable(r) => properties::prepare(plan_ctx, r).await,
        JobRequest::Describe(r) => describe::prepare(r).await,
        JobRequest::Merge(r) => merge::prepare(ctx, plan_ctx, r).await,
        JobRequest::Optimize(r) => optimize::prepare(ctx, plan_ctx, r).await,
        JobRequest::Vacuum(r) => vacuum::prepare(ctx, plan_ctx, r).await,
        JobRequest::Analyze(r) => analyze::prepare(ctx, plan_ctx, r).await,
    }
}

/// The OPTIMIZE auto compaction runs after a commit at `version` of the table at `uri`,
/// if any (`auto_compact`).
pub async fn auto_compact_request(
    uri: &str,
    version: i64,
) -> Result<Option<silt_common::request::OptimizeRequest>, JobError> {
    // Most tables do not ask for it: their properties alone say so, without replaying
    // every file's entry of the log after each commit.
    let url = parse_location(uri)?;
    if !silt_common::table::load_properties(&url, version)
        .await?
        .auto_compact
    {
        return Ok(None);
    }
    let (_, snapshot) = existing_table(uri).await?;
    let v = u64::try_from(version).map_err(|_| invalid(format!("bad version {version}")))?;
    let Some(bytes) = snapshot.table.log_store().read_commit_entry(v).await? else {
        return Ok(None);
    };
    let touched = auto_compact::touched_partitions(&String::from_utf8_lossy(&bytes));
    Ok(auto_compact::request_after(uri, &snapshot, &touched))
}

/// Waits (bounded) for executors and returns their total task slots; no executor at all is
/// an error.
pub async fn executor_slots(ctx: &JobContext) -> Result<u32, JobError> {
    let executors = ctx
        .scheduler
        .wait_for_executors(
            ctx.min_executors,
            Duration::from_millis(ctx.executor_wait_ms),
        )
        .await;
    if executors == 0 {
        return Err(invalid("no executors are registered with the coordinator"));
    }
    // Shortly after a failover the executors come back one by one: plan with them all.
    if let Some(until) = ctx.settle_until.get()
        && tokio::time::Instant::now() < *until
    {
        let quiet = Duration::from_millis(ctx.scheduler.config().heartbeat_interval_ms);
        ctx.scheduler
            .wait_for_executors_to_settle(quiet, *until)
            .await;
    }
    Ok(ctx.scheduler.capacity().1.max(1))
}

/// Loads an existing table for an operation that modifies it: unknown tables and tables
/// silt cannot write are errors naming them.
pub async fn existing_table(uri: &str) -> Result<(Url, TableSnapshot), JobError> {
    let url = parse_location(uri)?;
    let snapshot = load_table(&url)
        .await?
        .ok_or_else(|| invalid(format!("table not found: no Delta table at {uri}")))?;
    Ok((url, snapshot))
}

/// A column name as a SQL identifier that resolves to exactly that column.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
