//! Table properties (`metaData.configuration`) that silt acts on, parsed once and typed.
//! A malformed value of a property silt uses is an error naming the property.

use std::collections::HashMap;

use crate::task::StatsSpec;
use crate::{Error, Result};

/// Checkpoint interval when the table does not set `delta.checkpointInterval` (Delta Spark's).
pub const DEFAULT_CHECKPOINT_INTERVAL: i64 = 10;

/// Delta's isolation levels (`delta.isolationLevel`), strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Every commit's reads and writes are serializable in commit order.
    Serializable,
    /// Writes are serializable; blind appends may be reordered before a DML commit that read
    /// their range (Delta's default).
    WriteSerializable,
    /// Only conflicting writes fail (used for `dataChange = false` rearrangements).
    SnapshotIsolation,
}

impl IsolationLevel {
    /// Name as Delta writes it in `commitInfo.isolationLevel`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Serializable => "Serializable",
            Self::WriteSerializable => "WriteSerializable",
            Self::SnapshotIsolation => "SnapshotIsolation",
        }
    }
}

/// The properties of a table that change how silt reads, writes and commits.
#[derive(Debug, Clone, PartialEq)]
pub struct TableProperties {
    /// `delta.targetFileSize`.
    pub target_file_size_bytes: Option<u64>,
    /// `delta.dataSkippingNumIndexedCols` and `delta.dataSkippingStatsColumns`.
    pub stats: StatsSpec,
    /// `delta.checkpointInterval` (default 10).
    pub checkpoint_interval: i64,
    /// `delta.appendOnly`: removing data is refused.
    pub append_only: bool,
    /// `delta.enableDeletionVectors`.
    pub deletion_vectors: bool,
    /// `delta.autoOptimize.autoCompact`.
    pub auto_compact: bool,
    /// `delta.columnMapping.mode` when not `none`.
    pub column_mapping: Option<String>,
    /// `delta.isolationLevel` (default WriteSerializable).
    pub isolation_level: IsolationLevel,
    /// `delta.enableChangeDataFeed`.
    pub change_data_feed: bool,
    /// `delta.enableRowTracking` (see `super::row_tracking`).
    pub row_tracking: bool,
    /// `delta.enableInCommitTimestamps`: every commit carries a monotonic
    /// `commitInfo.inCommitTimestamp`, `commitInfo` first.
    pub in_commit_timestamps: bool,
    /// `delta.deletedFileRetentionDuration` in milliseconds (default 7 days): how long
    /// removed files stay for readers of older versions (VACUUM keeps them).
    pub deleted_file_retention_ms: i64,
    /// CHECK constraints (`delta.constraints.<name>` = SQL), by name.
    pub constraints: Vec<(String, String)>,
}

/// Delta's default `delta.deletedFileRetentionDuration`: one week.
pub const DEFAULT_DELETED_FILE_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// A Delta interval property (`interval 7 days`, `interval 1 week`, `168 hours`) in
/// milliseconds.
pub fn parse_interval_ms(s: &str) -> Option<i64> {
    let words: Vec<String> = s.split_whitespace().map(str::to_ascii_lowercase).collect();
    let words: Vec<&str> = match words.first().map(String::as_str) {
        Some("interval") => words[1..].iter().map(String::as_str).collect(),
        _ => words.iter().map(String::as_str).collect(),
    };
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return None;
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let n: f64 = pair[0].parse().ok()?;
        let unit_ms: f64 = match pair[1].trim_end_matches('s') {
            "nanosecond" => 1e-6,
            "microsecond" => 1e-3,
            "millisecond" => 1.0,
            "second" => 1e3,
            "minute" => 6e4,
            "hour" => 3.6e6,
            "day" => 8.64e7,
            "week" => 6.048e8,
            _ => return None,
        };
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        total = total.checked_add((n * unit_ms) as i64)?;
    }
    Some(total)
}

impl Default for TableProperties {
    fn default() -> Self {
        Self {
            target_file_size_bytes: None,
            stats: StatsSpec::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            append_only: false,
            deletion_vectors: false,
            auto_compact: false,
            column_mapping: None,
            isolation_level: IsolationLevel::WriteSerializable,
            change_data_feed: false,
            row_tracking: false,
            in_commit_timestamps: false,
            deleted_file_retention_ms: DEFAULT_DELETED_FILE_RETENTION_MS,
            constraints: Vec::new(),
        }
    }
}

fn bad(key: &str, value: &str, expected: &str) -> Error {
    Error::invalid(format!(
        "table property {key} = `{value}` is not {expected}"
    ))
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, value, "true or false")),
    }
}

impl TableProperties {
    /// Parses the properties silt uses out of a table configuration (keys compared
    /// case-insensitively, as Delta Spark does for `delta.` keys).
    pub fn parse(configuration: &HashMap<String, String>) -> Result<Self> {
        let mut p = TableProperties::default();
        for (key, value) in configuration {
            let k = key.to_ascii_lowercase();
            let v = value.trim();
            match k.as_str() {
                "delta.targetfilesize" => {
                    p.target_file_size_bytes = Some(
                        v.parse::<u64>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad(key, value, "a positive number of bytes"))?,
                    );
                }
                "delta.dataskippingnumindexedcols" => {
                    p.stats.num_indexed_cols = v
                        .parse::<i32>()
                        .ok()
                        .filter(|n| *n >= -1)
                        .ok_or_else(|| bad(key, value, "an integer >= -1"))?;
                }
                "delta.dataskippingstatscolumns" => {
                    p.stats.stats_columns = Some(
                        v.split(',')
                            .map(|c| c.trim().trim_matches('`').to_string())
                            .filter(|c| !c.is_empty())
                            .collect(),
                    );
                }
                "delta.checkpointinterval" => {
                    p.checkpoint_interval = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(key, value, "a positive integer"))?;
                }
                "delta.appendonly" => p.append_only = parse_bool(key, value)?,
                "delta.enabledeletionvectors" => p.deletion_vectors = parse_bool(key, value)?,
                "delta.autooptimize.autocompact" => {
                    // Databricks also accepts `auto` and `legacy`, which mean enabled.
                    p.auto_compact = match v.to_ascii_lowercase().as_str() {
                        "auto" | "legacy" => true,
                        _ => parse_bool(key, value)?,
                    };
                }
                "delta.columnmapping.mode" => {
                    let m = v.to_ascii_lowercase();
                    p.column_mapping = match m.as_str() {
                        "none" => None,
                        "name" | "id" => Some(m),
                        _ => return Err(bad(key, value, "none, name or id")),
                    };
                }
                "delta.isolationlevel" => {
                    p.isolation_level = match v.to_ascii_lowercase().as_str() {
                        "serializable" => IsolationLevel::Serializable,
                        "writeserializable" => IsolationLevel::WriteSerializable,
                        _ => return Err(bad(key, value, "Serializable or WriteSerializable")),
                    };
                }
                "delta.enablechangedatafeed" => p.change_data_feed = parse_bool(key, value)?,
                "delta.enablerowtracking" => p.row_tracking = parse_bool(key, value)?,
                "delta.enableincommittimestamps" => {
                    p.in_commit_timestamps = parse_bool(key, value)?
                }
                "delta.deletedfileretentionduration" => {
                    p.deleted_file_retention_ms = parse_interval_ms(v)
                        .ok_or_else(|| bad(key, value, "an interval such as `interval 7 days`"))?;
                }
                _ => {
                    if let Some(name) = k.strip_prefix("delta.constraints.") {
                        p.constraints.push((name.to_string(), value.clone()));
                    }
                }
            }
        }
        p.constraints.sort();
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_delta_writes_them() {
        assert_eq!(parse_interval_ms("interval 7 days"), Some(604_800_000));
        assert_eq!(parse_interval_ms("interval 1 week"), Some(604_800_000));
        assert_eq!(
            parse_interval_ms("INTERVAL 2 hours 30 minutes"),
            Some(9_000_000)
        );
        assert_eq!(parse_interval_ms("1 hour"), Some(3_600_000));
        assert_eq!(parse_interval_ms("interval 0 seconds"), Some(0));
        assert_eq!(parse_interval_ms("interval seven days"), None);
        assert_eq!(parse_interval_ms("interval 7 fortnights"), None);
        let p = TableProperties::parse(&HashMap::from([(
            "delta.deletedFileRetentionDuration".to_string(),
            "interval 1 day".to_string(),
        )]))
        .unwrap();
        assert_eq!(p.deleted_file_retention_ms, 86_400_000);
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<TableProperties> {
        TableProperties::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_values() {
        let p = parse(&[]).unwrap();
        assert_eq!(p, TableProperties::default());
        assert_eq!(p.isolation_level, IsolationLevel::WriteSerializable);
        assert_eq!(p.checkpoint_interval, 10);

        let p = parse(&[
            ("delta.targetFileSize", "1048576"),
            ("delta.dataSkippingNumIndexedCols", "-1"),
            ("delta.dataSkippingStatsColumns", "a, `b c`"),
            ("delta.checkpointInterval", "3"),
            ("delta.appendOnly", "TRUE"),
            ("delta.enableDeletionVectors", "true"),
            ("delta.autoOptimize.autoCompact", "auto"),
            ("delta.columnMapping.mode", "None"),
            ("delta.isolationLevel", "Serializable"),
            ("some.other", "x"),
        ])
        .unwrap();
        assert_eq!(p.target_file_size_bytes, Some(1 << 20));
        assert_eq!(p.stats.num_indexed_cols, -1);
        assert_eq!(
            p.stats.stats_columns,
            Some(vec!["a".to_string(), "b c".to_string()])
        );
        assert_eq!(p.checkpoint_interval, 3);
        assert!(p.append_only && p.deletion_vectors && p.auto_compact);
        assert_eq!(p.column_mapping, None);
        assert_eq!(p.isolation_level, IsolationLevel::Serializable);
    }

    #[test]
    fn malformed_values_name_the_property() {
        for (k, v) in [
            ("delta.targetFileSize", "big"),
            ("delta.targetFileSize", "0"),
            ("delta.checkpointInterval", "0"),
            ("delta.appendOnly", "yes"),
            ("delta.isolationLevel", "SnapshotIsolation"),
            ("delta.columnMapping.mode", "weird"),
            ("delta.dataSkippingNumIndexedCols", "x"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k) && e.contains(v), "{e}");
        }
    }
}
