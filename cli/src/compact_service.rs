//! `silt compact-service`: keeps the Delta tables under some roots compacted. Each pass
//! discovers the tables (directories holding a `_delta_log/`), ranks them by the small
//! files a compaction would rewrite (then by their bytes), and, a bounded number of tables
//! at a time, runs OPTIMIZE (with `ZORDER BY` when the table names its clustering columns
//! in `silt.zorderBy`, incremental: only files no clustering run wrote) and VACUUM (the
//! table's own retention), as jobs on the cluster. A table changed concurrently is skipped
//! until the next pass. One line per table says what happened.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use silt_common::cluster::Curve;
use silt_common::request::{JobRequest, OptimizeRequest, VacuumRequest};
use silt_common::storage::{parse_location, store_for};
use silt_common::table::load_table;
use silt_coordinator::ops::optimize::DEFAULT_OPTIMIZE_TARGET;
use silt_coordinator::plan::clustering::clustered_by;
use silt_coordinator::plan::compaction::{CompactionConfig, plan_bins};
use silt_proto::pb;
use url::Url;

use crate::Session;

/// Table property naming the columns the service clusters a table by (comma separated).
pub const ZORDER_PROPERTY: &str = "silt.zorderBy";
/// Table property naming the curve (`zorder` or `hilbert`; default zorder).
pub const CURVE_PROPERTY: &str = "silt.zorderCurve";
/// Directory levels searched below a root.
const MAX_DEPTH: usize = 8;

/// What the service does each pass.
pub struct ServiceConfig {
    pub roots: Vec<String>,
    pub interval: Duration,
    pub max_concurrent_tables: usize,
    pub once: bool,
}

/// A table and what a pass would do to it.
struct Candidate {
    uri: String,
    /// Files a compaction would rewrite (or unclustered files, for clustered tables).
    files: usize,
    bytes: u64,
    zorder: Option<(Vec<String>, Curve)>,
}

/// Runs passes until `--once` is done or the process is stopped.
pub async fn run(session: &Session<'_>, cfg: &ServiceConfig) -> Result<i32> {
    loop {
        let mut tables = Vec::new();
        for root in &cfg.roots {
            tables.extend(discover(root).await?);
        }
        let mut candidates = Vec::new();
        for uri in tables {
            match rank(&uri).await {
                Ok(c) => candidates.push(c),
                Err(e) => println!("{uri}: skipped: cannot read the table: {e:#}"),
            }
        }
        // Most small files first, then most bytes.
        candidates.sort_by(|a, b| b.files.cmp(&a.files).then(b.bytes.cmp(&a.bytes)));
        println!(
            "compact-service: {} table(s) under {}",
            candidates.len(),
            cfg.roots.join(", ")
        );
        let lines: Vec<String> = futures::stream::iter(candidates)
            .map(|c| maintain(session, c))
            .buffer_unordered(cfg.max_concurrent_tables.max(1))
            .collect()
            .await;
        for l in lines {
            println!("{l}");
        }
        if cfg.once {
            return Ok(0);
        }
        tokio::time::sleep(cfg.interval).await;
    }
}

/// The Delta tables under `root`: directories with a `_delta_log/`, not searched further.
async fn discover(root: &str) -> Result<Vec<String>> {
    let url = parse_location(root).map_err(|e| anyhow!("--root {root}: {e}"))?;
    let (store, base) = store_for(&url).map_err(|e| anyhow!("--root {root}: {e}"))?;
    let mut found = Vec::new();
    let mut dirs = vec![(base.clone(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let listing = store
            .list_with_delimiter(Some(&dir))
            .await
            .with_context(|| format!("cannot list {dir} under {root}"))?;
        let is_table = listing
            .common_prefixes
            .iter()
            .any(|p| p.filename() == Some("_delta_log"));
        if is_table {
            found.push(table_url(&url, &base, &dir));
            continue;
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for p in listing.common_prefixes {
            let name = p.filename().unwrap_or_default();
            if !name.starts_with('_') && !name.starts_with('.') {
                dirs.push((p.clone(), depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The URL of a table directory found below `root_url` (whose store path is `base`).
fn table_url(
    root_url: &Url,
    base: &object_store::path::Path,
    dir: &object_store::path::Path,
) -> String {
    let rel: Vec<String> = dir
        .prefix_match(base)
        .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
        .unwrap_or_default();
    let mut url = root_url.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
        for r in &rel {
            segs.push(&silt_common::table::decode_path(r));
        }
    }
    url.to_string()
}

/// What a pass would do to the table at `uri`.
async fn rank(uri: &str) -> Result<Candidate> {
    let url = parse_location(uri).map_err(|e| anyhow!("{e}"))?;
    let snapshot = load_table(&url)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("no Delta table"))?;
    let zorder = snapshot
        .configuration
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(ZORDER_PROPERTY))
        .map(|(_, v)| {
            v.split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|cols| !cols.is_empty());
    let curve = snapshot
        .configuration
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(CURVE_PROPERTY))
        .map(|(_, v)| Curve::parse(v))
        .transpose()
        .map_err(|e| anyhow!("{CURVE_PROPERTY}: {e}"))?
        .unwrap_or_default();
    let (files, bytes) = match &zorder {
        Some(cols) => {
            let unclustered: Vec<_> = snapshot
                .files
                .iter()
                .filter(|f| !clustered_by(f, cols, curve))
                .collect();
            (
                unclustered.len(),
                unclustered
                    .iter()
                    .map(|f| u64::try_from(f.file.size_bytes).unwrap_or(0))
                    .sum(),
            )
        }
        None => {
            let target = snapshot
                .properties
                .target_file_size_bytes
                .unwrap_or(DEFAULT_OPTIMIZE_TARGET);
            let bins = plan_bins(&snapshot.files, &CompactionConfig::for_target(target));
            (
                bins.iter().map(|b| b.files.len()).sum(),
                bins.iter().map(|b| b.bytes()).sum(),
            )
        }
    };
    Ok(Candidate {
        uri: uri.to_string(),
        files,
        bytes,
        zorder: zorder.map(|c| (c, curve)),
    })
}

/// OPTIMIZE (when there is something to do) and VACUUM of one table; its report line.
async fn maintain(session: &Session<'_>, c: Candidate) -> String {
    let mut parts = Vec::new();
    if c.files == 0 {
        parts.push("nothing to compact".to_string());
    } else {
        let (zorder_by, curve) = c.zorder.clone().unwrap_or_default();
        let req = JobRequest::Optimize(OptimizeRequest {
            table_uri: c.uri.clone(),
            zorder_by,
            curve,
            ..Default::default()
        });
        parts.push(match session.execute(&req, false).await {
            Ok(r) if r.state == pb::JobState::Succeeded as i32 => r.summary,
            Ok(r) if r.error.contains("concurrent modification") => {
                format!("skipped: changed concurrently ({})", r.error)
            }
            Ok(r) => format!("OPTIMIZE failed: {}", r.error),
            Err(e) => format!("OPTIMIZE failed: {e:#}"),
        });
    }
    // Whether VACUUM ran and found nothing to delete.
    let mut vacuum_idle = false;
    let vacuum = JobRequest::Vacuum(VacuumRequest {
        table_uri: c.uri.clone(),
        retain_hours: None,
        dry_run: false,
        enforce_retention: true,
    });
    parts.push(match session.execute(&vacuum, false).await {
        Ok(r) if r.state == pb::JobState::Succeeded as i32 => match r.version {
            Some(_) => format!("vacuum: {}", r.summary),
            None => {
                vacuum_idle = true;
                "nothing to vacuum".to_string()
            }
        },
        Ok(r) => format!("VACUUM failed: {}", r.error),
        Err(e) => format!("VACUUM failed: {e:#}"),
    });
    if c.files == 0 && vacuum_idle {
        format!("{}: nothing to do", c.uri)
    } else {
        format!("{}: {}", c.uri, parts.join("; "))
    }
}
