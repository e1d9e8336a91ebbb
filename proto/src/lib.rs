//! silt's gRPC protocol: the generated tonic/prost code and the conversions between wire
//! messages and `silt-common` domain types. No other crate builds prost messages by hand
//! beyond calling these conversions.

#![allow(clippy::large_enum_variant)]

use std::collections::BTreeMap;

use silt_common::task as d;

/// Generated code for package `silt.v1`.
pub mod pb {
    tonic::include_proto!("silt.v1");
}

/// Version of the executor protocol; executors with another version are refused at registration.
pub const PROTOCOL_VERSION: u32 = 1;

/// A wire message that could not be turned into a domain value.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct DecodeError(pub String);

fn missing(what: &str) -> DecodeError {
    DecodeError(format!("missing field `{what}`"))
}

// ------------------------------------------------------------------ small helpers

fn pv_to_pb(
    m: &BTreeMap<String, Option<String>>,
) -> std::collections::HashMap<String, pb::NullableString> {
    m.iter()
        .map(|(k, v)| (k.clone(), pb::NullableString { value: v.clone() }))
        .collect()
}

fn pv_from_pb(
    m: std::collections::HashMap<String, pb::NullableString>,
) -> BTreeMap<String, Option<String>> {
    m.into_iter().map(|(k, v)| (k, v.value)).collect()
}

/// Domain format → wire enum.
pub fn format_to_pb(f: d::SourceFormat) -> pb::SourceFormat {
    match f {
        d::SourceFormat::Parquet => pb::SourceFormat::Parquet,
        d::SourceFormat::Csv => pb::SourceFormat::Csv,
        d::SourceFormat::Json => pb::SourceFormat::Json,
        d::SourceFormat::Delta => pb::SourceFormat::Delta,
    }
}

/// Wire enum → domain format.
pub fn format_from_pb(v: i32) -> Result<d::SourceFormat, DecodeError> {
    match pb::SourceFormat::try_from(v) {
        Ok(pb::SourceFormat::Parquet) => Ok(d::SourceFormat::Parquet),
        Ok(pb::SourceFormat::Csv) => Ok(d::SourceFormat::Csv),
        Ok(pb::SourceFormat::Json) => Ok(d::SourceFormat::Json),
        Ok(pb::SourceFormat::Delta) => Ok(d::SourceFormat::Delta),
        _ => Err(DecodeError(format!("unknown source format {v}"))),
    }
}

// ------------------------------------------------------------------ data files, specs

impl From<&d::DataFile> for pb::DataFile {
    fn from(f: &d::DataFile) -> Self {
        pb::DataFile {
            path: f.path.clone(),
            partition_values: pv_to_pb(&f.partition_values),
            size_bytes: f.size_bytes,
            modification_time_ms: f.modification_time_ms,
            stats_json: f.stats_json.clone(),
            num_records: f.num_records,
        }
    }
}

impl From<pb::DataFile> for d::DataFile {
    fn from(f: pb::DataFile) -> Self {
        d::DataFile {
            path: f.path,
            partition_values: pv_from_pb(f.partition_values),
            size_bytes: f.size_bytes,
            modification_time_ms: f.modification_time_ms,
            stats_json: f.stats_json,
            num_records: f.num_records,
        }
    }
}

impl From<&d::SourceSplit> for pb::SourceSplit {
    fn from(s: &d::SourceSplit) -> Self {
        pb::SourceSplit {
            uri: s.uri.clone(),
            format: format_to_pb(s.format) as i32,
            row_groups: s.row_groups.clone(),
            partition_values: pv_to_pb(&s.partition_values),
            size_bytes: s.size_bytes,
        }
    }
}

impl TryFrom<pb::SourceSplit> for d::SourceSplit {
    type Error = DecodeError;
    fn try_from(s: pb::SourceSplit) -> Result<Self, DecodeError> {
        Ok(d::SourceSplit {
            uri: s.uri,
            format: format_from_pb(s.format)?,
            row_groups: s.row_groups,
            partition_values: pv_from_pb(s.partition_values),
            size_bytes: s.size_bytes,
        })
    }
}

impl From<&d::WriterSpec> for pb::WriterSpec {
    fn from(w: &d::WriterSpec) -> Self {
        pb::WriterSpec {
            table_uri: w.table_uri.clone(),
            table_schema_json: w.table_schema_json.clone(),
            partition_columns: w.partition_columns.clone(),
            target_file_size_bytes: w.target_file_size_bytes,
            stats: Some(pb::StatsSpec {
                num_indexed_cols: w.stats.num_indexed_cols,
                has_stats_columns: w.stats.stats_columns.is_some(),
                stats_columns: w.stats.stats_columns.clone().unwrap_or_default(),
                string_prefix_len: w.stats.string_prefix_len as u32,
            }),
            file_prefix: w.file_prefix.clone(),
        }
    }
}

/// Wire writer spec (required field) → domain.
fn writer_from_pb(w: Option<pb::WriterSpec>) -> Result<d::WriterSpec, DecodeError> {
    {
        let w = w.ok_or_else(|| missing("writer"))?;
        let s = w.stats.ok_or_else(|| missing("writer.stats"))?;
        Ok(d::WriterSpec {
            table_uri: w.table_uri,
            table_schema_json: w.table_schema_json,
            partition_columns: w.partition_columns,
            target_file_size_bytes: w.target_file_size_bytes,
            stats: d::StatsSpec {
                num_indexed_cols: s.num_indexed_cols,
                stats_columns: s.has_stats_columns.then_some(s.stats_columns),
                string_prefix_len: s.string_prefix_len as usize,
            },
            file_prefix: w.file_prefix,
        })
    }
}

fn splits_from_pb(v: Vec<pb::SourceSplit>) -> Result<Vec<d::SourceSplit>, DecodeError> {
    v.into_iter().map(d::SourceSplit::try_from).collect()
}

impl From<&d::TaskSpec> for pb::TaskSpec {
    fn from(t: &d::TaskSpec) -> Self {
        use pb::task_spec::Kind;
        let kind = match &t.kind {
            d::TaskKind::Write {
                splits,
                source_schema_json,
                check_predicate,
                writer,
            } => Kind::Write(pb::WriteTask {
                splits: splits.iter().map(Into::into).collect(),
                source_schema_json: source_schema_json.clone(),
                check_predicate: check_predicate.clone(),
                writer: Some(writer.into()),
            }),
            d::TaskKind::ShuffleMap {
                splits,
                source_schema_json,
                check_predicate,
                writer,
                num_reducers,
                shuffle_uri,
            } => Kind::ShuffleMap(pb::ShuffleMapTask {
                splits: splits.iter().map(Into::into).collect(),
                source_schema_json: source_schema_json.clone(),
                check_predicate: check_predicate.clone(),
                writer: Some(writer.into()),
                num_reducers: *num_reducers,
                shuffle_uri: shuffle_uri.clone(),
            }),
            d::TaskKind::ShuffleReduce {
                map_outputs,
                reducer,
                writer,
            } => Kind::ShuffleReduce(pb::ShuffleReduceTask {
                map_outputs: map_outputs.clone(),
                reducer: *reducer,
                writer: Some(writer.into()),
            }),
            d::TaskKind::Rewrite {
                files,
                predicate,
                writer,
            } => Kind::Rewrite(pb::RewriteTask {
                files: files.iter().map(Into::into).collect(),
                predicate: predicate.clone(),
                writer: Some(writer.into()),
            }),
        };
        pb::TaskSpec {
            job_id: t.job_id.clone(),
            stage: t.stage,
            index: t.index,
            attempt: t.attempt,
            epoch: t.epoch,
            snapshot_version: t.snapshot_version,
            kind: Some(kind),
        }
    }
}

impl TryFrom<pb::TaskSpec> for d::TaskSpec {
    type Error = DecodeError;
    fn try_from(t: pb::TaskSpec) -> Result<Self, DecodeError> {
        use pb::task_spec::Kind;
        let kind = match t.kind.ok_or_else(|| missing("kind"))? {
            Kind::Write(w) => d::TaskKind::Write {
                splits: splits_from_pb(w.splits)?,
                source_schema_json: w.source_schema_json,
                check_predicate: w.check_predicate,
                writer: writer_from_pb(w.writer)?,
            },
            Kind::ShuffleMap(m) => d::TaskKind::ShuffleMap {
                splits: splits_from_pb(m.splits)?,
                source_schema_json: m.source_schema_json,
                check_predicate: m.check_predicate,
                writer: writer_from_pb(m.writer)?,
                num_reducers: m.num_reducers,
                shuffle_uri: m.shuffle_uri,
            },
            Kind::ShuffleReduce(r) => d::TaskKind::ShuffleReduce {
                map_outputs: r.map_outputs,
                reducer: r.reducer,
                writer: writer_from_pb(r.writer)?,
            },
            Kind::Rewrite(r) => d::TaskKind::Rewrite {
                files: r.files.into_iter().map(Into::into).collect(),
                predicate: r.predicate,
                writer: writer_from_pb(r.writer)?,
            },
        };
        Ok(d::TaskSpec {
            job_id: t.job_id,
            stage: t.stage,
            index: t.index,
            attempt: t.attempt,
            epoch: t.epoch,
            snapshot_version: t.snapshot_version,
            kind,
        })
    }
}

impl pb::TaskSpec {
    /// The key of this task attempt.
    pub fn key_of(&self) -> pb::TaskKey {
        pb::TaskKey {
            job_id: self.job_id.clone(),
            stage: self.stage,
            index: self.index,
            attempt: self.attempt,
        }
    }
}

impl pb::TaskKey {
    /// The key of a dispatched task attempt.
    pub fn of(t: &d::TaskSpec) -> Self {
        pb::TaskKey {
            job_id: t.job_id.clone(),
            stage: t.stage,
            index: t.index,
            attempt: t.attempt,
        }
    }
}

// ------------------------------------------------------------------ outputs

impl From<&d::TaskMetrics> for pb::TaskMetrics {
    fn from(m: &d::TaskMetrics) -> Self {
        pb::TaskMetrics {
            rows_read: m.rows_read,
            bytes_read: m.bytes_read,
            rows_written: m.rows_written,
            bytes_written: m.bytes_written,
            files_written: m.files_written,
            rows_copied: m.rows_copied,
            elapsed_ms: m.elapsed_ms,
        }
    }
}

impl From<pb::TaskMetrics> for d::TaskMetrics {
    fn from(m: pb::TaskMetrics) -> Self {
        d::TaskMetrics {
            rows_read: m.rows_read,
            bytes_read: m.bytes_read,
            rows_written: m.rows_written,
            bytes_written: m.bytes_written,
            files_written: m.files_written,
            rows_copied: m.rows_copied,
            elapsed_ms: m.elapsed_ms,
        }
    }
}

impl From<&d::TaskOutput> for pb::TaskOutput {
    fn from(o: &d::TaskOutput) -> Self {
        pb::TaskOutput {
            adds: o.adds.iter().map(Into::into).collect(),
            removes: o.removes.iter().map(Into::into).collect(),
            shuffle_output: o.shuffle_output.clone(),
            metrics: Some((&o.metrics).into()),
        }
    }
}

impl From<pb::TaskOutput> for d::TaskOutput {
    fn from(o: pb::TaskOutput) -> Self {
        d::TaskOutput {
            adds: o.adds.into_iter().map(Into::into).collect(),
            removes: o.removes.into_iter().map(Into::into).collect(),
            shuffle_output: o.shuffle_output,
            metrics: o.metrics.map(Into::into).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> d::WriterSpec {
        d::WriterSpec {
            table_uri: "file:///t".into(),
            table_schema_json: "{}".into(),
            partition_columns: vec!["p".into()],
            target_file_size_bytes: 10,
            stats: d::StatsSpec {
                num_indexed_cols: 3,
                stats_columns: Some(vec!["a".into()]),
                string_prefix_len: 32,
            },
            file_prefix: "part-x".into(),
        }
    }

    #[test]
    fn task_specs_round_trip() {
        let mut pv = BTreeMap::new();
        pv.insert("p".to_string(), None);
        pv.insert("q".to_string(), Some("1".to_string()));
        let kinds = vec![
            d::TaskKind::Write {
                splits: vec![d::SourceSplit {
                    uri: "file:///s/a.parquet".into(),
                    format: d::SourceFormat::Parquet,
                    row_groups: vec![1, 2],
                    partition_values: pv.clone(),
                    size_bytes: 7,
                }],
                source_schema_json: "{}".into(),
                check_predicate: Some("p > 1".into()),
                writer: writer(),
            },
            d::TaskKind::ShuffleReduce {
                map_outputs: vec!["file:///x".into()],
                reducer: 3,
                writer: writer(),
            },
            d::TaskKind::Rewrite {
                files: vec![d::DataFile {
                    path: "p=1/f.parquet".into(),
                    partition_values: pv,
                    size_bytes: 1,
                    modification_time_ms: 2,
                    stats_json: None,
                    num_records: 3,
                }],
                predicate: "p = 1".into(),
                writer: writer(),
            },
        ];
        for kind in kinds {
            let t = d::TaskSpec {
                job_id: "j".into(),
                stage: 1,
                index: 2,
                attempt: 3,
                epoch: 4,
                snapshot_version: -1,
                kind,
            };
            let back = d::TaskSpec::try_from(pb::TaskSpec::from(&t)).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn missing_kind_is_an_error() {
        let t = pb::TaskSpec::default();
        assert!(d::TaskSpec::try_from(t).is_err());
    }
}
