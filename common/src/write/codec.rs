//! Which plainly encoded columns of a new data file compression would not shrink, judged
//! from its first rows.
//!
//! Amounts, prices and measures (decimals and floats, written plain) and plain keys are
//! mostly random bytes: Snappy spends time on every page of them and gives nothing back
//! (the page comes out a few bytes larger), and every reader pays the decompression again.
//! Snappy run over a sample of the column's values as the Parquet page holds them tells such
//! columns apart; they are written uncompressed. Columns that compress keep Snappy.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};

/// Bytes of a column's values compressed for the verdict (from its first rows).
const SAMPLE_BYTES: usize = 16 << 10;
/// Fewest bytes for a verdict (fewer: compression is kept).
const MIN_BYTES: usize = 4 << 10;
/// Share of the plain size Snappy must get under for compression to be kept.
const WORTH: f64 = 0.9;

/// A writer's verdicts, per column position: judged once, on the first file with enough of
/// the column's values, and kept for the writer's later files. Whether a column's values
/// compress is a property of its data, not of a file: a partitioned write opens a file per
/// partition it meets (thousands of small files by date), and judging each would compress
/// their values twice.
#[derive(Debug, Default)]
pub struct Verdicts {
    incompressible: HashMap<usize, bool>,
}

impl Verdicts {
    /// Positions (in `batch`'s schema) among `plain` (columns written without a dictionary)
    /// whose values Snappy would not make smaller than [`WORTH`] of their plain size, judged
    /// from the first values of `batch` unless known already. Only top-level columns whose
    /// Parquet plain encoding is their values' fixed-width bytes are judged (see
    /// [`plain_bytes`]); others keep compression, and so do columns with too few values for
    /// a verdict (not remembered: a later file may have enough).
    pub fn incompressible_columns(&mut self, batch: &RecordBatch, plain: &[usize]) -> Vec<usize> {
        let mut encoder = snap::raw::Encoder::new();
        let mut out = Vec::new();
        plain
            .iter()
            .copied()
            .filter(|&i| {
                if let Some(&known) = self.incompressible.get(&i) {
                    return known;
                }
                let Some(raw) = batch.columns().get(i).and_then(plain_bytes) else {
                    return false;
                };
                if raw.len() < MIN_BYTES {
                    return false;
                }
                out.resize(snap::raw::max_compress_len(raw.len()), 0);
                let verdict = encoder
                    .compress(&raw, &mut out)
                    .is_ok_and(|n| n as f64 >= WORTH * raw.len() as f64);
                self.incompressible.insert(i, verdict);
                verdict
            })
            .collect()
    }
}

/// The first values of `column` (up to [`SAMPLE_BYTES`]) as a Parquet plain page holds them:
/// 4-byte INT32 or 8-byte INT64 / DOUBLE values, little-endian (null slots included, which a
/// page leaves out: they only make a column look more compressible). `None` for types
/// stored otherwise (booleans, strings, nested, wide decimals, timestamps in seconds, ...).
fn plain_bytes(column: &ArrayRef) -> Option<Vec<u8>> {
    // (bytes per value in the array, bytes per value in the page: the low-order bytes)
    let (width, stored) = match column.data_type() {
        DataType::Int32
        | DataType::UInt32
        | DataType::Float32
        | DataType::Date32
        | DataType::Time32(_)
        | DataType::Decimal32(_, _) => (4, 4),
        DataType::Int64
        | DataType::UInt64
        | DataType::Float64
        | DataType::Time64(_)
        | DataType::Timestamp(
            TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
            _,
        ) => (8, 8),
        DataType::Decimal64(p, _) => (8, if *p <= 9 { 4 } else { 8 }),
        DataType::Decimal128(p, _) if *p <= 18 => (16, if *p <= 9 { 4 } else { 8 }),
        _ => return None,
    };
    let data = column.to_data();
    let start = data.offset() * width;
    let count = column.len().min(SAMPLE_BYTES / stored);
    let values = data
        .buffers()
        .first()?
        .as_slice()
        .get(start..start + count * width)?;
    Some(if stored == width {
        values.to_vec()
    } else {
        let mut bytes = Vec::with_capacity(count * stored);
        for v in values.chunks_exact(width) {
            bytes.extend_from_slice(&v[..stored]);
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    /// Seeded pseudo-random numbers.
    fn random(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 11
        }
    }

    #[test]
    fn random_measures_are_judged_incompressible_and_structured_values_not() {
        let n = 50_000;
        let mut next = random(7);
        let prices: Vec<i128> = (0..n).map(|_| (next() % 10_000_000) as i128).collect();
        let doubles: Vec<f64> = (0..n).map(|_| next() as f64 / 7.0).collect();
        let mut rand64 = random(11);
        let wide_keys: Vec<i64> = (0..n).map(|_| rand64() as i64).collect();
        let quantities: Vec<i32> = (0..n).map(|i| (i * 37 % 100) + 1).collect();
        let sorted: Vec<i64> = (0..n as i64).map(|i| 1_000_000 + i / 3).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("price", DataType::Decimal128(7, 2), true),
            Field::new("ratio", DataType::Float64, true),
            Field::new("key", DataType::Int64, true),
            Field::new("quantity", DataType::Int32, true),
            Field::new("ticket", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    Decimal128Array::from(prices)
                        .with_precision_and_scale(7, 2)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(doubles)),
                Arc::new(Int64Array::from(wide_keys)),
                Arc::new(Int32Array::from(quantities)),
                Arc::new(Int64Array::from(sorted)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("x{}", i % 1000)),
                )),
            ],
        )
        .unwrap();
        // The decimal is judged by its 4-byte page values, not its 16-byte array slots
        // (three quarters zeros, which Snappy would shrink).
        let judge = |batch: &RecordBatch, plain: &[usize]| {
            Verdicts::default().incompressible_columns(batch, plain)
        };
        assert_eq!(judge(&batch, &[0, 1, 2, 3, 4, 5]), vec![0, 1, 2]);
        // Only the columns asked about.
        assert_eq!(judge(&batch, &[1, 3]), vec![1]);
        // Too few values for a verdict: compression kept.
        assert!(judge(&batch.slice(0, 100), &[0, 1, 2]).is_empty());
        // A writer remembers its verdicts: later files are not judged again, and a file too
        // small for a verdict of its own follows the writer's.
        let mut verdicts = Verdicts::default();
        assert!(
            verdicts
                .incompressible_columns(&batch.slice(0, 100), &[0, 3])
                .is_empty()
        );
        assert_eq!(verdicts.incompressible_columns(&batch, &[0, 3]), vec![0]);
        assert_eq!(
            verdicts.incompressible_columns(&batch.slice(0, 100), &[0, 3]),
            vec![0]
        );
        let structured = batch.project(&[3, 3, 3, 3]).unwrap();
        assert_eq!(
            verdicts.incompressible_columns(&structured, &[0, 1, 3]),
            vec![0]
        );
    }

    #[test]
    fn page_values_are_the_low_order_bytes_from_the_slice_offset() {
        let a: ArrayRef = Arc::new(
            Decimal128Array::from(vec![1, -2, 3])
                .with_precision_and_scale(9, 0)
                .unwrap(),
        );
        let bytes = plain_bytes(&a.slice(1, 2)).unwrap();
        assert_eq!(bytes, [(-2i32).to_le_bytes(), 3i32.to_le_bytes()].concat());
        let wide: ArrayRef = Arc::new(
            Decimal128Array::from(vec![1])
                .with_precision_and_scale(20, 0)
                .unwrap(),
        );
        assert!(plain_bytes(&wide).is_none());
    }
}
