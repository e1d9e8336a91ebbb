//! The exchange: map tasks route rows to reducers by a hash of their keys (SQL expressions
//! over the row: partition columns, join keys, …) and write one Arrow IPC stream per reducer;
//! reduce tasks read their stream from every map output.
//!
//! Layout: `<map output dir>/r-<reducer>.arrow`. A missing file means the map task had no rows
//! for that reducer. Output directories are per task attempt, so a superseded attempt can
//! never mix into a reducer's input: reducers only read the directories the coordinator
//! accepted.

use std::hash::{Hash, Hasher};
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::expr::Expression;
use crate::storage::{join_url, store_for};
use crate::{Error, Result};

/// Bytes of encoded IPC a reducer stream buffers before it is flushed to the store.
const FLUSH_BYTES: usize = 4 << 20;

fn reducer_file(reducer: u32) -> String {
    format!("r-{reducer:05}.arrow")
}

/// Computes, for each of `num_rows` rows, `hash(keys) % num_reducers`, where `keys` are the
/// rows' key values (one array per key). Stable across processes.
pub fn route_rows(keys: &[ArrayRef], num_rows: usize, num_reducers: u32) -> Result<Vec<u32>> {
    if num_reducers <= 1 || keys.is_empty() {
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
            (h.finish() % num_reducers as u64) as u32
        })
        .collect())
}

struct ReducerStream {
    ipc: StreamWriter<Vec<u8>>,
    sink: BufWriter,
}

/// Writes a map task's output.
pub struct ShuffleWriter {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    dir_url: Url,
    schema: SchemaRef,
    keys: Vec<Expression>,
    num_reducers: u32,
    streams: Vec<Option<ReducerStream>>,
    bytes_written: u64,
}

impl ShuffleWriter {
    /// `dir_url`: this attempt's output directory; `keys`: the routing key expressions.
    pub fn try_new(
        dir_url: &Url,
        schema: SchemaRef,
        keys: Vec<Expression>,
        num_reducers: u32,
    ) -> Result<Self> {
        if num_reducers == 0 {
            return Err(Error::internal("exchange with zero reducers"));
        }
        let (store, dir) = store_for(dir_url)?;
        Ok(Self {
            store,
            dir,
            dir_url: dir_url.clone(),
            schema,
            keys,
            num_reducers,
            streams: (0..num_reducers).map(|_| None).collect(),
            bytes_written: 0,
        })
    }

    /// Routes the rows of `batch` to their reducers.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch))
            .collect::<Result<Vec<_>>>()?;
        let routes = route_rows(&keys, batch.num_rows(), self.num_reducers)?;
        let mut per_reducer: Vec<Vec<u32>> = vec![Vec::new(); self.num_reducers as usize];
        for (row, r) in routes.iter().enumerate() {
            per_reducer[*r as usize].push(row as u32);
        }
        for (r, rows) in per_reducer.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
            self.append(r, &part).await?;
        }
        Ok(())
    }

    async fn append(&mut self, reducer: usize, batch: &RecordBatch) -> Result<()> {
        if self.streams[reducer].is_none() {
            let path = self.dir.clone().join(reducer_file(reducer as u32));
            let sink = BufWriter::new(self.store.clone(), path);
            let ipc = StreamWriter::try_new(Vec::new(), &self.schema)?;
            self.streams[reducer] = Some(ReducerStream { ipc, sink });
        }
        let Some(stream) = self.streams[reducer].as_mut() else {
            return Err(Error::internal("reducer stream vanished"));
        };
        stream.ipc.write(batch)?;
        if stream.ipc.get_ref().len() >= FLUSH_BYTES {
            let buf = std::mem::take(stream.ipc.get_mut());
            self.bytes_written += buf.len() as u64;
            stream
                .sink
                .write_all(&buf)
                .await
                .map_err(|e| Error::internal(format!("exchange write: {e}")))?;
        }
        Ok(())
    }

    /// Finishes every reducer stream; returns the output directory URL and bytes written.
    pub async fn finish(mut self) -> Result<(String, u64)> {
        for stream in self.streams.iter_mut().filter_map(Option::take) {
            let ReducerStream { mut ipc, mut sink } = stream;
            ipc.finish()?;
            let buf = ipc.into_inner()?;
            self.bytes_written += buf.len() as u64;
            sink.write_all(&buf)
                .await
                .map_err(|e| Error::internal(format!("exchange write: {e}")))?;
            sink.shutdown()
                .await
                .map_err(|e| Error::internal(format!("exchange write: {e}")))?;
        }
        Ok((self.dir_url.to_string(), self.bytes_written))
    }

    /// Abandons the output (best effort).
    pub async fn abort(mut self) {
        for stream in self.streams.iter_mut().filter_map(Option::take) {
            let mut sink = stream.sink;
            let _ = sink.abort().await;
        }
    }
}

/// Reads reducer `reducer`'s batches from one map output directory (empty if the map task
/// produced no rows for it).
pub async fn read_reducer_input(map_output: &str, reducer: u32) -> Result<Vec<RecordBatch>> {
    let dir = Url::parse(map_output)
        .map_err(|e| Error::internal(format!("bad map output url `{map_output}`: {e}")))?;
    let url = join_url(&dir, &reducer_file(reducer))?;
    let (store, path) = store_for(&url)?;
    let bytes = match store.get(&path).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

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

    #[tokio::test]
    async fn map_output_round_trips_per_reducer() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path().join("m0")).unwrap();
        let b = batch(
            (0..1000)
                .map(|i| Some(["x", "y", "z", "w"][i % 4]))
                .collect(),
        );
        let key = Expression::compile("k", &b.schema()).unwrap();
        let mut w = ShuffleWriter::try_new(&url, b.schema(), vec![key], 3).unwrap();
        w.write(&b).await.unwrap();
        w.write(&b).await.unwrap();
        let (out, bytes) = w.finish().await.unwrap();
        assert!(bytes > 0);
        let mut total = 0;
        let mut seen_keys = std::collections::HashMap::new();
        for r in 0..3 {
            for rb in read_reducer_input(&out, r).await.unwrap() {
                total += rb.num_rows();
                let k = rb.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                for i in 0..k.len() {
                    let prev = seen_keys.insert(k.value(i).to_string(), r);
                    assert!(
                        prev.is_none() || prev == Some(r),
                        "key split across reducers"
                    );
                }
            }
        }
        assert_eq!(total, 2000);
        assert!(read_reducer_input(&out, 99).await.unwrap().is_empty());
    }
}
