//! Schema inference: Parquet footers, CSV headers and JSON records sampled within a
//! budget.

use super::*;

/// The (normalized) schema of a source.
///
/// * Parquet: every file's footer is read; all files must agree on column names and types
///   (nullability may differ; the result is nullable where any file is), else a
///   [`Error::SchemaMismatch`] naming two files and the differing columns. A file that is
///   not Parquet is an [`Error::CorruptFile`].
/// * CSV (header row, comma separated) and JSON (newline-delimited): Arrow's inference over
///   the start of the first files (at most 8 files, 16 MiB, 10 000 records). CSV columns
///   whose type differs between files become `double` (integer/float) or `string`. Like
///   Spark, CSV timestamps without a time zone are read as UTC `timestamp`.
pub async fn infer_schema(files: &[SourceFile], format: SourceFormat) -> Result<Schema> {
    if files.is_empty() {
        return Err(Error::invalid("no source files to infer a schema from"));
    }
    match format {
        SourceFormat::Parquet => infer_parquet_schema(files).await,
        SourceFormat::Csv => infer_csv_schema(files).await,
        SourceFormat::Json => infer_json_schema(files).await,
        SourceFormat::Delta => Err(Error::invalid(
            "the schema of a Delta source comes from its log (delta_source)",
        )),
    }
}

/// A Parquet file's footer schema, normalised.
pub(super) async fn file_schema(f: &SourceFile) -> Result<(&SourceFile, Schema)> {
    let meta = file_metadata(f).await?;
    let schema = normalize_arrow_schema(meta.schema()).map_err(|e| match e {
        Error::SchemaMismatch(m) => Error::SchemaMismatch(format!("{}: {m}", f.uri)),
        other => other,
    })?;
    Ok((f, schema))
}

pub(super) async fn file_with_metadata(
    f: &SourceFile,
) -> Result<(&SourceFile, ArrowReaderMetadata)> {
    Ok((f, file_metadata(f).await?))
}

pub(super) async fn infer_parquet_schema(files: &[SourceFile]) -> Result<Schema> {
    // The futures are collected first: a lazily mapped iterator held across awaits makes the
    // enclosing future fail rustc's `Send` check (higher-ranked lifetimes, rust#64552).
    let footers: Vec<_> = files.iter().map(file_schema).collect();
    let mut schemas = stream::iter(footers).buffered(FOOTER_CONCURRENCY);
    let Some(first) = schemas.next().await else {
        return Err(Error::invalid("no source files to infer a schema from"));
    };
    let (first_file, mut merged) = first?;
    while let Some(next) = schemas.next().await {
        let (file, schema) = next?;
        let diffs = schema_differences(&merged, &schema);
        if !diffs.is_empty() {
            return Err(Error::SchemaMismatch(format!(
                "source files disagree on the schema: {} and {} differ in {}",
                first_file.uri,
                file.uri,
                diffs.join(", ")
            )));
        }
        merged = widen_nullability(&merged, &schema);
    }
    Ok(merged)
}

/// Columns (by name, case-insensitively) whose types differ, or that only one side has.
pub(super) fn schema_differences(a: &Schema, b: &Schema) -> Vec<String> {
    let mut diffs = Vec::new();
    for fa in a.fields() {
        match find(b.fields(), fa.name()) {
            Some(fb) => {
                if !same_type(fa.data_type(), fb.data_type()) {
                    diffs.push(format!(
                        "`{}` ({} vs {})",
                        fa.name(),
                        type_name(fa.data_type()),
                        type_name(fb.data_type())
                    ));
                }
            }
            None => diffs.push(format!("`{}` (only in the first)", fa.name())),
        }
    }
    for fb in b.fields() {
        if find(a.fields(), fb.name()).is_none() {
            diffs.push(format!("`{}` (only in the second)", fb.name()));
        }
    }
    diffs
}

pub(super) fn find<'a>(fields: &'a Fields, name: &str) -> Option<&'a Arc<Field>> {
    fields.iter().find(|f| f.name() == name).or_else(|| {
        let lower = name.to_lowercase();
        fields.iter().find(|f| f.name().to_lowercase() == lower)
    })
}

/// Type equality ignoring nested nullability and metadata.
pub(super) fn same_type(a: &DataType, b: &DataType) -> bool {
    loosen(a) == loosen(b)
}

pub(super) fn loosen(dt: &DataType) -> DataType {
    let field = |f: &Field| Field::new(f.name(), loosen(f.data_type()), true);
    match dt {
        DataType::List(f) => DataType::List(Arc::new(field(f))),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(|f| field(f)).collect()),
        DataType::Map(f, s) => DataType::Map(Arc::new(field(f)), *s),
        other => other.clone(),
    }
}

pub(super) fn widen_nullability(a: &Schema, b: &Schema) -> Schema {
    let fields: Vec<Field> = a
        .fields()
        .iter()
        .map(|fa| {
            let nullable =
                fa.is_nullable() || find(b.fields(), fa.name()).is_some_and(|fb| fb.is_nullable());
            fa.as_ref().clone().with_nullable(nullable)
        })
        .collect();
    Schema::new(fields)
}

/// Reads the start of up to [`INFER_MAX_FILES`] files, each cut after its last complete
/// line when truncated.
pub(super) async fn sample_prefixes(files: &[SourceFile]) -> Result<Vec<(&SourceFile, Bytes)>> {
    let mut out = Vec::new();
    let mut budget = INFER_BUDGET_BYTES;
    for file in files.iter().take(INFER_MAX_FILES) {
        if budget == 0 {
            break;
        }
        let len = file.size_bytes.min(INFER_PREFIX_BYTES).min(budget);
        if len == 0 {
            continue;
        }
        let (store, path) = store_for(&file.uri)?;
        let mut bytes = store.get_range(&path, 0..len).await?;
        if len < file.size_bytes {
            match bytes.iter().rposition(|b| *b == b'\n') {
                Some(i) => bytes.truncate(i + 1),
                None => {
                    return Err(corrupt(
                        file.uri.as_str(),
                        format!("no line break in the first {len} bytes"),
                    ));
                }
            }
        }
        budget = budget.saturating_sub(bytes.len() as u64);
        out.push((file, bytes));
    }
    Ok(out)
}

pub(super) async fn infer_csv_schema(files: &[SourceFile]) -> Result<Schema> {
    let samples = sample_prefixes(files).await?;
    let mut merged: Option<Schema> = None;
    let mut records_left = INFER_MAX_RECORDS;
    for (file, bytes) in samples {
        if records_left == 0 {
            break;
        }
        let format = arrow::csv::reader::Format::default().with_header(true);
        let (schema, read) = format
            .infer_schema(bytes.reader(), Some(records_left))
            .map_err(|e| corrupt(file.uri.as_str(), e))?;
        records_left = records_left.saturating_sub(read);
        let schema = csv_timestamps_as_utc(&schema);
        merged = Some(match merged {
            None => schema,
            Some(m) => merge_csv_schemas(&m, &schema),
        });
    }
    let schema = merged.ok_or_else(|| Error::invalid("the CSV source files are empty"))?;
    normalize_arrow_schema(&schema)
}

pub(super) fn csv_timestamps_as_utc(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(_, None) => f.as_ref().clone().with_data_type(
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                ),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    )
}

pub(super) fn merge_csv_schemas(a: &Schema, b: &Schema) -> Schema {
    let mut fields: Vec<Field> = a
        .fields()
        .iter()
        .map(|fa| match find(b.fields(), fa.name()) {
            None => fa.as_ref().clone().with_nullable(true),
            Some(fb) => {
                let dt = match (fa.data_type(), fb.data_type()) {
                    (x, y) if x == y => x.clone(),
                    (DataType::Null, y) => y.clone(),
                    (x, DataType::Null) => x.clone(),
                    (DataType::Int64 | DataType::Float64, DataType::Int64 | DataType::Float64) => {
                        DataType::Float64
                    }
                    _ => DataType::Utf8,
                };
                Field::new(fa.name(), dt, true)
            }
        })
        .collect();
    for fb in b.fields() {
        if find(a.fields(), fb.name()).is_none() {
            fields.push(fb.as_ref().clone().with_nullable(true));
        }
    }
    Schema::new(fields)
}

pub(super) async fn infer_json_schema(files: &[SourceFile]) -> Result<Schema> {
    let samples = sample_prefixes(files).await?;
    if samples.is_empty() {
        return Err(Error::invalid("the JSON source files are empty"));
    }
    // One buffer, so Arrow's own rules reconcile types across files.
    let mut all = Vec::new();
    for (_, bytes) in &samples {
        all.extend_from_slice(bytes);
        if !all.ends_with(b"\n") {
            all.push(b'\n');
        }
    }
    let (schema, _) =
        arrow::json::reader::infer_json_schema(std::io::Cursor::new(all), Some(INFER_MAX_RECORDS))
            .map_err(|e| {
                // Name the file and line at fault when a line is malformed.
                for (f, bytes) in &samples {
                    if let Some(why) = bad_json_line(bytes, 1) {
                        return corrupt(f.uri.as_str(), why);
                    }
                }
                let names: Vec<&str> = samples.iter().map(|(f, _)| f.uri.as_str()).collect();
                corrupt(&names.join(", "), e)
            })?;
    normalize_arrow_schema(&schema)
}
