//! Change data (Delta's change data feed, `delta.enableChangeDataFeed`): the rows a
//! statement changes inside files, written as `cdc` files beside its data files.
//!
//! A task that records change data carries a [`CHANGE_TYPE_COL`] column on its rows from
//! its transforms to its sink: null for a row that is only written (copied unchanged),
//! [`INSERT`] or [`UPDATE_POSTIMAGE`] for a row written and recorded, [`DELETE`] or
//! [`UPDATE_PREIMAGE`] for a row only recorded. The sink splits them ([`split`]): data files
//! get the rows to write, without the column; change data files (under [`CHANGE_DATA_DIR`])
//! the recorded rows, with it. `_commit_version` and `_commit_timestamp` are not stored:
//! readers add them from the commit.
//!
//! Per the protocol, a commit holding any `cdc` file must describe all its changes in `cdc`
//! files (readers then ignore its `add`/`remove` actions for the feed); a commit without one
//! lets readers derive the changes from whole files added and removed.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::Result;

/// The column naming how a row changed.
pub const CHANGE_TYPE_COL: &str = "_change_type";
/// Directory of change data files under the table root.
pub const CHANGE_DATA_DIR: &str = "_change_data";

pub const INSERT: &str = "insert";
pub const DELETE: &str = "delete";
pub const UPDATE_PREIMAGE: &str = "update_preimage";
pub const UPDATE_POSTIMAGE: &str = "update_postimage";

/// The schema of change data files: the table's columns, then [`CHANGE_TYPE_COL`].
pub fn change_schema(table: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(CHANGE_TYPE_COL, DataType::Utf8, true));
    Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
}

/// `batch` with [`CHANGE_TYPE_COL`] set to `change` (null: rows only written) on every row.
pub fn tag(batch: &RecordBatch, change: Option<&str>) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let column: ArrayRef = Arc::new(StringArray::from(vec![change; n]));
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(CHANGE_TYPE_COL, DataType::Utf8, true));
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// A batch carrying [`CHANGE_TYPE_COL`] split into the rows to write as data (without the
/// column) and the rows to record as change data (with it); `None` where there are none.
/// A batch without the column is all data.
pub fn split(batch: &RecordBatch) -> Result<(Option<RecordBatch>, Option<RecordBatch>)> {
    let Ok(i) = batch.schema().index_of(CHANGE_TYPE_COL) else {
        return Ok(((batch.num_rows() > 0).then(|| batch.clone()), None));
    };
    let types = batch.column(i).as_string::<i32>();
    let data_mask: BooleanArray = types
        .iter()
        .map(|t| Some(matches!(t, None | Some(INSERT) | Some(UPDATE_POSTIMAGE))))
        .collect();
    let change_mask: BooleanArray = types.iter().map(|t| Some(t.is_some())).collect();
    let without: Vec<usize> = (0..batch.num_columns()).filter(|&c| c != i).collect();
    let pick = |mask: &BooleanArray, b: &RecordBatch| -> Result<Option<RecordBatch>> {
        Ok(match mask.true_count() {
            0 => None,
            n if n == b.num_rows() => Some(b.clone()),
            _ => Some(filter_record_batch(b, mask)?),
        })
    };
    let data = pick(&data_mask, &batch.project(&without)?)?;
    let changes = if types.null_count() == types.len() {
        None
    } else {
        pick(&change_mask, batch)?
    };
    Ok((data, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn rows_split_by_change_type() {
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let b = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))],
        )
        .unwrap();
        let tagged = tag(&b, None).unwrap();
        let types = StringArray::from(vec![
            None,
            Some(INSERT),
            Some(DELETE),
            Some(UPDATE_PREIMAGE),
            Some(UPDATE_POSTIMAGE),
        ]);
        let tagged = RecordBatch::try_new(
            tagged.schema(),
            vec![tagged.column(0).clone(), Arc::new(types)],
        )
        .unwrap();
        let ids = |b: &RecordBatch| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        };
        let (data, changes) = split(&tagged).unwrap();
        let (data, changes) = (data.unwrap(), changes.unwrap());
        assert_eq!(ids(&data), vec![1, 2, 5]);
        assert_eq!(data.num_columns(), 1);
        assert_eq!(ids(&changes), vec![2, 3, 4, 5]);
        assert_eq!(changes.schema().field(1).name(), CHANGE_TYPE_COL);
        // Rows only written: no change data.
        let (data, changes) = split(&tag(&b, None).unwrap()).unwrap();
        assert_eq!(data.unwrap().num_rows(), 5);
        assert!(changes.is_none());
    }
}
