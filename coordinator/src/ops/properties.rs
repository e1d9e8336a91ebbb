//! `ALTER TABLE … SET TBLPROPERTIES` / `UNSET TBLPROPERTIES` / `RENAME COLUMN` /
//! `DROP COLUMN`: a metadata-only commit.
//!
//! Values of the `delta.` properties silt acts on are checked ([`TableProperties::parse`]);
//! unknown `delta.` keys are refused as Delta Spark refuses them, and so are properties that
//! would need a protocol upgrade or a feature silt cannot write yet. Other keys are free-form.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use deltalake_core::kernel::{MetadataExt, StructType};
use serde_json::{Map, Value};
use silt_common::request::{AlterTableRequest, ColumnChange};
use silt_common::schema;
use silt_common::table::{TableProperties, TableSnapshot, column_mapping};
use url::Url;

use super::existing_table;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
};
use crate::txn::Txn;

/// `delta.` table properties Delta defines (lower-cased); anything else under `delta.` is a
/// typo or a property of a newer Delta, refused rather than silently stored.
const KNOWN_DELTA_PROPERTIES: &[&str] = &[
    "delta.appendonly",
    "delta.autooptimize.autocompact",
    "delta.autooptimize.optimizewrite",
    "delta.checkpoint.writestatsasjson",
    "delta.checkpoint.writestatsasstruct",
    "delta.checkpointinterval",
    "delta.checkpointpolicy",
    "delta.columnmapping.mode",
    "delta.compatibility.symlinkformatmanifest.enabled",
    "delta.dataskippingnumindexedcols",
    "delta.dataskippingstatscolumns",
    "delta.deletedfileretentionduration",
    "delta.enablechangedatafeed",
    "delta.enabledeletionvectors",
    "delta.enableexpiredlogcleanup",
    "delta.enableincommittimestamps",
    "delta.enablerowtracking",
    "delta.enabletypewidening",
    "delta.isolationlevel",
    "delta.logretentionduration",
    "delta.minreaderversion",
    "delta.minwriterversion",
    "delta.randomizefileprefixes",
    "delta.randomprefixlength",
    "delta.settransactionretentionduration",
    "delta.targetfilesize",
    "delta.tunefilesizesforrewrites",
];

/// Loads the table and checks the change.
pub async fn prepare(
    plan_ctx: PlanContext,
    req: AlterTableRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    snapshot.check_writable()?;
    if let Some(change) = &req.column {
        let schema = Some(changed_columns(&snapshot, change)?);
        return Ok(Box::new(PropertiesOp {
            table_url,
            configuration: snapshot.configuration.clone(),
            snapshot,
            req,
            protocol: None,
            schema,
            job_id: plan_ctx.job_id,
        }));
    }
    let mut configuration = new_configuration(&snapshot, &req)?;
    let mut protocol = upgrade(&snapshot, &configuration)?;
    // Enabling column mapping (name mode) on an unmapped table: every column gets its own
    // name as physical name (the files stay readable as they are) and an id.
    let mut schema = None;
    if column_mapping::mode(&configuration).is_some() && snapshot.column_mapping().is_none() {
        let (mapped, max) = column_mapping::assign(&snapshot.arrow_schema, 0, true);
        schema = Some(
            serde_json::from_str::<StructType>(&schema::arrow_to_delta_json(&mapped)?)
                .map_err(|e| invalid(format!("internal: schema: {e}")))?,
        );
        configuration.insert(column_mapping::MAX_COLUMN_ID.to_string(), max.to_string());
        let current = match &protocol {
            Some(p) => serde_json::to_value(p),
            None => serde_json::to_value(snapshot.state()?.protocol()),
        }
        .map_err(|e| invalid(format!("internal: protocol: {e}")))?;
        protocol = Some(with_feature(&current, "columnMapping")?);
    }
    Ok(Box::new(PropertiesOp {
        table_url,
        snapshot,
        req,
        configuration,
        protocol,
        schema,
        job_id: plan_ctx.job_id,
    }))
}

/// The protocol the new configuration needs, when the table's does not do: enabling deletion
/// vectors adds the `deletionVectors` feature (reader 3, writer 7; a legacy protocol's
/// implied features are listed, as Delta does when it upgrades a table).
fn upgrade(
    snapshot: &TableSnapshot,
    configuration: &HashMap<String, String>,
) -> Result<Option<deltalake_core::kernel::Protocol>, JobError> {
    let wanted = TableProperties::parse(configuration)?;
    if !wanted.deletion_vectors
        || snapshot
            .writer_features
            .iter()
            .any(|f| f == "deletionVectors")
    {
        return Ok(None);
    }
    let current = serde_json::to_value(snapshot.state()?.protocol())
        .map_err(|e| invalid(format!("internal: protocol: {e}")))?;
    with_feature(&current, "deletionVectors").map(Some)
}

/// `current` (a protocol action as JSON) with a reader-writer `feature` added.
pub fn with_feature(
    current: &Value,
    feature: &str,
) -> Result<deltalake_core::kernel::Protocol, JobError> {
    let version = |k: &str| current.get(k).and_then(Value::as_i64).unwrap_or(1);
    let listed = |k: &str| -> Vec<String> {
        current
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (reader, writer) = (version("minReaderVersion"), version("minWriterVersion"));
    let mut readers = if reader >= 3 {
        listed("readerFeatures")
    } else if reader == 2 {
        vec!["columnMapping".to_string()]
    } else {
        Vec::new()
    };
    let mut writers = if writer >= 7 {
        listed("writerFeatures")
    } else {
        // What each legacy writer version implies.
        [
            (2, "appendOnly"),
            (2, "invariants"),
            (3, "checkConstraints"),
            (4, "changeDataFeed"),
            (4, "generatedColumns"),
            (5, "columnMapping"),
            (6, "identityColumns"),
        ]
        .iter()
        .filter(|(v, _)| writer >= *v)
        .map(|(_, f)| f.to_string())
        .collect()
    };
    for list in [&mut readers, &mut writers] {
        if !list.iter().any(|f| f == feature) {
            list.push(feature.to_string());
        }
    }
    serde_json::from_value(serde_json::json!({
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": readers,
        "writerFeatures": writers,
    }))
    .map_err(|e| invalid(format!("internal: protocol: {e}")))
}

/// The schema after a column of a column-mapped table is renamed or dropped: its files
/// name columns physically, so only the schema changes. Partition columns and columns a
/// CHECK constraint or invariant reads are refused, as Delta Spark refuses them.
fn changed_columns(
    snapshot: &TableSnapshot,
    change: &ColumnChange,
) -> Result<StructType, JobError> {
    let verb = match change {
        ColumnChange::Rename { .. } => "RENAME COLUMN",
        ColumnChange::Drop { .. } => "DROP COLUMN",
    };
    if snapshot.column_mapping().is_none() {
        return Err(invalid(format!(
            "{verb} needs column mapping (its files name columns by their names): enable it first with ALTER TABLE … SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name'); nothing was changed"
        )));
    }
    let fields = snapshot.arrow_schema.fields();
    let find = |name: &str| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    };
    let checks = snapshot.checks();
    let guard = |name: &str| -> Result<(), JobError> {
        if snapshot
            .partition_columns
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
        {
            return Err(invalid(format!(
                "{verb}: `{name}` is a partition column; nothing was changed"
            )));
        }
        let lower = name.to_lowercase();
        if let Some(c) = checks.iter().find(|c| {
            c.expression
                .to_lowercase()
                .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .any(|w| w == lower)
        }) {
            return Err(invalid(format!(
                "{verb}: the table's {} ({}) reads `{name}`; nothing was changed",
                c.name, c.expression
            )));
        }
        Ok(())
    };
    let mut kept: Vec<arrow::datatypes::Field> =
        fields.iter().map(|f| f.as_ref().clone()).collect();
    // A dotted name no top-level column has: a field nested in struct columns.
    let nested = |name: &str| name.contains('.') && find(name).is_none();
    match change {
        ColumnChange::Rename { from, to } if nested(from) => {
            let path: Vec<&str> = from.split('.').collect();
            guard(path[0])?;
            if to.trim().is_empty() || to.contains('.') {
                return Err(invalid(format!(
                    "{verb}: `{to}` is not a field name (a nested field keeps its place; name only it); nothing was changed"
                )));
            }
            kept = change_nested(&kept, &path, &|siblings, i| {
                if siblings
                    .iter()
                    .enumerate()
                    .any(|(j, f)| j != i && f.name().eq_ignore_ascii_case(to))
                {
                    return Err(invalid(format!(
                        "{verb}: `{}` already has a field `{to}`; nothing was changed",
                        path[..path.len() - 1].join(".")
                    )));
                }
                siblings[i] = siblings[i].clone().with_name(to.clone());
                Ok(())
            })
            .map_err(|e| with_verb(verb, e))?;
        }
        ColumnChange::Drop { columns, if_exists } if columns.iter().any(|c| nested(c)) => {
            for c in columns {
                let path: Vec<&str> = c.split('.').collect();
                if !nested(c) {
                    return Err(invalid(format!(
                        "{verb}: drop nested fields and columns in separate statements (`{c}`); nothing was changed"
                    )));
                }
                guard(path[0])?;
                let dropped = change_nested(&kept, &path, &|siblings, i| {
                    if siblings.len() == 1 {
                        return Err(invalid(format!(
                            "{verb}: a struct keeps at least one field (`{c}` is the last of `{}`); nothing was changed",
                            path[..path.len() - 1].join(".")
                        )));
                    }
                    siblings.remove(i);
                    Ok(())
                });
                match dropped {
                    Ok(k) => kept = k,
                    Err(NestedError::NoField(_)) if *if_exists => {}
                    Err(e) => return Err(with_verb(verb, e)),
                }
            }
        }
        ColumnChange::Rename { from, to } => {
            let i = find(from).ok_or_else(|| {
                invalid(format!("{verb}: no column `{from}`; nothing was changed"))
            })?;
            if find(to).is_some_and(|j| j != i) {
                return Err(invalid(format!(
                    "{verb}: the table already has a column `{to}`; nothing was changed"
                )));
            }
            if to.trim().is_empty() {
                return Err(invalid(format!("{verb}: the new name is empty")));
            }
            guard(fields[i].name())?;
            kept[i] = kept[i].clone().with_name(to.clone());
        }
        ColumnChange::Drop { columns, if_exists } => {
            let mut drop = Vec::new();
            for c in columns {
                match find(c) {
                    Some(i) => {
                        guard(fields[i].name())?;
                        drop.push(i);
                    }
                    None if *if_exists => {}
                    None => {
                        return Err(invalid(format!(
                            "{verb}: no column `{c}`; nothing was changed"
                        )));
                    }
                }
            }
            if drop.len() >= fields.len() - snapshot.partition_columns.len() {
                return Err(invalid(format!(
                    "{verb}: a table keeps at least one data column; nothing was changed"
                )));
            }
            kept = kept
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, f)| f)
                .collect();
        }
    }
    let json = schema::arrow_to_delta_json(&arrow::datatypes::Schema::new(kept))?;
    serde_json::from_str(&json).map_err(|e| invalid(format!("internal: schema: {e}")))
}

/// Why a nested field could not be changed.
enum NestedError {
    /// No such field (the path as far as it went).
    NoField(String),
    Refused(JobError),
}

impl From<JobError> for NestedError {
    fn from(e: JobError) -> Self {
        NestedError::Refused(e)
    }
}

fn with_verb(verb: &str, e: NestedError) -> JobError {
    match e {
        NestedError::NoField(path) => {
            invalid(format!("{verb}: no field `{path}`; nothing was changed"))
        }
        NestedError::Refused(e) => e,
    }
}

/// A change to the fields of one struct, given the position of the field it is about.
type FieldEdit<'a> = &'a dyn Fn(&mut Vec<arrow::datatypes::Field>, usize) -> Result<(), JobError>;

/// `fields` with `edit` applied to the fields of the struct holding the field `path` names
/// (through struct columns only), given that field's position among them.
fn change_nested(
    fields: &[arrow::datatypes::Field],
    path: &[&str],
    edit: FieldEdit<'_>,
) -> Result<Vec<arrow::datatypes::Field>, NestedError> {
    use arrow::datatypes::DataType;
    let i = fields
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(path[0]))
        .ok_or_else(|| NestedError::NoField(path[0].to_string()))?;
    let mut out = fields.to_vec();
    if path.len() == 1 {
        edit(&mut out, i)?;
        return Ok(out);
    }
    let DataType::Struct(children) = out[i].data_type() else {
        return Err(NestedError::NoField(path.join(".")));
    };
    let children: Vec<arrow::datatypes::Field> =
        children.iter().map(|f| f.as_ref().clone()).collect();
    let changed = change_nested(&children, &path[1..], edit).map_err(|e| match e {
        NestedError::NoField(rest) => NestedError::NoField(format!("{}.{rest}", path[0])),
        other => other,
    })?;
    out[i] = out[i]
        .clone()
        .with_data_type(DataType::Struct(changed.into()));
    Ok(out)
}

/// The table configuration after the change, checked.
pub fn new_configuration(
    snapshot: &TableSnapshot,
    req: &AlterTableRequest,
) -> Result<HashMap<String, String>, JobError> {
    if req.set.is_empty() && req.unset.is_empty() {
        return Err(invalid("no table properties given"));
    }
    let mut config = snapshot.configuration.clone();
    for (key, value) in &req.set {
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("delta.") {
            if !KNOWN_DELTA_PROPERTIES.contains(&lower.as_str()) {
                return Err(invalid(format!(
                    "unknown Delta table property `{key}` (properties under `delta.` must be ones Delta defines); nothing was changed"
                )));
            }
            needs_no_upgrade(snapshot, &lower, value)?;
        }
        // Delta keys are case-insensitive: replace any other spelling of the same key.
        config.retain(|k, _| !(k.eq_ignore_ascii_case(key) && lower.starts_with("delta.")));
        config.insert(key.clone(), value.clone());
    }
    for key in &req.unset {
        let existing: Vec<String> = config
            .keys()
            .filter(|k| *k == key || (key.starts_with("delta.") && k.eq_ignore_ascii_case(key)))
            .cloned()
            .collect();
        if existing.is_empty() && !req.if_exists {
            return Err(invalid(format!(
                "table property `{key}` is not set (use UNSET TBLPROPERTIES IF EXISTS to ignore); nothing was changed"
            )));
        }
        for k in existing {
            config.remove(&k);
        }
    }
    TableProperties::parse(&config)?;
    Ok(config)
}

/// Refuses property values that need a table protocol upgrade or a feature silt cannot write.
fn needs_no_upgrade(snapshot: &TableSnapshot, key: &str, value: &str) -> Result<(), JobError> {
    let on = value.trim().eq_ignore_ascii_case("true");
    let refuse = |what: &str| {
        Err(invalid(format!(
            "setting {key} = `{value}` {what}, which silt does not do yet; nothing was changed"
        )))
    };
    match key {
        "delta.minreaderversion" | "delta.minwriterversion" => {
            refuse("upgrades the table protocol")
        }
        "delta.enablechangedatafeed" if on => refuse("needs the change data feed to be written"),
        "delta.enablerowtracking"
        | "delta.enabletypewidening"
        | "delta.enableincommittimestamps"
            if on =>
        {
            refuse("needs a table feature")
        }
        "delta.columnmapping.mode" => {
            let mode = value.trim().to_ascii_lowercase();
            match (snapshot.properties.column_mapping.as_deref(), mode.as_str()) {
                (None, "none") => Ok(()),
                (Some(current), m) if current.eq_ignore_ascii_case(m) => Ok(()),
                // As Delta Spark: an existing table is upgraded to name mode only.
                (None, "name") => Ok(()),
                (None, _) => refuse("maps columns by id, which only a new table can"),
                (Some(_), _) => refuse("changes the column mapping mode"),
            }
        }
        "delta.appendonly" if on && snapshot.min_writer_version < 2 => {
            refuse("upgrades the table protocol (writer version 2)")
        }
        _ => Ok(()),
    }
}

/// A checked property change.
pub struct PropertiesOp {
    table_url: Url,
    snapshot: TableSnapshot,
    req: AlterTableRequest,
    configuration: HashMap<String, String>,
    /// The upgraded protocol the change needs, if any.
    protocol: Option<deltalake_core::kernel::Protocol>,
    /// The schema with physical names and ids, when the change enables column mapping.
    schema: Option<StructType>,
    job_id: String,
}

impl Operation for PropertiesOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        Ok(Vec::new())
    }

    fn stage_done(&mut self, _result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        Ok(Vec::new())
    }

    fn finish(self: Box<Self>, _elapsed: Duration) -> Result<Outcome, JobError> {
        let old = self.snapshot.state()?.metadata().clone();
        let mut md = match &self.schema {
            Some(s) => old
                .with_schema(s)
                .map_err(|e| invalid(format!("cannot update table schema: {e}")))?,
            None => old,
        };
        for key in self.snapshot.configuration.keys() {
            if !self.configuration.contains_key(key) {
                md = md
                    .remove_config_key(key)
                    .map_err(|e| invalid(format!("cannot update table properties: {e}")))?;
            }
        }
        for (k, v) in &self.configuration {
            if self.snapshot.configuration.get(k) != Some(v) {
                md = md
                    .add_config_key(k.clone(), v.clone())
                    .map_err(|e| invalid(format!("cannot update table properties: {e}")))?;
            }
        }
        let (operation, params) = if let Some(change) = &self.req.column {
            let mut p = Map::new();
            match change {
                ColumnChange::Rename { from, to } => {
                    p.insert("oldColumnPath".into(), Value::String(from.clone()));
                    p.insert("newColumnPath".into(), Value::String(to.clone()));
                    ("RENAME COLUMN", p)
                }
                ColumnChange::Drop { columns, .. } => {
                    p.insert(
                        "columns".into(),
                        Value::String(serde_json::to_string(columns).unwrap_or_default()),
                    );
                    ("DROP COLUMNS", p)
                }
            }
        } else if self.req.unset.is_empty() {
            let set: BTreeMap<&String, &String> = self.req.set.iter().collect();
            let mut p = Map::new();
            p.insert(
                "properties".into(),
                Value::String(serde_json::to_string(&set).unwrap_or_default()),
            );
            ("SET TBLPROPERTIES", p)
        } else {
            let mut p = Map::new();
            p.insert(
                "properties".into(),
                Value::String(serde_json::to_string(&self.req.unset).unwrap_or_default()),
            );
            p.insert("ifExists".into(), Value::Bool(self.req.if_exists));
            ("UNSET TBLPROPERTIES", p)
        };
        let mut txn = Txn::new(&self.job_id, operation, params);
        txn.set_metadata(md);
        if let Some(p) = self.protocol {
            txn.set_protocol(p);
        }
        let properties = TableProperties::parse(&self.configuration)?;
        let summary = match &self.req.column {
            Some(ColumnChange::Rename { from, to }) => format!("column `{from}` renamed to `{to}`"),
            Some(ColumnChange::Drop { .. }) => "column(s) dropped".to_string(),
            None if self.req.unset.is_empty() => "table properties set".to_string(),
            None => "table properties changed".to_string(),
        };
        Ok(Outcome::commit(
            txn,
            CommitTarget::on(&self.snapshot, properties),
            summary,
        ))
    }
}
