//! The exchange format: map tasks route rows to partitions by a hash of their keys (SQL
//! expressions over the row: partition columns, join keys) or by range of a curve key
//! (Z-order), and cut each
//! partition's rows into *blocks*; reduce tasks decode the blocks of their partition from
//! every map output.
//!
//! A block is self-contained, so it can be stored, sent and decoded on its own: the rows'
//! columns worth compressing as one Arrow IPC stream (schema, one batch, end marker)
//! compressed as one LZ4 block, then the other columns as a plain IPC stream (see
//! [`Packing`]). One compression call per block, not one per column buffer as the IPC
//! format's own compression does, which costs far less for blocks of many small buffers;
//! and none over columns LZ4 would not shrink (random amounts and keys), which cost as much
//! to compress as any and come out no smaller. Decimal columns
//! travel in the narrowest decimal type their precision fits (a `Decimal128(7,2)` in 4 bytes
//! instead of 16: fewer bytes to copy, compress, move and hold), marked in their field
//! metadata and restored on decoding. A range-routed block holds its rows in runs sorted by
//! curve key (a map task gathers each incoming batch's rows of a partition once, in key
//! order), with the keys as a last column, so the reducer's sort gathers rows walking each
//! run forward and never computes a key again. Where blocks are
//! kept (executor memory, then local spill files) and how they travel (the executors'
//! shuffle endpoints) is the executor's business; this module only encodes and routes.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array, UInt64Array};
use arrow::buffer::Buffer;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, Field, FieldRef, Schema, SchemaRef,
};
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, SortField};

use crate::cluster::Keyer;
use crate::expr::Expression;
use crate::task::RangeRoute;
use crate::{Error, Result};

/// Uncompressed bytes of rows a partition buffers before they become a block.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Computes, for each of `num_rows` rows, `hash(keys) % num_partitions`, where `keys` are the
/// rows' key values (one array per key). Stable across processes.
pub fn route_rows(keys: &[ArrayRef], num_rows: usize, num_partitions: u32) -> Result<Vec<u32>> {
    if num_partitions <= 1 || keys.is_empty() {
        return Ok(vec![0; num_rows]);
    }
    let fields: Vec<SortField> = keys
        .iter()
        .map(|k| SortField::new(k.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(keys)?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut h = std::hash::DefaultHasher::new();
            row.as_ref().hash(&mut h);
            (h.finish() % num_partitions as u64) as u32
        })
        .collect())
}

/// Encodes batches (of one schema) as one block, judging its columns' packing on them alone
/// (a [`Partitioner`] keeps its first block's verdict instead). Decimal columns travel in
/// the narrowest decimal type their precision fits ([`narrow_type`]); [`decode_block`]
/// restores them. Tests only: map tasks cut blocks through a [`Partitioner`].
#[cfg(test)]
pub(crate) fn encode_block(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let batch = block_rows(schema, batches)?;
    let packing = Packing::judge(&batch);
    write_block(&batch, &packing)
}

/// The rows of `batches` (of one schema) as one batch, decimals narrowed ([`narrow`]).
fn block_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let narrowed = narrow(batches)?;
    Ok(match narrowed.first() {
        Some(first) => concat_batches(&first.schema(), &narrowed)?,
        None => RecordBatch::new_empty(schema.clone()),
    })
}

/// Which columns of a block are LZ4-compressed: those a sample shows it shrinks by at
/// least a quarter. The others travel as they are (random amounts and keys: LZ4 finds few
/// matches in them, yet scans every byte, slowest on such data: a column it shrinks by a
/// tenth costs about as much to compress as one it shrinks fourfold, for little). A map
/// task judges its first block's columns and keeps the verdict for blocks of the same
/// schema.
#[derive(Debug, Clone)]
struct Packing {
    schema: SchemaRef,
    packed: Vec<bool>,
}

/// Bytes of a column a [`Packing`] compresses to judge it.
const PACKING_SAMPLE: usize = 16 * 1024;

impl Packing {
    fn judge(batch: &RecordBatch) -> Packing {
        let packed = batch.columns().iter().map(shrinks).collect();
        Packing {
            schema: batch.schema(),
            packed,
        }
    }

    fn all(&self) -> bool {
        self.packed.iter().all(|&p| p)
    }
}

/// Whether LZ4 shrinks a sample of `column`'s bytes (the start of each of its buffers, as
/// the IPC stream holds them) by at least a quarter; a column too small to tell, or nested,
/// is compressed.
fn shrinks(column: &ArrayRef) -> bool {
    let data = column.to_data();
    if !data.child_data().is_empty() || data.buffers().is_empty() {
        return true;
    }
    let per_buffer = PACKING_SAMPLE / data.buffers().len();
    let mut sample = Vec::with_capacity(PACKING_SAMPLE);
    for b in data.buffers() {
        sample.extend_from_slice(&b.as_slice()[..b.len().min(per_buffer)]);
    }
    if sample.len() < 1024 {
        return true;
    }
    let compressed = lz4_flex::block::compress(&sample);
    (compressed.len() as f64) < 0.75 * sample.len() as f64
}

/// Schema metadata of a block's plain stream: the positions of its columns among the rows'
/// (comma-separated), so [`decode_block_narrow`] puts them back in place.
const PLAIN_AT: &str = "silt.exchange.plain_at";

/// One batch as a block: `[u32 LE: n][n bytes: LZ4 block (size prepended) of the IPC stream
/// of the packed columns][IPC stream of the other columns, if any]`.
fn write_block(batch: &RecordBatch, packing: &Packing) -> Result<Vec<u8>> {
    let schema = batch.schema();
    let (packed, plain) = if packing.all() {
        (batch.clone(), None)
    } else {
        let (at, rest): (Vec<usize>, Vec<usize>) =
            (0..batch.num_columns()).partition(|&c| !packing.packed[c]);
        let project = |cols: &[usize], metadata| {
            let fields: Vec<FieldRef> = cols.iter().map(|&c| schema.fields()[c].clone()).collect();
            let columns = cols.iter().map(|&c| batch.column(c).clone()).collect();
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(
                Arc::new(Schema::new_with_metadata(fields, metadata)),
                columns,
                &options,
            )
        };
        let positions = at.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let plain_metadata = [(PLAIN_AT.to_string(), positions.join(","))].into();
        (
            project(&rest, schema.metadata().clone())?,
            Some(project(&at, plain_metadata)?),
        )
    };
    let compressed = lz4_flex::block::compress_prepend_size(&ipc_stream(&packed)?);
    let len = u32::try_from(compressed.len())
        .map_err(|_| Error::internal("an exchange block over 4 GiB"))?;
    let plain = plain.map(|p| ipc_stream(&p)).transpose()?;
    let mut block = Vec::with_capacity(4 + compressed.len() + plain.as_ref().map_or(0, Vec::len));
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&compressed);
    if let Some(plain) = plain {
        block.extend_from_slice(&plain);
    }
    Ok(block)
}

/// `batch` as an IPC stream (schema, the batch, end marker).
fn ipc_stream(batch: &RecordBatch) -> Result<Vec<u8>> {
    // The stream's size, so that writing it never moves what is written: the rows, and
    // for the schema and the batch a header and a few bytes of padding per buffer.
    let framing = 2 * (512 + 256 * batch.num_columns());
    let capacity = crate::write::slice_bytes(batch) + framing;
    let mut w = StreamWriter::try_new(Vec::with_capacity(capacity), &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    Ok(w.into_inner()?)
}

/// Field metadata marking a decimal column narrowed for the exchange.
const NARROWED: &str = "silt.exchange.decimal128";

/// `batches` (of one schema) with their columns in the types they travel in
/// ([`narrow_type`]), those fields marked [`NARROWED`]. A column with a value outside its
/// declared precision in any batch stays as it is in all of them.
fn narrow(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    if !narrows(&schema) {
        // Nothing to narrow (hash routes of tables without decimals): the batches as they are.
        return Ok(batches.to_vec());
    }
    let mut columns: Vec<Vec<ArrayRef>> = batches.iter().map(|b| b.columns().to_vec()).collect();
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    for (c, field) in schema.fields().iter().enumerate() {
        let Some(to) = narrow_type(field.data_type()) else {
            continue;
        };
        let narrowed = batches
            .iter()
            .map(|b| narrow_decimal(b.column(c), &to))
            .collect::<Option<Vec<_>>>();
        if let Some(narrowed) = narrowed {
            for (cols, n) in columns.iter_mut().zip(narrowed) {
                cols[c] = n;
            }
            let mut metadata = field.metadata().clone();
            metadata.insert(NARROWED.to_string(), String::new());
            fields[c] = Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(to)
                    .with_metadata(metadata),
            );
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    columns
        .into_iter()
        .zip(batches)
        .map(|(cols, b)| {
            let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                cols,
                &options,
            )?)
        })
        .collect()
}

/// A `Decimal128` column as `to` (`Decimal32` / `Decimal64` of the same precision and scale),
/// or `None` if a value does not fit or `to` is not a narrower decimal.
pub fn narrow_decimal(column: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    let wide = column.as_primitive_opt::<Decimal128Type>()?;
    match *to {
        DataType::Decimal32(p, s) => wide
            .try_unary::<_, Decimal32Type, _>(|v| i32::try_from(v).map_err(|_| ()))
            .ok()?
            .with_precision_and_scale(p, s)
            .ok()
            .map(|a| Arc::new(a) as ArrayRef),
        DataType::Decimal64(p, s) => wide
            .try_unary::<_, Decimal64Type, _>(|v| i64::try_from(v).map_err(|_| ()))
            .ok()?
            .with_precision_and_scale(p, s)
            .ok()
            .map(|a| Arc::new(a) as ArrayRef),
        _ => None,
    }
}

/// Undoes [`narrow`]: the marked columns back to `Decimal128`, the mark removed.
fn widen(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| f.metadata().contains_key(NARROWED))
    {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.metadata().contains_key(NARROWED) {
            fields.push(field.clone());
            columns.push(column.clone());
            continue;
        }
        let wide = match field.data_type() {
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => {
                crate::schema::widen_decimal(column, &DataType::Decimal128(*p, *s))
            }
            _ => None,
        }
        .ok_or_else(|| {
            Error::internal(format!(
                "corrupt exchange block: column `{}` marked narrowed is {}",
                field.name(),
                field.data_type()
            ))
        })?;
        let mut metadata = field.metadata().clone();
        metadata.remove(NARROWED);
        fields.push(Arc::new(
            field
                .as_ref()
                .clone()
                .with_data_type(wide.data_type().clone())
                .with_metadata(metadata),
        ));
        columns.push(wide);
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// The column of range-routed blocks that holds each row's curve key.
pub const KEY_COLUMN: &str = "__silt_curve";

/// Decodes one block: its rows, their columns in the types they were encoded from (a
/// range-routed block's keys left out).
pub fn decode_block(block: &[u8]) -> Result<Vec<RecordBatch>> {
    decode_block_narrow(block)?
        .into_iter()
        .map(|b| {
            let b = match b.schema_ref().fields().last() {
                Some(f) if f.name() == KEY_COLUMN => {
                    b.project(&(0..b.num_columns() - 1).collect::<Vec<_>>())?
                }
                _ => b,
            };
            widen(b)
        })
        .collect()
}

/// Decodes one block as it travelled: decimal columns may still be narrowed (see
/// [`narrow_schema`]; `conform_batch` to the rows' schema restores them), and a
/// range-routed block has its rows sorted by curve key, the keys as the last column
/// ([`KEY_COLUMN`]). The batches' columns are slices of the decompressed packed part and
/// of one aligned copy of the plain part; see [`crate::write::slice_bytes`] for their size.
pub fn decode_block_narrow(block: &[u8]) -> Result<Vec<RecordBatch>> {
    let (len, rest) = match block.split_first_chunk::<4>() {
        Some((len, rest)) => (u32::from_le_bytes(*len) as usize, rest),
        None => return Err(corrupt(&"shorter than its header")),
    };
    if len > rest.len() {
        return Err(corrupt(&"its packed part runs past its end"));
    }
    let (packed, plain) = rest.split_at(len);
    let ipc = lz4_flex::block::decompress_size_prepended(packed).map_err(|e| corrupt(&e))?;
    let packed = read_stream(Buffer::from_vec(ipc))?;
    if plain.is_empty() {
        return Ok(packed);
    }
    // The plain stream's buffers are copied out of the block, aligned.
    let plain = read_stream(Buffer::from(plain))?;
    if plain.len() != packed.len() {
        return Err(corrupt(&"its parts hold different numbers of batches"));
    }
    packed
        .into_iter()
        .zip(plain)
        .map(|(packed, plain)| rejoin(packed, plain))
        .collect()
}

fn corrupt(e: &dyn std::fmt::Display) -> Error {
    Error::internal(format!("corrupt exchange block: {e}"))
}

/// The batches of one IPC stream.
fn read_stream(mut buffer: Buffer) -> Result<Vec<RecordBatch>> {
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !buffer.is_empty() {
        if let Some(b) = decoder.decode(&mut buffer).map_err(|e| corrupt(&e))? {
            batches.push(b);
        }
    }
    decoder.finish().map_err(|e| corrupt(&e))?;
    Ok(batches)
}

/// One batch of a block's rows from its packed and plain parts ([`write_block`]).
fn rejoin(packed: RecordBatch, plain: RecordBatch) -> Result<RecordBatch> {
    let plain_schema = plain.schema();
    let at = plain_schema
        .metadata()
        .get(PLAIN_AT)
        .ok_or_else(|| corrupt(&"its plain part does not say where its columns go"))?;
    let at = at
        .split(',')
        .map(str::parse::<usize>)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(&e))?;
    let width = packed.num_columns() + plain.num_columns();
    if at.len() != plain.num_columns()
        || at.iter().any(|&c| c >= width)
        || packed.num_rows() != plain.num_rows()
    {
        return Err(corrupt(&"its parts do not fit together"));
    }
    let mut slots: Vec<Option<(FieldRef, ArrayRef)>> = vec![None; width];
    for (c, &to) in at.iter().enumerate() {
        slots[to] = Some((plain_schema.fields()[c].clone(), plain.column(c).clone()));
    }
    let packed_schema = packed.schema();
    let mut rest = packed_schema.fields().iter().zip(packed.columns());
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        let (f, c) = rest
            .next()
            .ok_or_else(|| corrupt(&"its parts do not fit together"))?;
        *slot = Some((f.clone(), c.clone()));
    }
    let (fields, columns): (Vec<FieldRef>, Vec<ArrayRef>) = slots.into_iter().flatten().unzip();
    if fields.len() != width {
        return Err(corrupt(&"two of its columns claim one place"));
    }
    let schema = Schema::new_with_metadata(fields, packed_schema.metadata().clone());
    let options = RecordBatchOptions::new().with_row_count(Some(packed.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(schema),
        columns,
        &options,
    )?)
}

/// The narrower type a column of type `t` travels in, if any: `Decimal128` of precision 2
/// to 9 as `Decimal32`, up to 18 as `Decimal64` (a quarter / half of the bytes to copy,
/// compress and move). The integer width is the one the Parquet writer stores the precision
/// in, so that data file writers take narrowed columns as they are: arrow-rs stores
/// precision 1 as 64-bit integers (and cannot write a `Decimal32` into them).
pub fn narrow_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Decimal128(p, s) if (2..=9).contains(p) => Some(DataType::Decimal32(*p, *s)),
        DataType::Decimal128(p, s) if *p <= 18 => Some(DataType::Decimal64(*p, *s)),
        _ => None,
    }
}

/// Whether any column of `schema` travels in a narrower type.
fn narrows(schema: &Schema) -> bool {
    schema
        .fields()
        .iter()
        .any(|f| narrow_type(f.data_type()).is_some())
}

/// `schema` with its columns in the types they travel in ([`narrow_type`]), or `None`
/// when no column narrows.
pub fn narrow_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    if !narrows(schema) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match narrow_type(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// How a [`Partitioner`] picks each row's partition.
pub enum Router {
    /// By a hash of key expressions.
    Hash(Vec<Expression>),
    /// By range of the row's curve key.
    Range(RangeRoute, Keyer),
}

impl Router {
    /// Routing by `route`'s ranges of the curve.
    pub fn range(route: RangeRoute) -> Result<Router> {
        let keyer = route.curve.keyer()?;
        Ok(Router::Range(route, keyer))
    }

    /// Each row's partition, and for a range route each row's curve key.
    fn route(
        &self,
        batch: &RecordBatch,
        num_partitions: u32,
    ) -> Result<(Vec<u32>, Option<UInt64Array>)> {
        match self {
            Router::Hash(keys) => {
                let keys = keys
                    .iter()
                    .map(|k| k.evaluate(batch))
                    .collect::<Result<Vec<_>>>()?;
                Ok((route_rows(&keys, batch.num_rows(), num_partitions)?, None))
            }
            Router::Range(r, keyer) => {
                let keys = keyer.keys(batch)?;
                let parts = r.partitions(keys.values());
                if let Some(p) = parts.iter().find(|&&p| p >= num_partitions) {
                    return Err(Error::internal(format!(
                        "range route to partition {p} of {num_partitions}"
                    )));
                }
                Ok((parts, Some(keys)))
            }
        }
    }
}

/// Routes a map task's rows to partitions and cuts them into blocks. Buffers at most
/// `BLOCK_BYTES` per partition and `budget` bytes overall (the largest buffer becomes a block
/// early when over), so a map task's memory does not grow with its input.
pub struct Partitioner {
    schema: SchemaRef,
    router: Router,
    num_partitions: u32,
    buffers: Vec<Vec<RecordBatch>>,
    /// Range routes: the curve keys of each partition's buffered rows, in buffer order.
    keys: Vec<Vec<u64>>,
    buffered: Vec<usize>,
    total: usize,
    budget: usize,
    /// Which columns of this task's blocks are compressed, judged on its first block.
    packing: Option<Packing>,
}

impl Partitioner {
    pub fn try_new(
        schema: SchemaRef,
        router: Router,
        num_partitions: u32,
        budget: usize,
    ) -> Result<Self> {
        if num_partitions == 0 {
            return Err(Error::internal("exchange with zero partitions"));
        }
        let n = num_partitions as usize;
        Ok(Self {
            schema,
            router,
            num_partitions,
            buffers: vec![Vec::new(); n],
            keys: vec![Vec::new(); n],
            buffered: vec![0; n],
            total: 0,
            budget: budget.max(BLOCK_BYTES),
            packing: None,
        })
    }

    /// Routes the rows of `batch`; returns the blocks that became full, as (partition, block).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut ready = Vec::new();
        if batch.num_rows() == 0 {
            return Ok(ready);
        }
        let (routes, keys) = self.router.route(batch, self.num_partitions)?;
        match keys {
            None => {
                let mut per_partition: Vec<Vec<u32>> =
                    vec![Vec::new(); self.num_partitions as usize];
                for (row, p) in routes.iter().enumerate() {
                    per_partition[*p as usize].push(row as u32);
                }
                for (p, rows) in per_partition.into_iter().enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    let part = if rows.len() == batch.num_rows() {
                        batch.clone()
                    } else {
                        take_record_batch(batch, &UInt32Array::from(rows))?
                    };
                    self.buffer(p, part, &mut ready)?;
                }
            }
            Some(keys) => {
                // The rows in key order: a partition (a range of keys) is a run of it,
                // gathered once into a piece sorted by key. Decimals are narrowed first,
                // so the gather moves fewer bytes.
                let narrowed = narrow(std::slice::from_ref(batch))?;
                let batch = narrowed.first().unwrap_or(batch);
                let keys = keys.values();
                let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
                order.sort_unstable_by_key(|&r| keys[r as usize]);
                let mut start = 0;
                while start < order.len() {
                    let p = routes[order[start] as usize];
                    let run = order[start..]
                        .iter()
                        .position(|&r| routes[r as usize] != p)
                        .unwrap_or(order.len() - start);
                    let rows = &order[start..start + run];
                    self.keys[p as usize].extend(rows.iter().map(|&r| keys[r as usize]));
                    let part = take_record_batch(batch, &UInt32Array::from(rows.to_vec()))?;
                    self.buffer(p as usize, part, &mut ready)?;
                    start += run;
                }
            }
        }
        while self.total > self.budget {
            let Some(largest) = (0..self.buffers.len()).max_by_key(|&p| self.buffered[p]) else {
                break;
            };
            if self.buffered[largest] == 0 {
                break;
            }
            ready.push(self.cut(largest)?);
        }
        Ok(ready)
    }

    /// Adds `part` (rows of partition `p`; for a range route, their keys are already in
    /// `self.keys[p]`) to the partition's buffer, cutting a block when it is full.
    fn buffer(
        &mut self,
        p: usize,
        part: RecordBatch,
        ready: &mut Vec<(u32, Vec<u8>)>,
    ) -> Result<()> {
        let size = crate::write::slice_bytes(&part) + KEY_BYTES * part.num_rows();
        self.buffers[p].push(part);
        self.buffered[p] += size;
        self.total += size;
        if self.buffered[p] >= BLOCK_BYTES {
            ready.push(self.cut(p)?);
        }
        Ok(())
    }

    /// The remaining buffered rows, as blocks.
    pub fn finish(&mut self) -> Result<Vec<(u32, Vec<u8>)>> {
        (0..self.buffers.len())
            .filter(|&p| !self.buffers[p].is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| self.cut(p))
            .collect()
    }

    fn cut(&mut self, p: usize) -> Result<(u32, Vec<u8>)> {
        let batches = std::mem::take(&mut self.buffers[p]);
        let keys = std::mem::take(&mut self.keys[p]);
        self.total -= self.buffered[p];
        self.buffered[p] = 0;
        // Rows may carry more columns than the sink's schema names (MERGE's row ids).
        let schema = batches
            .first()
            .map_or_else(|| self.schema.clone(), |b| b.schema());
        let rows = match self.router {
            Router::Hash(_) => block_rows(&schema, &batches)?,
            Router::Range(..) => sorted_runs(&batches, keys)?,
        };
        let packing = match self.packing.take() {
            Some(packing) if packing.schema == rows.schema() => packing,
            _ => Packing::judge(&rows),
        };
        let block = write_block(&rows, &packing)?;
        self.packing = Some(packing);
        Ok((p as u32, block))
    }
}

/// Bytes per buffered row of a range route for its curve key and its place in the sort.
const KEY_BYTES: usize = 16;

/// The rows of `batches` (pieces sorted by curve key, `keys` their keys in order) as the
/// rows of one block of those runs, the keys as its last column ([`KEY_COLUMN`]): a
/// reducer's sort gathers rows walking each run forward, and need not compute the keys
/// again.
fn sorted_runs(batches: &[RecordBatch], keys: Vec<u64>) -> Result<RecordBatch> {
    let Some(first) = batches.first() else {
        return Err(Error::internal("an empty block"));
    };
    if batches.iter().map(RecordBatch::num_rows).sum::<usize>() != keys.len() {
        return Err(Error::internal("curve keys do not match the rows"));
    }
    // Each piece was narrowed on its own; where one could not be (a value beyond its
    // column's precision), the block's rows travel as narrow as all of them can.
    let renarrowed;
    let batches = if batches.iter().all(|b| b.schema() == first.schema()) {
        batches
    } else {
        let wide = batches
            .iter()
            .map(|b| widen(b.clone()))
            .collect::<Result<Vec<_>>>()?;
        renarrowed = narrow(&wide)?;
        &renarrowed[..]
    };
    let schema = batches[0].schema();
    let rows = concat_batches(&schema, batches)?;
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(KEY_COLUMN, DataType::UInt64, false)));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(UInt64Array::from(keys)));
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Decimal128Array;
    use arrow::array::{Array, Int64Array, StringArray};

    fn batch(keys: Vec<Option<&str>>) -> RecordBatch {
        let n = keys.len();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn routing_is_by_key_and_stable() {
        let b = batch(vec![Some("a"), Some("b"), None, Some("a"), None, Some("c")]);
        let keys = [b.column(0).clone()];
        let r1 = route_rows(&keys, b.num_rows(), 7).unwrap();
        let r2 = route_rows(&keys, b.num_rows(), 7).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(r1[0], r1[3]);
        assert_eq!(r1[2], r1[4]);
        assert!(r1.iter().all(|r| *r < 7));
    }

    #[test]
    fn blocks_hold_each_key_in_one_partition_and_stay_within_the_budget() {
        let b = batch(
            (0..50_000)
                .map(|i| Some(["x", "y", "z", "w", "v"][i % 5]))
                .collect(),
        );
        let key = Expression::compile("k", &b.schema()).unwrap();
        // A budget below one block: every push cuts blocks, nothing accumulates.
        let mut p = Partitioner::try_new(b.schema(), Router::Hash(vec![key]), 3, 1).unwrap();
        let mut blocks = Vec::new();
        for _ in 0..4 {
            blocks.extend(p.push(&b).unwrap());
            assert!(p.total <= BLOCK_BYTES, "buffered {}", p.total);
        }
        blocks.extend(p.finish().unwrap());
        let mut total = 0;
        let mut seen = std::collections::HashMap::new();
        for (part, block) in &blocks {
            for rb in decode_block(block).unwrap() {
                total += rb.num_rows();
                let k = rb.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                for i in 0..k.len() {
                    let prev = seen.insert(k.value(i).to_string(), *part);
                    assert!(prev.is_none() || prev == Some(*part), "key split");
                }
            }
        }
        assert_eq!(total, 200_000);
        // Compressed: smaller than the rows in memory.
        let encoded: usize = blocks.iter().map(|(_, b)| b.len()).sum();
        assert!(encoded < 4 * b.get_array_memory_size(), "{encoded}");
    }

    /// Narrow types are the integer widths the Parquet writer stores each precision in
    /// (precision 1 in 64-bit integers), so data file writers take them as they are.
    #[test]
    fn narrow_types_follow_the_parquet_writers_integer_widths() {
        let narrow = |p| narrow_type(&DataType::Decimal128(p, 0));
        assert_eq!(narrow(1), Some(DataType::Decimal64(1, 0)));
        assert_eq!(narrow(2), Some(DataType::Decimal32(2, 0)));
        assert_eq!(narrow(9), Some(DataType::Decimal32(9, 0)));
        assert_eq!(narrow(10), Some(DataType::Decimal64(10, 0)));
        assert_eq!(narrow(18), Some(DataType::Decimal64(18, 0)));
        assert_eq!(narrow(19), None);
        let physical = |t: DataType| {
            let schema = Schema::new(vec![Field::new("d", t, true)]);
            parquet::arrow::ArrowSchemaConverter::new()
                .convert(&schema)
                .unwrap()
                .column(0)
                .physical_type()
        };
        for p in 1..=18 {
            let wide = physical(DataType::Decimal128(p, 0));
            let narrowed = physical(narrow(p).unwrap());
            assert_eq!(wide, narrowed, "precision {p}");
            let width = match narrow(p).unwrap() {
                DataType::Decimal32(..) => parquet::basic::Type::INT32,
                _ => parquet::basic::Type::INT64,
            };
            assert_eq!(wide, width, "precision {p}");
        }
    }

    #[test]
    fn decimals_travel_narrow_and_come_back_as_they_were() {
        let dec = |values: Vec<Option<i128>>, p: u8| {
            Arc::new(
                Decimal128Array::from(values)
                    .with_precision_and_scale(p, 2)
                    .unwrap(),
            ) as ArrayRef
        };
        let mut tagged = Field::new("d7", DataType::Decimal128(7, 2), true);
        tagged.set_metadata([("k".to_string(), "v".to_string())].into());
        let schema = Arc::new(Schema::new(vec![
            tagged,
            Field::new("d15", DataType::Decimal128(15, 2), true),
            Field::new("d38", DataType::Decimal128(38, 2), true),
            // Declared precision 7 but holding a larger value: must not be truncated.
            Field::new("bad", DataType::Decimal128(7, 2), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                dec(vec![Some(9_999_999), None, Some(-9_999_999)], 7),
                dec(vec![Some(999_999_999_999_999), Some(-1), None], 15),
                dec(vec![Some(i128::MAX / 10), Some(0), None], 38),
                dec(vec![Some(1 << 40), Some(1), None], 7),
            ],
        )
        .unwrap();
        let narrowed = &narrow(std::slice::from_ref(&batch)).unwrap()[0];
        assert_eq!(narrowed.column(0).data_type(), &DataType::Decimal32(7, 2));
        assert_eq!(narrowed.column(1).data_type(), &DataType::Decimal64(15, 2));
        assert_eq!(narrowed.column(2).data_type(), &DataType::Decimal128(38, 2));
        assert_eq!(narrowed.column(3).data_type(), &DataType::Decimal128(7, 2));
        let block = encode_block(&schema, &[batch.slice(0, 2), batch.slice(2, 1)]).unwrap();
        let back = decode_block(&block).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0], batch);
        assert_eq!(back[0].schema(), schema);
        // As travelled: conforming to the rows' schema restores them too.
        let narrow = decode_block_narrow(&block).unwrap();
        assert_eq!(narrow[0].column(0).data_type(), &DataType::Decimal32(7, 2));
        let conformed = crate::schema::conform_batch(&narrow[0], &schema).unwrap();
        assert_eq!(conformed, batch);
        let expected = narrow_schema(&schema).unwrap();
        let types = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(types(&expected)[..3], types(&narrow[0].schema())[..3]);
    }

    #[test]
    fn range_blocks_are_runs_sorted_by_key_carrying_their_keys() {
        use crate::cluster::{Curve, CurveSpec};
        // Seeded pseudo-random rows: an int key column and a decimal payload.
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i64
        };
        let n = 100_000;
        let a: Vec<Option<i64>> = (0..n)
            .map(|i| (i % 97 != 0).then(|| next() % 1000))
            .collect();
        let d: Vec<Option<i128>> = (0..n).map(|i| Some(i as i128 * 7 % 100_000)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(7, 2), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(a)),
                Arc::new(
                    Decimal128Array::from(d)
                        .with_precision_and_scale(7, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let curve =
            CurveSpec::from_sample(vec!["a".into()], Curve::ZOrder, &[batch.column(0).clone()])
                .unwrap();
        let keys = curve.keys(&batch).unwrap();
        let route = RangeRoute {
            curve: curve.clone(),
            splits: crate::cluster::splits_for(keys.values().to_vec(), 3),
            offset: 0,
        };
        let router = Router::range(route.clone()).unwrap();
        // A small budget: several blocks per partition.
        let mut p = Partitioner::try_new(schema.clone(), router, 3, 1).unwrap();
        let mut blocks = Vec::new();
        let mut pushed = 0;
        for start in (0..n).step_by(5000) {
            blocks.extend(p.push(&batch.slice(start, 5000)).unwrap());
            pushed += 1;
        }
        blocks.extend(p.finish().unwrap());
        assert!(blocks.len() > 3, "{} blocks", blocks.len());
        let mut rows_back = 0;
        let mut sum_back = 0i128;
        for (part, block) in &blocks {
            let travelled = decode_block_narrow(block).unwrap();
            let rows = decode_block(block).unwrap();
            for (t, r) in travelled.iter().zip(&rows) {
                assert_eq!(r.schema(), schema, "keys left out, decimals restored");
                assert_eq!(t.schema().field(1).data_type(), &DataType::Decimal32(7, 2));
                assert_eq!(t.schema().field(2).name(), KEY_COLUMN);
                let k = t.column(2).as_primitive::<arrow::datatypes::UInt64Type>();
                // Runs sorted by key, at most one per batch pushed.
                let descents = k.values().windows(2).filter(|w| w[0] > w[1]).count();
                assert!(descents < pushed, "{descents} descents in a block");
                assert!(
                    k.values().windows(2).filter(|w| w[0] <= w[1]).count() > 10 * descents,
                    "rows come in sorted runs"
                );
                // Each row's key is its own, and routes it to this block's partition.
                let own = curve.keys(r).unwrap();
                assert_eq!(own.values(), k.values());
                assert!(route.partitions(own.values()).iter().all(|q| q == part));
                rows_back += r.num_rows();
                sum_back += r
                    .column(1)
                    .as_primitive::<Decimal128Type>()
                    .iter()
                    .flatten()
                    .sum::<i128>();
            }
        }
        assert_eq!(rows_back, n);
        let sum: i128 = batch
            .column(1)
            .as_primitive::<Decimal128Type>()
            .iter()
            .flatten()
            .sum();
        assert_eq!(sum_back, sum);
    }

    #[test]
    fn a_corrupt_block_is_an_error() {
        assert!(decode_block(b"not arrow").is_err());
        assert!(decode_block(b"").is_err());
        // A valid block cut short anywhere, or with its length header overstated.
        let rows = mixed_rows(4096, 7);
        let block = encode_block(&rows.schema(), std::slice::from_ref(&rows)).unwrap();
        for cut in [3, 4, 100, block.len() / 2, block.len() - 1] {
            assert!(decode_block(&block[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = block.clone();
        long[..4].copy_from_slice(&(block.len() as u32).to_le_bytes());
        assert!(decode_block(&long).is_err());
    }

    /// `n` seeded rows: random keys and amounts (LZ4 cannot shrink them), a status of three
    /// values, a decimal that is mostly zero, and text with a long common prefix; with nulls.
    fn mixed_rows(n: usize, seed: u64) -> RecordBatch {
        use arrow::array::{Decimal128Array, Int32Array};
        let mut next = crate::test_rng::xorshift(seed);
        let mut keys = Vec::with_capacity(n);
        let mut amounts = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let mut coupons = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let r = next();
            keys.push((!r.is_multiple_of(7)).then_some(r as i32));
            amounts.push(Some(((r >> 32) % 2_000_000) as i128));
            status.push(Some((r >> 40) as i32 % 3));
            coupons.push((!r.is_multiple_of(5)).then_some(if r.is_multiple_of(11) {
                1234
            } else {
                0
            }));
            names.push(Some(format!(
                "customer-with-a-long-common-prefix-{:08}",
                i * 3
            )));
        }
        let dec = |v: Vec<Option<i128>>| {
            Arc::new(
                Decimal128Array::from(v)
                    .with_precision_and_scale(7, 2)
                    .unwrap(),
            ) as ArrayRef
        };
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("key", DataType::Int32, true),
                Field::new("amount", DataType::Decimal128(7, 2), true),
                Field::new("status", DataType::Int32, true),
                Field::new("coupon", DataType::Decimal128(7, 2), true),
                Field::new("name", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int32Array::from(keys)),
                dec(amounts),
                Arc::new(Int32Array::from(status)),
                dec(coupons),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn columns_lz4_would_not_shrink_travel_uncompressed_and_come_back_in_place() {
        let rows = mixed_rows(20_000, 0x1ce);
        let narrowed = block_rows(&rows.schema(), std::slice::from_ref(&rows)).unwrap();
        let packing = Packing::judge(&narrowed);
        // Random keys and amounts travel plain; the rest is compressed.
        assert_eq!(packing.packed, [false, false, true, true, true]);
        let block = write_block(&narrowed, &packing).unwrap();
        let back = decode_block(&block).unwrap();
        assert_eq!(back, std::slice::from_ref(&rows));
        let travelled = decode_block_narrow(&block).unwrap();
        assert_eq!(travelled, std::slice::from_ref(&narrowed));
        // Smaller than the rows as they travel, and hardly larger than all of them compressed.
        let all = Packing {
            schema: narrowed.schema(),
            packed: vec![true; 5],
        };
        let whole = write_block(&narrowed, &all).unwrap();
        assert_eq!(decode_block(&whole).unwrap(), std::slice::from_ref(&rows));
        assert!(block.len() < crate::write::slice_bytes(&narrowed));
        assert!(block.len() < whole.len() + whole.len() / 20);
        // Every column plain: the packed part holds no column, only the row count.
        let none = Packing {
            schema: narrowed.schema(),
            packed: vec![false; 5],
        };
        let plain = write_block(&narrowed, &none).unwrap();
        assert_eq!(decode_block(&plain).unwrap(), std::slice::from_ref(&rows));
        // A slice with an offset judges and travels the same way.
        let slice = rows.slice(1234, 5000);
        let block = encode_block(&rows.schema(), std::slice::from_ref(&slice)).unwrap();
        assert_eq!(decode_block(&block).unwrap(), [slice]);
    }

    #[test]
    fn a_partitioner_keeps_its_first_blocks_packing_while_the_schema_holds() {
        let rows = mixed_rows(50_000, 99);
        let key = Expression::compile("status", &rows.schema()).unwrap();
        let router = Router::Hash(vec![key]);
        let mut p = Partitioner::try_new(rows.schema(), router, 3, 4 << 20).unwrap();
        let mut blocks = p.push(&rows).unwrap();
        blocks.extend(p.finish().unwrap());
        let packing = p.packing.clone().unwrap();
        assert_eq!(packing.packed, [false, false, true, true, true]);
        let mut total = 0;
        for (_, block) in &blocks {
            for b in decode_block(block).unwrap() {
                assert_eq!(b.schema(), rows.schema());
                total += b.num_rows();
            }
        }
        assert_eq!(total, rows.num_rows());
    }
}
