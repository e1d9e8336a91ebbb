//! Write sources: listing files, inferring their schema, splitting them into tasks and
//! reading splits as Arrow batches.
//!
//! Sources are Parquet, CSV (header row, comma separated), newline-delimited JSON, or the
//! active files of another Delta table. Everything goes through `object_store`, so local
//! paths and S3 behave alike. Reading is streaming: Parquet by row group, CSV/JSON by
//! chunks of the object, so memory stays bounded by the batch size.
//!
//! Batches read from a split always have the *normalized* source schema (see
//! [`crate::schema::normalize_arrow_schema`]) plus the split's partition values.
//!
//! Layout: [`list`] (listing files), [`footer`] (Parquet footers and the object reader),
//! [`infer`] (schema inference), [`split`] (units of work, Delta sources as splits),
//! [`read`] (streaming a split as batches).

mod footer;
mod infer;
mod list;
mod read;
mod split;
#[cfg(test)]
mod tests;

pub use footer::{ObjectReader, parquet_size_and_rows};
pub use infer::infer_schema;
pub use list::list_source_files;
pub use read::{
    RowFilterSpec, read_split, read_split_filtered, read_split_narrowed, read_split_sampled,
};
pub use split::{delta_source, plan_parquet_splits, whole_file_splits};

#[allow(unused_imports)]
use {footer::*, infer::*, list::*, read::*, split::*};

use std::collections::BTreeMap;
use std::sync::Arc;

use std::ops::Range;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use bytes::{Buf, Bytes};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::basic::Type as PhysicalType;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use url::Url;

use crate::schema::{
    conform_batch, conform_batch_keeping_narrowed, constant_array, normalize_arrow_schema,
    type_name,
};
use crate::storage::store_for;
use crate::task::{SourceFormat, SourceSplit};
use crate::{Error, Result};

/// Parquet footers read concurrently when inferring schemas or planning splits.
const FOOTER_CONCURRENCY: usize = 16;
/// Bytes fetched from the end of a Parquet file in the first request for its footer.
const FOOTER_PREFETCH_BYTES: usize = 64 * 1024;
/// Bytes read from the start of each CSV/JSON file for schema inference.
const INFER_PREFIX_BYTES: u64 = 4 * 1024 * 1024;
/// Total bytes read for CSV/JSON schema inference, over all sampled files.
const INFER_BUDGET_BYTES: u64 = 16 * 1024 * 1024;
/// Files sampled for CSV/JSON schema inference.
const INFER_MAX_FILES: usize = 8;
/// Records sampled for CSV/JSON schema inference (in total).
const INFER_MAX_RECORDS: usize = 10_000;
/// Longest CSV header line accepted.
const CSV_MAX_HEADER_BYTES: usize = 1024 * 1024;

/// A file of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Absolute URL of the file.
    pub uri: Url,
    /// Size of the object in bytes.
    pub size_bytes: u64,
}

/// Object store failures stay storage errors (retryable); anything else is a corrupt file.
fn parquet_err(uri: &str, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(os) => Error::ObjectStore(*os),
            Err(other) => corrupt(uri, other),
        },
        other => corrupt(uri, other),
    }
}

fn arrow_err(uri: &str, e: ArrowError) -> Error {
    match e {
        ArrowError::ExternalError(inner) => match inner.downcast::<object_store::Error>() {
            Ok(os) => Error::ObjectStore(*os),
            Err(other) => corrupt(uri, other),
        },
        other => corrupt(uri, other),
    }
}

/// The first line of JSON-lines text that is not a JSON object, numbered from `first`, with
/// what is wrong (Arrow's JSON errors count lines within one record, so they all say line 1).
fn bad_json_line(text: &[u8], first: usize) -> Option<String> {
    bad_json_line_with(text, first, |_| None)
}

/// [`bad_json_line`], where `check` also says what is wrong with an object, if anything
/// (the Delta log's actions).
pub(crate) fn bad_json_line_with(
    text: &[u8],
    first: usize,
    check: impl Fn(&serde_json::Value) -> Option<String>,
) -> Option<String> {
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = first + i;
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => {
                if let Some(why) = check(&v) {
                    return Some(format!("line {n}: {why}"));
                }
            }
            Ok(_) => return Some(format!("line {n} is not a JSON object")),
            Err(e) => {
                let what = e.to_string();
                let what = what.split(" at line ").next().unwrap_or(&what).to_string();
                return Some(format!("line {n}, column {}: {what}", e.column()));
            }
        }
    }
    None
}

/// Where a JSON-lines object is malformed: reads it again, line by line, to name the line.
async fn locate_json_error(uri: &str) -> Option<String> {
    let (store, path) = store_for(&url::Url::parse(uri).ok()?).ok()?;
    let mut chunks = store.get(&path).await.ok()?.into_stream();
    let (mut carry, mut line) = (Vec::new(), 1usize);
    while let Some(Ok(chunk)) = chunks.next().await {
        carry.extend_from_slice(&chunk);
        let Some(end) = carry.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        if let Some(bad) = bad_json_line(&carry[..end], line) {
            return Some(bad);
        }
        line += carry[..=end].iter().filter(|b| **b == b'\n').count();
        carry.drain(..=end);
    }
    bad_json_line(&carry, line)
}

fn corrupt(uri: &str, reason: impl std::fmt::Display) -> Error {
    Error::CorruptFile {
        path: uri.to_string(),
        reason: reason.to_string(),
    }
}
