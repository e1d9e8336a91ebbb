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
use crate::cluster::CurveSpec;
use crate::merge::{OnceStream, spilled_bytes};
use crate::task::DataFile;
use crate::{Error, Result};

/// The key column the sort orders by (dropped before writing).
const KEY_COL: &str = "__silt_curve";

type Sent = datafusion::error::Result<RecordBatch>;

/// A [`DataFileWriter`] fed in curve-key order. Rows are sorted by a background task as
/// they arrive (bounded channel: the producer waits while the sort is busy).
pub struct SortedWriter {
    curve: CurveSpec,
    keyed: SchemaRef,
    tx: Option<mpsc::Sender<Sent>>,
    handle: JoinHandle<Result<(Vec<DataFile>, u64)>>,
}

impl SortedWriter {
    /// Starts the sort of rows of `schema` into `writer`; the sort holds at most
    /// `memory_limit` bytes before spilling.
    pub fn start(
        writer: DataFileWriter,
        schema: &SchemaRef,
        curve: CurveSpec,
        memory_limit: usize,
    ) -> Self {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(KEY_COL, DataType::UInt64, false));
        let keyed = Arc::new(Schema::new(fields));
        let (tx, rx) = mpsc::channel::<Sent>(2);
        let handle = tokio::spawn(sort_into(rx, keyed.clone(), writer, memory_limit));
        Self {
            curve,
            keyed,
            tx: Some(tx),
            handle,
        }
    }

    /// Adds rows.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys: ArrayRef = Arc::new(self.curve.keys(batch)?);
        let mut columns = batch.columns().to_vec();
        columns.push(keys);
        let keyed = RecordBatch::try_new(self.keyed.clone(), columns)?;
        let sent = match &self.tx {
            Some(tx) => tx.send(Ok(keyed)).await.is_ok(),
            None => false,
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
        self.tx = None;
        (&mut self.handle)
            .await
            .map_err(|e| Error::internal(format!("sort task: {e}")))?
    }

    /// Gives up: the sort fails and deletes what it wrote.
    pub async fn abort(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx
                .send(Err(datafusion::error::DataFusionError::Execution(
                    "task aborted".into(),
                )))
                .await;
        }
        let _ = (&mut self.handle).await;
    }
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
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit.max(16 << 20), 1.0)
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
