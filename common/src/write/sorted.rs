//! Data files written in curve order: rows get their curve key, pass through DataFusion's
//! external sort (memory-limited, spilling sorted runs to local disk past the limit) and
//! reach a [`DataFileWriter`] in key order, so each file it rolls covers one stretch of the
//! curve however many rows the task has.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::DataFileWriter;
use crate::cluster::{CurveSpec, Keyer};
use crate::merge::{OnceStream, spilled_bytes};
use crate::task::DataFile;
use crate::{Error, Result};

/// The key column the sort orders by (dropped before writing).
const KEY_COL: &str = "__silt_curve";

type Sent = datafusion::error::Result<RecordBatch>;

/// A [`DataFileWriter`] fed in curve-key order. Rows are kept in memory while they fit
/// the sort's budget and sorted at the end; past it, they go to DataFusion's external sort
/// in a background task (bounded channel: the producer waits while the sort is busy).
pub struct SortedWriter {
    keyer: Keyer,
    keyed: SchemaRef,
    memory_limit: usize,
    state: State,
}

enum State {
    /// Within the budget: rows (with their keys) in memory.
    Buffering {
        writer: Box<DataFileWriter>,
        batches: Vec<RecordBatch>,
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

impl SortedWriter {
    /// Starts the sort of rows of `schema` into `writer`; the sort holds at most
    /// `memory_limit` bytes before spilling.
    pub fn start(
        writer: DataFileWriter,
        schema: &SchemaRef,
        curve: &CurveSpec,
        memory_limit: usize,
    ) -> Result<Self> {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(KEY_COL, DataType::UInt64, false));
        Ok(Self {
            keyer: curve.keyer()?,
            keyed: Arc::new(Schema::new(fields)),
            memory_limit,
            state: State::Buffering {
                writer: Box::new(writer),
                batches: Vec::new(),
                bytes: 0,
            },
        })
    }

    /// Adds rows.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys: ArrayRef = Arc::new(self.keyer.keys(batch)?);
        let mut columns = batch.columns().to_vec();
        columns.push(keys);
        let keyed = RecordBatch::try_new(self.keyed.clone(), columns)?;
        if let State::Buffering { batches, bytes, .. } = &mut self.state {
            *bytes += keyed.get_array_memory_size();
            batches.push(keyed);
            if *bytes <= self.memory_limit {
                return Ok(());
            }
            // Over the budget: hand everything to the external sort.
            let State::Buffering {
                writer, batches, ..
            } = std::mem::replace(&mut self.state, State::Gone)
            else {
                return Err(Error::internal("sort state changed"));
            };
            let (tx, rx) = mpsc::channel::<Sent>(2);
            let handle = tokio::spawn(sort_into(
                rx,
                self.keyed.clone(),
                *writer,
                self.memory_limit,
            ));
            self.state = State::External {
                tx: Some(tx),
                handle,
            };
            for b in batches {
                self.send(b).await?;
            }
            return Ok(());
        }
        self.send(keyed).await
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
                mut writer,
                batches,
                ..
            } => match write_sorted(&mut writer, batches).await {
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

/// Writes in-memory rows (the key last) in key order, without the key.
async fn write_sorted(writer: &mut DataFileWriter, batches: Vec<RecordBatch>) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    // One contiguous copy (the pieces are freed), then ordered slices of it.
    let all = arrow::compute::concat_batches(&first.schema(), &batches)?;
    drop(batches);
    let width = all.num_columns() - 1;
    let order = arrow::compute::sort_to_indices(all.column(width), None, None)?;
    let rows = all.project(&(0..width).collect::<Vec<_>>())?;
    drop(all);
    for start in (0..order.len()).step_by(OUT_ROWS) {
        let chunk = order.slice(start, OUT_ROWS.min(order.len() - start));
        writer
            .write(&arrow::compute::take_record_batch(&rows, &chunk)?)
            .await?;
    }
    Ok(())
}

async fn sort_into(
    rx: mpsc::Receiver<Sent>,
    keyed: SchemaRef,
    mut writer: DataFileWriter,
    memory_limit: usize,
) -> Result<(Vec<DataFile>, u64)> {
    let sorted = async {
        let (mut rows, plan) = sort_stream(rx, keyed, memory_limit).await?;
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
    memory_limit: usize,
) -> Result<(
    datafusion::execution::SendableRecordBatchStream,
    Arc<dyn ExecutionPlan>,
)> {
    // The sort's whole budget, a quarter of it set aside for merging its spilled runs.
    let limit = memory_limit.max(4 << 20);
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192);
    config.options_mut().execution.sort_spill_reservation_bytes = limit / 4;
    config.options_mut().execution.sort_in_place_threshold_bytes = limit / 8;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limit, 1.0)
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
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
