//! Arrow ↔ Delta schemas and schema enforcement, with Delta Spark semantics.
//!
//! * [`normalize_arrow_schema`] maps whatever a source produces (views, dictionaries, unsigned
//!   integers, any timestamp unit) onto the Arrow types that Delta can store, and rejects the
//!   rest with an error naming the column.
//! * [`arrow_to_delta_json`] / [`delta_json_to_arrow`] convert to and from the Delta
//!   `StructType` JSON of `metaData.schemaString` (through deltalake-core's kernel).
//! * [`resolve_write_schema`] decides the schema a write produces: schema enforcement,
//!   `mergeSchema` and `overwriteSchema`.
//! * [`conform_batch`] makes a batch fit a resolved schema (by name, case-insensitively,
//!   with checked casts and NOT NULL checks).
//! * [`constant_array`] turns a Delta partition-value string back into a column.
//!
//! Column names are matched case-insensitively everywhere, like Delta Spark; the table's
//! spelling wins.
//!
//! Layout: [`types`] (normalization, Delta JSON), [`evolve`] (schema resolution), [`conform`]
//! (conforming batches, partition values as columns).

mod conform;
mod evolve;
#[cfg(test)]
mod tests;
mod types;

pub(crate) use conform::with_column_types;
pub use conform::{
    cast_array, conform_batch, conform_batch_keeping_narrowed, constant_array, widen_decimal,
};
pub use evolve::{SchemaOptions, resolve_write_schema};
pub use types::{
    VARIANT_MARK, arrow_to_delta_json, column_list, delta_json_to_arrow, normalize_arrow_schema,
    type_name, uses_timestamp_ntz, uses_variant, without_column_mapping, without_delta_metadata,
};

#[allow(unused_imports)]
use {conform::*, evolve::*, types::*};

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, ListArray, MapArray,
    StringArray, StructArray, new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use deltalake_core::kernel::StructType;
use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};

use crate::{Error, Result};

/// Field metadata key the Parquet reader uses for field ids; meaningless in a Delta schema
/// without column mapping, so it is dropped by [`normalize_arrow_schema`].
const PARQUET_FIELD_ID_KEY: &str = "PARQUET:field_id";

/// Name Delta (and the kernel) gives the element field of an array.
const LIST_ELEMENT: &str = "element";
/// Names Delta (and the kernel) give the entries, key and value fields of a map.
const MAP_ENTRIES: &str = "key_value";
const MAP_KEY: &str = "key";
const MAP_VALUE: &str = "value";

/// The UTC time zone id used for Delta `timestamp` columns.
const UTC: &str = "UTC";
