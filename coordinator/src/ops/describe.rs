//! `DESCRIBE HISTORY` and `DESCRIBE DETAIL`: answers read from the log, as Delta Spark shows
//! them (same column names), nothing committed.

use std::time::Duration;

use serde_json::{Value, json};
use silt_common::request::{DescribeKind, DescribeRequest};
use silt_common::table::TableSnapshot;
use url::Url;

use super::existing_table;
use crate::driver::{JobError, Operation, Outcome, StagePlan, StageResult};
use crate::job::QueryResult;

/// Reads the answer.
pub async fn prepare(req: DescribeRequest) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    let (columns, rows, summary) = match req.kind {
        DescribeKind::History { limit } => {
            let rows = history(&snapshot, limit).await?;
            let n = rows.len();
            (HISTORY_COLUMNS, rows, format!("{n} commit(s)"))
        }
        DescribeKind::Detail => (
            DETAIL_COLUMNS,
            vec![detail(&table_url, &snapshot).await?],
            "table detail".to_string(),
        ),
    };
    let rows = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(*c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Ok(Box::new(DescribeOp {
        table_url,
        version: snapshot.version,
        result: QueryResult {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        },
        summary,
    }))
}

/// `DESCRIBE HISTORY` columns, in Delta Spark's order.
const HISTORY_COLUMNS: &[&str] = &[
    "version",
    "timestamp",
    "userId",
    "userName",
    "operation",
    "operationParameters",
    "job",
    "notebook",
    "clusterId",
    "readVersion",
    "isolationLevel",
    "isBlindAppend",
    "operationMetrics",
    "userMetadata",
    "engineInfo",
];

/// `DESCRIBE DETAIL` columns, in Delta Spark's order (then the version silt read).
const DETAIL_COLUMNS: &[&str] = &[
    "format",
    "id",
    "name",
    "description",
    "location",
    "createdAt",
    "lastModified",
    "partitionColumns",
    "clusteringColumns",
    "numFiles",
    "sizeInBytes",
    "properties",
    "minReaderVersion",
    "minWriterVersion",
    "tableFeatures",
    "version",
];

fn iso_ms(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// One row per commit still in the log, newest first (Spark's columns).
async fn history(snapshot: &TableSnapshot, limit: Option<u32>) -> Result<Vec<Value>, JobError> {
    let log_store = snapshot.table.log_store();
    let mut rows = Vec::new();
    let mut v = snapshot.version;
    while v >= 0 && limit.is_none_or(|l| rows.len() < l as usize) {
        let Some(bytes) = log_store.read_commit_entry(v as u64).await? else {
            break; // older entries were cleaned up
        };
        let text = String::from_utf8_lossy(&bytes);
        let info = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|a| a.get("commitInfo").cloned())
            .unwrap_or(Value::Null);
        let get = |k: &str| info.get(k).cloned().unwrap_or(Value::Null);
        rows.push(json!({
            "version": v,
            "timestamp": iso_ms(info.get("timestamp").and_then(Value::as_i64)),
            "userId": get("userId"),
            "userName": get("userName"),
            "operation": get("operation"),
            "operationParameters": get("operationParameters"),
            "job": get("job"),
            "notebook": get("notebook"),
            "clusterId": get("clusterId"),
            "readVersion": get("readVersion"),
            "isolationLevel": get("isolationLevel"),
            "isBlindAppend": get("isBlindAppend"),
            "operationMetrics": get("operationMetrics"),
            "userMetadata": get("userMetadata"),
            "engineInfo": get("engineInfo"),
        }));
        v -= 1;
    }
    Ok(rows)
}

/// The table's one detail row (Spark's columns).
async fn detail(table_url: &Url, snapshot: &TableSnapshot) -> Result<Value, JobError> {
    let state = snapshot.state()?;
    let md = state.metadata();
    let protocol = state.protocol();
    let last_modified = snapshot
        .table
        .log_store()
        .read_commit_entry(snapshot.version as u64)
        .await?
        .and_then(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|a| a.get("commitInfo")?.get("timestamp")?.as_i64())
        });
    let mut features: Vec<String> = snapshot.writer_features.clone();
    if let Some(reader) = protocol.reader_features() {
        for f in reader {
            let name = serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if !features.contains(&name) {
                features.push(name);
            }
        }
    }
    if snapshot.min_writer_version < 7 {
        // Legacy protocol versions imply their features.
        let implied: &[(i32, &[&str])] = &[
            (2, &["appendOnly", "invariants"]),
            (3, &["checkConstraints"]),
            (4, &["changeDataFeed", "generatedColumns"]),
            (5, &["columnMapping"]),
            (6, &["identityColumns"]),
        ];
        for (v, fs) in implied {
            if snapshot.min_writer_version >= *v {
                features.extend(fs.iter().map(|f| f.to_string()));
            }
        }
    }
    features.sort();
    features.dedup();
    let properties: std::collections::BTreeMap<&String, &String> =
        snapshot.configuration.iter().collect();
    Ok(json!({
        "format": "delta",
        "id": md.id(),
        "name": md.name(),
        "description": md.description(),
        "location": table_url.as_str().trim_end_matches('/'),
        "createdAt": iso_ms(md.created_time()),
        "lastModified": iso_ms(last_modified),
        "partitionColumns": snapshot.partition_columns,
        "clusteringColumns": Vec::<String>::new(),
        "numFiles": snapshot.files.len(),
        "sizeInBytes": snapshot.files.iter().map(|f| f.file.size_bytes.max(0)).sum::<i64>(),
        "properties": properties,
        "minReaderVersion": snapshot.min_reader_version,
        "minWriterVersion": snapshot.min_writer_version,
        "tableFeatures": features,
        "version": snapshot.version,
    }))
}

/// A described table: the rows are ready; nothing runs.
pub struct DescribeOp {
    table_url: Url,
    version: i64,
    result: QueryResult,
    summary: String,
}

impl Operation for DescribeOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        Ok(Vec::new())
    }

    fn stage_done(&mut self, _result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        Ok(Vec::new())
    }

    fn finish(self: Box<Self>, _elapsed: Duration) -> Result<Outcome, JobError> {
        Ok(Outcome::Rows {
            summary: self.summary,
            result: self.result,
        })
    }
}
