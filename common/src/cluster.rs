//! Multi-dimensional clustering keys (OPTIMIZE … ZORDER BY): each clustering column's
//! values become *range ids* (their rank among quantile bounds drawn from a sample, nulls
//! first, full values compared: no fixed-length prefix), and the ids of a row become one
//! position on a space-filling curve (Z-order: bits interleaved; Hilbert: Skilling's
//! transpose, then interleaved). Rows sorted by that position and cut into files at the
//! target size give files covering small boxes of the clustering columns' space.
//!
//! Everything here is pure: the coordinator derives bounds and reducer splits from a sample,
//! executors compute the same keys from the same [`CurveSpec`].

use std::cmp::Ordering;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array, make_comparator};
use arrow::compute::{SortOptions, concat, sort};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::row::{RowConverter, Rows, SortField};

use crate::{Error, Result};

/// Bits of a curve key.
const KEY_BITS: u32 = 64;
/// At most this many bits of range id per column (4,095 ranges).
const MAX_BITS_PER_COLUMN: u32 = 12;

/// A space-filling curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Curve {
    /// Bits of the columns' range ids interleaved (Spark's and delta-rs's Z-order).
    #[default]
    ZOrder,
    /// The Hilbert curve (consecutive keys are neighbouring boxes; Delta's liquid clustering).
    Hilbert,
}

impl Curve {
    pub fn parse(s: &str) -> Result<Curve> {
        match s.to_ascii_lowercase().as_str() {
            "zorder" | "z-order" => Ok(Curve::ZOrder),
            "hilbert" => Ok(Curve::Hilbert),
            other => Err(Error::invalid(format!(
                "unknown curve `{other}` (expected zorder or hilbert)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Curve::ZOrder => "zorder",
            Curve::Hilbert => "hilbert",
        }
    }
}

/// Bits of range id per column when clustering by `columns` columns.
pub fn bits_per_column(columns: usize) -> u32 {
    (KEY_BITS / columns.max(1) as u32).min(MAX_BITS_PER_COLUMN)
}

/// Most bounds a column may have when clustering by `columns` columns: its range ids
/// (null, then one more than the bounds below a value) must fit its bits.
pub fn max_bounds(columns: usize) -> usize {
    (1usize << bits_per_column(columns)) - 2
}

/// How rows map to curve keys: per clustering column, its sorted distinct bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSpec {
    /// Column names as in the table schema.
    pub columns: Vec<String>,
    pub curve: Curve,
    /// Per column, ascending distinct non-null values; a value's range id is 1 + the number
    /// of bounds below it (null: 0).
    pub bounds: Vec<ArrayRef>,
}

impl CurveSpec {
    /// Bounds for each column from a sample of its values (at most `2^bits − 2` per column,
    /// evenly spaced over the sorted sample, so frequent values weigh more).
    pub fn from_sample(columns: Vec<String>, curve: Curve, samples: &[ArrayRef]) -> Result<Self> {
        if columns.is_empty() || columns.len() != samples.len() {
            return Err(Error::internal("curve columns and samples differ"));
        }
        if columns.len() > KEY_BITS as usize {
            return Err(Error::invalid(format!(
                "at most {KEY_BITS} clustering columns, not {}",
                columns.len()
            )));
        }
        let max = max_bounds(columns.len());
        let bounds = samples
            .iter()
            .map(|s| quantile_bounds(s, max))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            columns,
            curve,
            bounds,
        })
    }

    /// The curve key of every row of `batch` (which has the clustering columns). For many
    /// batches, make a [`Keyer`] once.
    pub fn keys(&self, batch: &RecordBatch) -> Result<UInt64Array> {
        self.keyer()?.keys(batch)
    }

    /// What computes keys fast: the bounds prepared for comparison.
    pub fn keyer(&self) -> Result<Keyer> {
        let bits = bits_per_column(self.columns.len());
        let max = max_bounds(self.columns.len());
        if let Some((c, b)) = self
            .columns
            .iter()
            .zip(&self.bounds)
            .find(|(_, b)| b.len() > max)
        {
            // Range ids past the column's bits would wrap around into the nulls' cell.
            return Err(Error::invalid(format!(
                "clustering column `{c}` has {} bounds; at most {max} fit its {bits} bits",
                b.len()
            )));
        }
        let ranks = self
            .bounds
            .iter()
            .map(Ranker::new)
            .collect::<Result<Vec<_>>>()?;
        Ok(Keyer {
            columns: self.columns.clone(),
            curve: self.curve,
            bits,
            ranks,
            spread: Spreader::new(self.columns.len(), bits),
        })
    }

    /// The bounds as bytes (an Arrow IPC stream per column), for the wire.
    pub fn encode_bounds(&self) -> Result<Vec<Vec<u8>>> {
        self.bounds
            .iter()
            .map(|b| {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "b",
                    b.data_type().clone(),
                    true,
                )]));
                let batch = RecordBatch::try_new(schema.clone(), vec![b.clone()])?;
                let mut w = StreamWriter::try_new(Vec::new(), &schema)?;
                w.write(&batch)?;
                w.finish()?;
                Ok(w.into_inner()?)
            })
            .collect()
    }

    /// Bounds from [`Self::encode_bounds`]'s bytes.
    pub fn decode_bounds(encoded: &[Vec<u8>]) -> Result<Vec<ArrayRef>> {
        encoded
            .iter()
            .map(|bytes| {
                let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
                let schema = reader.schema();
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(0).as_ref()).collect();
                if arrays.is_empty() {
                    return Ok(arrow::array::new_empty_array(schema.field(0).data_type()));
                }
                Ok(concat(&arrays)?)
            })
            .collect()
    }
}

/// Sorted distinct non-null values of `sample`, at most `max` of them, evenly spaced over
/// the sorted sample.
pub fn quantile_bounds(sample: &ArrayRef, max: usize) -> Result<ArrayRef> {
    match byte_values(sample.as_ref()) {
        Some(values) => byte_quantile_bounds(sample, &values, max),
        None => sorted_quantile_bounds(sample, max),
    }
}

/// [`quantile_bounds`] of any type, by arrow's sort and comparator.
fn sorted_quantile_bounds(sample: &ArrayRef, max: usize) -> Result<ArrayRef> {
    let sorted = sort(
        sample,
        Some(SortOptions {
            descending: false,
            nulls_first: true,
        }),
    )?;
    let first = sorted.null_count();
    let n = sorted.len() - first;
    let cmp = make_comparator(sorted.as_ref(), sorted.as_ref(), SortOptions::default())?;
    let mut picked: Vec<u64> = Vec::new();
    // Positions k * n / max for k < max, in integers: never more than `max` of them (a
    // range id past the column's bits would wrap around to the nulls' cell).
    let m = max.min(n);
    for k in 0..m {
        let i = first + k * n / m;
        if picked
            .last()
            .is_none_or(|&last| cmp(last as usize, i) == Ordering::Less)
        {
            picked.push(i as u64);
        }
    }
    Ok(arrow::compute::take(
        sorted.as_ref(),
        &UInt64Array::from(picked),
        None,
    )?)
}

/// [`quantile_bounds`] of a string or binary `sample` whose values' bytes are `values`:
/// sorted by the 8 bytes after the prefix they all share as one integer, the rest compared
/// only on a tie (a sample of `customer-0000000000-<n>` compares 8 bytes, not 30, per step).
fn byte_quantile_bounds(sample: &ArrayRef, values: &[&[u8]], max: usize) -> Result<ArrayRef> {
    let nulls = sample.logical_nulls();
    let valid: Vec<u32> = (0..values.len())
        .filter(|&i| nulls.as_ref().is_none_or(|n| n.is_valid(i)))
        .map(|i| i as u32)
        .collect();
    let skip = common_prefix(valid.iter().map(|&i| values[i as usize])).len();
    let rest = |i: u32| &values[i as usize][skip..];
    let mut order: Vec<(u64, u32)> = valid.iter().map(|&i| (head(rest(i)), i)).collect();
    // Two rests of at most 8 bytes with the same head differ only in trailing zero bytes:
    // the shorter is the smaller.
    let short = |i: u32| rest(i).len() <= 8;
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            if short(a.1) && short(b.1) {
                rest(a.1).len().cmp(&rest(b.1).len())
            } else {
                rest(a.1).cmp(rest(b.1))
            }
        })
    });
    let n = order.len();
    let m = max.min(n);
    let mut picked: Vec<u32> = Vec::new();
    for k in 0..m {
        let i = order[k * n / m].1;
        if picked.last().is_none_or(|&last| rest(last) < rest(i)) {
            picked.push(i);
        }
    }
    Ok(arrow::compute::take(
        sample.as_ref(),
        &arrow::array::UInt32Array::from(picked),
        None,
    )?)
}

/// Range id of each value: 0 for null, else 1 + the number of `bounds` below it.
pub fn range_ids(values: &ArrayRef, bounds: &ArrayRef) -> Result<Vec<u32>> {
    Ranker::new(bounds)?.ranks(values)
}

/// Curve keys of batches, from a [`CurveSpec`] prepared once.
pub struct Keyer {
    columns: Vec<String>,
    curve: Curve,
    bits: u32,
    ranks: Vec<Ranker>,
    spread: Spreader,
}

impl Keyer {
    /// The curve key of every row of `batch` (which has the clustering columns).
    pub fn keys(&self, batch: &RecordBatch) -> Result<UInt64Array> {
        let ids = self
            .columns
            .iter()
            .zip(&self.ranks)
            .map(|(c, r)| {
                let col = batch.column_by_name(c).ok_or_else(|| {
                    Error::internal(format!("clustering column `{c}` missing from the rows"))
                })?;
                r.ranks(col)
            })
            .collect::<Result<Vec<_>>>()?;
        let hilbert = self.curve == Curve::Hilbert;
        let mut point = vec![0u32; ids.len()];
        Ok((0..batch.num_rows())
            .map(|row| {
                for (p, col) in point.iter_mut().zip(&ids) {
                    *p = col[row];
                }
                if hilbert {
                    hilbert_transpose(&mut point, self.bits);
                }
                self.spread.interleave(&point)
            })
            .collect())
    }
}

/// [`interleave`] by table lookups: each coordinate's bits spread apart a byte at a time
/// (a table of 256 entries for the column count), then shifted into place.
struct Spreader {
    /// Per byte value, its bits `k` moved to bit `k * columns`.
    table: Box<[u64; 256]>,
    columns: u32,
    bits: u32,
}

impl Spreader {
    fn new(columns: usize, bits: u32) -> Self {
        let columns = columns.max(1) as u32;
        let mut table = Box::new([0u64; 256]);
        for (byte, spread) in table.iter_mut().enumerate() {
            for k in 0..8u32 {
                if (byte >> k) & 1 == 1 && k * columns < 64 {
                    *spread |= 1u64 << (k * columns);
                }
            }
        }
        Spreader {
            table,
            columns,
            bits,
        }
    }

    /// The same key as [`interleave`]`(point, bits)`: bit `b` of coordinate `i` (of `n`)
    /// lands at bit `b * n + (n - 1 - i)`.
    #[inline]
    fn interleave(&self, point: &[u32]) -> u64 {
        let n = self.columns;
        let mask = if self.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits) - 1
        };
        let mut key = 0u64;
        for (i, &x) in point.iter().enumerate() {
            let x = x & mask;
            let mut spread = 0u64;
            let mut chunk = 0u32;
            while chunk * 8 < self.bits {
                let byte = ((x >> (chunk * 8)) & 0xff) as usize;
                spread |= self.table[byte] << (chunk * 8 * n);
                chunk += 1;
            }
            key |= spread << (n - 1 - i as u32);
        }
        key
    }
}

/// A column's bounds, prepared for ranking values: integers (and dates, timestamps) as
/// `i64`, floats as `f64` (total order), anything else by its order-preserving row-format
/// bytes (full values).
enum Ranker {
    /// No bounds: every non-null value ranks 1.
    Empty,
    Int(Vec<i64>, DataType),
    Float(Vec<f64>, DataType),
    /// Strings and binaries: ordered by their bytes.
    Bytes(ByteBounds, DataType),
    Rows(RowConverter, Rows, DataType),
}

/// Byte-string bounds prepared for binary search: the prefix all of them share is compared
/// once per value, then the next 8 bytes as one integer, and only on a tie the rest (a
/// column like `customer-0000000000-<n>` compares 8 bytes, not 30, per step).
struct ByteBounds {
    prefix: Vec<u8>,
    /// Per bound, the 8 bytes after the prefix (big-endian, zero padded).
    heads: Vec<u64>,
    /// Per bound, the bytes after the prefix.
    rests: Vec<Vec<u8>>,
}

/// The longest prefix all of `values` share (empty when there are none).
fn common_prefix<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> &'a [u8] {
    let Some(mut prefix) = values.next() else {
        return &[];
    };
    for v in values {
        let same = prefix.iter().zip(v).take_while(|(x, y)| x == y).count();
        prefix = &prefix[..same];
    }
    prefix
}

/// The first 8 bytes of `b` as a big-endian integer, zero padded: comparing two of these
/// orders the byte strings unless they are equal.
fn head(b: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    let n = b.len().min(8);
    h[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(h)
}

impl ByteBounds {
    fn new(bounds: &[&[u8]]) -> Self {
        let prefix = common_prefix(bounds.iter().copied());
        let rests: Vec<Vec<u8>> = bounds.iter().map(|b| b[prefix.len()..].to_vec()).collect();
        ByteBounds {
            prefix: prefix.to_vec(),
            heads: rests.iter().map(|r| head(r)).collect(),
            rests,
        }
    }

    /// The number of bounds below each of `values`.
    fn below(&self, values: &[&[u8]]) -> Vec<u32> {
        // Each value's head after the prefix (or, for a value without the prefix, which is
        // below or above every bound, nothing to search), searched for together.
        let rests: Vec<Option<&[u8]>> = values
            .iter()
            .map(|v| v.strip_prefix(self.prefix.as_slice()))
            .collect();
        let heads: Vec<u64> = rests.iter().map(|r| r.map_or(0, head)).collect();
        let mut below = count_below(&self.heads, &heads);
        for ((b, rest), (v, &h)) in below.iter_mut().zip(&rests).zip(values.iter().zip(&heads)) {
            let lo = *b as usize;
            *b = match rest {
                None if *v < self.prefix.as_slice() => 0,
                None => self.heads.len() as u32,
                // The bounds are sorted by head, then by rest: those with a smaller head,
                // then among those with the same head (few) those with a smaller rest.
                Some(rest) if self.heads.get(lo) == Some(&h) => {
                    let same = self.heads[lo..].partition_point(|&b| b == h);
                    (lo + self.rests[lo..lo + same].partition_point(|r| r.as_slice() < *rest))
                        as u32
                }
                Some(_) => *b,
            };
        }
        below
    }
}

/// For each of `keys`, the number of `sorted` values below it (`partition_point(|s| s <
/// key)`), searched eight keys at a time: a binary search waits on each load it makes, and
/// eight at once overlap their waits.
fn count_below<T: Copy + PartialOrd>(sorted: &[T], keys: &[T]) -> Vec<u32> {
    const LANES: usize = 8;
    let n = sorted.len();
    if n == 0 {
        return vec![0; keys.len()];
    }
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(LANES) {
        let mut base = [0usize; LANES];
        let mut size = n;
        while size > 1 {
            let half = size / 2;
            for (b, k) in base.iter_mut().zip(chunk) {
                let mid = *b + half;
                *b = if sorted[mid] < *k { mid } else { *b };
            }
            size -= half;
        }
        out.extend(
            base.iter()
                .zip(chunk)
                .map(|(&b, k)| (b + usize::from(sorted[b] < *k)) as u32),
        );
    }
    out
}

/// The bytes of each value of a string or binary array (any offset width or view layout);
/// `None` for other types. Nulls give empty slices.
fn byte_values(values: &dyn Array) -> Option<Vec<&[u8]>> {
    fn all<'a>(n: usize, f: impl Fn(usize) -> &'a [u8]) -> Vec<&'a [u8]> {
        (0..n).map(f).collect()
    }
    let n = values.len();
    Some(match values.data_type() {
        DataType::Utf8 => {
            let a = values.as_string::<i32>();
            all(n, |i| a.value(i).as_bytes())
        }
        DataType::LargeUtf8 => {
            let a = values.as_string::<i64>();
            all(n, |i| a.value(i).as_bytes())
        }
        DataType::Utf8View => {
            let a = values.as_string_view();
            all(n, |i| a.value(i).as_bytes())
        }
        DataType::Binary => {
            let a = values.as_binary::<i32>();
            all(n, |i| a.value(i))
        }
        DataType::LargeBinary => {
            let a = values.as_binary::<i64>();
            all(n, |i| a.value(i))
        }
        DataType::BinaryView => {
            let a = values.as_binary_view();
            all(n, |i| a.value(i))
        }
        _ => return None,
    })
}

/// Whether values of `t` rank as `i64` (their order is the `i64` order).
fn ranks_as_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
    )
}

impl Ranker {
    fn new(bounds: &ArrayRef) -> Result<Self> {
        let t = bounds.data_type().clone();
        if bounds.is_empty() {
            return Ok(Ranker::Empty);
        }
        if ranks_as_int(&t) {
            let b = arrow::compute::cast(bounds, &DataType::Int64)?;
            return Ok(Ranker::Int(
                b.as_primitive::<Int64Type>().values().to_vec(),
                t,
            ));
        }
        if matches!(t, DataType::Float32 | DataType::Float64) {
            let b = arrow::compute::cast(bounds, &DataType::Float64)?;
            return Ok(Ranker::Float(
                b.as_primitive::<Float64Type>().values().to_vec(),
                t,
            ));
        }
        if let Some(b) = byte_values(bounds.as_ref()) {
            return Ok(Ranker::Bytes(ByteBounds::new(&b), t));
        }
        let converter = RowConverter::new(vec![SortField::new(t.clone())])?;
        let rows = converter.convert_columns(std::slice::from_ref(bounds))?;
        Ok(Ranker::Rows(converter, rows, t))
    }

    fn ranks(&self, values: &ArrayRef) -> Result<Vec<u32>> {
        let typed = |t: &DataType| -> Result<ArrayRef> {
            Ok(if values.data_type() == t {
                values.clone()
            } else {
                arrow::compute::cast(values, t)?
            })
        };
        // Per value, the number of bounds below it (whatever a null's slot holds).
        let below: Vec<u32> = match self {
            Ranker::Empty => vec![0; values.len()],
            Ranker::Int(bounds, t) => {
                let v = arrow::compute::cast(&typed(t)?, &DataType::Int64)?;
                count_below(bounds, v.as_primitive::<Int64Type>().values())
            }
            Ranker::Float(bounds, t) => {
                let v = arrow::compute::cast(&typed(t)?, &DataType::Float64)?;
                v.as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|v| bounds.partition_point(|b| b.total_cmp(v) == Ordering::Less) as u32)
                    .collect()
            }
            Ranker::Bytes(bounds, t) => {
                let cast;
                let v = match byte_values(values.as_ref()) {
                    Some(v) => v,
                    None => {
                        cast = typed(t)?;
                        byte_values(cast.as_ref()).ok_or_else(|| {
                            Error::internal(format!("{t} values that are not byte strings"))
                        })?
                    }
                };
                bounds.below(&v)
            }
            Ranker::Rows(converter, bounds, t) => {
                let rows = converter.convert_columns(&[typed(t)?])?;
                let n = bounds.num_rows();
                (0..values.len())
                    .map(|i| {
                        let row = rows.row(i);
                        let (mut lo, mut hi) = (0usize, n);
                        while lo < hi {
                            let mid = (lo + hi) / 2;
                            if bounds.row(mid) < row {
                                lo = mid + 1;
                            } else {
                                hi = mid;
                            }
                        }
                        lo as u32
                    })
                    .collect()
            }
        };
        Ok(match values.logical_nulls() {
            None => below.into_iter().map(|b| b + 1).collect(),
            Some(nulls) => below
                .into_iter()
                .zip(nulls.iter())
                .map(|(b, valid)| if valid { b + 1 } else { 0 })
                .collect(),
        })
    }
}

/// Z-order: the bits of each coordinate interleaved, most significant first.
pub fn interleave(point: &[u32], bits: u32) -> u64 {
    let mut key = 0u64;
    for bit in (0..bits).rev() {
        for &x in point {
            key = (key << 1) | u64::from((x >> bit) & 1);
        }
    }
    key
}

/// The Hilbert index of `point` (each coordinate `bits` wide): Skilling's "axes to
/// transpose" (Programming the Hilbert curve, 2004), then the transposed bits interleaved.
/// `point` is overwritten.
pub fn hilbert(point: &mut [u32], bits: u32) -> u64 {
    hilbert_transpose(point, bits);
    interleave(point, bits)
}

/// Skilling's "axes to transpose" in place: the Hilbert index of `point` is then its bits
/// interleaved.
fn hilbert_transpose(point: &mut [u32], bits: u32) {
    let n = point.len();
    if n == 0 || bits == 0 {
        return;
    }
    let m = 1u32 << (bits - 1);
    // Inverse undo of excess work.
    let mut q = m;
    while q > 1 {
        let p = q - 1;
        for i in 0..n {
            if point[i] & q != 0 {
                point[0] ^= p;
            } else {
                let t = (point[0] ^ point[i]) & p;
                point[0] ^= t;
                point[i] ^= t;
            }
        }
        q >>= 1;
    }
    // Gray encode.
    for i in 1..n {
        point[i] ^= point[i - 1];
    }
    let mut t = 0u32;
    let mut q = m;
    while q > 1 {
        if point[n - 1] & q != 0 {
            t ^= q - 1;
        }
        q >>= 1;
    }
    for x in point.iter_mut() {
        *x ^= t;
    }
}

/// Split keys cutting the sorted `keys` into about `parts` runs of similar length; a key
/// goes to part [`split_of`].
///
/// A run should be a compact box of the clustering columns, which on a space-filling curve
/// means a union of few neighbouring cells (the key space halved bit by bit): a cut at an
/// arbitrary key can make a run straddle one of the curve's jumps and span a column's whole
/// range. So cuts come in two kinds:
/// - *forced* at every cell boundary whose two sibling cells each hold at least
///   [`FORCED_RUNS`] runs' worth of keys (the boundaries a run must never straddle);
/// - between forced cuts, parts are shared out so the longest run is as short as it can be,
///   and each cut falls near its even quantile, on the coarsest cell boundary within
///   [`CUT_SLACK`] of a run's length from it.
///
/// Runs thus stay within about 1.5x the mean length (at most 1.6x on the tests' random
/// data; a key repeated many times stays in one run, and fewer runs come out when the keys
/// have fewer distinct values).
pub fn splits_for(mut keys: Vec<u64>, parts: usize) -> Vec<u64> {
    keys.sort_unstable();
    if parts < 2 || keys.len() < 2 {
        return Vec::new();
    }
    let run = keys.len() as f64 / parts as f64;
    let mut forced = vec![0];
    forced_cuts(&keys, 0, 63, FORCED_RUNS * run, &mut forced);
    forced.push(keys.len());
    // Parts per segment between forced cuts: one each, then one at a time to the segment
    // whose runs are longest.
    let lens: Vec<usize> = forced.windows(2).map(|w| w[1] - w[0]).collect();
    let mut shares = vec![1usize; lens.len()];
    let mut heap: std::collections::BinaryHeap<(u64, usize)> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| (l as u64 * SCALE, i))
        .collect();
    for _ in lens.len()..parts {
        let Some((_, i)) = heap.pop() else { break };
        shares[i] += 1;
        heap.push((lens[i] as u64 * SCALE / shares[i] as u64, i));
    }
    let mut splits = Vec::with_capacity(parts);
    for (i, w) in forced.windows(2).enumerate() {
        if w[0] > 0 {
            splits.push(boundary(keys[w[0] - 1], keys[w[0]]));
        }
        cut_segment(&keys, w[0], w[1], shares[i], &mut splits);
    }
    splits
}

/// A cut between two sibling cells that each hold this many runs' worth of keys is forced.
const FORCED_RUNS: f64 = 3.0;
/// A cut may move this fraction of a run's length from its even quantile to reach a
/// coarser cell boundary.
const CUT_SLACK: f64 = 0.25;
/// Fixed-point scale of run lengths compared in [`splits_for`].
const SCALE: u64 = 1 << 20;

/// The coarsest cell boundary above `below` and at most `at`: `at` with every bit below the
/// highest one where the two differ cleared (`below < at`).
fn boundary(below: u64, at: u64) -> u64 {
    let h = 63 - (below ^ at).leading_zeros();
    (at >> h) << h
}

/// Indices (into the sorted `keys`, of the first key after the cut) of the cell
/// boundaries within `keys[start..]`'s cells whose sibling cells each hold at least `min`
/// keys; `keys` share every bit above `bit`.
fn forced_cuts(keys: &[u64], start: usize, bit: u32, min: f64, out: &mut Vec<usize>) {
    if (keys.len() as f64) < 2.0 * min || keys.first() == keys.last() {
        return;
    }
    let mid = keys.partition_point(|k| (k >> bit) & 1 == 0);
    let next = bit.saturating_sub(1);
    if mid == 0 || mid == keys.len() {
        if bit > 0 {
            forced_cuts(keys, start, next, min, out);
        }
        return;
    }
    let (lower, upper) = keys.split_at(mid);
    forced_cuts(lower, start, next, min, out);
    if lower.len() as f64 >= min && upper.len() as f64 >= min {
        out.push(start + mid);
    }
    forced_cuts(upper, start + mid, next, min, out);
}

/// Cuts `keys[start..end]` into `parts` runs: each cut near its even quantile of what is
/// left, on the coarsest cell boundary within the slack.
fn cut_segment(keys: &[u64], start: usize, end: usize, parts: usize, out: &mut Vec<u64>) {
    let slack = ((end - start) as f64 / parts as f64 * CUT_SLACK) as usize;
    let mut prev = start;
    for left in (2..=parts).rev() {
        let ideal = prev + (end - prev) / left;
        let lo = ideal.saturating_sub(slack).max(prev + 1);
        let hi = (ideal + slack).min(end - 1);
        if lo > hi {
            break;
        }
        let cut = if keys[lo - 1] != keys[hi] {
            boundary(keys[lo - 1], keys[hi])
        } else {
            // One key fills the window: cut at the nearest change of key, if any.
            let after = keys[hi..end].partition_point(|&k| k == keys[hi]) + hi;
            let before = keys[prev..lo].partition_point(|&k| k < keys[lo - 1]) + prev;
            match (before > prev, after < end) {
                (true, true) if ideal.abs_diff(before) <= after - ideal => {
                    boundary(keys[before - 1], keys[before])
                }
                (_, true) => boundary(keys[after - 1], keys[after]),
                (true, false) => boundary(keys[before - 1], keys[before]),
                (false, false) => break,
            }
        };
        let at = keys.partition_point(|&k| k < cut);
        if at <= prev || at >= end {
            break;
        }
        out.push(cut);
        prev = at;
    }
}

/// The part of `key` among `splits` (ascending): the number of splits at or below it.
pub fn split_of(splits: &[u64], key: u64) -> u32 {
    splits.partition_point(|&s| s <= key) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn hilbert_visits_neighbours_in_order() {
        for dims in [2usize, 3] {
            let bits = 3;
            let side = 1u32 << bits;
            let mut points: Vec<(u64, Vec<u32>)> = Vec::new();
            let total = side.pow(dims as u32);
            for i in 0..total {
                let p: Vec<u32> = (0..dims).map(|d| (i / side.pow(d as u32)) % side).collect();
                points.push((hilbert(&mut p.clone(), bits), p));
            }
            points.sort();
            let keys: Vec<u64> = points.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, (0..total as u64).collect::<Vec<_>>(), "a bijection");
            for w in points.windows(2) {
                let dist: u32 = w[0]
                    .1
                    .iter()
                    .zip(&w[1].1)
                    .map(|(a, b)| a.abs_diff(*b))
                    .sum();
                assert_eq!(dist, 1, "{:?} -> {:?}", w[0].1, w[1].1);
            }
        }
    }

    #[test]
    fn zorder_interleaves_most_significant_first() {
        assert_eq!(interleave(&[0b10, 0b01], 2), 0b1001);
        assert_eq!(interleave(&[0b11, 0b00], 2), 0b1010);
    }

    #[test]
    fn table_interleave_is_the_bit_by_bit_one() {
        let seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = xorshift(seed);
        for columns in [1usize, 2, 3, 5, 6, 9, 64] {
            let bits = bits_per_column(columns);
            let spread = Spreader::new(columns, bits);
            for _ in 0..500 {
                // Coordinates past their bits too: both ignore the excess.
                let point: Vec<u32> = (0..columns).map(|_| next() as u32).collect();
                assert_eq!(
                    spread.interleave(&point),
                    interleave(&point, bits),
                    "{columns} columns, {point:?}"
                );
            }
        }
    }

    #[test]
    fn searching_eight_at_a_time_counts_as_partition_point() {
        let seed = 0x51_7cc1_b727_220au64;
        let mut next = xorshift(seed);
        for n in [0usize, 1, 2, 3, 7, 8, 9, 100, 4094] {
            // Duplicates among the sorted values, keys below, between, on and above them.
            let mut sorted: Vec<i64> = (0..n).map(|_| (next() % 500) as i64).collect();
            sorted.sort();
            let keys: Vec<i64> = (0..37).map(|_| (next() % 520) as i64 - 10).collect();
            let expected: Vec<u32> = keys
                .iter()
                .map(|k| sorted.partition_point(|s| s < k) as u32)
                .collect();
            assert_eq!(count_below(&sorted, &keys), expected, "{n} sorted values");
        }
    }

    #[test]
    fn range_ids_rank_full_strings_with_nulls_first() {
        // A 20-byte common prefix: a prefix-truncated key could not tell these apart.
        let prefix = "customer-0000000000-";
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            Some(format!("{prefix}c")),
            None,
            Some(format!("{prefix}a")),
            Some(format!("{prefix}b")),
            Some(format!("{prefix}a")),
        ]));
        let bounds = quantile_bounds(&values, 10).unwrap();
        assert_eq!(bounds.len(), 3);
        assert_eq!(range_ids(&values, &bounds).unwrap(), vec![3, 0, 1, 2, 1]);
        let between: ArrayRef =
            Arc::new(StringArray::from(vec![format!("{prefix}ab"), "z".into()]));
        assert_eq!(range_ids(&between, &bounds).unwrap(), vec![2, 4]);
    }

    #[test]
    fn byte_strings_rank_as_their_row_format_does() {
        // Random byte strings over a small alphabet (zero bytes, shared prefixes, prefixes
        // of each other, values outside the bounds' common prefix): the byte ranker agrees
        // with ranking by arrow's row format.
        use arrow::array::BinaryArray;
        let seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = xorshift(seed);
        let alphabet = [0u8, 1, b'a', b'b', 0xff];
        for common in [&b""[..], b"customer-0000000000-", b"a\0"] {
            let values: Vec<Option<Vec<u8>>> = (0..3000)
                .map(|_| {
                    if next().is_multiple_of(50) {
                        return None;
                    }
                    let mut v = if next().is_multiple_of(10) {
                        Vec::new()
                    } else {
                        common.to_vec()
                    };
                    for _ in 0..next() % 14 {
                        v.push(alphabet[(next() % 5) as usize]);
                    }
                    Some(v)
                })
                .collect();
            let values: ArrayRef = Arc::new(BinaryArray::from_iter(values));
            let in_bounds = values.slice(0, 2000);
            let bounds = quantile_bounds(&in_bounds, 300).unwrap();
            // The byte strings' own sort picks the bounds arrow's sort does.
            for max in [1, 7, 300, 5000] {
                assert_eq!(
                    quantile_bounds(&in_bounds, max).unwrap().as_ref(),
                    sorted_quantile_bounds(&in_bounds, max).unwrap().as_ref(),
                    "{max} bounds, common prefix {common:?}"
                );
            }
            let converter = RowConverter::new(vec![SortField::new(DataType::Binary)]).unwrap();
            let rows = converter
                .convert_columns(std::slice::from_ref(&bounds))
                .unwrap();
            let by_rows = Ranker::Rows(converter, rows, DataType::Binary);
            let by_bytes = Ranker::new(&bounds).unwrap();
            assert!(matches!(by_bytes, Ranker::Bytes(..)));
            assert_eq!(
                by_bytes.ranks(&values).unwrap(),
                by_rows.ranks(&values).unwrap(),
                "common prefix {common:?}"
            );
            // Strings of other layouts rank the same against string bounds.
            let strings: ArrayRef = Arc::new(StringArray::from_iter((0..values.len()).map(|i| {
                values
                    .as_binary::<i32>()
                    .is_valid(i)
                    .then(|| format!("{:?}", values.as_binary::<i32>().value(i)))
            })));
            let string_bounds = quantile_bounds(&strings, 300).unwrap();
            let expected = range_ids(&strings, &string_bounds).unwrap();
            for t in [DataType::Utf8View, DataType::LargeUtf8] {
                let other = arrow::compute::cast(&strings, &t).unwrap();
                assert_eq!(range_ids(&other, &string_bounds).unwrap(), expected, "{t}");
            }
        }
    }

    #[test]
    fn every_type_ranks_in_its_own_order() {
        use arrow::array::{Date32Array, Decimal128Array, Float32Array, UInt32Array};
        let cases: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![
                Some(-5),
                None,
                Some(7),
                Some(0),
                Some(i64::MAX),
            ])),
            Arc::new(UInt32Array::from(vec![
                Some(4_000_000_000),
                None,
                Some(3),
                Some(0),
                Some(9),
            ])),
            Arc::new(Float32Array::from(vec![
                Some(-0.5),
                None,
                Some(f32::NAN),
                Some(2.0),
                Some(-3.0),
            ])),
            Arc::new(Date32Array::from(vec![
                Some(-700),
                None,
                Some(19000),
                Some(0),
                Some(1),
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(-12345), None, Some(99), Some(0), Some(1)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ];
        for values in cases {
            let bounds = quantile_bounds(&values, 100).unwrap();
            let ids = range_ids(&values, &bounds).unwrap();
            // Sorting by id gives the values' own order, nulls first.
            let order = sort(&values, None).unwrap();
            let sorted_ids = range_ids(&order, &bounds).unwrap();
            assert!(
                sorted_ids.windows(2).all(|w| w[0] < w[1]),
                "{values:?}: {sorted_ids:?}"
            );
            assert_eq!(ids[1], 0);
        }
    }

    #[test]
    fn bounds_are_evenly_spaced_and_capped() {
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values((0..1000).rev()));
        let b = quantile_bounds(&values, 10).unwrap();
        let b = b.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            b.values().to_vec(),
            vec![0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
        );
        let ids = range_ids(&values, &(Arc::new(b.clone()) as ArrayRef)).unwrap();
        assert_eq!(ids[0], 11, "999 is above all 10 bounds");
        assert_eq!(*ids.last().unwrap(), 1);
    }

    #[test]
    fn values_above_every_bound_stay_at_the_top_of_the_curve() {
        // Samples of every size from just over a column's 4,094 bounds: never more bounds
        // than that, so a value above them all takes the highest range id of the column's
        // 12 bits, and its key is the curve's last, not the nulls' (the id wrapped around
        // when the bounds came out one too many).
        let max = max_bounds(2);
        for n in (max..max * 3).step_by(37) {
            let sample: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
            let bounds = quantile_bounds(&sample, max).unwrap();
            assert!(bounds.len() <= max, "{n} values: {} bounds", bounds.len());
            let spec = CurveSpec::from_sample(
                vec!["a".into(), "b".into()],
                Curve::ZOrder,
                &[sample.clone(), sample],
            )
            .unwrap();
            let a: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(0), Some(n as i64)]));
            let batch = RecordBatch::try_from_iter(vec![("a", a.clone()), ("b", a)]).unwrap();
            let keys = spec.keys(&batch).unwrap().values().to_vec();
            assert!(
                keys[0] < keys[1] && keys[1] < keys[2],
                "{n} values: {keys:?}"
            );
            assert_eq!(
                keys[2],
                (1u64 << (2 * bits_per_column(2))) - 1,
                "{n} values"
            );
        }
    }

    #[test]
    fn keys_round_trip_bounds_and_split_evenly() {
        let a: ArrayRef = Arc::new(Int64Array::from_iter_values((0..4000).map(|i| i % 64)));
        let b: ArrayRef = Arc::new(Int64Array::from_iter_values((0..4000).map(|i| i / 64)));
        let batch = RecordBatch::try_from_iter(vec![("a", a.clone()), ("b", b.clone())]).unwrap();
        for curve in [Curve::ZOrder, Curve::Hilbert] {
            let spec = CurveSpec::from_sample(
                vec!["a".into(), "b".into()],
                curve,
                &[a.clone(), b.clone()],
            )
            .unwrap();
            let back = CurveSpec::decode_bounds(&spec.encode_bounds().unwrap()).unwrap();
            assert_eq!(back, spec.bounds);
            let keys = spec.keys(&batch).unwrap().values().to_vec();
            let splits = splits_for(keys.clone(), 4);
            assert_eq!(splits.len(), 3);
            let mut counts = [0usize; 4];
            for k in keys {
                counts[split_of(&splits, k) as usize] += 1;
            }
            assert!(
                counts.iter().all(|&c| (600..=1400).contains(&c)),
                "{curve:?}: {counts:?}"
            );
        }
    }

    #[test]
    fn cuts_snap_to_cells_of_the_curve() {
        // A 64 x 64 grid cut into 17 runs: within half and 1.5 times the mean length (16
        // cells and one halved), and each run a compact box (a run straddling one of the
        // Z-curve's jumps would span a whole side).
        let side = 64u32;
        for curve in [Curve::ZOrder, Curve::Hilbert] {
            let mut points: Vec<(u64, u32, u32)> = Vec::new();
            for x in 0..side {
                for y in 0..side {
                    let key = match curve {
                        Curve::ZOrder => interleave(&[x, y], 6),
                        Curve::Hilbert => hilbert(&mut [x, y], 6),
                    };
                    points.push((key, x, y));
                }
            }
            let splits = splits_for(points.iter().map(|p| p.0).collect(), 17);
            assert_eq!(splits.len(), 16, "{curve:?}");
            let mut boxes = vec![(side, 0u32, side, 0u32, 0usize); 17];
            for (k, x, y) in points {
                let b = &mut boxes[split_of(&splits, k) as usize];
                *b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y), b.4 + 1);
            }
            let ideal = (side * side) as usize / 17;
            for b in &boxes {
                assert!(
                    b.4 * 2 >= ideal && b.4 * 2 <= ideal * 3,
                    "{curve:?}: {boxes:?}"
                );
                let (w, h) = (b.1 - b.0 + 1, b.3 - b.2 + 1);
                assert!(
                    w <= side / 2 && h <= side / 2,
                    "{curve:?}: run spans {w} x {h}: {boxes:?}"
                );
            }
        }
    }

    /// Per run: (min x, max x, min y, max y, rows).
    fn boxes(points: &[(u64, u32, u32)], splits: &[u64]) -> Vec<(u32, u32, u32, u32, usize)> {
        let mut boxes = vec![(u32::MAX, 0, u32::MAX, 0, 0); splits.len() + 1];
        for &(k, x, y) in points {
            let b = &mut boxes[split_of(splits, k) as usize];
            *b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y), b.4 + 1);
        }
        boxes
    }

    #[test]
    fn runs_are_balanced_and_compact_on_random_data() {
        // 100,000 random points of a 4096 x 4096 grid (uniform; y near x; a third of them
        // on one y), cut into 7 to 100 runs along both curves: every run within half and
        // 1.6 times the mean length (the old halving cut runs up to 1.9 times it), and a
        // point probe on x or y meets few runs (a grid of square boxes would meet
        // sqrt(parts) of them per column).
        let seed = 0x9e37_79b9_7f4a_7c15u64;
        for data in ["uniform", "correlated", "skewed"] {
            let mut next = xorshift(seed);
            let xy: Vec<(u32, u32)> = (0..100_000)
                .map(|_| {
                    let x = (next() % 4096) as u32;
                    let y = match data {
                        "uniform" => (next() % 4096) as u32,
                        "correlated" => ((x as u64 + next() % 400) % 4096) as u32,
                        _ if next().is_multiple_of(3) => 7,
                        _ => (next() % 4096) as u32,
                    };
                    (x, y)
                })
                .collect();
            for curve in [Curve::ZOrder, Curve::Hilbert] {
                let points: Vec<(u64, u32, u32)> = xy
                    .iter()
                    .map(|&(x, y)| {
                        let key = match curve {
                            Curve::ZOrder => interleave(&[x, y], 12),
                            Curve::Hilbert => hilbert(&mut [x, y], 12),
                        };
                        (key, x, y)
                    })
                    .collect();
                for parts in [7usize, 17, 25, 30, 61, 100] {
                    let splits = splits_for(points.iter().map(|p| p.0).collect(), parts);
                    assert_eq!(splits.len() + 1, parts, "{data} {curve:?} {parts}");
                    let boxes = boxes(&points, &splits);
                    let mean = points.len() as f64 / parts as f64;
                    for b in &boxes {
                        let share = b.4 as f64 / mean;
                        assert!(
                            (0.5..=1.6).contains(&share),
                            "{data} {curve:?} {parts}: a run of {share:.2} times the mean"
                        );
                    }
                    if data == "skewed" {
                        continue;
                    }
                    let probes: Vec<_> = points.iter().step_by(200).collect();
                    let met = probes
                        .iter()
                        .map(|p| {
                            boxes
                                .iter()
                                .filter(|b| b.0 <= p.1 && p.1 <= b.1)
                                .chain(boxes.iter().filter(|b| b.2 <= p.2 && p.2 <= b.3))
                                .count()
                        })
                        .sum::<usize>() as f64
                        / probes.len() as f64;
                    assert!(
                        met <= 2.6 * (parts as f64).sqrt(),
                        "{data} {curve:?} {parts}: a probe on x and one on y meet {met:.1} runs"
                    );
                }
            }
        }
    }
}
