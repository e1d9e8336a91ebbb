//! silt's gRPC protocol: the generated tonic/prost code and the conversions between wire
//! messages and `silt-common` domain types (tasks, their outputs, job requests). No other
//! crate builds prost messages by hand beyond calling these conversions.

#![allow(clippy::large_enum_variant)]

use std::collections::{BTreeMap, HashMap};

use silt_common::cluster::{Curve, CurveSpec};
use silt_common::request as r;
use silt_common::table::TimeTravel;
use silt_common::task as d;

/// Generated code for package `silt.v1`.
pub mod pb {
    tonic::include_proto!("silt.v1");
}

pub mod security;

/// Version of the executor protocol; executors with another version are refused at registration.
pub const PROTOCOL_VERSION: u32 = 6;

/// Finding the leading coordinator among several.
pub mod leader {
    /// Metadata key of a standby coordinator's refusal that names the leader's URL.
    pub const METADATA: &str = "silt-leader";

    /// Coordinator URLs from a comma-separated list, in order, without blanks or repeats.
    pub fn urls(list: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for url in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            if !out.iter().any(|u| u == url) {
                out.push(url.to_string());
            }
        }
        out
    }

    /// A standby's refusal: `Unavailable`, naming the leader when one is known.
    pub fn refusal(message: &str, leader: Option<&str>) -> tonic::Status {
        let mut status = tonic::Status::unavailable(message);
        if let Some(v) = leader.and_then(|l| l.parse().ok()) {
            status.metadata_mut().insert(METADATA, v);
        }
        status
    }

    /// The leader a refusal names.
    pub fn hint(status: &tonic::Status) -> Option<String> {
        status
            .metadata()
            .get(METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Whether a call that failed with `status` may succeed on another coordinator: a
    /// standby's refusal, or the connection failing (the coordinator went away mid-call).
    /// The coordinators' own answers use other codes.
    pub fn elsewhere(status: &tonic::Status) -> bool {
        matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
        )
    }

    /// The URLs to try after `status` from `urls[at]`: the named leader first (added if
    /// new), then the rest in turn.
    pub fn next(urls: &mut Vec<String>, at: usize, status: &tonic::Status) -> usize {
        match hint(status) {
            Some(l) => match urls.iter().position(|u| *u == l) {
                Some(i) => i,
                None => {
                    urls.push(l);
                    urls.len() - 1
                }
            },
            None => (at + 1) % urls.len().max(1),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lists_and_hints() {
            assert_eq!(
                urls(" http://a:1, ,http://b:2,http://a:1"),
                ["http://a:1", "http://b:2"]
            );
            let s = refusal("standby", Some("http://b:2"));
            assert_eq!(s.code(), tonic::Code::Unavailable);
            assert_eq!(hint(&s).as_deref(), Some("http://b:2"));
            let mut list = urls("http://a:1,http://b:2");
            assert_eq!(next(&mut list, 0, &s), 1);
            assert_eq!(next(&mut list, 1, &refusal("standby", None)), 0);
            assert_eq!(next(&mut list, 0, &refusal("x", Some("http://c:3"))), 2);
            assert_eq!(list.len(), 3);
        }
    }
}

/// A wire message that could not be turned into a domain value.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct DecodeError(pub String);

fn missing(what: &str) -> DecodeError {
    DecodeError(format!("missing field `{what}`"))
}

// ------------------------------------------------------------------ small helpers

fn pv_to_pb(m: &BTreeMap<String, Option<String>>) -> HashMap<String, pb::NullableString> {
    m.iter()
        .map(|(k, v)| (k.clone(), pb::NullableString { value: v.clone() }))
        .collect()
}

fn pv_from_pb(m: HashMap<String, pb::NullableString>) -> BTreeMap<String, Option<String>> {
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

fn dv_to_pb(dv: &Option<d::DeletionVector>) -> Option<pb::DeletionVector> {
    dv.as_ref().map(|dv| pb::DeletionVector {
        storage_type: dv.storage_type.clone(),
        path_or_inline_dv: dv.path_or_inline_dv.clone(),
        offset: dv.offset,
        size_in_bytes: dv.size_in_bytes,
        cardinality: dv.cardinality,
    })
}

fn dv_from_pb(dv: Option<pb::DeletionVector>) -> Option<d::DeletionVector> {
    dv.map(|dv| d::DeletionVector {
        storage_type: dv.storage_type,
        path_or_inline_dv: dv.path_or_inline_dv,
        offset: dv.offset,
        size_in_bytes: dv.size_in_bytes,
        cardinality: dv.cardinality,
    })
}

// ------------------------------------------------------------------ data files, splits

impl From<&d::DataFile> for pb::DataFile {
    fn from(f: &d::DataFile) -> Self {
        pb::DataFile {
            path: f.path.clone(),
            partition_values: pv_to_pb(&f.partition_values),
            size_bytes: f.size_bytes,
            modification_time_ms: f.modification_time_ms,
            stats_json: f.stats_json.clone(),
            num_records: f.num_records,
            deletion_vector: dv_to_pb(&f.deletion_vector),
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
            deletion_vector: dv_from_pb(f.deletion_vector),
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
            deletion_vector: dv_to_pb(&s.deletion_vector),
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
            deletion_vector: dv_from_pb(s.deletion_vector),
        })
    }
}

// ------------------------------------------------------------------ tasks

fn stats_to_pb(s: &d::StatsSpec) -> pb::StatsSpec {
    pb::StatsSpec {
        num_indexed_cols: s.num_indexed_cols,
        has_stats_columns: s.stats_columns.is_some(),
        stats_columns: s.stats_columns.clone().unwrap_or_default(),
        string_prefix_len: s.string_prefix_len as u32,
    }
}

fn stats_from_pb(s: pb::StatsSpec) -> d::StatsSpec {
    d::StatsSpec {
        num_indexed_cols: s.num_indexed_cols,
        stats_columns: s.has_stats_columns.then_some(s.stats_columns),
        string_prefix_len: s.string_prefix_len as usize,
    }
}

fn input_to_pb(i: &d::Input) -> pb::Input {
    use pb::input::Input as I;
    let input = match i {
        d::Input::Source {
            splits,
            schema_json,
        } => I::Source(pb::SourceInput {
            splits: splits.iter().map(Into::into).collect(),
            schema_json: schema_json.clone(),
        }),
        d::Input::TableFiles {
            files,
            touch,
            row_ids,
        } => I::TableFiles(pb::TableFilesInput {
            files: files.iter().map(Into::into).collect(),
            touch: touch.clone(),
            row_ids: *row_ids,
        }),
        d::Input::Exchange {
            map_outputs,
            partition,
        } => I::Exchange(pb::ExchangeInput {
            map_outputs: map_outputs.iter().map(map_ref_to_pb).collect(),
            partition: *partition,
        }),
        d::Input::Merge {
            target,
            source,
            merge,
        } => I::Merge(Box::new(pb::MergeInput {
            target: Some(Box::new(input_to_pb(target))),
            source: Some(Box::new(input_to_pb(source))),
            target_alias: merge.target_alias.clone(),
            source_alias: merge.source_alias.clone(),
            target_schema_json: merge.target_schema_json.clone(),
            source_schema_json: merge.source_schema_json.clone(),
            on: merge.on.clone(),
            clauses: merge.clauses.iter().map(merge_clause_spec_to_pb).collect(),
            source_select: merge.source_select.as_ref().map(select_to_pb),
            record_changes: merge.record_changes,
            pass: match &merge.pass {
                d::MergePass::Discover => pb::MergePassKind::Discover,
                d::MergePass::Rewrite { .. } => pb::MergePassKind::Rewrite,
                d::MergePass::Local => pb::MergePassKind::Local,
                d::MergePass::Insert { .. } => pb::MergePassKind::Insert,
            } as i32,
            touched: match &merge.pass {
                d::MergePass::Rewrite { touched } => touched.clone(),
                _ => Vec::new(),
            },
            first_split: match &merge.pass {
                d::MergePass::Insert { first_split, .. } => *first_split,
                _ => 0,
            },
            matched: match &merge.pass {
                d::MergePass::Insert { matched, .. } => matched.clone(),
                _ => Vec::new(),
            },
        })),
        d::Input::Objects { paths } => I::Objects(pb::ObjectsInput {
            paths: paths.clone(),
        }),
        d::Input::DeletedRows { files, rows } => I::DeletedRows(pb::DeletedRowsInput {
            files: files.iter().map(Into::into).collect(),
            rows: rows.clone(),
        }),
    };
    pb::Input { input: Some(input) }
}

fn input_from_pb(i: Option<pb::Input>) -> Result<d::Input, DecodeError> {
    use pb::input::Input as I;
    Ok(
        match i
            .and_then(|i| i.input)
            .ok_or_else(|| missing("task.input"))?
        {
            I::Source(s) => d::Input::Source {
                splits: s
                    .splits
                    .into_iter()
                    .map(d::SourceSplit::try_from)
                    .collect::<Result<_, _>>()?,
                schema_json: s.schema_json,
            },
            I::TableFiles(t) => d::Input::TableFiles {
                files: t.files.into_iter().map(Into::into).collect(),
                touch: t.touch,
                row_ids: t.row_ids,
            },
            I::Exchange(e) => d::Input::Exchange {
                map_outputs: e.map_outputs.into_iter().map(map_ref_from_pb).collect(),
                partition: e.partition,
            },
            I::Objects(o) => d::Input::Objects { paths: o.paths },
            I::DeletedRows(r) => {
                if r.files.len() != r.rows.len() {
                    return Err(DecodeError(format!(
                        "deleted rows for {} file(s) but {} file(s)",
                        r.rows.len(),
                        r.files.len()
                    )));
                }
                d::Input::DeletedRows {
                    files: r.files.into_iter().map(Into::into).collect(),
                    rows: r.rows,
                }
            }
            I::Merge(m) => {
                let m = *m;
                d::Input::Merge {
                    target: Box::new(input_from_pb(m.target.map(|b| *b))?),
                    source: Box::new(input_from_pb(m.source.map(|b| *b))?),
                    merge: d::MergeSpec {
                        target_alias: m.target_alias,
                        source_alias: m.source_alias,
                        target_schema_json: m.target_schema_json,
                        source_schema_json: m.source_schema_json,
                        source_select: m.source_select.map(select_from_pb),
                        record_changes: m.record_changes,
                        on: m.on,
                        clauses: m
                            .clauses
                            .into_iter()
                            .map(merge_clause_spec_from_pb)
                            .collect::<Result<_, _>>()?,
                        pass: match pb::MergePassKind::try_from(m.pass) {
                            Ok(pb::MergePassKind::Discover) => d::MergePass::Discover,
                            Ok(pb::MergePassKind::Rewrite) => {
                                d::MergePass::Rewrite { touched: m.touched }
                            }
                            Ok(pb::MergePassKind::Local) => d::MergePass::Local,
                            Ok(pb::MergePassKind::Insert) => d::MergePass::Insert {
                                first_split: m.first_split,
                                matched: m.matched,
                            },
                            Err(_) => {
                                return Err(DecodeError(format!("unknown MERGE pass {}", m.pass)));
                            }
                        },
                    },
                }
            }
        },
    )
}

fn select_to_pb(s: &d::SelectSpec) -> pb::SelectSpec {
    pb::SelectSpec {
        columns: s.columns.iter().map(assignment_to_pb).collect(),
        filter: s.filter.clone(),
    }
}

fn select_from_pb(s: pb::SelectSpec) -> d::SelectSpec {
    d::SelectSpec {
        columns: s.columns.into_iter().map(assignment_from_pb).collect(),
        filter: s.filter,
    }
}

fn assignment_from_pb(a: pb::Assignment) -> d::Assignment {
    d::Assignment {
        column: a.column,
        expr: a.expr,
    }
}

fn exchange_to_pb(e: r::ExchangeMode) -> pb::ExchangeMode {
    match e {
        r::ExchangeMode::Auto => pb::ExchangeMode::Auto,
        r::ExchangeMode::Always => pb::ExchangeMode::Always,
        r::ExchangeMode::Never => pb::ExchangeMode::Never,
    }
}

fn exchange_from_pb(v: i32) -> Result<r::ExchangeMode, DecodeError> {
    match pb::ExchangeMode::try_from(v) {
        Ok(pb::ExchangeMode::Auto) => Ok(r::ExchangeMode::Auto),
        Ok(pb::ExchangeMode::Always) => Ok(r::ExchangeMode::Always),
        Ok(pb::ExchangeMode::Never) => Ok(r::ExchangeMode::Never),
        Err(_) => Err(DecodeError(format!("unknown exchange mode {v}"))),
    }
}

fn merge_kind_to_pb(k: r::MergeClauseKind) -> pb::MergeClauseKind {
    match k {
        r::MergeClauseKind::Matched => pb::MergeClauseKind::Matched,
        r::MergeClauseKind::NotMatchedByTarget => pb::MergeClauseKind::NotMatchedByTarget,
        r::MergeClauseKind::NotMatchedBySource => pb::MergeClauseKind::NotMatchedBySource,
    }
}

fn merge_kind_from_pb(k: i32) -> Result<r::MergeClauseKind, DecodeError> {
    Ok(match pb::MergeClauseKind::try_from(k) {
        Ok(pb::MergeClauseKind::Matched) => r::MergeClauseKind::Matched,
        Ok(pb::MergeClauseKind::NotMatchedByTarget) => r::MergeClauseKind::NotMatchedByTarget,
        Ok(pb::MergeClauseKind::NotMatchedBySource) => r::MergeClauseKind::NotMatchedBySource,
        Err(_) => return Err(DecodeError(format!("unknown MERGE clause kind {k}"))),
    })
}

fn merge_action_from_pb(a: i32) -> Result<pb::MergeActionKind, DecodeError> {
    pb::MergeActionKind::try_from(a).map_err(|_| DecodeError(format!("unknown MERGE action {a}")))
}

fn merge_clause_spec_to_pb(c: &d::MergeClauseSpec) -> pb::MergeClause {
    let (action, assignments) = match &c.action {
        d::MergeActionSpec::Update(a) => (pb::MergeActionKind::Update, a.as_slice()),
        d::MergeActionSpec::Delete => (pb::MergeActionKind::Delete, &[][..]),
        d::MergeActionSpec::Insert(a) => (pb::MergeActionKind::Insert, a.as_slice()),
    };
    pb::MergeClause {
        kind: merge_kind_to_pb(c.kind) as i32,
        condition: c.condition.clone(),
        action: action as i32,
        assignments: assignments.iter().map(assignment_to_pb).collect(),
    }
}

fn merge_clause_spec_from_pb(c: pb::MergeClause) -> Result<d::MergeClauseSpec, DecodeError> {
    let assignments = || {
        c.assignments
            .iter()
            .map(|a| d::Assignment {
                column: a.column.clone(),
                expr: a.expr.clone(),
            })
            .collect()
    };
    Ok(d::MergeClauseSpec {
        kind: merge_kind_from_pb(c.kind)?,
        condition: c.condition.clone(),
        action: match merge_action_from_pb(c.action)? {
            pb::MergeActionKind::Update => d::MergeActionSpec::Update(assignments()),
            pb::MergeActionKind::Delete => d::MergeActionSpec::Delete,
            pb::MergeActionKind::Insert => d::MergeActionSpec::Insert(assignments()),
            other => {
                return Err(DecodeError(format!(
                    "a MERGE task clause cannot be {}",
                    other.as_str_name()
                )));
            }
        },
    })
}

fn merge_clause_to_pb(c: &r::MergeClause) -> pb::MergeClause {
    let pair = |(c, e): &(String, String)| pb::Assignment {
        column: c.clone(),
        expr: e.clone(),
    };
    let (action, assignments) = match &c.action {
        r::MergeAction::Update(a) => (
            pb::MergeActionKind::Update,
            a.iter().map(pair).collect::<Vec<_>>(),
        ),
        r::MergeAction::UpdateAll => (pb::MergeActionKind::UpdateAll, Vec::new()),
        r::MergeAction::Delete => (pb::MergeActionKind::Delete, Vec::new()),
        r::MergeAction::Insert { columns, values } => (
            pb::MergeActionKind::Insert,
            values
                .iter()
                .enumerate()
                .map(|(i, v)| pb::Assignment {
                    column: columns.get(i).cloned().unwrap_or_default(),
                    expr: v.clone(),
                })
                .collect(),
        ),
        r::MergeAction::InsertAll => (pb::MergeActionKind::InsertAll, Vec::new()),
    };
    pb::MergeClause {
        kind: merge_kind_to_pb(c.kind) as i32,
        condition: c.condition.clone(),
        action: action as i32,
        assignments,
    }
}

fn merge_clause_from_pb(c: pb::MergeClause) -> Result<r::MergeClause, DecodeError> {
    let action = match merge_action_from_pb(c.action)? {
        pb::MergeActionKind::Update => r::MergeAction::Update(
            c.assignments
                .into_iter()
                .map(|a| (a.column, a.expr))
                .collect(),
        ),
        pb::MergeActionKind::UpdateAll => r::MergeAction::UpdateAll,
        pb::MergeActionKind::Delete => r::MergeAction::Delete,
        pb::MergeActionKind::Insert => {
            let named = c.assignments.iter().all(|a| !a.column.is_empty());
            r::MergeAction::Insert {
                columns: if named {
                    c.assignments.iter().map(|a| a.column.clone()).collect()
                } else {
                    Vec::new()
                },
                values: c.assignments.into_iter().map(|a| a.expr).collect(),
            }
        }
        pb::MergeActionKind::InsertAll => r::MergeAction::InsertAll,
    };
    Ok(r::MergeClause {
        kind: merge_kind_from_pb(c.kind)?,
        condition: c.condition,
        action,
    })
}

fn map_ref_to_pb(r: &d::MapOutputRef) -> pb::MapOutputRef {
    pb::MapOutputRef {
        address: r.address.clone(),
        map_id: r.map_id.clone(),
        map_stage: r.map_stage,
        map_index: r.map_index,
    }
}

fn map_ref_from_pb(r: pb::MapOutputRef) -> d::MapOutputRef {
    d::MapOutputRef {
        address: r.address,
        map_id: r.map_id,
        map_stage: r.map_stage,
        map_index: r.map_index,
    }
}

fn assignment_to_pb(a: &d::Assignment) -> pb::Assignment {
    pb::Assignment {
        column: a.column.clone(),
        expr: a.expr.clone(),
    }
}

fn transform_to_pb(t: &d::Transform) -> pb::Transform {
    use pb::transform::Transform as T;
    let t = match t {
        d::Transform::Conform => T::Conform(pb::ConformTransform {}),
        d::Transform::Check { predicate } => T::Check(pb::CheckTransform {
            predicate: predicate.clone(),
        }),
        d::Transform::Filter { predicate, keep } => T::Filter(pb::FilterTransform {
            predicate: predicate.clone(),
            keep_matching: *keep == d::Keep::Matching,
        }),
        d::Transform::Update {
            predicate,
            assignments,
        } => T::Update(pb::UpdateTransform {
            predicate: predicate.clone(),
            assignments: assignments.iter().map(assignment_to_pb).collect(),
        }),
        d::Transform::Select {
            input_schema_json,
            select,
        } => T::Select(pb::SelectTransform {
            input_schema_json: input_schema_json.clone(),
            select: Some(select_to_pb(select)),
        }),
        d::Transform::Derive { assignments } => T::Derive(pb::DeriveTransform {
            assignments: assignments.iter().map(assignment_to_pb).collect(),
        }),
        d::Transform::Identity {
            column,
            first,
            stride,
        } => T::Identity(pb::IdentityTransform {
            column: column.clone(),
            first: *first,
            stride: *stride,
        }),
        d::Transform::RecordChanges(rows) => T::RecordChanges(pb::RecordChangesTransform {
            inserted: *rows == d::ChangeRows::Inserted,
        }),
    };
    pb::Transform { transform: Some(t) }
}

fn transform_from_pb(t: pb::Transform) -> Result<d::Transform, DecodeError> {
    use pb::transform::Transform as T;
    Ok(match t.transform.ok_or_else(|| missing("transform"))? {
        T::Conform(_) => d::Transform::Conform,
        T::Check(c) => d::Transform::Check {
            predicate: c.predicate,
        },
        T::Filter(f) => d::Transform::Filter {
            predicate: f.predicate,
            keep: if f.keep_matching {
                d::Keep::Matching
            } else {
                d::Keep::NotMatching
            },
        },
        T::Update(u) => d::Transform::Update {
            predicate: u.predicate,
            assignments: u.assignments.into_iter().map(assignment_from_pb).collect(),
        },
        T::Select(s) => d::Transform::Select {
            input_schema_json: s.input_schema_json,
            select: select_from_pb(s.select.unwrap_or_default()),
        },
        T::Derive(u) => d::Transform::Derive {
            assignments: u.assignments.into_iter().map(assignment_from_pb).collect(),
        },
        T::Identity(i) => d::Transform::Identity {
            column: i.column,
            first: i.first,
            stride: i.stride,
        },
        T::RecordChanges(r) => d::Transform::RecordChanges(if r.inserted {
            d::ChangeRows::Inserted
        } else {
            d::ChangeRows::Table
        }),
    })
}

fn sink_to_pb(s: &d::Sink) -> pb::Sink {
    use pb::sink::Sink as S;
    let s = match s {
        d::Sink::DataFiles(f) => S::DataFiles(file_spec_to_pb(f)),
        d::Sink::Exchange { route, partitions } => S::Exchange(match route {
            d::Route::Hash(keys) => pb::ExchangeSink {
                keys: keys.clone(),
                partitions: *partitions,
                range: None,
            },
            d::Route::Range(r) => pb::ExchangeSink {
                keys: Vec::new(),
                partitions: *partitions,
                range: Some(pb::RangeRoute {
                    curve: Some(curve_spec_to_pb(&r.curve)),
                    splits: r.splits.clone(),
                    offset: r.offset,
                }),
            },
        }),
        d::Sink::DeleteObjects => S::DeleteObjects(pb::DeleteObjectsSink {}),
        d::Sink::FileStats(s) => S::FileStats(stats_to_pb(s)),
        d::Sink::MarkRows { write } => S::MarkRows(pb::MarkRowsSink {
            write: write.as_ref().map(file_spec_to_pb),
        }),
        d::Sink::DeletionVectors {
            file_prefix,
            rewrite,
        } => S::DeletionVectors(pb::DeletionVectorsSink {
            file_prefix: file_prefix.clone(),
            rewrite: rewrite.as_ref().map(file_spec_to_pb),
        }),
    };
    pb::Sink { sink: Some(s) }
}

fn file_spec_to_pb(f: &d::FileSpec) -> pb::FileSpec {
    pb::FileSpec {
        target_file_size_bytes: f.target_file_size_bytes,
        stats: Some(stats_to_pb(&f.stats)),
        file_prefix: f.file_prefix.clone(),
        sort_by: f.sort_by.as_ref().map(curve_spec_to_pb),
        checks: f
            .checks
            .iter()
            .map(|c| pb::Constraint {
                name: c.name.clone(),
                expression: c.expression.clone(),
            })
            .collect(),
        iso_timestamp_partitions: f.iso_timestamp_partitions.clone(),
        change_data: f.change_data,
    }
}

fn file_spec_from_pb(f: pb::FileSpec) -> Result<d::FileSpec, DecodeError> {
    Ok(d::FileSpec {
        target_file_size_bytes: f.target_file_size_bytes,
        stats: stats_from_pb(f.stats.ok_or_else(|| missing("sink.stats"))?),
        file_prefix: f.file_prefix,
        sort_by: f.sort_by.map(|c| curve_spec_from_pb(Some(c))).transpose()?,
        checks: f
            .checks
            .into_iter()
            .map(|c| d::Constraint {
                name: c.name,
                expression: c.expression,
            })
            .collect(),
        iso_timestamp_partitions: f.iso_timestamp_partitions,
        change_data: f.change_data,
    })
}

fn curve_to_pb(c: Curve) -> pb::Curve {
    match c {
        Curve::ZOrder => pb::Curve::Zorder,
        Curve::Hilbert => pb::Curve::Hilbert,
    }
}

fn curve_from_pb(v: i32) -> Result<Curve, DecodeError> {
    match pb::Curve::try_from(v) {
        Ok(pb::Curve::Zorder) => Ok(Curve::ZOrder),
        Ok(pb::Curve::Hilbert) => Ok(Curve::Hilbert),
        Err(_) => Err(DecodeError(format!("unknown curve {v}"))),
    }
}

fn curve_spec_to_pb(c: &CurveSpec) -> pb::CurveSpec {
    pb::CurveSpec {
        columns: c.columns.clone(),
        curve: curve_to_pb(c.curve) as i32,
        // Writing in-memory arrays as IPC does not fail; if it did, the bounds would be
        // missing and the receiving side refuses the spec.
        bounds: c.encode_bounds().unwrap_or_default(),
    }
}

fn curve_spec_from_pb(c: Option<pb::CurveSpec>) -> Result<CurveSpec, DecodeError> {
    let c = c.ok_or_else(|| missing("curve"))?;
    let bounds = CurveSpec::decode_bounds(&c.bounds)
        .map_err(|e| DecodeError(format!("curve bounds: {e}")))?;
    if bounds.len() != c.columns.len() || bounds.is_empty() {
        return Err(DecodeError(format!(
            "curve over {} column(s) has {} bound list(s)",
            c.columns.len(),
            bounds.len()
        )));
    }
    Ok(CurveSpec {
        columns: c.columns,
        curve: curve_from_pb(c.curve)?,
        bounds,
    })
}

fn sink_from_pb(s: Option<pb::Sink>) -> Result<d::Sink, DecodeError> {
    use pb::sink::Sink as S;
    Ok(
        match s.and_then(|s| s.sink).ok_or_else(|| missing("task.sink"))? {
            S::DataFiles(f) => d::Sink::DataFiles(file_spec_from_pb(f)?),
            S::Exchange(e) => d::Sink::Exchange {
                route: match e.range {
                    Some(r) => d::Route::Range(d::RangeRoute {
                        curve: curve_spec_from_pb(r.curve)?,
                        splits: r.splits,
                        offset: r.offset,
                    }),
                    None => d::Route::Hash(e.keys),
                },
                partitions: e.partitions,
            },
            S::DeleteObjects(_) => d::Sink::DeleteObjects,
            S::FileStats(s) => d::Sink::FileStats(stats_from_pb(s)),
            S::MarkRows(m) => d::Sink::MarkRows {
                write: m.write.map(file_spec_from_pb).transpose()?,
            },
            S::DeletionVectors(v) => d::Sink::DeletionVectors {
                file_prefix: v.file_prefix,
                rewrite: v.rewrite.map(file_spec_from_pb).transpose()?,
            },
        },
    )
}

impl From<&d::Task> for pb::Task {
    fn from(t: &d::Task) -> Self {
        pb::Task {
            table: Some(pb::TableSpec {
                uri: t.table.uri.clone(),
                schema_json: t.table.schema_json.clone(),
                partition_columns: t.table.partition_columns.clone(),
            }),
            input: Some(input_to_pb(&t.input)),
            transforms: t.transforms.iter().map(transform_to_pb).collect(),
            sink: Some(sink_to_pb(&t.sink)),
        }
    }
}

impl TryFrom<pb::Task> for d::Task {
    type Error = DecodeError;
    fn try_from(t: pb::Task) -> Result<Self, DecodeError> {
        let table = t.table.ok_or_else(|| missing("task.table"))?;
        Ok(d::Task {
            table: d::TableSpec {
                uri: table.uri,
                schema_json: table.schema_json,
                partition_columns: table.partition_columns,
            },
            input: input_from_pb(t.input)?,
            transforms: t
                .transforms
                .into_iter()
                .map(transform_from_pb)
                .collect::<Result<_, _>>()?,
            sink: sink_from_pb(t.sink)?,
        })
    }
}

impl From<&d::TaskSpec> for pb::TaskSpec {
    fn from(t: &d::TaskSpec) -> Self {
        pb::TaskSpec {
            job_id: t.job_id.clone(),
            stage: t.stage,
            index: t.index,
            attempt: t.attempt,
            epoch: t.epoch,
            snapshot_version: t.snapshot_version,
            task: Some((&t.task).into()),
        }
    }
}

impl TryFrom<pb::TaskSpec> for d::TaskSpec {
    type Error = DecodeError;
    fn try_from(t: pb::TaskSpec) -> Result<Self, DecodeError> {
        Ok(d::TaskSpec {
            job_id: t.job_id,
            stage: t.stage,
            index: t.index,
            attempt: t.attempt,
            epoch: t.epoch,
            snapshot_version: t.snapshot_version,
            task: t.task.ok_or_else(|| missing("task"))?.try_into()?,
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
            rows_deleted: m.rows_deleted,
            rows_updated: m.rows_updated,
            files_touched: m.files_touched,
            files_skipped: m.files_skipped,
            scan_ms: m.scan_ms,
            bytes_fetched_remote: m.bytes_fetched_remote,
            rows_inserted: m.rows_inserted,
            rows_updated_by_source: m.rows_updated_by_source,
            rows_deleted_by_source: m.rows_deleted_by_source,
            bytes_spilled: m.bytes_spilled,
            rows_source: m.rows_source,
            files_deleted: m.files_deleted,
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
            rows_deleted: m.rows_deleted,
            rows_updated: m.rows_updated,
            files_touched: m.files_touched,
            files_skipped: m.files_skipped,
            scan_ms: m.scan_ms,
            bytes_fetched_remote: m.bytes_fetched_remote,
            rows_inserted: m.rows_inserted,
            rows_updated_by_source: m.rows_updated_by_source,
            rows_deleted_by_source: m.rows_deleted_by_source,
            bytes_spilled: m.bytes_spilled,
            rows_source: m.rows_source,
            files_deleted: m.files_deleted,
            elapsed_ms: m.elapsed_ms,
        }
    }
}

impl From<&d::TaskOutput> for pb::TaskOutput {
    fn from(o: &d::TaskOutput) -> Self {
        pb::TaskOutput {
            adds: o.adds.iter().map(Into::into).collect(),
            cdc_files: o.cdc_files.iter().map(Into::into).collect(),
            identity_values: o.identity_values.clone().into_iter().collect(),
            removes: o.removes.iter().map(Into::into).collect(),
            exchange_output: o.exchange_output.as_ref().map(|m| pb::MapOutput {
                location: Some(map_ref_to_pb(&m.location)),
                partition_bytes: m.partition_bytes.clone(),
            }),
            metrics: Some((&o.metrics).into()),
            touched_files: o.touched_files.clone(),
            matched_source_rows: o.matched_source_rows.clone(),
            deleted_rows: o
                .deleted_rows
                .iter()
                .map(|r| pb::FileRows {
                    file: r.file,
                    rows: r.rows.clone(),
                })
                .collect(),
        }
    }
}

impl From<pb::TaskOutput> for d::TaskOutput {
    fn from(o: pb::TaskOutput) -> Self {
        d::TaskOutput {
            adds: o.adds.into_iter().map(Into::into).collect(),
            cdc_files: o.cdc_files.into_iter().map(Into::into).collect(),
            identity_values: o.identity_values.into_iter().collect(),
            removes: o.removes.into_iter().map(Into::into).collect(),
            exchange_output: o.exchange_output.map(|m| d::MapOutput {
                location: m.location.map(map_ref_from_pb).unwrap_or_default(),
                partition_bytes: m.partition_bytes,
            }),
            metrics: o.metrics.map(Into::into).unwrap_or_default(),
            touched_files: o.touched_files,
            matched_source_rows: o.matched_source_rows,
            deleted_rows: o
                .deleted_rows
                .into_iter()
                .map(|r| d::FileRows {
                    file: r.file,
                    rows: r.rows,
                })
                .collect(),
        }
    }
}

// ------------------------------------------------------------------ job requests

fn mode_to_pb(m: r::WriteMode) -> pb::WriteMode {
    match m {
        r::WriteMode::Append => pb::WriteMode::Append,
        r::WriteMode::Overwrite => pb::WriteMode::Overwrite,
        r::WriteMode::ErrorIfExists => pb::WriteMode::ErrorIfExists,
        r::WriteMode::Ignore => pb::WriteMode::Ignore,
    }
}

fn time_travel_to_pb(t: &TimeTravel) -> Option<pb::TimeTravel> {
    use pb::time_travel::At;
    match t {
        TimeTravel::Latest => None,
        TimeTravel::Version(v) => Some(pb::TimeTravel {
            at: Some(At::Version(*v)),
        }),
        TimeTravel::Timestamp(ts) => Some(pb::TimeTravel {
            at: Some(At::Timestamp(ts.to_rfc3339())),
        }),
    }
}

fn time_travel_from_pb(t: Option<pb::TimeTravel>) -> Result<TimeTravel, DecodeError> {
    use pb::time_travel::At;
    Ok(match t.and_then(|t| t.at) {
        None => TimeTravel::Latest,
        Some(At::Version(v)) => TimeTravel::Version(v),
        Some(At::Timestamp(s)) => TimeTravel::Timestamp(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|e| DecodeError(format!("bad timestamp `{s}`: {e}")))?
                .with_timezone(&chrono::Utc),
        ),
    })
}

fn required(uri: String, what: &str) -> Result<String, DecodeError> {
    if uri.trim().is_empty() {
        Err(DecodeError(format!("{what} is required")))
    } else {
        Ok(uri)
    }
}

/// A job request as bytes (its wire message), to be kept where jobs must outlive a
/// coordinator (etcd).
pub fn encode_job_request(req: &r::JobRequest) -> Vec<u8> {
    prost::Message::encode_to_vec(&pb::SubmitJobRequest::from(req))
}

/// The job request [`encode_job_request`] made.
pub fn decode_job_request(bytes: &[u8]) -> Result<r::JobRequest, DecodeError> {
    let msg: pb::SubmitJobRequest =
        prost::Message::decode(bytes).map_err(|e| DecodeError(format!("job request: {e}")))?;
    r::JobRequest::try_from(msg)
}

impl From<&r::JobRequest> for pb::SubmitJobRequest {
    fn from(req: &r::JobRequest) -> Self {
        use pb::submit_job_request::Job;
        let job = match req {
            r::JobRequest::Write(w) => Job::Write(pb::WriteJob {
                table_uri: w.table_uri.clone(),
                source_uri: w.source_uri.clone(),
                format: format_to_pb(w.format) as i32,
                mode: mode_to_pb(w.mode) as i32,
                partition_by: w.partition_by.clone(),
                replace_where: w.replace_where.clone(),
                dynamic_partition_overwrite: w.dynamic_partition_overwrite,
                merge_schema: w.merge_schema,
                overwrite_schema: w.overwrite_schema,
                txn_app_id: w.txn_app_id.clone(),
                txn_version: w.txn_version,
                target_file_size_bytes: w.target_file_size_bytes,
                properties: w.properties.clone().into_iter().collect(),
                source_version: time_travel_to_pb(&w.source_version),
                static_partitions: w
                    .static_partitions
                    .iter()
                    .map(|(c, v)| pb::Assignment {
                        column: c.clone(),
                        expr: v.clone(),
                    })
                    .collect(),
                exchange: exchange_to_pb(w.exchange) as i32,
            }),
            r::JobRequest::Delete(d) => Job::Delete(pb::DeleteJob {
                table_uri: d.table_uri.clone(),
                predicate: d.predicate.clone(),
                copy_on_write: d.copy_on_write,
            }),
            r::JobRequest::Update(u) => Job::Update(pb::UpdateJob {
                table_uri: u.table_uri.clone(),
                assignments: u
                    .assignments
                    .iter()
                    .map(|(c, e)| pb::Assignment {
                        column: c.clone(),
                        expr: e.clone(),
                    })
                    .collect(),
                predicate: u.predicate.clone(),
                copy_on_write: u.copy_on_write,
            }),
            r::JobRequest::AlterTable(p) => Job::AlterTable(pb::AlterTableJob {
                table_uri: p.table_uri.clone(),
                set: p.set.clone().into_iter().collect(),
                unset: p.unset.clone(),
                if_exists: p.if_exists,
                column: p.column.as_ref().map(|c| match c {
                    r::ColumnChange::Rename { from, to } => {
                        pb::alter_table_job::Column::RenameColumn(pb::RenameColumn {
                            from: from.clone(),
                            to: to.clone(),
                        })
                    }
                    r::ColumnChange::Drop { columns, if_exists } => {
                        pb::alter_table_job::Column::DropColumns(pb::DropColumns {
                            columns: columns.clone(),
                            if_exists: *if_exists,
                        })
                    }
                }),
            }),
            r::JobRequest::Describe(d) => Job::Describe(pb::DescribeJob {
                table_uri: d.table_uri.clone(),
                kind: Some(match d.kind {
                    r::DescribeKind::History { limit } => {
                        pb::describe_job::Kind::History(pb::DescribeHistory { limit })
                    }
                    r::DescribeKind::Detail => {
                        pb::describe_job::Kind::Detail(pb::DescribeDetail {})
                    }
                }),
            }),
            r::JobRequest::Merge(m) => Job::Merge(pb::MergeJob {
                table_uri: m.table_uri.clone(),
                target_alias: m.target_alias.clone(),
                source_format: format_to_pb(m.source.format) as i32,
                source_uri: m.source.uri.clone(),
                source_version: time_travel_to_pb(&m.source.version),
                source_select: m.source.select.as_ref().map(select_to_pb),
                source_alias: m.source_alias.clone(),
                on: m.on.clone(),
                clauses: m.clauses.iter().map(merge_clause_to_pb).collect(),
                schema_evolution: m.schema_evolution,
                exchange: exchange_to_pb(m.exchange) as i32,
                copy_on_write: m.copy_on_write,
            }),
            r::JobRequest::Optimize(o) => Job::Optimize(pb::OptimizeJob {
                table_uri: o.table_uri.clone(),
                predicate: o.predicate.clone(),
                target_size: o.target_size,
                min_file_size: o.min_file_size,
                zorder_by: o.zorder_by.clone(),
                curve: curve_to_pb(o.curve) as i32,
                full: o.full,
                max_commit_interval_ms: o.max_commit_interval_ms,
                purge: o.purge,
            }),
            r::JobRequest::Analyze(a) => Job::Analyze(pb::AnalyzeJob {
                table_uri: a.table_uri.clone(),
                columns: a.columns.clone(),
            }),
            r::JobRequest::Vacuum(v) => Job::Vacuum(pb::VacuumJob {
                table_uri: v.table_uri.clone(),
                retain_hours: v.retain_hours,
                dry_run: v.dry_run,
                enforce_retention: v.enforce_retention,
            }),
        };
        pb::SubmitJobRequest {
            job: Some(job),
            detach: false,
        }
    }
}

impl TryFrom<pb::SubmitJobRequest> for r::JobRequest {
    type Error = DecodeError;
    fn try_from(req: pb::SubmitJobRequest) -> Result<Self, DecodeError> {
        use pb::submit_job_request::Job;
        Ok(match req.job.ok_or_else(|| missing("job"))? {
            Job::Write(w) => {
                let mode = match pb::WriteMode::try_from(w.mode) {
                    Ok(pb::WriteMode::Append) | Ok(pb::WriteMode::Unspecified) => {
                        r::WriteMode::Append
                    }
                    Ok(pb::WriteMode::Overwrite) => r::WriteMode::Overwrite,
                    Ok(pb::WriteMode::ErrorIfExists) => r::WriteMode::ErrorIfExists,
                    Ok(pb::WriteMode::Ignore) => r::WriteMode::Ignore,
                    Err(_) => return Err(DecodeError(format!("unknown write mode {}", w.mode))),
                };
                let format = if w.format == pb::SourceFormat::Unspecified as i32 {
                    d::SourceFormat::Parquet
                } else {
                    format_from_pb(w.format)?
                };
                r::JobRequest::Write(r::WriteRequest {
                    table_uri: required(w.table_uri, "table_uri")?,
                    source_uri: required(w.source_uri, "source_uri")?,
                    format,
                    source_version: time_travel_from_pb(w.source_version)?,
                    mode,
                    partition_by: w.partition_by,
                    replace_where: w.replace_where.filter(|p| !p.trim().is_empty()),
                    dynamic_partition_overwrite: w.dynamic_partition_overwrite,
                    merge_schema: w.merge_schema,
                    overwrite_schema: w.overwrite_schema,
                    txn_app_id: w.txn_app_id,
                    txn_version: w.txn_version,
                    target_file_size_bytes: w.target_file_size_bytes,
                    properties: w.properties.into_iter().collect(),
                    static_partitions: w
                        .static_partitions
                        .into_iter()
                        .map(|a| (a.column, a.expr))
                        .collect(),
                    exchange: exchange_from_pb(w.exchange)?,
                })
            }
            Job::Delete(d) => r::JobRequest::Delete(r::DeleteRequest {
                table_uri: required(d.table_uri, "table_uri")?,
                predicate: d.predicate,
                copy_on_write: d.copy_on_write,
            }),
            Job::Update(u) => r::JobRequest::Update(r::UpdateRequest {
                table_uri: required(u.table_uri, "table_uri")?,
                assignments: u
                    .assignments
                    .into_iter()
                    .map(|a| (a.column, a.expr))
                    .collect(),
                predicate: u.predicate,
                copy_on_write: u.copy_on_write,
            }),
            Job::AlterTable(p) => r::JobRequest::AlterTable(r::AlterTableRequest {
                table_uri: required(p.table_uri, "table_uri")?,
                set: p.set.into_iter().collect(),
                unset: p.unset,
                if_exists: p.if_exists,
                column: p.column.map(|c| match c {
                    pb::alter_table_job::Column::RenameColumn(r) => r::ColumnChange::Rename {
                        from: r.from,
                        to: r.to,
                    },
                    pb::alter_table_job::Column::DropColumns(d) => r::ColumnChange::Drop {
                        columns: d.columns,
                        if_exists: d.if_exists,
                    },
                }),
            }),
            Job::Describe(d) => r::JobRequest::Describe(r::DescribeRequest {
                table_uri: required(d.table_uri, "table_uri")?,
                kind: match d.kind.ok_or_else(|| missing("describe.kind"))? {
                    pb::describe_job::Kind::History(h) => {
                        r::DescribeKind::History { limit: h.limit }
                    }
                    pb::describe_job::Kind::Detail(_) => r::DescribeKind::Detail,
                },
            }),
            Job::Merge(m) => r::JobRequest::Merge(r::MergeRequest {
                table_uri: required(m.table_uri, "table_uri")?,
                target_alias: m.target_alias,
                source: r::MergeSource {
                    format: format_from_pb(m.source_format)?,
                    uri: required(m.source_uri, "source_uri")?,
                    version: time_travel_from_pb(m.source_version)?,
                    select: m.source_select.map(select_from_pb),
                },
                source_alias: m.source_alias,
                on: required(m.on, "on")?,
                clauses: m
                    .clauses
                    .into_iter()
                    .map(merge_clause_from_pb)
                    .collect::<Result<_, _>>()?,
                schema_evolution: m.schema_evolution,
                exchange: exchange_from_pb(m.exchange)?,
                copy_on_write: m.copy_on_write,
            }),
            Job::Optimize(o) => r::JobRequest::Optimize(r::OptimizeRequest {
                table_uri: required(o.table_uri, "table_uri")?,
                predicate: o.predicate,
                target_size: o.target_size,
                min_file_size: o.min_file_size,
                zorder_by: o.zorder_by,
                curve: curve_from_pb(o.curve)?,
                full: o.full,
                max_commit_interval_ms: o.max_commit_interval_ms,
                purge: o.purge,
            }),
            Job::Analyze(a) => r::JobRequest::Analyze(r::AnalyzeRequest {
                table_uri: required(a.table_uri, "table_uri")?,
                columns: a.columns,
            }),
            Job::Vacuum(v) => r::JobRequest::Vacuum(r::VacuumRequest {
                table_uri: required(v.table_uri, "table_uri")?,
                retain_hours: v.retain_hours,
                dry_run: v.dry_run,
                enforce_retention: v.enforce_retention,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> d::TableSpec {
        d::TableSpec {
            uri: "file:///t".into(),
            schema_json: "{}".into(),
            partition_columns: vec!["p".into()],
        }
    }

    fn files() -> d::FileSpec {
        d::FileSpec {
            target_file_size_bytes: 10,
            stats: d::StatsSpec {
                num_indexed_cols: 3,
                stats_columns: Some(vec!["a".into()]),
                string_prefix_len: 32,
            },
            file_prefix: "part-x".into(),
            sort_by: None,
            checks: vec![],
            iso_timestamp_partitions: vec![],
            change_data: true,
        }
    }

    #[test]
    fn task_specs_round_trip() {
        let mut pv = BTreeMap::new();
        pv.insert("p".to_string(), None);
        pv.insert("q".to_string(), Some("1".to_string()));
        let dv = d::DeletionVector {
            storage_type: "u".into(),
            path_or_inline_dv: "ab".into(),
            offset: Some(1),
            size_in_bytes: 4,
            cardinality: 2,
        };
        let tasks = vec![
            d::Task {
                table: table(),
                input: d::Input::Source {
                    splits: vec![d::SourceSplit {
                        uri: "file:///s/a.parquet".into(),
                        format: d::SourceFormat::Parquet,
                        row_groups: vec![1, 2],
                        partition_values: pv.clone(),
                        size_bytes: 7,
                        deletion_vector: Some(dv.clone()),
                    }],
                    schema_json: "{}".into(),
                },
                transforms: vec![
                    d::Transform::Conform,
                    d::Transform::Check {
                        predicate: "p > 1".into(),
                    },
                ],
                sink: d::Sink::Exchange {
                    route: d::Route::Hash(vec!["p".into(), "q + 1".into()]),
                    partitions: 4,
                },
            },
            d::Task {
                table: table(),
                input: d::Input::Exchange {
                    map_outputs: vec![d::MapOutputRef {
                        address: "127.0.0.1:9".into(),
                        map_id: "s0-t1-a0".into(),
                        map_stage: 0,
                        map_index: 1,
                    }],
                    partition: 3,
                },
                transforms: vec![],
                sink: d::Sink::DataFiles(files()),
            },
            d::Task {
                table: table(),
                input: d::Input::TableFiles {
                    files: vec![d::DataFile {
                        path: "p=1/f.parquet".into(),
                        partition_values: pv,
                        size_bytes: 1,
                        modification_time_ms: 2,
                        stats_json: None,
                        num_records: 3,
                        deletion_vector: Some(dv),
                    }],
                    touch: Some("p = 1".into()),
                    row_ids: Some(7),
                },
                transforms: vec![
                    d::Transform::RecordChanges(d::ChangeRows::Table),
                    d::Transform::Filter {
                        predicate: "p = 1".into(),
                        keep: d::Keep::NotMatching,
                    },
                    d::Transform::Update {
                        predicate: None,
                        assignments: vec![d::Assignment {
                            column: "q".into(),
                            expr: "q * 2".into(),
                        }],
                    },
                ],
                sink: d::Sink::DataFiles(files()),
            },
        ];
        let merge = |pass: d::MergePass| d::Task {
            table: table(),
            input: d::Input::Merge {
                target: Box::new(d::Input::Exchange {
                    map_outputs: vec![],
                    partition: 3,
                }),
                source: Box::new(d::Input::Source {
                    splits: vec![],
                    schema_json: "{}".into(),
                }),
                merge: d::MergeSpec {
                    target_alias: Some("t".into()),
                    source_alias: None,
                    target_schema_json: "{\"t\":1}".into(),
                    source_schema_json: "{\"s\":1}".into(),
                    source_select: Some(d::SelectSpec::default()),
                    record_changes: true,
                    on: "t.k = s.k".into(),
                    clauses: vec![
                        d::MergeClauseSpec {
                            kind: r::MergeClauseKind::Matched,
                            condition: Some("s.v > 1".into()),
                            action: d::MergeActionSpec::Update(vec![d::Assignment {
                                column: "v".into(),
                                expr: "s.v".into(),
                            }]),
                        },
                        d::MergeClauseSpec {
                            kind: r::MergeClauseKind::NotMatchedBySource,
                            condition: None,
                            action: d::MergeActionSpec::Delete,
                        },
                        d::MergeClauseSpec {
                            kind: r::MergeClauseKind::NotMatchedByTarget,
                            condition: None,
                            action: d::MergeActionSpec::Insert(vec![]),
                        },
                    ],
                    pass,
                },
            },
            transforms: vec![
                d::Transform::Select {
                    input_schema_json: "{}".into(),
                    select: d::SelectSpec {
                        columns: vec![d::Assignment {
                            column: "w".into(),
                            expr: "v * 2".into(),
                        }],
                        filter: Some("v > 0".into()),
                    },
                },
                d::Transform::Conform,
                d::Transform::Derive {
                    assignments: vec![d::Assignment {
                        column: "g".into(),
                        expr: "v + 1".into(),
                    }],
                },
                d::Transform::Identity {
                    column: "i".into(),
                    first: -3,
                    stride: 4,
                },
                d::Transform::RecordChanges(d::ChangeRows::Inserted),
            ],
            sink: d::Sink::DataFiles(files()),
        };
        let tasks = tasks.into_iter().chain([
            merge(d::MergePass::Discover),
            merge(d::MergePass::Rewrite {
                touched: vec![1, 5],
            }),
            merge(d::MergePass::Local),
            merge(d::MergePass::Insert {
                first_split: 4,
                matched: vec![1, 2, 3],
            }),
        ]);
        for task in tasks {
            let t = d::TaskSpec {
                job_id: "j".into(),
                stage: 1,
                index: 2,
                attempt: 3,
                epoch: 4,
                snapshot_version: -1,
                task,
            };
            let back = d::TaskSpec::try_from(pb::TaskSpec::from(&t)).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn missing_parts_are_errors() {
        assert!(d::TaskSpec::try_from(pb::TaskSpec::default()).is_err());
        let no_sink = pb::Task {
            table: Some(pb::TableSpec::default()),
            input: Some(input_to_pb(&d::Input::Exchange {
                map_outputs: vec![],
                partition: 0,
            })),
            transforms: vec![],
            sink: None,
        };
        assert!(d::Task::try_from(no_sink).is_err());
        assert!(r::JobRequest::try_from(pb::SubmitJobRequest::default()).is_err());
    }

    #[test]
    fn job_requests_round_trip() {
        let mut w = r::WriteRequest::append("file:///t", "file:///s");
        w.source_version = TimeTravel::Version(3);
        w.format = d::SourceFormat::Delta;
        w.replace_where = Some("p = 1".into());
        w.static_partitions = vec![("p".into(), "1".into())];
        w.exchange = r::ExchangeMode::Never;
        let reqs = vec![
            r::JobRequest::Write(w.clone()),
            r::JobRequest::Write(r::WriteRequest {
                source_version: TimeTravel::Timestamp(
                    chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
                        .unwrap()
                        .with_timezone(&chrono::Utc),
                ),
                ..w
            }),
            r::JobRequest::Delete(r::DeleteRequest {
                table_uri: "file:///t".into(),
                predicate: Some("x > 1".into()),
                copy_on_write: false,
            }),
            r::JobRequest::Update(r::UpdateRequest {
                table_uri: "file:///t".into(),
                assignments: vec![("x".into(), "x + 1".into()), ("y".into(), "'a'".into())],
                predicate: None,
                copy_on_write: false,
            }),
            r::JobRequest::AlterTable(r::AlterTableRequest {
                table_uri: "file:///t".into(),
                set: BTreeMap::from([("a".to_string(), "1".to_string())]),
                unset: vec!["b".into()],
                if_exists: true,
                column: None,
            }),
            r::JobRequest::AlterTable(r::AlterTableRequest {
                table_uri: "file:///t".into(),
                set: BTreeMap::new(),
                unset: vec![],
                if_exists: false,
                column: Some(r::ColumnChange::Rename {
                    from: "a".into(),
                    to: "b c".into(),
                }),
            }),
            r::JobRequest::AlterTable(r::AlterTableRequest {
                table_uri: "file:///t".into(),
                set: BTreeMap::new(),
                unset: vec![],
                if_exists: false,
                column: Some(r::ColumnChange::Drop {
                    columns: vec!["a".into(), "b".into()],
                    if_exists: true,
                }),
            }),
            r::JobRequest::Describe(r::DescribeRequest {
                table_uri: "file:///t".into(),
                kind: r::DescribeKind::History { limit: Some(5) },
            }),
            r::JobRequest::Describe(r::DescribeRequest {
                table_uri: "file:///t".into(),
                kind: r::DescribeKind::Detail,
            }),
            r::JobRequest::Merge(r::MergeRequest {
                table_uri: "file:///t".into(),
                target_alias: Some("t".into()),
                source: r::MergeSource {
                    format: d::SourceFormat::Delta,
                    uri: "file:///s".into(),
                    version: TimeTravel::Version(3),
                    select: Some(d::SelectSpec {
                        columns: vec![],
                        filter: Some("k > 1".into()),
                    }),
                },
                source_alias: Some("s".into()),
                on: "t.k = s.k".into(),
                clauses: vec![
                    r::MergeClause {
                        kind: r::MergeClauseKind::Matched,
                        condition: Some("s.d".into()),
                        action: r::MergeAction::Delete,
                    },
                    r::MergeClause {
                        kind: r::MergeClauseKind::Matched,
                        condition: None,
                        action: r::MergeAction::Update(vec![("v".into(), "s.v".into())]),
                    },
                    r::MergeClause {
                        kind: r::MergeClauseKind::NotMatchedByTarget,
                        condition: Some("s.v > 0".into()),
                        action: r::MergeAction::Insert {
                            columns: vec!["k".into(), "v".into()],
                            values: vec!["s.k".into(), "0".into()],
                        },
                    },
                    r::MergeClause {
                        kind: r::MergeClauseKind::NotMatchedByTarget,
                        condition: None,
                        action: r::MergeAction::InsertAll,
                    },
                    r::MergeClause {
                        kind: r::MergeClauseKind::NotMatchedBySource,
                        condition: None,
                        action: r::MergeAction::Update(vec![("v".into(), "0".into())]),
                    },
                ],
                schema_evolution: true,
                exchange: r::ExchangeMode::Always,
                copy_on_write: true,
            }),
            r::JobRequest::Optimize(r::OptimizeRequest {
                table_uri: "file:///t".into(),
                predicate: Some("p = 1".into()),
                target_size: Some(1 << 20),
                min_file_size: None,
                zorder_by: vec!["a".into(), "b".into()],
                curve: Curve::Hilbert,
                full: true,
                max_commit_interval_ms: Some(60_000),
                purge: true,
            }),
            r::JobRequest::Analyze(r::AnalyzeRequest {
                table_uri: "file:///t".into(),
                columns: vec!["a".into()],
            }),
            r::JobRequest::Vacuum(r::VacuumRequest {
                table_uri: "file:///t".into(),
                retain_hours: Some(0.5),
                dry_run: true,
                enforce_retention: false,
            }),
        ];
        for req in reqs {
            let back = r::JobRequest::try_from(pb::SubmitJobRequest::from(&req)).unwrap();
            assert_eq!(back, req);
        }
    }
}
