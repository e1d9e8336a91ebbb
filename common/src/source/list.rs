//! Listing a source: its files, recursively, skipping hidden names.

use super::*;

/// The files of a Parquet, CSV or JSON source at `location`: the file itself, or every
/// matching file below the directory (recursively), sorted by path.
///
/// Files and directories whose name starts with `_` or `.` are skipped (`_SUCCESS`,
/// `.crc`, `_delta_log`), except partition directories like `_x=1`. In a directory only
/// these extensions count: `.parquet`; `.csv`; `.json`, `.jsonl`, `.ndjson`.
///
/// A missing location is `InvalidInput("source not found: …")`; a directory without
/// matching files is `InvalidInput("no <format> files under …")`.
pub async fn list_source_files(location: &Url, format: SourceFormat) -> Result<Vec<SourceFile>> {
    if format == SourceFormat::Delta {
        return Err(Error::invalid(
            "a Delta source is read through its log (delta_source), not by listing files",
        ));
    }
    let (store, prefix) = store_for(location)?;
    match store.head(&prefix).await {
        Ok(meta) => {
            return Ok(vec![SourceFile {
                uri: object_url(location, &meta.location),
                size_bytes: meta.size,
            }]);
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }

    let mut listing = store.list(Some(&prefix));
    let mut files = Vec::new();
    let mut seen_any = false;
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        seen_any = true;
        let Some(parts) = meta.location.prefix_match(&prefix) else {
            continue;
        };
        let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        if parts.iter().any(|p| is_hidden(p)) {
            continue;
        }
        let Some(name) = parts.last() else { continue };
        if !has_extension(name, format) {
            continue;
        }
        files.push(SourceFile {
            uri: object_url(location, &meta.location),
            size_bytes: meta.size,
        });
    }
    if files.is_empty() {
        let exists = seen_any
            || (location.scheme() == "file"
                && location.to_file_path().map(|p| p.is_dir()).unwrap_or(false));
        return Err(if exists {
            Error::invalid(format!("no {} files under {location}", format.as_str()))
        } else {
            Error::invalid(format!("source not found: {location}"))
        });
    }
    files.sort_by(|a, b| a.uri.as_str().cmp(b.uri.as_str()));
    Ok(files)
}

pub(super) fn is_hidden(part: &str) -> bool {
    (part.starts_with('_') || part.starts_with('.')) && !part.contains('=')
}

pub(super) fn has_extension(name: &str, format: SourceFormat) -> bool {
    let name = name.to_ascii_lowercase();
    let exts: &[&str] = match format {
        SourceFormat::Parquet => &[".parquet"],
        SourceFormat::Csv => &[".csv"],
        SourceFormat::Json => &[".json", ".jsonl", ".ndjson"],
        SourceFormat::Delta => &[],
    };
    exts.iter().any(|e| name.ends_with(e))
}

/// The URL of an object of the store serving `location`.
pub(super) fn object_url(location: &Url, path: &Path) -> Url {
    let mut url = location.clone();
    url.set_path(&format!("/{}", path.as_ref()));
    url.set_query(None);
    url.set_fragment(None);
    url
}

pub(super) fn parse_url(uri: &str) -> Result<Url> {
    Url::parse(uri).map_err(|e| Error::invalid(format!("invalid file URI `{uri}`: {e}")))
}
