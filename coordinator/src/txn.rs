//! The transaction builder every operation fills: its file actions, metadata/protocol/txn
//! actions, `commitInfo` (Delta's operation name, parameters and metrics) and what it read
//! (for conflict checks). The driver turns it into one [`CommitRequest`].

use std::collections::{BTreeMap, HashSet};

use deltalake_core::kernel::{Action, Add, AddCDCFile, Metadata, Protocol, Transaction};
use serde_json::{Map, Value};
use silt_common::table::{ActiveFile, TableProperties, decode_path as decode};
use silt_common::task::DataFile;
use url::Url;

use crate::commit::{CommitRequest, LogAction, ReadRegion, ReadSet};

/// A deletion vector descriptor as the log's `add.deletionVector` has it.
fn dv_descriptor(
    dv: &silt_common::task::DeletionVector,
) -> deltalake_core::kernel::DeletionVectorDescriptor {
    use deltalake_core::kernel::StorageType;
    deltalake_core::kernel::DeletionVectorDescriptor {
        storage_type: match dv.storage_type.as_str() {
            "i" => StorageType::Inline,
            "p" => StorageType::AbsolutePath,
            _ => StorageType::UuidRelativePath,
        },
        path_or_inline_dv: dv.path_or_inline_dv.clone(),
        offset: dv.offset,
        size_in_bytes: dv.size_in_bytes,
        cardinality: dv.cardinality,
    }
}

/// One Delta commit under construction.
#[derive(Debug)]
pub struct Txn {
    operation: String,
    parameters: Map<String, Value>,
    adds: Vec<(DataFile, bool)>,
    /// `tags` of every add (a clustering run's).
    add_tags: Option<std::collections::HashMap<String, Option<String>>>,
    removes: Vec<(ActiveFile, bool)>,
    /// Change data files (`cdc` actions).
    cdc_files: Vec<DataFile>,
    protocol: Option<Protocol>,
    metadata: Option<Metadata>,
    txn: Option<(String, i64)>,
    metrics: BTreeMap<String, String>,
    read_set: ReadSet,
    job_id: String,
}

impl Txn {
    /// A transaction of Delta operation `operation` (e.g. `DELETE`) with its
    /// `operationParameters`.
    pub fn new(job_id: &str, operation: &str, parameters: Map<String, Value>) -> Self {
        Self {
            operation: operation.to_string(),
            parameters,
            adds: Vec::new(),
            add_tags: None,
            removes: Vec::new(),
            cdc_files: Vec::new(),
            protocol: None,
            metadata: None,
            txn: None,
            metrics: BTreeMap::new(),
            read_set: ReadSet::nothing(),
            job_id: job_id.to_string(),
        }
    }

    /// Adds new data files (`dataChange` as given: false for rearrangements).
    pub fn add_files<'a>(
        &mut self,
        files: impl IntoIterator<Item = &'a DataFile>,
        data_change: bool,
    ) {
        self.adds
            .extend(files.into_iter().map(|f| (f.clone(), data_change)));
    }

    /// Adds change data files (see `silt_common::change_data`) and counts them in the
    /// operation's metric `metric` (`numAddedChangeFiles`, MERGE's
    /// `numTargetChangeFilesAdded`). Per the protocol, once a commit has one, its `cdc`
    /// files must hold all of its changes.
    pub fn add_change_files<'a>(
        &mut self,
        metric: &str,
        files: impl IntoIterator<Item = &'a DataFile>,
    ) {
        self.cdc_files.extend(files.into_iter().cloned());
        self.metric(metric, self.cdc_files.len());
    }

    /// Tags every add with `tags`.
    pub fn tag_adds(&mut self, tags: impl IntoIterator<Item = (String, String)>) {
        self.add_tags = Some(tags.into_iter().map(|(k, v)| (k, Some(v))).collect());
    }

    /// Removes active files.
    pub fn remove_files<'a>(
        &mut self,
        files: impl IntoIterator<Item = &'a ActiveFile>,
        data_change: bool,
    ) {
        self.removes
            .extend(files.into_iter().map(|f| (f.clone(), data_change)));
    }

    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = Some(protocol);
    }

    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.metadata = Some(metadata);
    }

    /// Records an idempotent-write `txn` action.
    pub fn set_app_txn(&mut self, app_id: &str, version: i64) {
        self.txn = Some((app_id.to_string(), version));
    }

    /// Sets a `commitInfo.operationMetrics` entry (Delta's camelCase names).
    pub fn metric(&mut self, name: &str, value: impl ToString) {
        self.metrics.insert(name.to_string(), value.to_string());
    }

    pub fn metrics(&self) -> &BTreeMap<String, String> {
        &self.metrics
    }

    /// Records the region of the table the job's result depends on.
    pub fn read_region(&mut self, region: ReadRegion) {
        self.read_set.region = region;
    }

    /// Records files whose rows the job read (raw log paths).
    pub fn read_files<'a>(&mut self, paths: impl IntoIterator<Item = &'a str>) {
        self.read_set
            .files
            .extend(paths.into_iter().map(str::to_string));
    }

    pub fn adds(&self) -> impl Iterator<Item = &DataFile> {
        self.adds.iter().map(|(f, _)| f)
    }

    pub fn removes(&self) -> impl Iterator<Item = &ActiveFile> {
        self.removes.iter().map(|(f, _)| f)
    }

    /// Whether committing would change nothing (no action at all).
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty()
            && self.removes.is_empty()
            && self.protocol.is_none()
            && self.metadata.is_none()
            && self.txn.is_none()
    }

    /// File names of the adds: the files of this job that are kept when the job's other
    /// files are cleaned up.
    pub fn kept_file_names(&self) -> HashSet<String> {
        self.adds
            .iter()
            .map(|(a, _)| a)
            .chain(&self.cdc_files)
            .flat_map(|a| {
                // The file and, for a vector file of this job, the vector file.
                let dv = a
                    .deletion_vector
                    .as_ref()
                    .and_then(silt_common::table::dv::file_name);
                [decode(&a.path).rsplit('/').next().map(str::to_string), dv]
            })
            .flatten()
            .collect()
    }

    /// The commit request: actions (protocol, metadata, adds, removes, txn), `commitInfo`.
    pub fn into_request(
        self,
        table_url: &Url,
        properties: &TableProperties,
        column_mapping: Option<arrow::datatypes::SchemaRef>,
        epoch: u64,
    ) -> CommitRequest {
        use silt_common::table::column_mapping::{self as cm, Direction};
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut actions = Vec::new();
        let changes_metadata = self.protocol.is_some() || self.metadata.is_some();
        if let Some(p) = self.protocol {
            actions.push(LogAction::new(Action::Protocol(p)));
        }
        if let Some(m) = self.metadata {
            actions.push(LogAction::new(Action::Metadata(m)));
        }
        // Row tracking: a file added again (a new deletion vector) keeps the row ids of the
        // add it replaces; every other add gets fresh ones when the commit is written.
        let row_ids: std::collections::HashMap<String, (Option<i64>, Option<i64>)> = self
            .removes
            .iter()
            .map(|(r, _)| {
                (
                    decode(&r.file.path),
                    (r.remove.base_row_id, r.remove.default_row_commit_version),
                )
            })
            .collect();
        for (a, data_change) in &self.adds {
            let (base_row_id, default_row_commit_version) =
                row_ids.get(&decode(&a.path)).copied().unwrap_or_default();
            // Column mapping: the log keys partition values and statistics physically.
            let (partition_values, stats) = match &column_mapping {
                Some(schema) => (
                    cm::partition_values(&a.partition_values, schema, Direction::ToPhysical),
                    a.stats_json
                        .as_deref()
                        .map(|s| cm::stats_json(s, schema, Direction::ToPhysical)),
                ),
                None => (a.partition_values.clone(), a.stats_json.clone()),
            };
            let add = Add {
                path: decode(&a.path),
                partition_values: partition_values.into_iter().collect(),
                size: a.size_bytes,
                modification_time: a.modification_time_ms,
                data_change: *data_change,
                stats,
                tags: self.add_tags.clone(),
                deletion_vector: a.deletion_vector.as_ref().map(dv_descriptor),
                base_row_id,
                default_row_commit_version,
                clustering_provider: None,
            };
            actions.push(LogAction::with_raw_path(Action::Add(add), a.path.clone()));
        }
        for c in &self.cdc_files {
            let partition_values = match &column_mapping {
                Some(schema) => {
                    cm::partition_values(&c.partition_values, schema, Direction::ToPhysical)
                }
                None => c.partition_values.clone(),
            };
            let cdc = AddCDCFile {
                path: decode(&c.path),
                partition_values: partition_values.into_iter().collect(),
                size: c.size_bytes,
                data_change: false,
                tags: None,
            };
            actions.push(LogAction::with_raw_path(Action::Cdc(cdc), c.path.clone()));
        }
        let mut removed_paths = HashSet::new();
        for (r, data_change) in &self.removes {
            let mut rm = r.remove.clone();
            rm.deletion_timestamp = Some(now_ms);
            rm.data_change = *data_change;
            removed_paths.insert(r.file.path.clone());
            // The raw path exactly as the file's `add` has it, so every reader pairs them.
            actions.push(LogAction::with_raw_path(
                Action::Remove(rm),
                r.file.path.clone(),
            ));
        }
        if let Some((app, v)) = &self.txn {
            actions.push(LogAction::new(Action::Txn(
                Transaction::new_with_last_update(app, *v, Some(now_ms)),
            )));
        }
        let mut commit_info = Map::new();
        commit_info.insert(
            "operationMetrics".to_string(),
            Value::Object(
                self.metrics
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
        commit_info.insert(
            "engineInfo".to_string(),
            Value::String(format!("silt/{}", env!("CARGO_PKG_VERSION"))),
        );
        let job = crate::job::public_job_id(&self.job_id);
        commit_info.insert(
            crate::commit::JOB_ID_FIELD.to_string(),
            Value::String(job.to_string()),
        );
        if job != self.job_id {
            commit_info.insert(
                crate::commit::RUN_ID_FIELD.to_string(),
                Value::String(self.job_id.clone()),
            );
        }
        CommitRequest {
            table_url: table_url.clone(),
            actions,
            operation: self.operation,
            parameters: self.parameters,
            commit_info,
            read_set: self.read_set,
            removed_paths,
            txn_app_id: self.txn.map(|(app, _)| app),
            changes_metadata,
            isolation_level: properties.isolation_level,
            append_only: properties.append_only,
            checkpoint_interval: properties.checkpoint_interval,
            in_commit_timestamps: properties.in_commit_timestamps,
            column_mapping,
            row_tracking: None,
            epoch,
        }
    }
}

/// Delta Spark's form of a `predicate` operation parameter: a JSON array (as a string) of
/// the condition's text; `[]` when there is none.
pub fn predicate_parameter(predicate: Option<&str>) -> Value {
    let list: Vec<&str> = predicate.into_iter().collect();
    Value::String(serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn file(path: &str) -> DataFile {
        DataFile {
            path: path.into(),
            partition_values: BTreeMap::new(),
            size_bytes: 10,
            modification_time_ms: 1,
            stats_json: None,
            num_records: 2,
            deletion_vector: None,
        }
    }

    #[test]
    fn builds_the_commit_request() {
        let mut t = Txn::new("j1", "DELETE", Map::new());
        assert!(t.is_empty());
        t.add_files([&file("a%20b/part-j1-s0-t0-a0-0.parquet")], true);
        let active = ActiveFile {
            file: file("old.parquet"),
            remove: deltalake_core::kernel::Remove {
                path: "old.parquet".into(),
                data_change: true,
                ..Default::default()
            },
            tags: Default::default(),
        };
        t.remove_files([&active], false);
        t.metric("numRemovedFiles", 1);
        t.read_files(["old.parquet"]);
        assert_eq!(
            t.kept_file_names(),
            HashSet::from(["part-j1-s0-t0-a0-0.parquet".to_string()])
        );
        let req = t.into_request(
            &Url::parse("file:///t/").unwrap(),
            &TableProperties::default(),
            None,
            3,
        );
        assert_eq!(req.operation, "DELETE");
        assert_eq!(req.actions.len(), 2);
        assert!(req.removed_paths.contains("old.parquet"));
        assert!(!req.changes_metadata);
        assert_eq!(req.commit_info["operationMetrics"]["numRemovedFiles"], "1");
        assert!(matches!(&req.actions[1].action, Action::Remove(r) if !r.data_change));
        assert_eq!(req.epoch, 3);
    }

    #[test]
    fn predicate_parameters_as_spark_writes_them() {
        assert_eq!(predicate_parameter(None), Value::String("[]".into()));
        assert_eq!(
            predicate_parameter(Some("x > 'a\"b'")),
            Value::String(r#"["x > 'a\"b'"]"#.into())
        );
    }
}
