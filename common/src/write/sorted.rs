//! Data files written in curve order: rows get their curve key and reach a
//! [`DataFileWriter`] in key order, so each file it rolls covers one stretch of the curve
//! however many rows the task has. Rows that fit the sort's budget are sorted in memory
//! (their keys only; rows are gathered in order a chunk at a time); beyond it they pass
//! through DataFusion's external sort, which spills sorted runs to local disk.

use std::sync::Arc;

use arrow::array::{AsArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{DataFileWriter, same_types, slice_bytes};
use crate::cluster::{CurveSpec, Keyer};
use crate::merge::{OnceStream, spilled_bytes};
use crate::schema::conform_batch;
use crate::spill::Budget;
use crate::task::DataFile;
use crate::{Error, Result};

/// The key column the sort orders by (dropped before writing): the one range-routed
/// exchange blocks carry.
use crate::exchange::KEY_COLUMN as KEY_COL;

type Sent = datafusion::error::Result<RecordBatch>;

/// A [`DataFileWriter`] fed in curve-key order. Rows are kept in memory while they fit
/// the sort's budget and sorted at the end; past it, they go to DataFusion's external sort
/// in a background task (bounded channel: the producer waits while the sort is busy).
pub struct SortedWriter {
    keyer: Keyer,
    /// The rows' schema (what is written).
    schema: SchemaRef,
    /// While rows arrive as they travelled through the exchange (decimals narrowed, see
    /// [`crate::exchange::narrow_schema`]), their schema: they are kept so (a `Decimal128`
    /// of precision 9 in a quarter of the bytes) and widened as they are written. `None`
    /// once any batch arrives otherwise.
    narrow: Option<SchemaRef>,
    keyed: SchemaRef,
    budget: Budget,
    state: State,
}

enum State {
    /// Within the budget: rows (with their keys) in memory.
    Buffering {
        writer: Box<DataFileWriter>,
        rows: Vec<(RecordBatch, UInt64Array)>,
        bytes: usize,
    },
    /// Past it: rows stream into the external sort.
    External {
        tx: Option<mpsc::Sender<Sent>>,
        handle: JoinHandle<Result<(Vec<DataFile>, u64)>>,
    },
    Gone,
}

/// Rows per batch written from an in-memory sort.
const OUT_ROWS: usize = 8192;
/// Bytes per buffered row for its key and its place in the final order.
const KEY_BYTES: usize = 24;

impl SortedWriter {
    /// Starts the sort of rows of `schema` into `writer`; the sort holds at most the
    /// budget's bytes before spilling to its directory.
    pub fn start(
        writer: DataFileWriter,
        schema: &SchemaRef,
        curve: &CurveSpec,
        budget: Budget,
    ) -> Result<Self> {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(KEY_COL, DataType::UInt64, false));
        Ok(Self {
            keyer: curve.keyer()?,
            schema: schema.clone(),
            narrow: crate::exchange::narrow_schema(schema),
            keyed: Arc::new(Schema::new(fields)),
            budget,
            state: State::Buffering {
                writer: Box::new(writer.expecting_full_files()),
                rows: Vec::new(),
                bytes: 0,
            },
        })
    }

    /// Adds rows: of the rows' schema, or as they travelled through the exchange (with
    /// their curve keys as a last column, which spares computing them again).
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (batch, keys) = match batch.schema_ref().fields().last() {
            Some(f) if f.name() == KEY_COL && f.data_type() == &DataType::UInt64 => {
                let keys = batch.columns()[batch.num_columns() - 1]
                    .as_primitive::<arrow::datatypes::UInt64Type>()
                    .clone();
                let rows = batch.project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())?;
                (self.admit(&rows)?, keys)
            }
            _ => {
                let batch = self.admit(batch)?;
                let keys = self.keyer.keys(&batch)?;
                (batch, keys)
            }
        };
        if let State::Buffering { rows, bytes, .. } = &mut self.state {
            *bytes += slice_bytes(&batch) + keys.len() * KEY_BYTES;
            rows.push((batch, keys));
            if *bytes <= self.budget.bytes {
                return Ok(());
            }
            // Over the budget: hand everything to the external sort.
            let State::Buffering { writer, rows, .. } =
                std::mem::replace(&mut self.state, State::Gone)
            else {
                return Err(Error::internal("sort state changed"));
            };
            let (tx, rx) = mpsc::channel::<Sent>(2);
            let handle = tokio::spawn(sort_into(
                rx,
                self.keyed.clone(),
                *writer,
                self.budget.clone(),
            ));
            self.state = State::External {
                tx: Some(tx),
                handle,
            };
            for (b, k) in rows {
                let keyed = self.with_key(&b, k)?;
                self.send(keyed).await?;
            }
            return Ok(());
        }
        let keyed = self.with_key(&batch, keys)?;
        self.send(keyed).await
    }

    /// `batch` in the form rows are kept in: narrowed while every batch so far came so,
    /// else of the rows' schema (the first batch that is not narrowed widens those kept).
    fn admit(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        if let Some(narrow) = &self.narrow {
            if same_types(batch.columns(), narrow) {
                return Ok(batch.clone());
            }
            self.narrow = None;
            if let State::Buffering { rows, bytes, .. } = &mut self.state {
                for (b, _) in rows.iter_mut() {
                    *bytes -= slice_bytes(b);
                    *b = conform_batch(b, &self.schema)?;
                    *bytes += slice_bytes(b);
                }
            }
        }
        if same_types(batch.columns(), &self.schema) {
            Ok(batch.clone())
        } else {
            conform_batch(batch, &self.schema)
        }
    }

    /// `batch` (as kept) of the rows' schema, with its keys as the last column (what the
    /// external sort orders by).
    fn with_key(&self, batch: &RecordBatch, keys: UInt64Array) -> Result<RecordBatch> {
        let mut columns = conform_batch(batch, &self.schema)?.columns().to_vec();
        columns.push(Arc::new(keys));
        Ok(RecordBatch::try_new(self.keyed.clone(), columns)?)
    }

    async fn send(&mut self, keyed: RecordBatch) -> Result<()> {
        let sent = match &self.state {
            State::External { tx: Some(tx), .. } => tx.send(Ok(keyed)).await.is_ok(),
            _ => false,
        };
        if sent {
            Ok(())
        } else {
            // The sort ended early: its error is the task's.
            Err(Error::internal("the sort of the task's rows stopped"))
        }
    }

    /// Sorts what is left, writes it and closes the files. Returns them and the bytes the
    /// sort spilled.
    pub async fn close(mut self) -> Result<(Vec<DataFile>, u64)> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Buffering {
                mut writer, rows, ..
            } => match write_sorted(&mut writer, rows).await {
                Ok(()) => Ok((writer.close().await?, 0)),
                Err(e) => {
                    writer.abort().await;
                    Err(e)
                }
            },
            State::External { tx, handle } => {
                drop(tx);
                handle
                    .await
                    .map_err(|e| Error::internal(format!("sort task: {e}")))?
            }
            State::Gone => Err(Error::internal("sorted writer closed twice")),
        }
    }

    /// Gives up: deletes what was written.
    pub async fn abort(mut self) {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Buffering { writer, .. } => writer.abort().await,
            State::External { tx, handle } => {
                if let Some(tx) = tx {
                    let _ = tx
                        .send(Err(datafusion::error::DataFusionError::Execution(
                            "task aborted".into(),
                        )))
                        .await;
                }
                let _ = handle.await;
            }
            State::Gone => {}
        }
    }
}

/// Writes in-memory rows in key order (as they are kept: narrowed decimals stay so, the
/// writer takes them): the (key, batch, row) triples are sorted and the rows gathered from
/// the batches where they are, a chunk at a time (no copy of the whole).
async fn write_sorted(
    writer: &mut DataFileWriter,
    rows: Vec<(RecordBatch, UInt64Array)>,
) -> Result<()> {
    let total: usize = rows.iter().map(|(b, _)| b.num_rows()).sum();
    let mut order: Vec<(u64, u32, u32)> = Vec::with_capacity(total);
    for (i, (_, keys)) in rows.iter().enumerate() {
        order.extend(
            keys.values()
                .iter()
                .enumerate()
                .map(|(r, k)| (*k, i as u32, r as u32)),
        );
    }
    order.sort_unstable();
    let batches: Vec<&RecordBatch> = rows.iter().map(|(b, _)| b).collect();
    for chunk in order.chunks(OUT_ROWS) {
        let indices: Vec<(usize, usize)> = chunk
            .iter()
            .map(|&(_, b, r)| (b as usize, r as usize))
            .collect();
        // Narrowed decimals are written as they are (the writer takes them).
        let chunk = arrow::compute::interleave_record_batch(&batches, &indices)?;
        writer.write(&chunk).await?;
    }
    Ok(())
}

async fn sort_into(
    rx: mpsc::Receiver<Sent>,
    keyed: SchemaRef,
    mut writer: DataFileWriter,
    budget: Budget,
) -> Result<(Vec<DataFile>, u64)> {
    let sorted = async {
        let (mut rows, plan) = sort_stream(rx, keyed, budget).await?;
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            let without_key = batch.project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())?;
            writer.write(&without_key).await?;
        }
        Ok::<_, Error>(spilled_bytes(&plan))
    }
    .await;
    match sorted {
        Ok(spilled) => Ok((writer.close().await?, spilled)),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

async fn sort_stream(
    rx: mpsc::Receiver<Sent>,
    keyed: SchemaRef,
    budget: Budget,
) -> Result<(
    datafusion::execution::SendableRecordBatchStream,
    Arc<dyn ExecutionPlan>,
)> {
    // The sort's whole budget, a quarter of it set aside for merging its spilled runs.
    let budget = budget.with_bytes(budget.bytes.max(4 << 20));
    let limit = budget.bytes;
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192);
    config.options_mut().execution.sort_spill_reservation_bytes = limit / 4;
    config.options_mut().execution.sort_in_place_threshold_bytes = limit / 8;
    let ctx = SessionContext::new_with_config_rt(config, budget.runtime()?);
    let input = Box::pin(RecordBatchStreamAdapter::new(
        keyed.clone(),
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }),
    ));
    let part: Arc<dyn PartitionStream> = Arc::new(OnceStream::new(keyed.clone(), input));
    ctx.register_table(
        "rows",
        Arc::new(StreamingTable::try_new(keyed, vec![part])?),
    )?;
    let df = ctx
        .sql(&format!("SELECT * FROM rows ORDER BY \"{KEY_COL}\""))
        .await?;
    let plan = df.create_physical_plan().await?;
    let stream = execute_stream(plan.clone(), ctx.task_ctx())?;
    Ok((stream, plan))
}
