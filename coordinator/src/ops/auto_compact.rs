//! Auto compaction (`delta.autoOptimize.autoCompact = true`), as Delta's post-commit hook:
//! after a job that changed data commits, if the partitions it wrote to hold at least
//! `minNumFiles` small files (below half of the 128 MiB auto-compaction target), an
//! OPTIMIZE of those partitions runs as a job of its own. It never fails the job that
//! triggered it: its outcome is reported alongside.

use std::collections::{BTreeMap, BTreeSet};

use silt_common::request::{JobRequest, OptimizeRequest};
use silt_common::table::TableSnapshot;

use super::quote_ident;
use crate::plan::compaction::CompactionConfig;

/// Delta's auto compaction target file size.
pub const AUTO_COMPACT_TARGET: u64 = 128 << 20;
/// Delta's default minimum number of small files before auto compaction runs.
pub const DEFAULT_MIN_NUM_FILES: usize = 50;
/// Table property overriding [`DEFAULT_MIN_NUM_FILES`] (Delta has it as a session setting,
/// `spark.databricks.delta.autoCompact.minNumFiles`).
pub const MIN_NUM_FILES_PROPERTY: &str = "silt.autoCompact.minNumFiles";

type Partition = BTreeMap<String, Option<String>>;

/// Whether a job of this kind can trigger auto compaction (it changes data).
pub fn triggers(req: &JobRequest) -> bool {
    matches!(
        req,
        JobRequest::Write(_) | JobRequest::Merge(_) | JobRequest::Delete(_) | JobRequest::Update(_)
    )
}

/// The OPTIMIZE to run after a commit that wrote to `touched` partitions, if the table
/// asks for auto compaction and those partitions hold enough small files. Pure.
pub fn request_after(
    table_uri: &str,
    snapshot: &TableSnapshot,
    touched: &BTreeSet<Vec<(String, Option<String>)>>,
) -> Option<OptimizeRequest> {
    if !snapshot.properties.auto_compact || touched.is_empty() {
        return None;
    }
    let min_num_files = snapshot
        .configuration
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(MIN_NUM_FILES_PROPERTY))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MIN_NUM_FILES);
    let small = CompactionConfig::for_target(AUTO_COMPACT_TARGET).min_file_size;
    let count = snapshot
        .files
        .iter()
        .filter(|f| u64::try_from(f.file.size_bytes).unwrap_or(0) < small)
        .filter(|f| {
            let key: Vec<_> = f.file.partition_values.clone().into_iter().collect();
            touched.contains(&key)
        })
        .count();
    if count < min_num_files.max(1) {
        return None;
    }
    let partitions: Vec<Partition> = touched
        .iter()
        .map(|p| p.iter().cloned().collect())
        .collect();
    Some(OptimizeRequest {
        table_uri: table_uri.to_string(),
        predicate: partition_predicate(&snapshot.partition_columns, &partitions),
        target_size: Some(AUTO_COMPACT_TARGET),
        ..Default::default()
    })
}

/// SQL selecting exactly `partitions` (`None` for an unpartitioned table).
pub fn partition_predicate(columns: &[String], partitions: &[Partition]) -> Option<String> {
    if columns.is_empty() {
        return None;
    }
    let literal = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let term = |c: &str, v: &Option<String>| match v {
        Some(v) if !v.is_empty() => format!("{} = {}", quote_ident(c), literal(v)),
        _ => format!("{} IS NULL", quote_ident(c)),
    };
    let disjuncts: Vec<String> = partitions
        .iter()
        .map(|p| {
            let conj: Vec<String> = columns
                .iter()
                .map(|c| term(c, p.get(c).unwrap_or(&None)))
                .collect();
            format!("({})", conj.join(" AND "))
        })
        .collect();
    Some(disjuncts.join(" OR "))
}

/// The partitions a commit's `add` actions (its log file's lines) wrote to.
pub fn touched_partitions(commit: &str) -> BTreeSet<Vec<(String, Option<String>)>> {
    commit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|a| a.get("add").cloned())
        .map(|add| {
            add.get("partitionValues")
                .and_then(|p| p.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .map(|mut p| {
            p.sort();
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::snapshot;

    #[test]
    fn enough_small_files_in_touched_partitions_trigger_an_optimize_of_them() {
        let mut snap = snapshot(&[("1", None), ("1", None), ("2", None), ("2", None)]);
        let touched: BTreeSet<_> = [vec![("p".to_string(), Some("1".to_string()))]]
            .into_iter()
            .collect();
        assert!(
            request_after("file:///t", &snap, &touched).is_none(),
            "not enabled"
        );
        snap.properties.auto_compact = true;
        assert!(
            request_after("file:///t", &snap, &touched).is_none(),
            "2 < 50 files"
        );
        snap.configuration
            .insert(MIN_NUM_FILES_PROPERTY.into(), "2".into());
        let req = request_after("file:///t", &snap, &touched).unwrap();
        assert_eq!(req.predicate.as_deref(), Some("(\"p\" = '1')"));
        assert_eq!(req.target_size, Some(AUTO_COMPACT_TARGET));
        snap.configuration
            .insert(MIN_NUM_FILES_PROPERTY.into(), "3".into());
        assert!(
            request_after("file:///t", &snap, &touched).is_none(),
            "2 < 3 in p=1"
        );
    }

    #[test]
    fn partitions_of_a_commit_and_their_predicate() {
        let commit = r#"{"add":{"path":"a","partitionValues":{"p":"1","q":null}}}
{"add":{"path":"b","partitionValues":{"q":"x'y","p":"2"}}}
{"remove":{"path":"c","partitionValues":{"p":"3"}}}
{"commitInfo":{}}"#;
        let t = touched_partitions(commit);
        assert_eq!(t.len(), 2);
        let parts: Vec<Partition> = t.iter().map(|p| p.iter().cloned().collect()).collect();
        assert_eq!(
            partition_predicate(&["p".into(), "q".into()], &parts).unwrap(),
            "(\"p\" = '1' AND \"q\" IS NULL) OR (\"p\" = '2' AND \"q\" = 'x''y')"
        );
        assert_eq!(partition_predicate(&[], &parts), None);
    }
}
