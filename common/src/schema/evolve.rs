//! Schema resolution of a write: enforcement, `mergeSchema`, `overwriteSchema`.

use super::*;

/// Write options that change schema handling (Delta's `mergeSchema` / `overwriteSchema`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Add source columns (and nested struct fields) missing from the table.
    pub merge_schema: bool,
    /// Replace the table schema by the source schema (only valid with an overwrite; the
    /// caller checks the mode).
    pub overwrite_schema: bool,
}

/// Decides the schema a write produces.
///
/// * No table yet, or `overwrite_schema`: the normalized source schema. Columns of type
///   `Null` (a source column that is all nulls without a type) are an error unless the table
///   already has the column, whose type is then used.
/// * Otherwise, Delta schema enforcement: columns match by name case-insensitively and the
///   table's spelling and order win. A source column missing from the table is an error
///   unless `merge_schema` (then it is appended, nullable). A table column missing from the
///   source is fine if nullable (it is filled with nulls), an error if NOT NULL. A type
///   difference is allowed only when the source casts safely into the table type: integer
///   widening (byte → short → integer → long), float → double, `Null` into anything, decimal
///   `(p,s)` → `(p',s)` with `p' >= p`; nested structs, arrays and maps are compared
///   recursively (with `merge_schema`, nested struct fields merge the same way).
///
/// All problems are reported together in one [`Error::SchemaMismatch`], one per column as
/// ``"`col`: table type X, source type Y"``.
pub fn resolve_write_schema(
    table: Option<&Schema>,
    source: &Schema,
    opts: &SchemaOptions,
) -> Result<Schema> {
    let source = normalize_arrow_schema(source)?;
    check_duplicates(source.fields(), "")?;
    let table = match table {
        Some(t) if !opts.overwrite_schema => t,
        _ => return resolve_replacement(table, &source),
    };

    let mut problems = Vec::new();
    let fields = merge_fields(
        table.fields(),
        source.fields(),
        "",
        opts.merge_schema,
        &mut problems,
    );
    if !problems.is_empty() {
        // One line: errors reach users as a single `error: …` line.
        let mut msg = format!(
            "the data does not match the table schema: {}",
            problems.join("; ")
        );
        if !opts.merge_schema && problems.iter().any(|p| p.contains("not in the table")) {
            msg.push_str(" (to add the new columns, write with --merge-schema)");
        }
        return Err(Error::SchemaMismatch(msg));
    }
    Ok(Schema::new(fields).with_metadata(table.metadata().clone()))
}

/// Schema of a new table or of an `overwriteSchema` write: the source, with `Null` columns
/// resolved from the old table or rejected.
pub(super) fn resolve_replacement(table: Option<&Schema>, source: &Schema) -> Result<Schema> {
    let mut problems = Vec::new();
    let fields: Vec<Field> = source
        .fields()
        .iter()
        .map(|f| {
            let old = table.and_then(|t| find_field(t.fields(), f.name()));
            match old {
                Some(old) if f.data_type() == &DataType::Null => {
                    f.as_ref().clone().with_data_type(old.data_type().clone())
                }
                _ => {
                    collect_null_types(f.data_type(), f.name(), &mut problems);
                    f.as_ref().clone()
                }
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(Error::SchemaMismatch(problems.join("; ")));
    }
    Ok(Schema::new(fields))
}

pub(super) fn collect_null_types(dt: &DataType, path: &str, problems: &mut Vec<String>) {
    match dt {
        DataType::Null => problems.push(format!(
            "column `{path}` has no type (all nulls); cast it to a type"
        )),
        DataType::List(f) => {
            collect_null_types(f.data_type(), &format!("{path}.element"), problems)
        }
        DataType::Map(entries, _) => {
            if let DataType::Struct(kv) = entries.data_type() {
                for (f, n) in kv.iter().zip(["key", "value"]) {
                    collect_null_types(f.data_type(), &format!("{path}.{n}"), problems);
                }
            }
        }
        DataType::Struct(fields) => {
            for f in fields {
                collect_null_types(f.data_type(), &format!("{path}.{}", f.name()), problems);
            }
        }
        _ => {}
    }
}

/// Rejects names that collide case-insensitively (Delta Spark does too), at every depth.
pub(super) fn check_duplicates(fields: &Fields, prefix: &str) -> Result<()> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for f in fields {
        if let Some(prev) = seen.insert(f.name().to_lowercase(), f.name()) {
            return Err(Error::SchemaMismatch(format!(
                "duplicate column `{prefix}{}` (column names are case-insensitive; also `{prefix}{prev}`)",
                f.name()
            )));
        }
        let child_prefix = format!("{prefix}{}.", f.name());
        let mut dt = f.data_type();
        while let DataType::List(e) = dt {
            dt = e.data_type();
        }
        if let DataType::Struct(children) = dt {
            check_duplicates(children, &child_prefix)?;
        }
    }
    Ok(())
}

pub(super) fn find_field<'a>(fields: &'a Fields, name: &str) -> Option<&'a FieldRef> {
    fields
        .iter()
        .find(|f| f.name() == name)
        .or_else(|| fields.iter().find(|f| f.name().eq_ignore_ascii_case(name)))
        .or_else(|| {
            let lower = name.to_lowercase();
            fields.iter().find(|f| f.name().to_lowercase() == lower)
        })
}

pub(super) fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Merges source fields into table fields (table order, new fields appended), collecting
/// problems instead of stopping at the first.
pub(super) fn merge_fields(
    table: &Fields,
    source: &Fields,
    prefix: &str,
    merge: bool,
    problems: &mut Vec<String>,
) -> Vec<Field> {
    let mut out = Vec::with_capacity(table.len().max(source.len()));
    for tf in table {
        let path = join_path(prefix, tf.name());
        match find_field(source, tf.name()) {
            Some(sf) => {
                let dt = merge_types(tf.data_type(), sf.data_type(), &path, merge, problems);
                out.push(tf.as_ref().clone().with_data_type(dt));
            }
            None => {
                if !tf.is_nullable() {
                    problems.push(format!(
                        "`{path}`: NOT NULL column of the table is missing from the data"
                    ));
                }
                out.push(tf.as_ref().clone());
            }
        }
    }
    for sf in source {
        if find_field(table, sf.name()).is_some() {
            continue;
        }
        let path = join_path(prefix, sf.name());
        if merge {
            let before = problems.len();
            collect_null_types(sf.data_type(), &path, problems);
            if problems.len() == before {
                out.push(sf.as_ref().clone().with_nullable(true));
            }
        } else {
            problems.push(format!(
                "`{path}`: not in the table (source type {})",
                type_name(sf.data_type())
            ));
        }
    }
    out
}

/// The type a table column keeps when `source` data is written into it, or a problem.
pub(super) fn merge_types(
    table: &DataType,
    source: &DataType,
    path: &str,
    merge: bool,
    problems: &mut Vec<String>,
) -> DataType {
    use DataType::*;
    if table == source || *source == Null {
        return table.clone();
    }
    let ok = match (table, source) {
        (Int16, Int8) | (Int32, Int8 | Int16) | (Int64, Int8 | Int16 | Int32) => true,
        (Float64, Float32) => true,
        (Decimal128(tp, ts), Decimal128(sp, ss)) => ts == ss && tp >= sp,
        (Struct(tf), Struct(sf)) => {
            let fields = merge_fields(tf, sf, path, merge, problems);
            return Struct(fields.into());
        }
        (List(te), List(se)) => {
            let element = merge_types(
                te.data_type(),
                se.data_type(),
                &format!("{path}.element"),
                merge,
                problems,
            );
            return List(Arc::new(te.as_ref().clone().with_data_type(element)));
        }
        (Map(te, sorted), Map(se, _)) => {
            let (Ok((tk, tv)), Ok((sk, sv))) = (map_children(te, path), map_children(se, path))
            else {
                false_problem(table, source, path, problems);
                return table.clone();
            };
            let key = merge_types(
                tk.data_type(),
                sk.data_type(),
                &format!("{path}.key"),
                merge,
                problems,
            );
            let value = merge_types(
                tv.data_type(),
                sv.data_type(),
                &format!("{path}.value"),
                merge,
                problems,
            );
            let entries = Struct(
                vec![
                    tk.as_ref().clone().with_data_type(key),
                    tv.as_ref().clone().with_data_type(value),
                ]
                .into(),
            );
            return Map(
                Arc::new(te.as_ref().clone().with_data_type(entries)),
                *sorted,
            );
        }
        _ => false,
    };
    if !ok {
        false_problem(table, source, path, problems);
    }
    table.clone()
}

pub(super) fn false_problem(
    table: &DataType,
    source: &DataType,
    path: &str,
    problems: &mut Vec<String>,
) {
    problems.push(format!(
        "`{path}`: table type {}, source type {}",
        type_name(table),
        type_name(source)
    ));
}
