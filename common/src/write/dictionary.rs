//! Which columns of a new data file are worth dictionary encoding, judged from its first rows.
//!
//! Parquet's writer dictionary-encodes every column it may until the dictionary outgrows its
//! page limit (1 MiB), hashing every value on the way. For a column whose values hardly
//! repeat (keys, timestamps, foreign keys of large dimensions) that is wasted work, and in a
//! file too small for the dictionary ever to overflow (a partition's file, a clustered
//! file) the dictionary is kept and the column comes out larger than plain encoding would
//! have made it: a dictionary of nearly every value plus an index per row. A sample of the
//! file's first rows tells such columns apart cheaply; they are written plain.
//!
//! A value repeating the one sampled just before it is no evidence for a dictionary: rows
//! that come in runs (a ticket's items share its customer; clustered files keep a key's rows
//! together) compress as well plainly, the run being one repeated byte sequence. The sample
//! therefore judges a column by its runs: the distinct values among the values that start a
//! run, as if the file held one value per run.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::hash::Mix;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;

/// Rows sampled (evenly spread over the first batch).
const SAMPLE_ROWS: usize = 512;
/// Fewest runs of equal values in the sample for a verdict (fewer: the column is sorted or
/// nearly constant there, and the writer's default, a dictionary, is kept).
const MIN_RUNS: usize = 128;
/// Share of the plain size a dictionary must stay under to be worth its cost: interning
/// every value costs more time than encoding the rest of the column, and what plain
/// encoding loses, compression partly wins back.
const WORTH: f64 = 0.75;

/// Positions (in `batch`'s schema) of the columns that a dictionary would not make smaller
/// over `rows` rows like `batch`'s (at least its own), judged from a sample: the number of
/// distinct values among them is estimated from the sample's runs (see the module's doc),
/// and a column is left plain unless a dictionary of them plus an index per row would take
/// under [`WORTH`] of the values' plain size. Only top-level columns of fixed-width
/// primitive, string and binary types are judged; others are left to the writer's defaults.
pub fn plain_columns(batch: &RecordBatch, rows: usize) -> Vec<usize> {
    let sampled_rows = batch.num_rows();
    if sampled_rows < MIN_RUNS {
        return Vec::new();
    }
    let rows = rows.max(sampled_rows);
    let step = (sampled_rows / SAMPLE_ROWS).max(1);
    // One set for every column (a file of many columns is judged often: once per file).
    let mut seen = HashSet::with_capacity_and_hasher(SAMPLE_ROWS, Default::default());
    batch
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, column)| {
            sample(column, step, &mut seen).is_some_and(|s| {
                // Rows with a value, in the batch's proportion.
                let valid = rows as f64 * (1.0 - column.null_count() as f64 / sampled_rows as f64);
                s.runs >= MIN_RUNS && !dictionary_pays(&s, valid as usize)
            })
        })
        .map(|(i, _)| i)
        .collect()
}

/// Files of this many first rows or fewer share verdicts ([`Memo`]).
const MEMO_MAX_ROWS: usize = 16 * 1024;
/// A verdict is reused for this many files before the next file is judged again.
const MEMO_REUSES: usize = 7;

/// A writer's dictionary verdicts for small files. A partitioned write opens a file per
/// partition it meets (thousands of a few thousand rows each, by date), and judging each
/// took about a tenth of a second of a 1.25M-row task's 1.5 s by date; the partitions of
/// one write hold the same kind of rows. So a verdict on a small file is reused for the next
/// [`MEMO_REUSES`] small files of the same size class (the power of two of their first
/// rows: a dictionary pays with more rows), and the file after them is judged again,
/// which follows a change in the data within a few files.
#[derive(Debug, Default)]
pub struct Memo {
    /// The last verdict: size class, plain columns, times reused.
    last: Option<(u32, Vec<usize>, usize)>,
}

impl Memo {
    /// [`plain_columns`] of `batch` and `rows`, or the last verdict on a file of the same
    /// size class when the file is small and that verdict has been reused less than
    /// [`MEMO_REUSES`] times.
    pub fn plain_columns(&mut self, batch: &RecordBatch, rows: usize) -> Vec<usize> {
        let rows = rows.max(batch.num_rows());
        if rows > MEMO_MAX_ROWS {
            return plain_columns(batch, rows);
        }
        let class = rows.max(1).ilog2();
        if let Some((last, plain, reused)) = &mut self.last
            && *last == class
            && *reused < MEMO_REUSES
        {
            *reused += 1;
            return plain.clone();
        }
        let plain = plain_columns(batch, rows);
        self.last = Some((class, plain.clone(), 0));
        plain
    }
}

/// What a sample saw of a column.
struct Sample {
    /// Values sampled (nulls skipped).
    sampled: usize,
    /// Sampled values differing from the value sampled before them.
    runs: usize,
    /// Distinct values among those starting a run.
    distinct: usize,
    /// Mean bytes of a value plainly encoded.
    value_bytes: f64,
}

/// Whether dictionary encoding `rows` values like the sample's takes under [`WORTH`] of
/// their plain size.
fn dictionary_pays(s: &Sample, rows: usize) -> bool {
    // A few values equal to their predecessor are chance draws of the same value, not runs.
    let runs = if s.runs * 20 >= s.sampled * 19 {
        s.sampled
    } else {
        s.runs
    };
    let (n, d) = (runs as f64, s.distinct as f64);
    let rows = rows.max(1) as f64;
    // Runs among the rows, in the sample's proportion: the draws from the domain.
    let draws = (rows * n / (s.sampled.max(1) as f64)).max(1.0);
    // Distinct values among `k` draws from a domain of `domain` equally likely values.
    let among = |domain: f64, k: f64| domain * (1.0 - (-k / domain).exp());
    let distinct = if d >= n {
        draws
    } else {
        // The domain whose expected distinct count in `n` draws is `d` (bisection: the
        // count grows with the domain).
        let (mut lo, mut hi) = (d, d * n + 1.0);
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if among(mid, n) < d {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        among(hi, draws).min(draws)
    };
    let index_bytes = distinct.max(2.0).log2().ceil() / 8.0;
    s.value_bytes * distinct / rows + index_bytes < WORTH * s.value_bytes
}

/// The non-null values at every `step`-th row, at most [`SAMPLE_ROWS`] rows; `None` for a
/// type not judged. `seen` is scratch space.
fn sample(
    column: &ArrayRef,
    step: usize,
    seen: &mut HashSet<u64, BuildHasherDefault<Mix>>,
) -> Option<Sample> {
    let rows = (0..column.len()).step_by(step).take(SAMPLE_ROWS);
    seen.clear();
    let mut sampled = 0;
    let mut runs = 0;
    let mut last = None;
    let mut bytes = 0;
    let mut add = |key: u64, len: usize| {
        sampled += 1;
        bytes += len;
        if last != Some(key) {
            last = Some(key);
            runs += 1;
            seen.insert(key);
        }
    };
    let data_type = column.data_type();
    match data_type {
        DataType::Utf8 => bytes_keys(
            rows,
            column.as_string::<i32>(),
            |a, i| a.value(i).as_bytes(),
            &mut add,
        ),
        DataType::LargeUtf8 => bytes_keys(
            rows,
            column.as_string::<i64>(),
            |a, i| a.value(i).as_bytes(),
            &mut add,
        ),
        DataType::Utf8View => bytes_keys(
            rows,
            column.as_string_view(),
            |a, i| a.value(i).as_bytes(),
            &mut add,
        ),
        DataType::Binary => {
            bytes_keys(rows, column.as_binary::<i32>(), |a, i| a.value(i), &mut add)
        }
        DataType::LargeBinary => {
            bytes_keys(rows, column.as_binary::<i64>(), |a, i| a.value(i), &mut add)
        }
        DataType::BinaryView => {
            bytes_keys(rows, column.as_binary_view(), |a, i| a.value(i), &mut add)
        }
        // Floats and decimals never get a dictionary (the writer's defaults).
        DataType::Boolean
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _) => return None,
        _ => {
            let width = data_type.primitive_width().filter(|w| *w <= 8)?;
            let data = column.to_data();
            let values = data.buffers().first()?.as_slice();
            let start = data.offset();
            for i in rows {
                if column.is_valid(i) {
                    let at = (start + i) * width;
                    let mut key = [0u8; 8];
                    key[..width].copy_from_slice(values.get(at..at + width)?);
                    add(u64::from_le_bytes(key), width);
                }
            }
        }
    }
    Some(Sample {
        sampled,
        runs,
        distinct: seen.len(),
        value_bytes: bytes as f64 / sampled.max(1) as f64,
    })
}

fn bytes_keys<A: Array>(
    rows: impl Iterator<Item = usize>,
    array: &A,
    value: impl Fn(&A, usize) -> &[u8],
    add: &mut impl FnMut(u64, usize),
) {
    for i in rows {
        if array.is_valid(i) {
            let mut h = Mix::default();
            let bytes = value(array, i);
            h.write(bytes);
            // Plain byte arrays carry a 4-byte length.
            add(h.finish(), bytes.len() + 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn unique_keys_are_plain_and_repeating_values_keep_their_dictionary() {
        let rows = 5_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("store", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("city", DataType::Utf8, true),
            Field::new("few", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(Int32Array::from_iter((0..rows).map(|i| Some(i % 12)))),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| Some(format!("customer-{i:010}"))),
                )),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| Some(format!("city {}", i % 40))),
                )),
                // Unique but nearly all null: too few values to judge.
                Arc::new(Int32Array::from_iter(
                    (0..rows).map(|i| (i % 100 == 0).then_some(i)),
                )),
            ],
        )
        .unwrap();
        assert_eq!(plain_columns(&batch, 0), vec![0, 2]);
        // A slice judges its own rows.
        assert_eq!(plain_columns(&batch.slice(1_000, 3_000), 0), vec![0, 2]);
        // Too few rows: no verdict.
        assert!(plain_columns(&batch.slice(0, 100), 0).is_empty());
    }

    #[test]
    fn a_dictionary_pays_once_the_rows_repeat_a_domain_enough() {
        // 18,000 equally likely values (an item key): in 3,000 rows nearly every value is
        // new (plain is smaller); in 65,536 rows each repeats about 3.6 times (the dictionary
        // and 15-bit indices beat 4-byte values).
        let items = |rows: usize| {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "item",
                DataType::Int32,
                false,
            )]));
            let mut state = 7u64;
            let values = (0..rows).map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) % 18_000) as i32
            });
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from_iter_values(values))])
                .unwrap()
        };
        assert_eq!(plain_columns(&items(3_000), 0), vec![0]);
        assert!(plain_columns(&items(65_536), 0).is_empty());
        // 3,000 rows of a file expected to reach 65,536.
        assert!(plain_columns(&items(3_000), 65_536).is_empty());
    }

    #[test]
    fn runs_of_a_value_are_judged_as_one_value() {
        // A ticket's rows (1 to 20 of them) share its customer, drawn from a million: rows
        // in ticket order repeat the customer from row to row, yet hardly any customer comes
        // back, so a dictionary holds nearly one value per ticket and does not pay. Rows
        // sorted by a key of 20 values, or cycling through 20 values, keep their dictionary.
        let rows = 3_000;
        let mut state = 11u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let mut customers = Vec::with_capacity(rows);
        while customers.len() < rows {
            let customer = next(1_000_000) as i32;
            let items = 1 + next(20) as usize;
            customers.extend(std::iter::repeat_n(customer, items));
        }
        customers.truncate(rows);
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer", DataType::Int32, false),
            Field::new("sorted", DataType::Int32, false),
            Field::new("cycling", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(customers)),
                Arc::new(Int32Array::from_iter_values(
                    (0..rows as i32).map(|i| i * 20 / rows as i32),
                )),
                Arc::new(Int32Array::from_iter_values(
                    (0..rows as i32).map(|i| i % 20),
                )),
            ],
        )
        .unwrap();
        assert_eq!(plain_columns(&batch, 0), vec![0]);
        assert_eq!(plain_columns(&batch, 1 << 20), vec![0]);
    }

    #[test]
    fn small_files_share_a_verdict_for_a_few_files_then_are_judged_again() {
        let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Int64, false)]));
        let batch = |values: Vec<i64>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(values))],
            )
            .unwrap()
        };
        let unique = batch((0..3_000).collect());
        let repeating = batch((0..3_000).map(|i| i % 10).collect());
        assert_eq!(plain_columns(&unique, 0), vec![0]);
        assert!(plain_columns(&repeating, 0).is_empty());
        let mut memo = Memo::default();
        assert_eq!(memo.plain_columns(&unique, 0), vec![0]);
        for _ in 0..MEMO_REUSES {
            assert_eq!(memo.plain_columns(&repeating, 0), vec![0]);
        }
        assert!(memo.plain_columns(&repeating, 0).is_empty());
        // Another size class is judged on its own.
        assert_eq!(memo.plain_columns(&unique.slice(0, 1_000), 0), vec![0]);
        // Large files are always judged.
        let large = batch((0..20_000).map(|i| i % 10).collect());
        let mut memo = Memo::default();
        assert!(memo.plain_columns(&large, 0).is_empty());
        let large_unique = batch((0..20_000).collect());
        assert_eq!(memo.plain_columns(&large_unique, 0), vec![0]);
    }
}
