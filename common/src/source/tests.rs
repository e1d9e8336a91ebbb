use super::*;
use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray, UInt32Array};
use arrow::datatypes::{Float64Type, Int64Type};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

fn dir_url(dir: &std::path::Path) -> Url {
    Url::from_directory_path(dir).unwrap()
}

fn file_url(path: &std::path::Path) -> Url {
    Url::from_file_path(path).unwrap()
}

/// Writes `rows` rows (id, name, score) as `row_group_rows`-row row groups.
fn write_parquet(path: &std::path::Path, start: i64, rows: usize, row_group_rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8View, true),
        Field::new("score", DataType::UInt32, true),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(arrow::array::StringViewArray::from_iter_values(names)),
            Arc::new(UInt32Array::from_iter_values(
                ids.iter().map(|i| *i as u32 * 2),
            )),
        ],
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

async fn collect(split: &SourceSplit, schema: &Schema, batch_rows: usize) -> Vec<RecordBatch> {
    read_split(split, Arc::new(schema.clone()), batch_rows)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test]
async fn parquet_list_infer_split_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write_parquet(&dir.path().join("a.parquet"), 0, 1000, 100);
    write_parquet(&dir.path().join("sub/b with space.parquet"), 1000, 50, 100);
    std::fs::write(dir.path().join("_SUCCESS"), b"").unwrap();
    std::fs::write(dir.path().join(".a.parquet.crc"), b"xx").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"xx").unwrap();
    std::fs::create_dir(dir.path().join("_tmp")).unwrap();
    std::fs::write(dir.path().join("_tmp/x.parquet"), b"garbage").unwrap();

    let files = list_source_files(&dir_url(dir.path()), SourceFormat::Parquet)
        .await
        .unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].uri.as_str().ends_with("/a.parquet"));
    assert!(
        files[1]
            .uri
            .as_str()
            .ends_with("/sub/b%20with%20space.parquet")
    );
    assert!(files.iter().all(|f| f.size_bytes > 0));

    let schema = infer_schema(&files, SourceFormat::Parquet).await.unwrap();
    assert_eq!(
        schema,
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Int64, true),
        ])
    );

    let splits = plan_parquet_splits(&files, 1).await.unwrap();
    // Every row group its own split: 10 + 1.
    assert_eq!(splits.len(), 11);
    assert_eq!(splits[3].row_groups, vec![3]);
    let whole = plan_parquet_splits(&files, u64::MAX).await.unwrap();
    assert_eq!(whole.len(), 2);
    assert_eq!(whole[0].row_groups.len(), 10);
    let total: u64 = splits.iter().map(|s| s.size_bytes).sum();
    assert_eq!(total, whole.iter().map(|s| s.size_bytes).sum::<u64>());
    let rg_size = splits[0].size_bytes;
    let mid = plan_parquet_splits(&files, rg_size * 3).await.unwrap();
    assert!(mid.len() > 2 && mid.len() < 11, "{}", mid.len());

    let mut all = Vec::new();
    for s in &splits {
        let batches = collect(s, &schema, 64).await;
        for b in &batches {
            assert_eq!(b.schema().as_ref(), &schema);
            assert!(b.num_rows() <= 64);
        }
        all.extend(ids(&batches));
    }
    assert_eq!(all, (0..1050).collect::<Vec<_>>());

    let b = collect(&splits[3], &schema, 1000).await;
    assert_eq!(ids(&b), (300..400).collect::<Vec<_>>());
    let score = b[0].column(2).as_primitive::<Int64Type>();
    assert_eq!(score.value(0), 600);

    // Whole-file split with a partition value appended as a string.
    let mut s = whole[1].clone();
    s.partition_values.insert("part".into(), Some("x".into()));
    let b = collect(&s, &schema, 1000).await;
    assert_eq!(b[0].num_columns(), 4);
    assert_eq!(b[0].schema().field(3).name(), "part");
    assert_eq!(b[0].column(3).as_string::<i32>().value(49), "x");
}

#[tokio::test]
async fn missing_and_empty_locations() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir_url(&dir.path().join("nope"));
    let e = list_source_files(&missing, SourceFormat::Parquet)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("source not found:"), "{e}");
    let e = list_source_files(&dir_url(dir.path()), SourceFormat::Csv)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("no csv files under"), "{e}");
    std::fs::write(dir.path().join("x.json"), b"{}\n").unwrap();
    let e = list_source_files(&dir_url(dir.path()), SourceFormat::Csv)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("no csv files under"), "{e}");
    // A single file is taken whatever its name.
    let one = list_source_files(&file_url(&dir.path().join("x.json")), SourceFormat::Csv)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}

#[tokio::test]
async fn corrupt_parquet_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let files = list_source_files(&file_url(&path), SourceFormat::Parquet)
        .await
        .unwrap();
    let e = infer_schema(&files, SourceFormat::Parquet)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::CorruptFile { .. }), "{e}");
    assert!(e.to_string().contains("bad.parquet"), "{e}");
    let e = plan_parquet_splits(&files, 1 << 20).await.unwrap_err();
    assert!(matches!(e, Error::CorruptFile { .. }), "{e}");
    let split = &whole_file_splits(&files, SourceFormat::Parquet)[0];
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
    match read_split(split, schema, 10).await {
        Err(Error::CorruptFile { .. }) => {}
        other => panic!("expected CorruptFile, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn parquet_schema_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("a.parquet"), 0, 10, 10);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let file = std::fs::File::create(dir.path().join("b.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
    w.write(
        &RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(StringArray::from(vec!["y"])),
            ],
        )
        .unwrap(),
    )
    .unwrap();
    w.close().unwrap();
    let files = list_source_files(&dir_url(dir.path()), SourceFormat::Parquet)
        .await
        .unwrap();
    let e = infer_schema(&files, SourceFormat::Parquet)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::SchemaMismatch(_)), "{msg}");
    assert!(
        msg.contains("a.parquet") && msg.contains("b.parquet"),
        "{msg}"
    );
    assert!(msg.contains("`id` (long vs string)"), "{msg}");
    assert!(msg.contains("`score` (only in the first)"), "{msg}");
}

#[tokio::test]
async fn csv_infer_and_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1.csv"),
        "id,name,price,day,ts\n1,a,1.5,2020-01-01,2020-01-01T10:00:00\n2,\"b, c\",2,2020-01-02,2020-01-02T00:00:00\n",
    )
    .unwrap();
    // Other column order, an extra column, no trailing newline.
    std::fs::write(
        dir.path().join("2.csv"),
        "NAME,extra,id,price,day,ts\nz,q,3,7,2021-12-31,2021-12-31T23:59:59",
    )
    .unwrap();
    let files = list_source_files(&dir_url(dir.path()), SourceFormat::Csv)
        .await
        .unwrap();
    assert_eq!(files.len(), 2);
    let schema = infer_schema(&files, SourceFormat::Csv).await.unwrap();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(types[0], ("id", &DataType::Int64));
    assert_eq!(types[1], ("name", &DataType::Utf8));
    assert_eq!(types[2], ("price", &DataType::Float64));
    assert_eq!(types[3], ("day", &DataType::Date32));
    assert_eq!(
        types[4],
        (
            "ts",
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        )
    );
    assert_eq!(types[5], ("extra", &DataType::Utf8));

    let splits = whole_file_splits(&files, SourceFormat::Csv);
    let b = collect(&splits[0], &schema, 1).await;
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].column(1).as_string::<i32>().value(0), "b, c");
    let b = collect(&splits[1], &schema, 100).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].schema().as_ref(), &schema);
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(b[0].column(1).as_string::<i32>().value(0), "z");
    assert_eq!(b[0].column(2).as_primitive::<Float64Type>().value(0), 7.0);
    assert_eq!(b[0].column(5).as_string::<i32>().value(0), "q");
    let ts = b[0]
        .column(4)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_640_995_199_000_000);

    // Malformed CSV (a row with too many fields) is a corrupt file.
    std::fs::write(dir.path().join("3.csv"), "id,name\n1,a,b,c\n").unwrap();
    let bad = whole_file_splits(
        &list_source_files(&file_url(&dir.path().join("3.csv")), SourceFormat::Csv)
            .await
            .unwrap(),
        SourceFormat::Csv,
    );
    let small = Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]);
    let r: Result<Vec<RecordBatch>> = read_split(&bad[0], Arc::new(small.clone()), 10)
        .await
        .unwrap()
        .try_collect()
        .await;
    assert!(matches!(r, Err(Error::CorruptFile { .. })), "{r:?}");
    // A value that does not parse as the column type.
    std::fs::write(dir.path().join("4.csv"), "id,name\nxyz,a\n").unwrap();
    let bad = whole_file_splits(
        &list_source_files(&file_url(&dir.path().join("4.csv")), SourceFormat::Csv)
            .await
            .unwrap(),
        SourceFormat::Csv,
    );
    let r: Result<Vec<RecordBatch>> = read_split(&bad[0], Arc::new(small), 10)
        .await
        .unwrap()
        .try_collect()
        .await;
    assert!(matches!(r, Err(Error::CorruptFile { .. })), "{r:?}");
}

#[tokio::test]
async fn json_infer_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for i in 0..250 {
        lines.push_str(&format!(
            "{{\"id\": {i}, \"name\": \"n{i}\", \"tags\": [\"a\"], \"s\": {{\"x\": {i}.5}}}}\n"
        ));
    }
    std::fs::write(dir.path().join("a.jsonl"), &lines).unwrap();
    std::fs::write(dir.path().join("b.json"), "{\"id\": 1000, \"extra\": true}").unwrap();
    let files = list_source_files(&dir_url(dir.path()), SourceFormat::Json)
        .await
        .unwrap();
    assert_eq!(files.len(), 2);
    let schema = infer_schema(&files, SourceFormat::Json).await.unwrap();
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("extra").unwrap().data_type(),
        &DataType::Boolean
    );
    assert!(matches!(
        schema.field_with_name("tags").unwrap().data_type(),
        DataType::List(_)
    ));
    let splits = whole_file_splits(&files, SourceFormat::Json);
    let b = collect(&splits[0], &schema, 100).await;
    assert_eq!(b.len(), 3);
    assert_eq!(ids(&b), (0..250).collect::<Vec<_>>());
    let s = b[2].column_by_name("s").unwrap().as_struct();
    assert_eq!(s.column(0).as_primitive::<Float64Type>().value(49), 249.5);
    let b = collect(&splits[1], &schema, 100).await;
    assert_eq!(ids(&b), vec![1000]);
    assert_eq!(b[0].column_by_name("name").unwrap().null_count(), 1);

    std::fs::write(dir.path().join("c.json"), "{\"id\": 1}\n{\"id\": \n").unwrap();
    let bad = whole_file_splits(
        &list_source_files(&file_url(&dir.path().join("c.json")), SourceFormat::Json)
            .await
            .unwrap(),
        SourceFormat::Json,
    );
    let r: Result<Vec<RecordBatch>> = read_split(&bad[0], Arc::new(schema), 10)
        .await
        .unwrap()
        .try_collect()
        .await;
    assert!(matches!(r, Err(Error::CorruptFile { .. })), "{r:?}");
}

/// A golden table directory (`<repo>/tests/golden/<rel>`, or `$SILT_GOLDEN_DIR/<rel>`).
/// Paths that do not exist are returned as they are (`…/expected/latest` probes), but
/// the golden root itself must exist.
fn golden(rel: &str) -> Url {
    let root = match std::env::var_os("SILT_GOLDEN_DIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden"),
    };
    let root = std::fs::canonicalize(&root).unwrap_or_else(|e| {
        panic!(
            "golden tables not found at {} ({e}); see tests/golden/README.md",
            root.display()
        )
    });
    Url::from_directory_path(root.join(rel)).unwrap()
}

#[tokio::test]
async fn delta_source_basic_partitioned() {
    let url = golden("dat/basic_partitioned/delta");
    let (schema, splits) = delta_source(&url, &crate::table::TimeTravel::Latest)
        .await
        .unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["letter", "number", "a_float"]);
    assert_eq!(splits.len(), 6);
    let mut rows = Vec::new();
    for s in &splits {
        assert_eq!(s.format, SourceFormat::Parquet);
        assert!(s.partition_values.contains_key("letter"));
        for b in collect(s, &schema, 100).await {
            assert_eq!(b.schema().as_ref(), &schema);
            let letter = b.column(0).as_string::<i32>();
            let number = b.column(1).as_primitive::<Int64Type>();
            let f = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
            for i in 0..b.num_rows() {
                rows.push((
                    letter.is_valid(i).then(|| letter.value(i).to_string()),
                    number.value(i),
                    f.value(i),
                ));
            }
        }
    }
    rows.sort_by_key(|r| r.1);
    let expected = [
        (Some("a"), 1, 1.1),
        (Some("b"), 2, 2.2),
        (Some("c"), 3, 3.3),
        (Some("a"), 4, 4.4),
        (Some("e"), 5, 5.5),
        (None, 6, 6.6),
    ];
    let expected: Vec<(Option<String>, i64, f64)> = expected
        .iter()
        .map(|(l, n, f)| (l.map(str::to_string), *n, *f))
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn delta_source_refusals() {
    let missing = tempfile::tempdir().unwrap();
    let e = delta_source(&dir_url(missing.path()), &crate::table::TimeTravel::Latest)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("source not found"), "{e}");
}

/// Reads every row of a Delta source and of a directory of Parquet files, as sorted
/// strings over the columns of the latter.
async fn golden_rows(table: &Url, expected: &Url, skip: &[&str]) -> (Vec<String>, Vec<String>) {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let files = list_source_files(expected, SourceFormat::Parquet)
        .await
        .unwrap();
    let expected_schema = infer_schema(&files, SourceFormat::Parquet).await.unwrap();
    let expected_splits = plan_parquet_splits(&files, 1 << 20).await.unwrap();
    let (schema, splits) = delta_source(table, &crate::table::TimeTravel::Latest)
        .await
        .unwrap();
    let names: Vec<String> = expected_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !skip.contains(&n.as_str()))
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut out = (Vec::new(), Vec::new());
    for (side, splits, schema) in [
        (0, &splits, &schema),
        (1, &expected_splits, &expected_schema),
    ] {
        for split in splits {
            for b in collect(split, schema, 1000).await {
                let cols: Vec<ArrayFormatter> = names
                    .iter()
                    .map(|n| {
                        let idx = b
                            .schema()
                            .fields()
                            .iter()
                            .position(|f| f.name().eq_ignore_ascii_case(n))
                            .unwrap_or_else(|| panic!("{table}: no column {n}"));
                        ArrayFormatter::try_new(b.column(idx).as_ref(), &options).unwrap()
                    })
                    .collect();
                for i in 0..b.num_rows() {
                    let row: Vec<String> = cols.iter().map(|c| c.value(i).to_string()).collect();
                    let row = row.join(" | ");
                    if side == 0 {
                        out.0.push(row);
                    } else {
                        out.1.push(row);
                    }
                }
            }
        }
    }
    out.0.sort();
    out.1.sort();
    out
}

/// Golden tables written by Spark: the Delta source must return their expected content.
#[tokio::test]
async fn delta_source_reads_golden_tables() {
    let tables = [
        "dat/basic_append",
        "dat/basic_partitioned",
        "dat/multi_partitioned",
        "dat/with_schema_change",
        "delta-kernel-rs-golden/data-reader-primitives",
        "delta-kernel-rs-golden/data-reader-partition-values",
        "delta-kernel-rs-golden/data-reader-nested-struct",
        "delta-kernel-rs-golden/data-reader-map",
        "delta-kernel-rs-golden/data-reader-array-complex-objects",
        "delta-kernel-rs-golden/basic-decimal-table",
        "delta-kernel-rs-golden/decimal-various-scale-precision",
        "delta-kernel-rs-golden/kernel-timestamp-int96",
        "delta-kernel-rs-golden/data-reader-timestamp_ntz",
        "delta-kernel-rs-golden/parquet-all-types",
        "delta-kernel-rs-golden/basic-with-inserts-deletes-checkpoint",
        "delta-kernel-rs-golden/multi-part-checkpoint",
        "delta-kernel-rs-golden/data-reader-escaped-chars",
        "delta-kernel-rs-golden/v2-checkpoint-parquet",
        // Deletion vectors: deleted rows must not come back.
        "delta-kernel-rs-golden/dv-partitioned-with-checkpoint",
        // Column mapping: files name their columns physically (nested ones too).
        "delta-kernel-rs-golden/table-with-columnmapping-mode-name",
        "delta-kernel-rs-golden/table-with-columnmapping-mode-id",
        "delta-kernel-rs-golden/data-reader-timestamp_ntz-name-mode",
        "delta-kernel-rs-golden/data-reader-timestamp_ntz-id-mode",
        "delta-kernel-rs-golden/dv-with-columnmapping",
    ];
    let mut failures = Vec::new();
    for t in tables {
        let expected_root = golden(&format!("{t}/expected"));
        let latest = golden(&format!("{t}/expected/latest"));
        let expected = if latest.to_file_path().is_ok_and(|p| p.is_dir()) {
            latest
        } else {
            expected_root
        };
        // Spark wrote this table's timestamp partition values in its session time zone
        // (America/Los_Angeles); silt reads them as UTC, as the Delta protocol says.
        let skip: &[&str] = if t.ends_with("data-reader-partition-values") {
            &["as_timestamp"]
        } else {
            &[]
        };
        let (got, want) = golden_rows(&golden(&format!("{t}/delta")), &expected, skip).await;
        if got != want {
            let first = got
                .iter()
                .zip(&want)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("got  {a}\n    want {b}"))
                .unwrap_or_default();
            failures.push(format!(
                "{t}: {} rows vs {} expected\n    {first}",
                got.len(),
                want.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_json_lines_are_named_by_their_line() {
    let text = b"{\"a\": 1}\n\n{\"a\": 2}\r\n{\"a\": \n[1]\n";
    assert_eq!(
        bad_json_line(text, 1).as_deref(),
        Some("line 4, column 6: EOF while parsing a value")
    );
    assert_eq!(
        bad_json_line(b"{}\n[1]\n", 10).as_deref(),
        Some("line 11 is not a JSON object")
    );
    assert_eq!(bad_json_line(b"{}\n{\"b\": null}\n", 1), None);
}

#[tokio::test]
async fn a_sampled_read_keeps_every_stride_th_row() {
    // Parquet decodes only the sampled rows (a row selection across row groups of 100 rows,
    // in batches of 7); CSV is read whole and thinned. Both give rows 0, s, 2s, ...
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("a.parquet"), 0, 1000, 100);
    let csv: String = std::iter::once("id,name\n".to_string())
        .chain((0..1000).map(|i| format!("{i},n{i}\n")))
        .collect();
    std::fs::write(dir.path().join("a.csv"), csv).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    for format in [SourceFormat::Parquet, SourceFormat::Csv] {
        let name = if format == SourceFormat::Parquet {
            "a.parquet"
        } else {
            "a.csv"
        };
        let files = list_source_files(&file_url(&dir.path().join(name)), format)
            .await
            .unwrap();
        let split = &whole_file_splits(&files, format)[0];
        for stride in [1u64, 3, 64, 999, 5000] {
            let batches: Vec<RecordBatch> = read_split_sampled(split, schema.clone(), 7, stride)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let expected: Vec<i64> = (0..1000).step_by(stride as usize).collect();
            assert_eq!(ids(&batches), expected, "{format:?} stride {stride}");
            let names: Vec<String> = batches
                .iter()
                .flat_map(|b| {
                    let c =
                        arrow::compute::cast(b.column_by_name("name").unwrap(), &DataType::Utf8)
                            .unwrap();
                    c.as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(
                names,
                expected.iter().map(|i| format!("n{i}")).collect::<Vec<_>>()
            );
        }
    }
}

/// A Parquet file of decimals stored every way: `p7` as 32-bit integers, `p15` as 64-bit
/// ones, `p28` as fixed-length bytes, and `p7_wide` (precision 7) as 64-bit integers.
fn write_decimals(path: &std::path::Path, rows: i64) -> RecordBatch {
    use arrow::array::Decimal128Array;
    let dec = |p, s| DataType::Decimal128(p, s);
    let schema = Arc::new(Schema::new(vec![
        Field::new("p7", dec(7, 2), true),
        Field::new("p15", dec(15, 3), false),
        Field::new("p28", dec(28, 4), true),
        Field::new("p7_wide", dec(7, 2), true),
    ]));
    let column = |p: u8, s: i8, f: &dyn Fn(i64) -> Option<i128>| -> ArrayRef {
        Arc::new(
            Decimal128Array::from_iter((0..rows).map(f))
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(7, 2, &|i| {
                (i % 7 != 0).then_some((i * 7919 % 19_999_999 - 9_999_999) as i128)
            }),
            column(15, 3, &|i| {
                Some(i as i128 * 1_000_000_007 - 999_999_999_999_999)
            }),
            column(28, 4, &|i| {
                (i % 5 != 0).then_some(i as i128 * 10_i128.pow(22))
            }),
            column(7, 2, &|i| (i % 3 != 0).then_some(-(i as i128))),
        ],
    )
    .unwrap();
    let mut parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
        .convert(&schema)
        .unwrap()
        .root_schema()
        .clone();
    // `p7_wide` as 64-bit integers (a writer may choose them for any precision up to 18).
    let fields = parquet_schema.get_fields().to_vec();
    let wide = parquet::schema::types::Type::primitive_type_builder(
        "p7_wide",
        parquet::basic::Type::INT64,
    )
    .with_repetition(parquet::basic::Repetition::OPTIONAL)
    .with_converted_type(parquet::basic::ConvertedType::DECIMAL)
    .with_precision(7)
    .with_scale(2)
    .build()
    .unwrap();
    let fields: Vec<_> = fields
        .into_iter()
        .map(|f| {
            if f.name() == "p7_wide" {
                Arc::new(wide.clone())
            } else {
                f
            }
        })
        .collect();
    parquet_schema = parquet::schema::types::Type::group_type_builder("arrow_schema")
        .with_fields(fields)
        .build()
        .unwrap();
    let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new().with_parquet_schema(
        parquet::schema::types::SchemaDescriptor::new(Arc::new(parquet_schema)),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new_with_options(file, schema, options).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    batch
}

/// A narrowed read gives the decimals a file stores as 32- or 64-bit integers in the narrow
/// type their `Decimal128` travels in (the stored values, not widened), others as a plain
/// read does: bytes-stored ones, ones stored wider than their narrow type, and ones the
/// source schema types differently (cast to it). The values are those of a plain read.
#[tokio::test]
async fn narrowed_reads_keep_integer_decimals_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_decimals(&dir.path().join("d.parquet"), 3000);
    let files = list_source_files(&dir_url(dir.path()), SourceFormat::Parquet)
        .await
        .unwrap();
    let splits = whole_file_splits(&files, SourceFormat::Parquet);
    let schema = written.schema();
    let read = |narrowed: bool, schema: SchemaRef| {
        let split = splits[0].clone();
        async move {
            let stream = if narrowed {
                read_split_narrowed(&split, schema, 1024).await.unwrap()
            } else {
                read_split(&split, schema, 1024).await.unwrap()
            };
            stream.try_collect::<Vec<_>>().await.unwrap()
        }
    };
    let plain = read(false, schema.clone()).await;
    let narrowed = read(true, schema.clone()).await;
    assert_eq!(narrowed.len(), 3, "batches of at most 1024 rows");
    let types: Vec<DataType> = narrowed[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        vec![
            DataType::Decimal32(7, 2),
            DataType::Decimal64(15, 3),
            DataType::Decimal128(28, 4),
            DataType::Decimal128(7, 2),
        ]
    );
    assert!(
        !narrowed[0].schema().field(1).is_nullable(),
        "nullability kept"
    );
    for (n, p) in narrowed.iter().zip(&plain) {
        assert_eq!(
            &crate::schema::conform_batch(n, &schema).unwrap(),
            p,
            "widened, the narrowed rows are the plain read's"
        );
    }
    let all = arrow::compute::concat_batches(&schema, &plain).unwrap();
    assert_eq!(all, written, "the plain read is the file's rows");

    // A source schema of a wider precision than the file's: cast to it.
    let wider = Arc::new(Schema::new(vec![
        Field::new("p7", DataType::Decimal128(9, 2), true),
        schema.field(1).clone(),
        schema.field(2).clone(),
        schema.field(3).clone(),
    ]));
    let cast = read(true, wider.clone()).await;
    assert_eq!(
        cast[0].schema().field(0).data_type(),
        &DataType::Decimal128(9, 2)
    );
    assert_eq!(
        cast[0].schema().field(1).data_type(),
        &DataType::Decimal64(15, 3)
    );
    let plain_wider = read(false, wider.clone()).await;
    assert_eq!(
        crate::schema::conform_batch(&cast[2], &wider).unwrap(),
        plain_wider[2]
    );
}
