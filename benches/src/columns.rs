//! Row-at-a-time construction of Arrow batches for the table generators, and their schemas.
//!
//! Generators produce one row at a time (a row's values depend on each other), so each
//! column is a growable vector plus validity; [`BatchBuilder::finish`] turns them into
//! Arrow arrays without copying. The column kinds are the TPC-DS ones: `integer`
//! (Int32), `identifier`s that can exceed 2^31 (Int64), `decimal(7,2)` money, `char`/
//! `varchar` (Utf8) and `date` (Date32).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringBuilder,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::file::properties::WriterPropertiesBuilder;
use parquet::schema::types::ColumnPath;

pub const DECIMAL_PRECISION: u8 = 7;
pub const DECIMAL_SCALE: i8 = 2;

/// The column types used by the generated tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Int32,
    Int64,
    /// `decimal(7,2)`, values given in cents.
    Decimal72,
    Utf8,
    /// Days since 1970-01-01.
    Date32,
}

impl ColumnKind {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Int32 => DataType::Int32,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Decimal72 => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
            ColumnKind::Utf8 => DataType::Utf8,
            ColumnKind::Date32 => DataType::Date32,
        }
    }

    fn of(data_type: &DataType) -> Self {
        match data_type {
            DataType::Int32 => ColumnKind::Int32,
            DataType::Int64 => ColumnKind::Int64,
            DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE) => ColumnKind::Decimal72,
            DataType::Utf8 => ColumnKind::Utf8,
            DataType::Date32 => ColumnKind::Date32,
            other => panic!("generated tables do not use {other}"),
        }
    }
}

/// A schema of `(name, kind)` columns in which only the `primary_key` columns are NOT NULL,
/// as in the TPC-DS DDL.
pub fn schema_of<'a>(
    columns: impl IntoIterator<Item = (&'a str, ColumnKind)>,
    primary_key: &[&str],
) -> SchemaRef {
    let fields: Vec<Field> = columns
        .into_iter()
        .map(|(name, kind)| Field::new(name, kind.data_type(), !primary_key.contains(&name)))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The schema of a fact table: Int32 keys, the Int64 ticket/order number `number`, the Int32
/// quantity after it, then `Decimal(7,2)` amounts. Only the primary key (`item`, `number`)
/// is NOT NULL.
pub fn fact_schema(columns: &[&str], item: &str, number: &str) -> SchemaRef {
    let number_at = columns
        .iter()
        .position(|&c| c == number)
        .expect("the number column is one of the columns");
    let kind = |i: usize| match i {
        _ if i == number_at => ColumnKind::Int64,
        _ if i <= number_at + 1 => ColumnKind::Int32,
        _ => ColumnKind::Decimal72,
    };
    schema_of(
        columns.iter().enumerate().map(|(i, &name)| (name, kind(i))),
        &[item, number],
    )
}

enum Values {
    I32(Vec<i32>),
    I64(Vec<i64>),
    Dec(Vec<i128>),
    Str(StringBuilder),
    Date(Vec<i32>),
}

struct Column {
    values: Values,
    valid: Vec<bool>,
    nulls: usize,
}

/// Builds one batch of a fixed schema, row by row. Pushing a value of the wrong kind for a
/// column is a bug in the generator and panics.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
}

impl BatchBuilder {
    pub fn new(schema: &SchemaRef, rows: usize) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column {
                values: match ColumnKind::of(f.data_type()) {
                    ColumnKind::Int32 => Values::I32(Vec::with_capacity(rows)),
                    ColumnKind::Int64 => Values::I64(Vec::with_capacity(rows)),
                    ColumnKind::Decimal72 => Values::Dec(Vec::with_capacity(rows)),
                    ColumnKind::Utf8 => Values::Str(StringBuilder::with_capacity(rows, rows * 16)),
                    ColumnKind::Date32 => Values::Date(Vec::with_capacity(rows)),
                },
                valid: Vec::with_capacity(rows),
                nulls: 0,
            })
            .collect();
        BatchBuilder {
            schema: schema.clone(),
            columns,
        }
    }

    #[inline]
    fn mark(&mut self, col: usize, present: bool) -> &mut Values {
        let c = &mut self.columns[col];
        c.valid.push(present);
        c.nulls += usize::from(!present);
        &mut c.values
    }

    #[inline]
    pub fn i32(&mut self, col: usize, v: Option<i32>) {
        match self.mark(col, v.is_some()) {
            Values::I32(x) => x.push(v.unwrap_or(0)),
            _ => panic!("column {col} is not Int32"),
        }
    }

    #[inline]
    pub fn i64(&mut self, col: usize, v: Option<i64>) {
        match self.mark(col, v.is_some()) {
            Values::I64(x) => x.push(v.unwrap_or(0)),
            _ => panic!("column {col} is not Int64"),
        }
    }

    /// A `decimal(7,2)` value given in cents.
    #[inline]
    pub fn decimal(&mut self, col: usize, cents: Option<i64>) {
        if let Some(c) = cents {
            debug_assert!(c.abs() <= 9_999_999, "{c} does not fit decimal(7,2)");
        }
        match self.mark(col, cents.is_some()) {
            Values::Dec(x) => x.push(i128::from(cents.unwrap_or(0))),
            _ => panic!("column {col} is not Decimal(7,2)"),
        }
    }

    #[inline]
    pub fn str(&mut self, col: usize, v: Option<&str>) {
        match self.mark(col, v.is_some()) {
            Values::Str(x) => x.append_option(v),
            _ => panic!("column {col} is not Utf8"),
        }
    }

    /// A date as days since 1970-01-01.
    #[inline]
    pub fn date(&mut self, col: usize, days: Option<i32>) {
        match self.mark(col, days.is_some()) {
            Values::Date(x) => x.push(days.unwrap_or(0)),
            _ => panic!("column {col} is not Date32"),
        }
    }

    pub fn finish(self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .into_iter()
            .map(|c| {
                let nulls = (c.nulls > 0).then(|| NullBuffer::from(c.valid));
                let array: ArrayRef = match c.values {
                    Values::I32(v) => Arc::new(Int32Array::new(ScalarBuffer::from(v), nulls)),
                    Values::I64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls)),
                    Values::Dec(v) => Arc::new(
                        Decimal128Array::new(ScalarBuffer::from(v), nulls)
                            .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
                            .expect("decimal(7,2) is a valid decimal type"),
                    ),
                    // The builder tracks its own validity, identical to `valid`.
                    Values::Str(mut b) => Arc::new(b.finish()),
                    Values::Date(v) => Arc::new(Date32Array::new(ScalarBuffer::from(v), nulls)),
                };
                array
            })
            .collect();
        RecordBatch::try_new(self.schema, arrays).expect("generated columns match the schema")
    }
}

/// Switches dictionary encoding off for the named columns.
pub fn disable_dictionary(
    mut props: WriterPropertiesBuilder,
    columns: &[&str],
) -> WriterPropertiesBuilder {
    for &name in columns {
        props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn builds_every_kind_with_nulls() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Int64, false),
            Field::new("c", ColumnKind::Decimal72.data_type(), true),
            Field::new("d", DataType::Utf8, true),
            Field::new("e", DataType::Date32, true),
        ]));
        let mut b = BatchBuilder::new(&schema, 2);
        b.i32(0, Some(1));
        b.i64(1, Some(2));
        b.decimal(2, Some(-150));
        b.str(3, Some("x"));
        b.date(4, None);
        b.i32(0, None);
        b.i64(1, Some(3));
        b.decimal(2, None);
        b.str(3, None);
        b.date(4, Some(10));
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).null_count(), 1);
        assert_eq!(batch.column(1).null_count(), 0);
        assert!(batch.column(1).nulls().is_none());
        assert_eq!(
            batch
                .column(2)
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            -150
        );
        assert_eq!(batch.column(3).as_string::<i32>().value(0), "x");
        assert!(batch.column(3).is_null(1));
        assert!(batch.column(4).is_null(0));
    }
}
