//! Row tracking (the `rowTracking` writer feature, with `domainMetadata`): every file a
//! commit adds gets fresh row ids — `baseRowId` past the table's high-water mark, the
//! file's rows taking `baseRowId + i` — and `defaultRowCommitVersion` = the commit's
//! version; the commit records the new mark in the `delta.rowTracking` domain. A file added
//! again (a new deletion vector) or removed keeps the ids of its last `add`.
//!
//! silt does not preserve the row ids of rows it copies or updates (the protocol says a
//! writer *should*, through materialized row-id columns): a rewritten row gets a fresh id,
//! and its commit says so (`delta.rowTracking.preserved = false` in `commitInfo.tags`).
//!
//! The high-water mark is read from the log itself ([`super::domains`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Error, Result};

/// The domain holding the row-id high-water mark.
pub const DOMAIN: &str = "delta.rowTracking";
/// The table property turning row tracking on.
pub const ENABLE: &str = "delta.enableRowTracking";
/// Table properties naming the columns materialized row ids and commit versions go in.
pub const MATERIALIZED_ROW_ID: &str = "delta.rowTracking.materializedRowIdColumnName";
pub const MATERIALIZED_ROW_COMMIT_VERSION: &str =
    "delta.rowTracking.materializedRowCommitVersionColumnName";
/// `commitInfo.tags` entry: whether every copied or updated row kept its row id.
pub const PRESERVED_TAG: &str = "delta.rowTracking.preserved";
/// The mark of a table no row id was given in yet: the first file gets `baseRowId` 0.
pub const NO_ROW_IDS: i64 = -1;

/// The high-water mark a `delta.rowTracking` domain configuration holds.
pub fn parse_high_water_mark(configuration: &str) -> Result<i64> {
    serde_json::from_str::<Value>(configuration)
        .ok()
        .and_then(|v| v.get("rowIdHighWaterMark").and_then(Value::as_i64))
        .ok_or_else(|| {
            Error::invalid(format!(
                "bad `{DOMAIN}` domain metadata (no rowIdHighWaterMark): {configuration}"
            ))
        })
}

/// The `delta.rowTracking` domain configuration for a high-water mark.
pub fn domain_configuration(high_water_mark: i64) -> String {
    serde_json::json!({ "rowIdHighWaterMark": high_water_mark }).to_string()
}

/// The `delta.rowTracking` high-water mark a commit's actions (JSON lines) set, if any.
pub fn high_water_mark_in_commit(text: &str) -> Result<Option<i64>> {
    let mut mark = None;
    for line in text.lines().filter(|l| l.contains(DOMAIN)) {
        let Ok(a) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(d) = a.get("domainMetadata")
            && d["domain"] == DOMAIN
            && d["removed"] != true
        {
            let config = d["configuration"].as_str().unwrap_or_default();
            mark = Some(parse_high_water_mark(config)?);
        }
    }
    Ok(mark)
}

/// The table's row-id high-water mark given its active domains
/// ([`super::domains::active_domains`]): [`NO_ROW_IDS`] when none was recorded.
pub fn high_water_mark(domains: &BTreeMap<String, String>) -> Result<i64> {
    match domains.get(DOMAIN) {
        Some(config) => parse_high_water_mark(config),
        None => Ok(NO_ROW_IDS),
    }
}

/// The ids a commit gives the files it adds: each add without a `baseRowId` takes the next
/// `numRecords` ids past `high_water_mark`, and every add without a `defaultRowCommitVersion`
/// gets `version`. Returns the new mark (unchanged when no id was given). Adds are JSON
/// objects of the `add` action.
pub fn assign(adds: &mut [&mut Value], high_water_mark: i64, version: i64) -> Result<i64> {
    let mut next = high_water_mark
        .checked_add(1)
        .ok_or_else(|| Error::invalid("row ids exhausted"))?;
    for add in adds.iter_mut() {
        if add.get("baseRowId").is_none_or(Value::is_null) {
            let records = add
                .get("stats")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|s| s.get("numRecords").and_then(Value::as_i64))
                .ok_or_else(|| {
                    Error::internal(format!(
                        "a file added to a table with row tracking has no row count: {}",
                        add.get("path").unwrap_or(&Value::Null)
                    ))
                })?;
            add["baseRowId"] = Value::from(next);
            next = next
                .checked_add(records)
                .ok_or_else(|| Error::invalid("row ids exhausted"))?;
        }
        if add
            .get("defaultRowCommitVersion")
            .is_none_or(Value::is_null)
        {
            add["defaultRowCommitVersion"] = Value::from(version);
        }
    }
    Ok(next - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(rows: i64, base: Option<i64>) -> Value {
        let mut a = serde_json::json!({
            "path": "f.parquet",
            "stats": format!("{{\"numRecords\":{rows}}}"),
        });
        if let Some(b) = base {
            a["baseRowId"] = Value::from(b);
            a["defaultRowCommitVersion"] = Value::from(1);
        }
        a
    }

    #[test]
    fn fresh_ids_follow_the_mark_and_re_adds_keep_theirs() {
        let (mut a, mut b, mut c) = (add(3, None), add(5, Some(0)), add(2, None));
        let mark = assign(&mut [&mut a, &mut b, &mut c], 9, 7).unwrap();
        assert_eq!(a["baseRowId"], 10);
        assert_eq!(b["baseRowId"], 0);
        assert_eq!(b["defaultRowCommitVersion"], 1);
        assert_eq!(c["baseRowId"], 13);
        assert_eq!(c["defaultRowCommitVersion"], 7);
        assert_eq!(mark, 14);
        // Nothing new: the mark stays.
        assert_eq!(assign(&mut [&mut b], 14, 8).unwrap(), 14);
        // A file without a row count cannot be given ids.
        let mut bare = serde_json::json!({"path": "g.parquet"});
        assert!(assign(&mut [&mut bare], 14, 8).is_err());
    }

    #[test]
    fn marks_come_from_domain_metadata() {
        let commit = format!(
            "{}\n{}\n",
            serde_json::json!({"domainMetadata": {"domain": DOMAIN, "configuration": domain_configuration(41), "removed": false}}),
            serde_json::json!({"domainMetadata": {"domain": "other", "configuration": "{}", "removed": false}})
        );
        assert_eq!(high_water_mark_in_commit(&commit).unwrap(), Some(41));
        assert_eq!(high_water_mark_in_commit("{\"add\":{}}").unwrap(), None);
        let domains = BTreeMap::from([(DOMAIN.to_string(), domain_configuration(41))]);
        assert_eq!(high_water_mark(&domains).unwrap(), 41);
        assert_eq!(high_water_mark(&BTreeMap::new()).unwrap(), NO_ROW_IDS);
        assert!(parse_high_water_mark("{}").is_err());
    }
}
