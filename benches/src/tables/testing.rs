//! Helpers for the table modules' tests.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use crate::driver::TableGenerator;

/// Every file of `t`, generated in batches of `batch_rows` rows, as one batch.
pub fn read_all(t: &dyn TableGenerator, batch_rows: usize) -> RecordBatch {
    let batches: Vec<RecordBatch> = (0..t.file_count())
        .flat_map(|f| t.file_batches(f, batch_rows))
        .collect();
    concat_batches(&t.schema(), &batches).unwrap()
}
