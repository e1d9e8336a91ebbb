//! Which files a row condition touches, and the tasks that rewrite them: shared by DELETE,
//! UPDATE and replaceWhere overwrites (later MERGE's target side).
//!
//! Files are classified from the log alone ([`prune::classify`]): ruled out (left alone),
//! wholly matching (every row satisfies the condition), or candidates that must be read.
//! A rewrite task reads its candidates with a *touch* predicate: a file without a matching row
//! produces nothing and stays in the table; a file with one is rewritten and removed.

use silt_common::expr::Predicate;
use silt_common::table::prune::{self, Verdict};
use silt_common::table::{ActiveFile, TableSnapshot};
use silt_common::task::{ChangeRows, DataFile, FileSpec, Input, Sink, TableSpec, Task, Transform};

use super::binpack;
use crate::driver::JobError;

/// The files of a table split by what a condition does to them.
#[derive(Debug, Default)]
pub struct FileSelection {
    /// Every row matches: the whole file is affected.
    pub whole: Vec<ActiveFile>,
    /// Some rows may match: read to find out.
    pub candidates: Vec<ActiveFile>,
    /// No row can match.
    pub untouched: usize,
}

impl FileSelection {
    /// On a table recording change data: once some file must be read, the commit holds
    /// change data files, which must then describe all of its changes, so the wholly
    /// matching files are read too (their rows recorded as they go).
    pub fn recording_changes(mut self, snapshot: &TableSnapshot) -> Self {
        if snapshot.properties.change_data_feed && !self.candidates.is_empty() {
            self.candidates.append(&mut self.whole);
        }
        self
    }
}

/// The transforms of tasks rewriting the table's rows: on a table recording change data,
/// its rows' changes are recorded (see [`Transform::RecordChanges`]).
pub fn recording_changes(snapshot: &TableSnapshot, transforms: Vec<Transform>) -> Vec<Transform> {
    if !snapshot.properties.change_data_feed {
        return transforms;
    }
    let mut out = vec![Transform::RecordChanges(ChangeRows::Table)];
    out.extend(transforms);
    out
}

/// Splits the snapshot's files by `predicate` (`None`: every row of every file matches).
pub fn select_files(
    snapshot: &TableSnapshot,
    predicate: Option<&Predicate>,
) -> Result<FileSelection, JobError> {
    let Some(predicate) = predicate else {
        return Ok(FileSelection {
            whole: snapshot.files.clone(),
            ..Default::default()
        });
    };
    let files: Vec<&DataFile> = snapshot.files.iter().map(|f| &f.file).collect();
    let verdicts = prune::classify(
        predicate,
        &snapshot.arrow_schema,
        &snapshot.partition_columns,
        &files,
    )?;
    let mut sel = FileSelection::default();
    for (f, v) in snapshot.files.iter().zip(verdicts) {
        match v {
            Verdict::NoMatch => sel.untouched += 1,
            Verdict::AllMatch => sel.whole.push(f.clone()),
            Verdict::MayMatch => sel.candidates.push(f.clone()),
        }
    }
    Ok(sel)
}

/// Tasks reading `files` (packed by bytes for `slots` slots), keeping only files with a row
/// for which `touch` is true (all files when `None`), applying `transforms`, and writing data
/// files.
pub fn rewrite_tasks(
    table: &TableSpec,
    files: &[ActiveFile],
    touch: Option<&str>,
    transforms: &[Transform],
    files_out: &FileSpec,
    slots: u32,
) -> Vec<Task> {
    let total: u64 = files.iter().map(|f| file_bytes(&f.file)).sum();
    let per_task = binpack::task_bytes(total, slots);
    let data: Vec<DataFile> = files.iter().map(|f| f.file.clone()).collect();
    binpack::consecutive(data, file_bytes, per_task)
        .into_iter()
        .map(|files| Task {
            table: table.clone(),
            input: Input::TableFiles {
                files,
                touch: touch.map(str::to_string),
                row_ids: None,
            },
            transforms: transforms.to_vec(),
            sink: Sink::DataFiles(files_out.clone()),
        })
        .collect()
}

/// Tasks reading `files` (packed by bytes for `slots` slots) with their rows' ids (the file's
/// ordinal in `files` and its row's position), applying `transforms` and marking the rows
/// that come out deleted (writing them too with `write`): the deletion-vector form of
/// [`rewrite_tasks`]. A file without such a row produces nothing.
pub fn mark_tasks(
    table: &TableSpec,
    files: &[DataFile],
    transforms: &[Transform],
    write: Option<&FileSpec>,
    slots: u32,
) -> Vec<Task> {
    let total: u64 = files.iter().map(file_bytes).sum();
    let per_task = binpack::task_bytes(total, slots);
    let mut first = 0u32;
    binpack::consecutive(files.to_vec(), file_bytes, per_task)
        .into_iter()
        .map(|files| {
            let row_ids = Some(first);
            first += files.len() as u32;
            Task {
                table: table.clone(),
                input: Input::TableFiles {
                    files,
                    touch: None,
                    row_ids,
                },
                transforms: transforms.to_vec(),
                sink: Sink::MarkRows {
                    write: write.cloned(),
                },
            }
        })
        .collect()
}

/// The table as a task reading only `columns` of its rows carries it (all of them when
/// `columns` names none of the table's).
pub fn with_columns(table: &TableSpec, columns: &[String]) -> TableSpec {
    let Ok(mut schema) = serde_json::from_str::<serde_json::Value>(&table.schema_json) else {
        return table.clone();
    };
    if let Some(fields) = schema
        .get_mut("fields")
        .and_then(serde_json::Value::as_array_mut)
    {
        let keep = |f: &serde_json::Value| {
            f.get("name")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|n| columns.iter().any(|c| c == n))
        };
        if !fields.iter().any(keep) {
            return table.clone();
        }
        fields.retain(keep);
    }
    TableSpec {
        schema_json: schema.to_string(),
        ..table.clone()
    }
}

fn file_bytes(f: &DataFile) -> u64 {
    u64::try_from(f.size_bytes).unwrap_or(0)
}

/// Rows of the given files that are live (not deleted by a deletion vector), when every file
/// has a row count; `None` otherwise.
pub fn live_rows<'a>(files: impl IntoIterator<Item = &'a ActiveFile>) -> Option<i64> {
    files.into_iter().map(|f| f.file.live_rows()).sum()
}

/// Snapshots for planner unit tests: built without IO (the table handle is never loaded).
#[cfg(test)]
pub mod testing {
    use std::collections::{BTreeMap, HashMap};

    use silt_common::table::{ActiveFile, TableProperties, TableSnapshot};
    use silt_common::task::DataFile;
    use url::Url;

    /// Files of partitions `p` with the given sizes (100 rows each, no statistics).
    pub fn sized_files(parts: &[(&str, u64)]) -> Vec<ActiveFile> {
        let specs: Vec<(&str, Option<&str>)> = parts.iter().map(|(p, _)| (*p, None)).collect();
        let mut files = snapshot(&specs).files;
        for (f, (_, size)) in files.iter_mut().zip(parts) {
            f.file.size_bytes = *size as i64;
            f.file.num_records = 100;
        }
        files
    }

    /// A table `(id long, s string, p int)` partitioned by `p`, with one file per
    /// `(partition value, stats JSON)`.
    pub fn snapshot(files: &[(&str, Option<&str>)]) -> TableSnapshot {
        let schema_json = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}},{"name":"s","type":"string","nullable":true,"metadata":{}},{"name":"p","type":"integer","nullable":true,"metadata":{}}]}"#;
        let url = Url::parse("file:///planner-test/t/").unwrap();
        TableSnapshot {
            table: deltalake_core::DeltaTableBuilder::from_url(url)
                .unwrap()
                .build()
                .unwrap(),
            version: 3,
            schema_json: schema_json.to_string(),
            arrow_schema: silt_common::schema::delta_json_to_arrow(schema_json).unwrap(),
            partition_columns: vec!["p".into()],
            configuration: HashMap::new(),
            properties: TableProperties::default(),
            min_reader_version: 1,
            min_writer_version: 2,
            writer_features: vec![],
            files: files
                .iter()
                .enumerate()
                .map(|(i, (p, stats))| {
                    let path = format!("p={p}/f{i}.parquet");
                    ActiveFile {
                        file: DataFile {
                            path: path.clone(),
                            partition_values: BTreeMap::from([(
                                "p".to_string(),
                                Some(p.to_string()),
                            )]),
                            size_bytes: 1000,
                            modification_time_ms: 0,
                            stats_json: stats.map(str::to_string),
                            num_records: stats
                                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                                .and_then(|v| v["numRecords"].as_i64())
                                .unwrap_or(-1),
                            deletion_vector: None,
                        },
                        remove: deltalake_core::kernel::Remove {
                            path,
                            data_change: true,
                            ..Default::default()
                        },
                        tags: Default::default(),
                    }
                })
                .collect(),
            row_id_high_water_mark: None,
            clustering: None,
        }
    }

    pub fn stats(n: i64, min: i64, max: i64) -> String {
        format!(
            r#"{{"numRecords":{n},"minValues":{{"id":{min}}},"maxValues":{{"id":{max}}},"nullCount":{{"id":0}}}}"#
        )
    }
}
