//! The exchange format: map tasks route rows to partitions by a hash of their keys (SQL
//! expressions over the row: partition columns, join keys) or by range of a curve key
//! (Z-order), and cut each
//! partition's rows into *blocks*; reduce tasks decode the blocks of their partition from
//! every map output.
//!
//! A block is a self-contained Arrow IPC stream (schema, one batch, end marker) compressed
//! as one LZ4 block (its length prepended), so it can be stored, sent and decoded on its
//! own. One compression call per block, not one per column buffer as the IPC format's own
//! compression does, which costs far less for blocks of many small buffers. Where blocks are
//! kept (executor memory, then local spill files) and how they travel (the executors'
//! shuffle endpoints) is the executor's business; this module only encodes and routes.

use std::hash::{Hash, Hasher};
use std::io::Cursor;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
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

/// Encodes batches (of one schema) as one block.
pub fn encode_block(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let batch = concat_batches(schema, batches)?;
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    w.write(&batch)?;
    w.finish()?;
    Ok(lz4_flex::block::compress_prepend_size(&w.into_inner()?))
}

/// Decodes one block.
pub fn decode_block(block: &[u8]) -> Result<Vec<RecordBatch>> {
    let ipc = lz4_flex::block::decompress_size_prepended(block)
        .map_err(|e| Error::internal(format!("corrupt exchange block: {e}")))?;
    let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(format!("corrupt exchange block: {e}")))
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

    fn route(&self, batch: &RecordBatch, num_partitions: u32) -> Result<Vec<u32>> {
        match self {
            Router::Hash(keys) => {
                let keys = keys
                    .iter()
                    .map(|k| k.evaluate(batch))
                    .collect::<Result<Vec<_>>>()?;
                route_rows(&keys, batch.num_rows(), num_partitions)
            }
            Router::Range(r, keyer) => {
                let parts = r.partitions(keyer.keys(batch)?.values());
                if let Some(p) = parts.iter().find(|&&p| p >= num_partitions) {
                    return Err(Error::internal(format!(
                        "range route to partition {p} of {num_partitions}"
                    )));
                }
                Ok(parts)
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
    buffered: Vec<usize>,
    total: usize,
    budget: usize,
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
            buffered: vec![0; n],
            total: 0,
            budget: budget.max(BLOCK_BYTES),
        })
    }

    /// Routes the rows of `batch`; returns the blocks that became full, as (partition, block).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut ready = Vec::new();
        if batch.num_rows() == 0 {
            return Ok(ready);
        }
        let routes = self.router.route(batch, self.num_partitions)?;
        let mut per_partition: Vec<Vec<u32>> = vec![Vec::new(); self.num_partitions as usize];
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
            let size = part.get_array_memory_size();
            self.buffers[p].push(part);
            self.buffered[p] += size;
            self.total += size;
            if self.buffered[p] >= BLOCK_BYTES {
                ready.push(self.cut(p)?);
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
        self.total -= self.buffered[p];
        self.buffered[p] = 0;
        // Rows may carry more columns than the sink's schema names (MERGE's row ids).
        let schema = batches
            .first()
            .map_or_else(|| self.schema.clone(), |b| b.schema());
        Ok((p as u32, encode_block(&schema, &batches)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

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

    #[test]
    fn a_corrupt_block_is_an_error() {
        assert!(decode_block(b"not arrow").is_err());
    }
}
