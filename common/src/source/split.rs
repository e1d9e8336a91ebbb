//! Units of work: Parquet row-group splits, whole-file splits, and a Delta table's files.

use super::*;

/// Groups consecutive row groups of each Parquet file into splits of about
/// `target_split_bytes` (by compressed size; a row group is never split, so a split may be
/// larger). Files without row groups produce no split.
pub async fn plan_parquet_splits(
    files: &[SourceFile],
    target_split_bytes: u64,
) -> Result<Vec<SourceSplit>> {
    let target = target_split_bytes.max(1);
    let footers: Vec<_> = files.iter().map(file_with_metadata).collect();
    let metas: Vec<(&SourceFile, ArrowReaderMetadata)> = stream::iter(footers)
        .buffered(FOOTER_CONCURRENCY)
        .try_collect()
        .await?;
    let mut splits = Vec::new();
    for (file, meta) in metas {
        let mut current: Vec<u32> = Vec::new();
        let mut current_bytes = 0u64;
        for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
            let size = u64::try_from(rg.compressed_size()).unwrap_or(0);
            if !current.is_empty() && current_bytes + size > target {
                splits.push(parquet_split(
                    file,
                    std::mem::take(&mut current),
                    current_bytes,
                ));
                current_bytes = 0;
            }
            let index =
                u32::try_from(i).map_err(|_| corrupt(file.uri.as_str(), "too many row groups"))?;
            current.push(index);
            current_bytes += size;
        }
        if !current.is_empty() {
            splits.push(parquet_split(file, current, current_bytes));
        }
    }
    Ok(splits)
}

pub(super) fn parquet_split(
    file: &SourceFile,
    row_groups: Vec<u32>,
    size_bytes: u64,
) -> SourceSplit {
    SourceSplit {
        uri: file.uri.to_string(),
        format: SourceFormat::Parquet,
        row_groups,
        partition_values: BTreeMap::new(),
        size_bytes,
        deletion_vector: None,
    }
}

/// One split per file (CSV and JSON files are not splittable).
pub fn whole_file_splits(files: &[SourceFile], format: SourceFormat) -> Vec<SourceSplit> {
    files
        .iter()
        .map(|f| SourceSplit {
            uri: f.uri.to_string(),
            format,
            row_groups: Vec::new(),
            partition_values: BTreeMap::new(),
            size_bytes: f.size_bytes,
            deletion_vector: None,
        })
        .collect()
}

/// The schema (partition columns included, in table order) and one whole-file Parquet split
/// per active file of the Delta table at `location` (as of `at`), carrying the file's
/// partition values and deletion vector (whose rows the read skips).
///
/// A column-mapped source keeps its columns' physical names and ids in the schema's field
/// metadata: its files are read by them.
pub async fn delta_source(
    location: &Url,
    at: &crate::table::TimeTravel,
) -> Result<(Schema, Vec<SourceSplit>)> {
    let snapshot = crate::table::load_table_at(location, at)
        .await?
        .ok_or_else(|| Error::invalid(format!("source not found: no Delta table at {location}")))?;
    // The source's column metadata describes its own features (identity columns, type
    // changes, column mapping, …), which the new rows' table does not declare.
    let schema =
        crate::schema::without_delta_metadata(&normalize_arrow_schema(&snapshot.arrow_schema)?);
    let mut splits = snapshot
        .files
        .iter()
        .map(|f| crate::table::file_split(location, &f.file))
        .collect::<Result<Vec<_>>>()?;
    splits.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok((schema, splits))
}
