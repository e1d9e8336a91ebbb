//! Read access to a Delta table's snapshot (latest, or at a version or timestamp) through
//! deltalake-core: schema, partition columns, properties, protocol and the active files. Log
//! replay and checkpoints are deltalake-core's; this module only shapes the result for
//! planning.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Schema, SchemaRef};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Remove;
use futures::TryStreamExt;
use url::Url;

use super::TableProperties;
use super::column_mapping::{self, Direction};
use crate::storage::{join_url, store_for};
use crate::task::{DataFile, DeletionVector, SourceFormat, SourceSplit};
use crate::{Error, Result};

/// Writer features silt can honour when it writes to a table. Anything else is refused
/// up front with a clear error instead of risking a table other engines misread.
const WRITABLE_FEATURES: &[&str] = &[
    "appendOnly",
    "timestampNtz",
    "deletionVectors",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "domainMetadata",
    "checkpointProtection",
    // Type widening asks writers to record the type changes they make (silt makes none: a
    // wider source casts into the table's type) and to keep `delta.typeChanges`.
    "typeWidening",
    "typeWidening-preview",
    // Commits of a table with `delta.enableInCommitTimestamps` carry the timestamp.
    "inCommitTimestamp",
    // Generated columns: computed where a write does not carry them, checked where it does.
    "generatedColumns",
    // Fresh row ids and commit versions for every file added, the high-water mark in the
    // `delta.rowTracking` domain (`super::row_tracking`).
    "rowTracking",
    // (`domainMetadata`, listed above: domains silt does not know are left as they are; it
    // writes only `delta.rowTracking`.)
    // Unshredded variant columns: their values are copied as they are (the struct of
    // `metadata` and `value` bytes the protocol stores them as).
    "variantType",
    "variantType-preview",
    // Liquid clustering: files added carry statistics of the clustering columns; silt
    // clusters nothing (files it writes are unclustered; ZORDER BY is refused).
    "clustering",
];

/// Writer features silt honours by refusing tables that use them: listed but unused (as
/// Delta lists every feature a legacy protocol implied when it upgrades a table), they ask
/// nothing of a writer.
const WRITABLE_WHEN_UNUSED: &[&str] = &[
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "identityColumns",
    "columnMapping",
];

/// The column invariants of a Delta schema JSON (`delta.invariants` in a top-level column's
/// metadata: `{"expression": {"expression": "<SQL>"}}`); an invariant of a nested column, or
/// one that does not parse, is refused.
fn invariants(schema_json: &str) -> Result<Vec<crate::task::Constraint>> {
    if !schema_json.contains("delta.invariants") {
        return Ok(Vec::new());
    }
    let bad = |what: String| {
        Error::Unsupported(format!(
            "table has {what}, which silt cannot enforce; nothing was changed"
        ))
    };
    let schema: serde_json::Value = serde_json::from_str(schema_json)
        .map_err(|e| Error::invalid(format!("invalid Delta schema JSON: {e}")))?;
    let mut out = Vec::new();
    for f in schema["fields"].as_array().into_iter().flatten() {
        let name = f["name"].as_str().unwrap_or_default();
        if let Some(raw) = f["metadata"].get("delta.invariants") {
            let text = raw
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| raw.to_string());
            let expression = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["expression"]["expression"].as_str().map(str::to_string))
                .ok_or_else(|| bad(format!("an invariant on column `{name}` it cannot read")))?;
            out.push(crate::task::Constraint {
                name: format!("invariant of column `{name}`"),
                expression,
            });
        }
        if f["type"].is_object() && f["type"].to_string().contains("delta.invariants") {
            return Err(bad(format!("an invariant inside column `{name}`")));
        }
    }
    Ok(out)
}

/// A file of the table's current state.
#[derive(Debug, Clone)]
pub struct ActiveFile {
    /// `path` is the raw (URL-encoded) path exactly as stored in the log.
    pub file: DataFile,
    /// The `remove` action retiring this file (dataChange = true).
    pub remove: Remove,
    /// The `add` action's `tags` (e.g. the clustering run that wrote the file).
    pub tags: BTreeMap<String, String>,
}

/// Which version of a table to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimeTravel {
    #[default]
    Latest,
    /// `VERSION AS OF n`.
    Version(i64),
    /// `TIMESTAMP AS OF '…'`: the latest version committed at or before this instant.
    Timestamp(chrono::DateTime<chrono::Utc>),
}

/// The state of a table at one version, as needed to plan and commit a job.
pub struct TableSnapshot {
    pub table: DeltaTable,
    pub version: i64,
    /// `metaData.schemaString`.
    pub schema_json: String,
    pub arrow_schema: SchemaRef,
    pub partition_columns: Vec<String>,
    pub configuration: HashMap<String, String>,
    /// The properties silt acts on, parsed from `configuration`.
    pub properties: TableProperties,
    pub min_reader_version: i32,
    pub min_writer_version: i32,
    pub writer_features: Vec<String>,
    pub files: Vec<ActiveFile>,
    /// Row tracking (the `rowTracking` writer feature): the row-id high-water mark at this
    /// version (`row_tracking::NO_ROW_IDS` before any id was given); `None` without it.
    pub row_id_high_water_mark: Option<i64>,
    /// Liquid clustering (the `clustering` writer feature): the `delta.clustering` domain's
    /// configuration (`None` inside: no domain); `None` without the feature.
    pub clustering: Option<Option<String>>,
}

/// The domain holding a clustered table's clustering columns.
pub const CLUSTERING_DOMAIN: &str = "delta.clustering";

/// A clustered table's clustering columns (top-level, by their logical names) from its
/// `delta.clustering` configuration (`{"clusteringColumns": [["physical", "path"], …]}`).
/// Nested or unknown columns are refused naming them.
pub fn clustering_columns(configuration: &str, schema: &Schema) -> Result<Vec<String>> {
    let config: serde_json::Value = serde_json::from_str(configuration).map_err(|e| {
        Error::Unsupported(format!("bad `{CLUSTERING_DOMAIN}` domain metadata: {e}"))
    })?;
    let mut out = Vec::new();
    for path in config["clusteringColumns"].as_array().into_iter().flatten() {
        let parts: Vec<&str> = match path {
            serde_json::Value::Array(p) => p.iter().filter_map(|x| x.as_str()).collect(),
            serde_json::Value::String(s) => vec![s.as_str()],
            _ => Vec::new(),
        };
        let [name] = parts.as_slice() else {
            return Err(Error::Unsupported(format!(
                "the table is clustered by nested column `{}`, which silt does not write; nothing was changed",
                parts.join(".")
            )));
        };
        let field = schema
            .fields()
            .iter()
            .find(|f| column_mapping::physical_name(f) == *name || f.name() == name)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "the table is clustered by `{name}`, which is not one of its columns; nothing was changed"
                ))
            })?;
        out.push(field.name().clone());
    }
    Ok(out)
}

impl TableSnapshot {
    /// The loaded deltalake-core state, for commits.
    pub fn state(&self) -> Result<&deltalake_core::table::state::DeltaTableState> {
        Ok(self.table.snapshot()?)
    }

    /// The table's schema when it maps its columns (`delta.columnMapping.mode` name or id):
    /// files, partition values and statistics use the physical names it holds.
    pub fn column_mapping(&self) -> Option<SchemaRef> {
        column_mapping::is_mapped(&self.arrow_schema).then(|| self.arrow_schema.clone())
    }

    /// Timestamp partition columns whose values this table holds as ISO-8601 UTC instants
    /// (`2024-01-31T12:00:00.000000Z`, as recent Delta Spark writes them) rather than in
    /// the older `2024-01-31 12:00:00.000000` form: new files follow the table, so that
    /// readers that infer one format per column read them all.
    pub fn iso_timestamp_partitions(&self) -> Vec<String> {
        self.partition_columns
            .iter()
            .filter(|c| {
                self.arrow_schema.field_with_name(c).is_ok_and(|f| {
                    matches!(
                        f.data_type(),
                        arrow::datatypes::DataType::Timestamp(_, Some(_))
                    )
                })
            })
            .filter(|c| {
                self.files
                    .iter()
                    .find_map(|f| f.file.partition_values.get(*c).cloned().flatten())
                    .is_some_and(|v| v.contains('T') && v.ends_with('Z'))
            })
            .cloned()
            .collect()
    }

    /// Refuses tables with writer features silt cannot honour, naming them.
    pub fn check_writable(&self) -> Result<()> {
        let unsupported: Vec<&str> = self
            .writer_features
            .iter()
            .map(String::as_str)
            .filter(|f| !WRITABLE_FEATURES.contains(f) && !WRITABLE_WHEN_UNUSED.contains(f))
            .collect();
        if !unsupported.is_empty() {
            return Err(Error::Unsupported(format!(
                "table requires writer feature(s) {} that silt cannot write; nothing was changed",
                unsupported.join(", ")
            )));
        }
        if self.min_writer_version > 7 || self.min_reader_version > 3 {
            return Err(Error::Unsupported(format!(
                "table protocol (reader {}, writer {}) is newer than silt supports",
                self.min_reader_version, self.min_writer_version
            )));
        }
        // Identity columns silt generates values for must be well formed.
        self.identity_columns()?;
        // Clustered tables: statistics of the clustering columns (top-level ones) in every
        // file written.
        self.clustering_columns()?;
        // CHECK constraints and invariants are enforced on every row written (`checks`).
        invariants(&self.schema_json)?;
        Ok(())
    }

    /// The conditions every row written must satisfy: the CHECK constraints and the column
    /// invariants (both enforced by the data file writer).
    pub fn checks(&self) -> Vec<crate::task::Constraint> {
        let mut out: Vec<crate::task::Constraint> = self
            .properties
            .constraints
            .iter()
            .map(|(name, expression)| crate::task::Constraint {
                name: format!("CHECK constraint `{name}`"),
                expression: expression.clone(),
            })
            .collect();
        // Refused by `check_writable` when unreadable.
        out.extend(invariants(&self.schema_json).unwrap_or_default());
        // A generated column holds its expression's value (null-safe) in every row.
        out.extend(
            self.generated_columns()
                .into_iter()
                .map(|(column, expression)| crate::task::Constraint {
                    name: format!("generated column `{column}`"),
                    expression: format!(
                        "`{}` IS NOT DISTINCT FROM ({expression})",
                        column.replace('`', "``")
                    ),
                }),
        );
        out
    }

    /// The table's generated columns (`delta.generationExpression` in a top-level column's
    /// metadata): (column, Spark SQL expression over the other columns).
    pub fn generated_columns(&self) -> Vec<(String, String)> {
        self.arrow_schema
            .fields()
            .iter()
            .filter_map(|f| {
                f.metadata()
                    .get("delta.generationExpression")
                    .map(|e| (f.name().clone(), e.clone()))
            })
            .collect()
    }

    /// A clustered table's clustering columns (none for a table that is not clustered, or
    /// whose domain names none).
    pub fn clustering_columns(&self) -> Result<Vec<String>> {
        match &self.clustering {
            Some(Some(config)) => clustering_columns(config, &self.arrow_schema),
            _ => Ok(Vec::new()),
        }
    }

    /// The table's identity columns (see [`super::identity`]).
    pub fn identity_columns(&self) -> Result<Vec<super::identity::IdentityColumn>> {
        super::identity::identity_columns(&self.schema_json)
    }

    /// Latest version recorded for an idempotent-write application id.
    pub async fn txn_version(&self, app_id: &str) -> Result<Option<i64>> {
        let state = self.state()?;
        Ok(state
            .transaction_version(self.table.log_store().as_ref(), app_id)
            .await?)
    }
}

/// A deltalake-core table handle for `url` on silt's own object store ([`store_for`]), so
/// every scheme silt supports (including `s3://`, for which deltalake-core alone has no
/// handler) reaches the same store with the same settings.
pub fn table_builder(url: &Url) -> Result<deltalake_core::DeltaTableBuilder> {
    register_log_stores();
    let (store, _) = store_for(url)?;
    Ok(deltalake_core::DeltaTableBuilder::from_url(url.clone())?
        .with_storage_backend(store, url.clone()))
}

/// deltalake-core picks a log store by URL scheme and only knows local files without its
/// cloud crates. silt hands it its own object store, so the plain log store (commits by
/// conditional put, which `store_for` enables on S3) serves the object-store schemes too.
struct ObjectStoreLogStores;

impl deltalake_core::logstore::LogStoreFactory for ObjectStoreLogStores {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<deltalake_core::logstore::LogStoreRef> {
        Ok(deltalake_core::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let factories = deltalake_core::logstore::logstore_factories();
        for scheme in ["s3://", "s3a://"] {
            if let Ok(u) = Url::parse(scheme)
                && !factories.contains_key(&u)
            {
                factories.insert(u, std::sync::Arc::new(ObjectStoreLogStores));
            }
        }
    });
}

/// A log that cannot be replayed (a gap in the versions, no protocol or metadata, an invalid
/// protocol): one line naming the table and the log file at fault, without the Debug dumps
/// the Delta kernel puts into its messages.
async fn log_error(url: &Url, e: &deltalake_core::DeltaTableError) -> Error {
    let msg = e.to_string();
    let msg = without_debug_dumps(crate::redact::without_backtrace(&msg));
    // A commit file that is not JSON lines: the kernel does not say which one.
    let file = match malformed_commit(url).await {
        Some(f) => format!(" ({f})"),
        None => String::new(),
    };
    Error::invalid(format!("cannot read the Delta log of {url}: {msg}{file}"))
}

/// What is wrong with an action, for the fields the protocol requires of the common ones.
fn malformed_action(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as V;
    let (kind, body) = v.as_object()?.iter().next()?;
    /// A field, the test of its value, and what the value must be.
    type Field = (&'static str, fn(&V) -> bool, &'static str);
    let required: &[Field] = match kind.as_str() {
        "add" => &[
            ("path", V::is_string, "a string"),
            ("size", V::is_number, "a number"),
            ("modificationTime", V::is_number, "a number"),
            ("dataChange", V::is_boolean, "a boolean"),
            ("partitionValues", V::is_object, "an object"),
        ],
        "remove" | "cdc" => &[("path", V::is_string, "a string")],
        "metaData" => &[
            ("id", V::is_string, "a string"),
            ("schemaString", V::is_string, "a string"),
            ("partitionColumns", V::is_array, "an array"),
            ("format", V::is_object, "an object"),
        ],
        "protocol" => &[
            ("minReaderVersion", V::is_number, "a number"),
            ("minWriterVersion", V::is_number, "a number"),
        ],
        "txn" => &[
            ("appId", V::is_string, "a string"),
            ("version", V::is_number, "a number"),
        ],
        _ => &[],
    };
    if !required.is_empty() && !body.is_object() {
        return Some(format!("`{kind}` is not an object"));
    }
    required.iter().find_map(|(field, ok, what)| {
        (!body.get(field).is_some_and(ok)).then(|| format!("`{kind}.{field}` is not {what}"))
    })
}

/// The newest commit file of `url`'s log holding a line that is not a JSON object, or an
/// action without a field the protocol requires, with the line; looks at the last 100
/// commits.
async fn malformed_commit(url: &Url) -> Option<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let (store, root) = crate::storage::store_for(url).ok()?;
    let log = object_store::path::Path::from(format!("{}/_delta_log", root.as_ref()));
    let mut commits: Vec<object_store::path::Path> = store
        .list(Some(&log))
        .try_collect::<Vec<_>>()
        .await
        .ok()?
        .into_iter()
        .map(|m| m.location)
        .filter(|p| {
            p.filename()
                .and_then(|f| f.strip_suffix(".json"))
                .is_some_and(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    commits.sort();
    for path in commits.iter().rev().take(100) {
        let bytes = store.get(path).await.ok()?.bytes().await.ok()?;
        if let Some(why) = crate::source::bad_json_line_with(&bytes, 1, malformed_action) {
            return Some(format!("{} {why}", path.filename().unwrap_or_default()));
        }
    }
    None
}

/// `msg` with every `Name { … }` Debug structure replaced by the `filename` (or last `path`)
/// it holds, kernel prefixes dropped, on one line.
fn without_debug_dumps(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let bytes = msg.as_bytes();
    let mut i = 0;
    while i < msg.len() {
        // A Debug structure starts with an identifier followed by ` {`.
        if let Some(rel) = msg[i..].find(" {") {
            let open = i + rel;
            let ident_start = msg[..open]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1)
                .max(i);
            let ident = &msg[ident_start..open];
            if ident.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                let mut depth = 0usize;
                let mut end = None;
                for (k, &b) in bytes.iter().enumerate().skip(open + 1) {
                    match b {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(k);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(end) = end {
                    let inner = &msg[open..=end];
                    let name = quoted_field(inner, "filename: \"")
                        .or_else(|| quoted_field(inner, "path: \""))
                        .unwrap_or("…");
                    out.push_str(&msg[i..ident_start]);
                    out.push_str(name);
                    i = end + 1;
                    continue;
                }
            }
            out.push_str(&msg[i..open + 2]);
            i = open + 2;
        } else {
            out.push_str(&msg[i..]);
            break;
        }
    }
    let mut line = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for prefix in ["Kernel error: ", "Generic delta kernel error: "] {
        line = line.replace(prefix, "");
    }
    line
}

fn quoted_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let start = s.rfind(key)? + key.len();
    let len = s[start..].find('"')?;
    Some(&s[start..start + len])
}

/// Loads the latest snapshot of the table at `url`; `None` when there is no table there.
pub async fn load_table(url: &Url) -> Result<Option<TableSnapshot>> {
    load_table_at(url, &TimeTravel::Latest).await
}

/// The properties of the table at `url` as of `version`, read from its protocol and
/// metadata alone: the log's file actions are not replayed, so this costs the same on a
/// table of a million files as on one of ten (a [`load_table_at`] reads every file's entry).
pub async fn load_properties(url: &Url, version: i64) -> Result<TableProperties> {
    let v = u64::try_from(version)
        .map_err(|_| Error::invalid(format!("version {version} does not exist")))?;
    let log_store = table_builder(url)?.build_storage()?;
    let snapshot = deltalake_core::kernel::Snapshot::try_new(log_store.as_ref(), Some(v))
        .await
        .map_err(|e| cannot_load(&format!("version {version} of {url}"), &e))?;
    TableProperties::parse(snapshot.metadata().configuration())
}

/// `cannot load <what>: <e>`, the error's backtrace and debug dumps left out.
fn cannot_load(what: &str, e: &deltalake_core::DeltaTableError) -> Error {
    Error::invalid(format!(
        "cannot load {what}: {}",
        without_debug_dumps(crate::redact::without_backtrace(&e.to_string()))
    ))
}

/// Loads the table at `url` as of `at`; `None` when there is no table there. A version that
/// does not exist (or a timestamp before the first commit) is an error naming it.
pub async fn load_table_at(url: &Url, at: &TimeTravel) -> Result<Option<TableSnapshot>> {
    let mut table = table_builder(url)?.build()?;
    if !table.verify_deltatable_existence().await? {
        return Ok(None);
    }
    match at {
        TimeTravel::Latest => {
            if let Err(e) = table.load().await {
                return Err(log_error(url, &e).await);
            }
        }
        TimeTravel::Version(v) => {
            let version = u64::try_from(*v)
                .map_err(|_| Error::invalid(format!("version {v} does not exist")))?;
            table
                .load_version(version)
                .await
                .map_err(|e| cannot_load(&format!("version {v} of {url}"), &e))?;
        }
        TimeTravel::Timestamp(ts) => {
            table
                .load_with_datetime(*ts)
                .await
                .map_err(|e| cannot_load(&format!("{url} as of {}", ts.to_rfc3339()), &e))?;
        }
    }
    let state = table.snapshot()?;
    let version = state.version() as i64;
    let metadata = state.metadata();
    let protocol = state.protocol();
    let schema_json = serde_json::to_string(state.schema().as_ref())
        .map_err(|e| Error::internal(format!("cannot serialize table schema: {e}")))?;
    let arrow_schema = crate::schema::delta_json_to_arrow(&schema_json)?;
    let partition_columns = metadata.partition_columns().to_vec();
    let configuration = metadata.configuration().clone();
    let properties = TableProperties::parse(&configuration)?;
    let writer_features: Vec<String> = protocol
        .writer_features()
        .map(|fs| fs.iter().map(feature_name).collect())
        .unwrap_or_default();
    let min_reader_version = protocol.min_reader_version();
    let min_writer_version = protocol.min_writer_version();

    let log_store = table.log_store();
    // Raw (still URL-encoded) paths, as written in the log, keyed by their decoded form;
    // the views give typed access but only decoded paths.
    let mut raw_paths: HashMap<String, String> = HashMap::new();
    for b in state.add_actions_batches(false)? {
        let col = b
            .column_by_name("path")
            .ok_or_else(|| Error::internal("add actions without `path`"))?;
        let col = col
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::internal("add actions `path` is not a string column"))?;
        for i in 0..col.len() {
            let raw = col.value(i).to_string();
            raw_paths.insert(decode_path(&raw), raw);
        }
    }
    let views: Vec<_> = state
        .snapshot()
        .file_views(log_store.as_ref(), None)
        .try_collect()
        .await?;
    let mut files = Vec::with_capacity(views.len());
    let mapped = column_mapping::is_mapped(&arrow_schema);
    for view in &views {
        let decoded = view.path().into_owned();
        let raw = raw_paths.get(&decoded).cloned().unwrap_or(decoded);
        let partition_values: BTreeMap<String, Option<String>> =
            view.partition_values_map().into_iter().collect();
        // deltalake-core keeps action paths decoded in memory and percent-encodes them when
        // it serialises a commit, so the remove carries the decoded path.
        let mut remove = view.remove_action(true);
        // Tags and row ids are only reachable through the file's `add` action.
        #[allow(deprecated)]
        let add = view.add_action();
        // Row tracking: a remove carries the row ids of the file's last add.
        remove.base_row_id = add.base_row_id;
        remove.default_row_commit_version = add.default_row_commit_version;
        let tags: BTreeMap<String, String> = add
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let deletion_vector = view.deletion_vector_descriptor().map(|dv| DeletionVector {
            storage_type: serde_json::to_value(dv.storage_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "u".into()),
            path_or_inline_dv: dv.path_or_inline_dv,
            offset: dv.offset,
            size_in_bytes: dv.size_in_bytes,
            cardinality: dv.cardinality,
        });
        // Column mapping: the log keys partition values and statistics physically; silt
        // plans in logical names.
        let (partition_values, stats_json) = if mapped {
            (
                column_mapping::partition_values(
                    &partition_values,
                    &arrow_schema,
                    Direction::ToLogical,
                ),
                view.stats()
                    .map(|s| column_mapping::stats_json(&s, &arrow_schema, Direction::ToLogical)),
            )
        } else {
            (partition_values, view.stats())
        };
        files.push(ActiveFile {
            file: DataFile {
                path: raw,
                partition_values,
                size_bytes: view.size(),
                modification_time_ms: view.modification_time(),
                stats_json,
                num_records: view.num_records().map(|n| n as i64).unwrap_or(-1),
                deletion_vector,
            },
            remove,
            tags,
        });
    }
    // Domains a writer must honour: row tracking's high-water mark, the clustering columns.
    let has = |f: &str| writer_features.iter().any(|w| w == f);
    let domains = if has("rowTracking") || has("clustering") {
        let (store, root) = store_for(url)?;
        super::domains::active_domains(&store, &root.join("_delta_log"), version).await?
    } else {
        BTreeMap::new()
    };
    let row_id_high_water_mark = has("rowTracking")
        .then(|| super::row_tracking::high_water_mark(&domains))
        .transpose()?;
    let clustering = has("clustering").then(|| domains.get(CLUSTERING_DOMAIN).cloned());
    let mut properties = properties;
    if let Some(Some(config)) = &clustering
        && let Ok(columns) = clustering_columns(config, &arrow_schema)
    {
        // Clustered tables need statistics of their clustering columns in every add.
        properties.stats = crate::write::stats::covering(
            &properties.stats,
            &arrow_schema,
            &partition_columns,
            &columns,
        );
    }
    Ok(Some(TableSnapshot {
        row_id_high_water_mark,
        clustering,
        table,
        version,
        schema_json,
        arrow_schema,
        partition_columns,
        configuration,
        properties,
        min_reader_version,
        min_writer_version,
        writer_features,
        files,
    }))
}

/// A split reading one data file of the table at `table_url` (whole file, with its partition
/// values and deletion vector), so that table files are read like any Parquet source.
pub fn file_split(table_url: &Url, file: &DataFile) -> Result<SourceSplit> {
    Ok(SourceSplit {
        uri: data_file_url(table_url, &file.path)?.to_string(),
        format: SourceFormat::Parquet,
        row_groups: Vec::new(),
        partition_values: file.partition_values.clone(),
        size_bytes: u64::try_from(file.size_bytes).unwrap_or(0),
        deletion_vector: file
            .deletion_vector
            .as_ref()
            .map(|dv| super::dv::resolve(dv, table_url))
            .transpose()?,
    })
}

/// The URL of a data file from its raw (URL-encoded) log path: absolute URLs as they are,
/// relative paths joined onto the table root.
pub fn data_file_url(table_url: &Url, raw_path: &str) -> Result<Url> {
    if let Ok(url) = Url::parse(raw_path)
        && url.scheme().len() > 1
    {
        return Ok(url);
    }
    join_url(table_url, raw_path)
}

fn feature_name<F: serde::Serialize + std::fmt::Debug>(f: &F) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{f:?}"))
}

/// Percent-decodes a path as the Delta log stores it (`add.path`, `remove.path`).
pub fn decode_path(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_debug_dumps_become_file_names() {
        let msg = "Kernel error: Generic delta kernel error: Expected contiguous commit files, \
            but found gap: ParsedLogPath { location: FileMeta { location: Url { scheme: \"file\", \
            path: \"/t/_delta_log/00000000000000000000.json\", query: None }, size: 451 }, \
            filename: \"00000000000000000000.json\", version: 0 } -> ParsedLogPath { location: \
            FileMeta { location: Url { path: \"/t/_delta_log/00000000000000000002.json\" } }, \
            filename: \"00000000000000000002.json\", version: 2 }";
        assert_eq!(
            super::without_debug_dumps(msg),
            "Expected contiguous commit files, but found gap: 00000000000000000000.json -> \
             00000000000000000002.json"
        );
        assert_eq!(
            super::without_debug_dumps("Kernel error: No protocol found in delta log."),
            "No protocol found in delta log."
        );
        assert_eq!(super::without_debug_dumps("a {b} C"), "a {b} C");
    }

    use super::*;

    #[test]
    fn invariants_are_read_from_top_level_columns_and_refused_when_nested() {
        let schema = r#"{"type":"struct","fields":[
            {"name":"x","type":"long","nullable":true,
             "metadata":{"delta.invariants":"{\"expression\":{\"expression\":\"x > 3\"}}"}},
            {"name":"y","type":"string","nullable":true,"metadata":{}}]}"#;
        let found = invariants(schema).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].expression, "x > 3");
        assert!(found[0].name.contains("`x`"));
        let nested = r#"{"type":"struct","fields":[{"name":"s","type":{"type":"struct","fields":[
            {"name":"a","type":"long","nullable":true,
             "metadata":{"delta.invariants":"{\"expression\":{\"expression\":\"a > 0\"}}"}}]},
            "nullable":true,"metadata":{}}]}"#;
        let e = invariants(nested).unwrap_err().to_string();
        assert!(e.contains("inside column `s`"), "{e}");
        assert!(
            invariants(r#"{"type":"struct","fields":[]}"#)
                .unwrap()
                .is_empty()
        );
    }
}
