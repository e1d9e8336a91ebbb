//! Validation of a task report against the task that was dispatched (pure).
//!
//! An executor's report is not trusted blindly: every file it says it wrote must be a
//! relative path under the table root, named with the attempt's own prefix (so it cannot
//! name another job's files, the log, or anything outside the table), and every file it
//! says it read and removed must be one of the files the task was given. Statistics must
//! parse and agree with the row count reported. A report that fails is refused: the attempt
//! counts as failed (and is retried elsewhere); the table is never touched by it.

use std::collections::HashSet;

use silt_common::partition::escape_partition_path_value;
use silt_common::task::{
    DataFile, FileSpec, Input, Sink, Task, TaskOutput, attempt_change_data_prefix,
    attempt_data_prefix, attempt_vector_dir,
};

/// Why a report was refused (one line, naming the file at fault).
pub type Refusal = String;

/// Checks `output`, reported by attempt `tag` (`s<stage>-t<index>-a<attempt>`) of `task`.
pub fn validate(task: &Task, tag: &str, output: &TaskOutput) -> Result<(), Refusal> {
    let inputs = input_files(&task.input);
    let partitions = &partition_dir_names(&task.table);
    let written = |spec: &FileSpec, file: &DataFile| -> Result<(), Refusal> {
        written_file(
            file,
            &attempt_data_prefix(&spec.file_prefix, tag),
            None,
            partitions,
        )?;
        counts(file)?;
        if file.deletion_vector.is_some() {
            return Err(format!(
                "new file `{}` reported with a deletion vector",
                file.path
            ));
        }
        Ok(())
    };
    let none = |what: &str, files: &[DataFile]| match files.first() {
        Some(f) => Err(format!(
            "a {} task reported {what} `{}`",
            task.sink.name(),
            f.path
        )),
        None => Ok(()),
    };
    match &task.sink {
        Sink::DataFiles(spec) | Sink::MarkRows { write: Some(spec) } => {
            for f in &output.adds {
                written(spec, f)?;
            }
            if spec.change_data {
                for f in &output.cdc_files {
                    written_file(
                        f,
                        &attempt_change_data_prefix(&spec.file_prefix, tag),
                        Some("_change_data"),
                        partitions,
                    )?;
                }
            } else {
                none("a change data file", &output.cdc_files)?;
            }
        }
        Sink::DeletionVectors {
            file_prefix,
            rewrite,
        } => {
            let dv_dir = attempt_vector_dir(file_prefix, tag);
            for f in &output.adds {
                if inputs.contains(f.path.as_str()) {
                    // A file given to the task, with the vector this attempt wrote.
                    own_vector(f, &dv_dir)?;
                } else if let Some(spec) = rewrite {
                    written(spec, f)?;
                } else {
                    return Err(format!(
                        "reported file `{}` is not one the task was given",
                        f.path
                    ));
                }
            }
            none("a change data file", &output.cdc_files)?;
        }
        Sink::FileStats(_) => {
            for f in &output.adds {
                if !inputs.contains(f.path.as_str()) {
                    return Err(format!(
                        "reported file `{}` is not one the task was given",
                        f.path
                    ));
                }
                counts(f)?;
            }
            none("a change data file", &output.cdc_files)?;
        }
        Sink::MarkRows { write: None } | Sink::Exchange { .. } | Sink::DeleteObjects => {
            none("a new file", &output.adds)?;
            none("a change data file", &output.cdc_files)?;
        }
    }
    for f in &output.removes {
        if !inputs.contains(f.path.as_str()) {
            return Err(format!(
                "reported removing `{}`, which is not a file the task was given",
                f.path
            ));
        }
    }
    Ok(())
}

/// Paths (as in the log) of the table files the task was given.
fn input_files(input: &Input) -> HashSet<&str> {
    match input {
        Input::TableFiles { files, .. } | Input::DeletedRows { files, .. } => {
            files.iter().map(|f| f.path.as_str()).collect()
        }
        // Only the target's files can be removed.
        Input::Merge { target, .. } => input_files(target),
        Input::Source { .. } | Input::Exchange { .. } | Input::Objects { .. } => HashSet::new(),
    }
}

/// The column names a table's partition directories are named by (physical names under
/// column mapping); the columns' own when the schema cannot be read.
fn partition_dir_names(table: &silt_common::task::TableSpec) -> Vec<String> {
    match silt_common::schema::delta_json_to_arrow(&table.schema_json) {
        Ok(schema) => silt_common::table::column_mapping::partition_dir_names(
            &table.partition_columns,
            &schema,
        ),
        Err(_) => table.partition_columns.clone(),
    }
}

/// A file the attempt wrote: a relative path whose directories are partition directories
/// (`column=value`, one per partition column, in order; under `under` first, when given)
/// and whose name starts with `prefix`.
fn written_file(
    file: &DataFile,
    prefix: &str,
    under: Option<&str>,
    partition_columns: &[String],
) -> Result<(), Refusal> {
    let path = &file.path;
    let segments = relative_segments(path)?;
    let (name, dirs) = segments
        .split_last()
        .ok_or_else(|| "reported file has an empty path".to_string())?;
    let dirs = match under {
        Some(top) => match dirs.split_first() {
            Some((first, rest)) if first == top => rest,
            _ => return Err(format!("reported file `{path}` is not under `{top}/`")),
        },
        None => dirs,
    };
    if let Some(d) = dirs.iter().find(|d| !d.contains('=')) {
        return Err(format!(
            "reported file `{path}` is in `{d}`, which is not a partition directory"
        ));
    }
    if dirs.len() != partition_columns.len() {
        return Err(format!(
            "reported file `{path}` is {} directories deep, not {} (one per partition column)",
            dirs.len(),
            partition_columns.len()
        ));
    }
    for (dir, column) in dirs.iter().zip(partition_columns) {
        let decoded = percent_encoding::percent_decode_str(dir).decode_utf8_lossy();
        let named = decoded.split_once('=').map(|(name, _)| name);
        if named != Some(escape_partition_path_value(column).as_str()) {
            return Err(format!(
                "reported file `{path}` is in `{dir}`, not in a directory of partition column `{column}`"
            ));
        }
    }
    if !name.starts_with(prefix) {
        return Err(format!(
            "reported file `{path}` is not named with the attempt's prefix `{prefix}`"
        ));
    }
    if file.size_bytes <= 0 {
        return Err(format!(
            "reported file `{path}` has size {}",
            file.size_bytes
        ));
    }
    Ok(())
}

/// The segments of a relative path as the log spells it (percent-encoded), refused when
/// absolute, with a scheme, or with an empty, `.` or `..` segment (encoded or not).
fn relative_segments(path: &str) -> Result<Vec<String>, Refusal> {
    let bad = |why: &str| Err(format!("reported file `{path}` {why}"));
    if path.is_empty() {
        return bad("has an empty path");
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return bad("is an absolute path");
    }
    if let Some((scheme, _)) = path.split_once(':')
        && !scheme.contains('/')
    {
        return bad("has a scheme or drive");
    }
    let mut out = Vec::new();
    for raw in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        if raw.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains('/')
            || decoded.contains('\\')
        {
            return bad("leaves the table directory or has an empty or relative segment");
        }
        out.push(raw.to_string());
    }
    Ok(out)
}

/// The row count and statistics of a reported file agree.
fn counts(file: &DataFile) -> Result<(), Refusal> {
    let path = &file.path;
    if file.num_records < 0 {
        return Err(format!("reported file `{path}` has no row count"));
    }
    let Some(stats) = &file.stats_json else {
        return Ok(());
    };
    // Only the count is read: the bounds are skipped, not built into a tree (a partitioned
    // write reports thousands of files).
    #[derive(serde::Deserialize)]
    struct Counted {
        // Present (a `null` included, which no count equals) or absent.
        #[serde(rename = "numRecords", default, deserialize_with = "present")]
        num_records: Option<serde_json::Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        serde::Deserialize::deserialize(d).map(Some)
    }
    if !stats.trim_start().starts_with('{') {
        return Err(format!(
            "reported file `{path}` has statistics that are not an object"
        ));
    }
    let parsed: Counted = serde_json::from_str(stats)
        .map_err(|e| format!("reported file `{path}` has statistics that do not parse: {e}"))?;
    match parsed.num_records {
        None => Ok(()),
        Some(n) if n.as_i64() == Some(file.num_records) => Ok(()),
        Some(n) => Err(format!(
            "reported file `{path}` has {} rows by its statistics but {} by its report",
            n, file.num_records
        )),
    }
}

/// A given file's new deletion vector: inline, or stored by this attempt (under `dir`).
fn own_vector(file: &DataFile, dir: &str) -> Result<(), Refusal> {
    let Some(dv) = &file.deletion_vector else {
        return Err(format!(
            "file `{}` reported again without a deletion vector",
            file.path
        ));
    };
    match dv.storage_type.as_str() {
        "i" => Ok(()),
        "u" if silt_common::table::dv::stored_dir(dv) == Some(dir) => Ok(()),
        _ => Err(format!(
            "file `{}` reported with a deletion vector this attempt did not write ({} `{}`)",
            file.path, dv.storage_type, dv.path_or_inline_dv
        )),
    }
}

/// New files whose footers a job checks before committing.
const FOOTERS_CHECKED: usize = 3;

/// Reads the footers of up to [`FOOTERS_CHECKED`] files, drawn at random from those the job
/// wrote (`adds` named with `job_prefix`), and checks that each exists with the size and
/// row count its task reported: a sampled check that reports describe real files.
pub async fn check_written_sample<'a>(
    table_url: &url::Url,
    adds: impl Iterator<Item = &'a DataFile>,
    job_prefix: &str,
) -> Result<(), Refusal> {
    let written: Vec<&DataFile> = adds
        .filter(|f| {
            f.path
                .rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with(job_prefix))
        })
        .collect();
    if written.is_empty() {
        return Ok(());
    }
    let (store, root) = silt_common::storage::store_for(table_url).map_err(|e| e.to_string())?;
    // Random draws (a v4 UUID's bytes), so that no file can count on being left unchecked.
    let random = uuid::Uuid::new_v4().as_u128();
    let mut picked: Vec<usize> = (0..FOOTERS_CHECKED.min(written.len()))
        .map(|i| ((random >> (i * 32)) as u32 as usize) % written.len())
        .collect();
    picked.sort_unstable();
    picked.dedup();
    for i in picked {
        let f = written[i];
        let relative = percent_encoding::percent_decode_str(&f.path).decode_utf8_lossy();
        let full = if root.as_ref().is_empty() {
            relative.to_string()
        } else {
            format!("{root}/{relative}")
        };
        let location = object_store::path::Path::parse(&full)
            .map_err(|e| format!("reported file `{}`: {e}", f.path))?;
        let (size, rows) = silt_common::source::parquet_size_and_rows(store.clone(), location)
            .await
            .map_err(|e| format!("reported file `{}` cannot be checked: {e}", f.path))?;
        if size != f.size_bytes as u64 || rows != f.num_records {
            return Err(format!(
                "reported file `{}` has {size} bytes and {rows} rows, not the {} bytes and {} rows reported",
                f.path, f.size_bytes, f.num_records
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use silt_common::task::{DeletionVector, TableSpec};

    use super::*;

    pub(crate) fn spec(change_data: bool) -> FileSpec {
        FileSpec {
            target_file_size_bytes: 1 << 20,
            stats: Default::default(),
            file_prefix: "part-j1".into(),
            sort_by: None,
            checks: vec![],
            iso_timestamp_partitions: vec![],
            change_data,
        }
    }

    pub(crate) fn file(path: &str) -> DataFile {
        DataFile {
            path: path.into(),
            partition_values: BTreeMap::new(),
            size_bytes: 100,
            modification_time_ms: 0,
            stats_json: Some(r#"{"numRecords":5}"#.into()),
            num_records: 5,
            deletion_vector: None,
        }
    }

    fn task(input: Input, sink: Sink) -> Task {
        partitioned(&[], input, sink)
    }

    pub(crate) fn partitioned(columns: &[&str], input: Input, sink: Sink) -> Task {
        Task {
            table: TableSpec {
                uri: "file:///t".into(),
                schema_json: "{}".into(),
                partition_columns: columns.iter().map(|c| c.to_string()).collect(),
            },
            input,
            transforms: vec![],
            sink,
        }
    }

    fn source() -> Input {
        Input::Objects { paths: vec![] }
    }

    fn table_files(paths: &[&str]) -> Input {
        Input::TableFiles {
            files: paths.iter().map(|p| file(p)).collect(),
            touch: None,
            row_ids: None,
        }
    }

    fn adds(files: Vec<DataFile>) -> TaskOutput {
        TaskOutput {
            adds: files,
            ..Default::default()
        }
    }

    pub(crate) const TAG: &str = "s0-t3-a1";

    #[test]
    fn files_the_attempt_wrote_under_the_table_are_accepted() {
        for (columns, path) in [
            (&[][..], "part-j1-s0-t3-a1-00000.snappy.parquet"),
            (
                &["d"][..],
                "d=2024-01-01/part-j1-s0-t3-a1-00001.snappy.parquet",
            ),
            (
                &["_2"][..],
                "_2=bar%252B%252521/part-j1-s0-t3-a1-00001.snappy.parquet",
            ),
            (
                &["a", "b"][..],
                "a=x%2520y/b=__HIVE_DEFAULT_PARTITION__/part-j1-s0-t3-a1-00002.snappy.parquet",
            ),
        ] {
            let t = partitioned(columns, source(), Sink::DataFiles(spec(false)));
            assert_eq!(validate(&t, TAG, &adds(vec![file(path)])), Ok(()), "{path}");
        }
        let t = task(source(), Sink::DataFiles(spec(false)));
        let mut no_stats = file("part-j1-s0-t3-a1-00000.snappy.parquet");
        no_stats.stats_json = None;
        assert_eq!(validate(&t, TAG, &adds(vec![no_stats])), Ok(()));
    }

    #[test]
    fn forged_paths_are_refused_naming_the_file() {
        let t = task(source(), Sink::DataFiles(spec(false)));
        for (path, why) in [
            ("../../../../etc/hostname", "leaves the table directory"),
            (
                "d=1/../../x/part-j1-s0-t3-a1-0.parquet",
                "leaves the table directory",
            ),
            (
                "d=1/%2E%2E/part-j1-s0-t3-a1-0.parquet",
                "leaves the table directory",
            ),
            ("/etc/part-j1-s0-t3-a1-0.parquet", "absolute path"),
            ("s3://other/part-j1-s0-t3-a1-0.parquet", "scheme"),
            ("file:part-j1-s0-t3-a1-0.parquet", "scheme"),
            (
                "d=1//part-j1-s0-t3-a1-0.parquet",
                "empty or relative segment",
            ),
            (
                "_delta_log/part-j1-s0-t3-a1-0.parquet",
                "not a partition directory",
            ),
            (
                "d=1/part-j1-s0-t3-a1-0.parquet",
                "1 directories deep, not 0",
            ),
            ("part-j2-s0-t3-a1-00000.snappy.parquet", "attempt's prefix"),
            ("part-j1-s0-t3-a0-00000.snappy.parquet", "attempt's prefix"),
            (
                "_delta_log/00000000000000000001.json",
                "not a partition directory",
            ),
            ("", "empty path"),
        ] {
            let err = validate(&t, TAG, &adds(vec![file(path)])).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
            assert!(!err.contains('\n'));
        }
        // Partition directories name the table's partition columns, in order (found by
        // fuzz::accepted_reports_name_only_the_attempts_own_files: `=` passed for `k`).
        let t = partitioned(&["k", "d"], source(), Sink::DataFiles(spec(false)));
        for path in [
            "=/d=1/part-j1-s0-t3-a1-0.parquet",
            "d=1/k=1/part-j1-s0-t3-a1-0.parquet",
            "k=1/s=1/part-j1-s0-t3-a1-0.parquet",
            "K=1/d=1/part-j1-s0-t3-a1-0.parquet",
        ] {
            let err = validate(&t, TAG, &adds(vec![file(path)])).unwrap_err();
            assert!(
                err.contains("not in a directory of partition column"),
                "{path}: {err}"
            );
        }
        // Under column mapping, directories carry the physical name.
        let mut t = partitioned(&["k"], source(), Sink::DataFiles(spec(false)));
        t.table.schema_json = r#"{"type":"struct","fields":[{"name":"k","type":"integer","nullable":true,"metadata":{"delta.columnMapping.physicalName":"col-5f1a"}}]}"#.into();
        let ok = "col-5f1a=1/part-j1-s0-t3-a1-0.parquet";
        assert_eq!(validate(&t, TAG, &adds(vec![file(ok)])), Ok(()));
        assert!(validate(&t, TAG, &adds(vec![file("k=1/part-j1-s0-t3-a1-0.parquet")])).is_err());
    }

    #[test]
    fn counts_and_statistics_must_agree() {
        let t = task(source(), Sink::DataFiles(spec(false)));
        let path = "part-j1-s0-t3-a1-00000.snappy.parquet";
        let mut f = file(path);
        f.num_records = 424242;
        let err = validate(&t, TAG, &adds(vec![f])).unwrap_err();
        assert!(err.contains("5 rows by its statistics but 424242"), "{err}");
        for (stats, expected) in [
            (r#"{"numRecords":null}"#, "rows by its statistics"),
            ("[5]", "not an object"),
            ("{not json", "do not parse"),
        ] {
            let mut f = file(path);
            f.stats_json = Some(stats.into());
            let err = validate(&t, TAG, &adds(vec![f])).unwrap_err();
            assert!(err.contains(expected), "{stats}: {err}");
        }
        let mut f = file(path);
        f.num_records = -1;
        assert!(
            validate(&t, TAG, &adds(vec![f]))
                .unwrap_err()
                .contains("no row count")
        );
        let mut f = file(path);
        f.size_bytes = 0;
        assert!(
            validate(&t, TAG, &adds(vec![f]))
                .unwrap_err()
                .contains("size 0")
        );
    }

    #[test]
    fn removes_must_be_files_the_task_was_given() {
        let t = task(
            table_files(&["a.parquet", "b.parquet"]),
            Sink::DataFiles(spec(false)),
        );
        let out = TaskOutput {
            removes: vec![file("a.parquet")],
            ..Default::default()
        };
        assert_eq!(validate(&t, TAG, &out), Ok(()));
        let out = TaskOutput {
            removes: vec![file("c.parquet")],
            ..Default::default()
        };
        assert!(validate(&t, TAG, &out).unwrap_err().contains("`c.parquet`"));
        // A source task removes nothing.
        let t = task(source(), Sink::DataFiles(spec(false)));
        let out = TaskOutput {
            removes: vec![file("a.parquet")],
            ..Default::default()
        };
        assert!(validate(&t, TAG, &out).is_err());
    }

    #[test]
    fn change_data_files_live_under_change_data_with_their_prefix() {
        let ok = "_change_data/part-j1-s0-t3-a1-cdc-00000.snappy.parquet";
        let out = TaskOutput {
            cdc_files: vec![file(ok)],
            ..Default::default()
        };
        assert_eq!(
            validate(&task(source(), Sink::DataFiles(spec(true))), TAG, &out),
            Ok(())
        );
        // Not asked for.
        assert!(validate(&task(source(), Sink::DataFiles(spec(false))), TAG, &out).is_err());
        let out = TaskOutput {
            cdc_files: vec![file("part-j1-s0-t3-a1-cdc-00000.snappy.parquet")],
            ..Default::default()
        };
        let err = validate(&task(source(), Sink::DataFiles(spec(true))), TAG, &out).unwrap_err();
        assert!(err.contains("not under `_change_data/`"), "{err}");
    }

    #[test]
    fn sinks_that_write_no_files_report_none() {
        let out = adds(vec![file("part-j1-s0-t3-a1-00000.snappy.parquet")]);
        for sink in [
            Sink::DeleteObjects,
            Sink::MarkRows { write: None },
            Sink::Exchange {
                route: silt_common::task::Route::Hash(vec![]),
                partitions: 2,
            },
        ] {
            let err = validate(&task(source(), sink), TAG, &out).unwrap_err();
            assert!(err.contains("reported a new file"), "{err}");
        }
    }

    #[test]
    fn deletion_vectors_must_be_the_attempts_own_on_given_files() {
        let sink = Sink::DeletionVectors {
            file_prefix: "part-j1".into(),
            rewrite: None,
        };
        let t = task(table_files(&["a.parquet"]), sink);
        let with = |dir: &str| {
            let mut f = file("a.parquet");
            f.deletion_vector = Some(DeletionVector {
                storage_type: "u".into(),
                path_or_inline_dv: format!("{dir}{}", "0".repeat(20)),
                offset: Some(1),
                size_in_bytes: 10,
                cardinality: 1,
            });
            f
        };
        assert_eq!(
            validate(&t, TAG, &adds(vec![with("part-j1-s0-t3-a1-dv")])),
            Ok(())
        );
        let err = validate(&t, TAG, &adds(vec![with("part-j9-s0-t3-a1-dv")])).unwrap_err();
        assert!(err.contains("did not write"), "{err}");
        let err = validate(&t, TAG, &adds(vec![file("a.parquet")])).unwrap_err();
        assert!(err.contains("without a deletion vector"), "{err}");
        let err = validate(&t, TAG, &adds(vec![file("b.parquet")])).unwrap_err();
        assert!(err.contains("not one the task was given"), "{err}");
    }
}
