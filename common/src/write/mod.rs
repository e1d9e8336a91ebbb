//! Writing Delta data files: the rolling per-partition Parquet writer ([`writer`]), the
//! per-file statistics it collects ([`stats`]), its per-file choices of dictionary
//! ([`dictionary`]) and compression ([`codec`]), its encoder of small files whole
//! (`small`), and the same writer fed in curve order through an external sort
//! ([`sorted`]).

pub mod codec;
pub mod dictionary;
mod small;
pub mod sorted;
pub mod stats;
pub mod writer;

pub use sorted::SortedWriter;
pub use writer::DataFileWriter;

use arrow::array::ArrayRef;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;

/// Whether `columns` have `schema`'s types, field by field.
pub(crate) fn same_types(columns: &[ArrayRef], schema: &Schema) -> bool {
    columns.len() == schema.fields().len()
        && columns
            .iter()
            .zip(schema.fields())
            .all(|(c, f)| c.data_type() == f.data_type())
}

/// Bytes of a batch's own rows. A slice of a larger batch, or a batch decoded from one IPC
/// message (whose columns all share the message's buffer), counts only its part, where
/// `get_array_memory_size` would count every shared buffer whole, once per column.
pub fn slice_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}
