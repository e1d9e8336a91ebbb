//! Helpers for the table modules' tests.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, PrimitiveArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{ArrowPrimitiveType, Decimal128Type, Int32Type, Int64Type};

use crate::driver::TableGenerator;

/// Every file of `t`, generated in batches of `batch_rows` rows, as one batch.
pub fn read_all(t: &dyn TableGenerator, batch_rows: usize) -> RecordBatch {
    let batches: Vec<RecordBatch> = (0..t.file_count())
        .flat_map(|f| t.file_batches(f, batch_rows))
        .collect();
    concat_batches(&t.schema(), &batches).unwrap()
}

pub fn column<'a, T: ArrowPrimitiveType>(b: &'a RecordBatch, name: &str) -> &'a PrimitiveArray<T> {
    b.column_by_name(name).unwrap().as_primitive::<T>()
}

pub fn i32_at(b: &RecordBatch, name: &str, i: usize) -> Option<i32> {
    let a = column::<Int32Type>(b, name);
    a.is_valid(i).then(|| a.value(i))
}

/// A non-null `Decimal(7,2)` value, in cents.
pub fn dec_at(b: &RecordBatch, name: &str, i: usize) -> i64 {
    let a = column::<Decimal128Type>(b, name);
    assert!(a.is_valid(i), "{name} null");
    a.value(i) as i64
}

/// For every row of `returns`, the row of `sales` it returns, found by the key columns
/// (number, item) of each table; asserts that every return references a sale, that no sale
/// is returned twice and that the returns keep the sales order.
pub fn returned_sales(
    sales: &RecordBatch,
    [sales_number, sales_item]: [&str; 2],
    returns: &RecordBatch,
    [number, item]: [&str; 2],
) -> Vec<usize> {
    let (sn, si) = (
        column::<Int64Type>(sales, sales_number),
        column::<Int32Type>(sales, sales_item),
    );
    let by_key: HashMap<(i64, i32), usize> = (0..sales.num_rows())
        .map(|i| ((sn.value(i), si.value(i)), i))
        .collect();
    let (rn, ri) = (
        column::<Int64Type>(returns, number),
        column::<Int32Type>(returns, item),
    );
    let rows: Vec<usize> = (0..returns.num_rows())
        .map(|i| by_key[&(rn.value(i), ri.value(i))])
        .collect();
    assert!(
        rows.windows(2).all(|w| w[0] < w[1]),
        "returns are unique and in sales order"
    );
    rows
}
