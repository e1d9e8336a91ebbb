//! VACUUM, pure: which objects under a table root may be deleted.
//!
//! Kept: every file of the current version (data files and their deletion vectors); every
//! file removed within the retention (a *tombstone* younger than the cutoff: readers of the
//! versions within the retention still need it); hidden paths (`_delta_log/…`, anything
//! starting with `_` or `.` at the root, except partition directories); files of jobs still
//! in flight on this cluster; and any file not referenced by the log whose last
//! modification is within the retention (a concurrent writer's uncommitted output).
//! Deleted: files removed before the cutoff, and unreferenced files older than it — what
//! Delta Spark's VACUUM deletes (and delta-rs's `vacuum(full=True)`). A deletion vector file
//! no current file references became unreferenced when the file it belonged to was removed,
//! at a time the log's tombstones do not tie to it (they name data files): it counts as
//! removed at the latest tombstone's time, so it outlives every version within the
//! retention that may still read it.
//!
//! Used by VACUUM (`ops/vacuum.rs`).

use std::collections::{HashMap, HashSet};

/// An object listed under the table root.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Relative to the table root, not URL-encoded (as the object store names it).
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// What the log says about files.
#[derive(Debug, Clone, Default)]
pub struct LogFiles {
    /// Decoded relative paths of the current version's files (and their DV files).
    pub active: HashSet<String>,
    /// Decoded relative paths of removed files, with their deletion timestamps.
    pub tombstones: HashMap<String, i64>,
}

/// Objects to delete, in listing order, given the retention cutoff (`now − retention`).
pub fn to_delete(
    objects: &[Object],
    log: &LogFiles,
    partition_columns: &[String],
    cutoff_ms: i64,
    in_flight_prefixes: &[String],
) -> Vec<Object> {
    objects
        .iter()
        .filter(|o| {
            if log.active.contains(&o.path) || is_hidden(&o.path, partition_columns) {
                return false;
            }
            if in_flight_prefixes
                .iter()
                .any(|p| silt_common::cleanup::is_named(&o.path, p))
            {
                return false;
            }
            match log.tombstones.get(&o.path) {
                // Removed: kept while a version within the retention still has it.
                Some(&deleted_at) => deleted_at < cutoff_ms,
                None if is_deletion_vector(&o.path) => {
                    let latest_removal = log.tombstones.values().copied().max().unwrap_or(0);
                    o.modified_ms.max(latest_removal) < cutoff_ms
                }
                // Never referenced (or its removal is no longer in the log): by its age.
                None => o.modified_ms < cutoff_ms,
            }
        })
        .cloned()
        .collect()
}

/// Whether a path names a deletion vector file (`deletion_vector_<uuid>.bin`).
fn is_deletion_vector(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("deletion_vector_") && name.ends_with(".bin")
}

/// Whether VACUUM leaves a path alone whatever the log says: the log itself and other
/// names starting with `_` or `.` at the root, except partition directories (`col=…`) and
/// change data (`_change_data`).
pub fn is_hidden(path: &str, partition_columns: &[String]) -> bool {
    let first = path.split('/').next().unwrap_or(path);
    (first.starts_with('_') || first.starts_with('.'))
        && first != "_change_data"
        && !partition_columns.iter().any(|c| {
            first
                .strip_prefix(c.as_str())
                .is_some_and(|r| r.starts_with('='))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, modified_ms: i64) -> Object {
        Object {
            path: path.into(),
            size: 10,
            modified_ms,
        }
    }

    #[test]
    fn keeps_what_versions_within_the_retention_need() {
        let objects = vec![
            obj("_delta_log/00000000000000000000.json", 0),
            obj("a.parquet", 0),                    // active
            obj("b.parquet", 0),                    // removed long ago
            obj("c.parquet", 0),                    // removed recently
            obj("orphan-old.parquet", 0),           // never referenced, old
            obj("orphan-new.parquet", 950),         // never referenced, recent
            obj("k=1/d.parquet", 0),                // partition directory: not hidden
            obj("_k=1/e.parquet", 0),               // partition column `_k`
            obj(".hidden/x", 0),                    // hidden
            obj("part-jrun-s0-t0-a0-0.parquet", 0), // an in-flight job's
            obj("deletion_vector_1.bin", 0),        // the DV of an active file
        ];
        let log = LogFiles {
            active: ["a.parquet", "deletion_vector_1.bin"]
                .into_iter()
                .map(String::from)
                .collect(),
            tombstones: HashMap::from([("b.parquet".into(), 100), ("c.parquet".into(), 950)]),
        };
        let parts = vec!["_k".to_string()];
        let del: Vec<String> = to_delete(&objects, &log, &parts, 900, &["part-jrun-".into()])
            .into_iter()
            .map(|o| o.path)
            .collect();
        assert_eq!(
            del,
            vec![
                "b.parquet",
                "orphan-old.parquet",
                "k=1/d.parquet",
                "_k=1/e.parquet"
            ]
        );
        // Retention zero (cutoff now): everything unreferenced goes.
        let del = to_delete(&objects, &log, &parts, 1_000, &[]);
        assert_eq!(del.len(), 7);
    }

    #[test]
    fn replaced_deletion_vectors_outlive_the_latest_removal() {
        // An old vector file, replaced by a recent commit (its data file's removal at 950
        // carries it; the log ties the tombstone to the data file only).
        let objects = vec![
            obj("a.parquet", 0),
            obj("p-dv/deletion_vector_old.bin", 0),
            obj("p2-dv/deletion_vector_new.bin", 940),
        ];
        let mut log = LogFiles {
            active: ["a.parquet", "p2-dv/deletion_vector_new.bin"]
                .into_iter()
                .map(String::from)
                .collect(),
            tombstones: HashMap::from([("a.parquet".into(), 950)]),
        };
        let del = |log: &LogFiles, cutoff| -> Vec<String> {
            to_delete(&objects, log, &[], cutoff, &[])
                .into_iter()
                .map(|o| o.path)
                .collect()
        };
        assert!(
            del(&log, 900).is_empty(),
            "a version within the retention reads it"
        );
        assert_eq!(del(&log, 960), vec!["p-dv/deletion_vector_old.bin"]);
        // Without recent removals, by its age.
        log.tombstones.clear();
        assert_eq!(del(&log, 900), vec!["p-dv/deletion_vector_old.bin"]);
    }
}
