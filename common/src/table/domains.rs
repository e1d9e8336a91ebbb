//! Domain metadata (the `domainMetadata` feature) as a writer needs it: the active domains
//! of a table version, read from the log itself — its latest checkpoint, then the commits
//! after it — because the kernel under deltalake-core keeps the `delta.*` domains (row
//! tracking's high-water mark, liquid clustering's columns) to itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use serde_json::Value;

use crate::Result;

/// The active metadata domains at `version` of the log under `log` (domain → configuration):
/// those of its latest checkpoint at or before `version`, then of every commit after it,
/// later actions replacing earlier ones, removed domains left out.
pub async fn active_domains(
    store: &Arc<dyn ObjectStore>,
    log: &Path,
    version: i64,
) -> Result<BTreeMap<String, String>> {
    let listed: Vec<(String, u64)> = store
        .list(Some(log))
        .map_ok(|m| {
            (
                m.location.filename().unwrap_or_default().to_string(),
                m.size,
            )
        })
        .try_collect()
        .await?;
    let names: Vec<&String> = listed.iter().map(|(n, _)| n).collect();
    let version_of = |name: &str| -> Option<i64> { name.get(..20)?.parse().ok() };
    let checkpoint = names
        .iter()
        .filter(|n| n.contains(".checkpoint") && (n.ends_with(".parquet") || n.ends_with(".json")))
        .filter_map(|n| version_of(n))
        .filter(|v| *v <= version)
        .max();
    let mut domains: BTreeMap<String, Option<String>> = BTreeMap::new();
    let first_commit = match checkpoint {
        Some(c) => {
            let prefix = format!("{c:020}.checkpoint");
            for (n, size) in listed.iter().filter(|(n, _)| n.starts_with(&prefix)) {
                let path = log.clone().join(n.as_str());
                if n.ends_with(".json") {
                    let bytes = store.get(&path).await?.bytes().await?;
                    read_domains(&String::from_utf8_lossy(&bytes), &mut domains);
                } else {
                    checkpoint_domains(store, &path, *size, &mut domains).await?;
                }
            }
            c + 1
        }
        None => 0,
    };
    for v in first_commit..=version {
        let path = log.clone().join(format!("{v:020}.json"));
        match store.get(&path).await {
            Ok(r) => read_domains(&String::from_utf8_lossy(&r.bytes().await?), &mut domains),
            // Commits cleaned up before a checkpoint that is not listed (none at all): the
            // log reader already refused such a table.
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(domains
        .into_iter()
        .filter_map(|(d, c)| c.map(|c| (d, c)))
        .collect())
}

/// Domain metadata actions of JSON lines, later ones replacing earlier ones.
fn read_domains(text: &str, domains: &mut BTreeMap<String, Option<String>>) {
    for line in text.lines().filter(|l| l.contains("domainMetadata")) {
        let Ok(a) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(d) = a.get("domainMetadata")
            && let Some(domain) = d["domain"].as_str()
        {
            let config = (d["removed"] != true)
                .then(|| d["configuration"].as_str().map(str::to_string))
                .flatten();
            domains.insert(domain.to_string(), config);
        }
    }
}

/// Domain metadata of a Parquet checkpoint (its `domainMetadata` column).
async fn checkpoint_domains(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    domains: &mut BTreeMap<String, Option<String>>,
) -> Result<()> {
    let reader = crate::source::ObjectReader::new(store.clone(), path.clone(), size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let Ok(root) = builder.schema().index_of("domainMetadata") else {
        return Ok(());
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [root]);
    let batches: Vec<RecordBatch> = builder.with_projection(mask).build()?.try_collect().await?;
    for b in batches {
        let dm = b.column(0).as_struct();
        let (Some(domain), Some(config)) = (
            dm.column_by_name("domain"),
            dm.column_by_name("configuration"),
        ) else {
            continue;
        };
        let (domain, config) = (domain.as_string::<i32>(), config.as_string::<i32>());
        let removed = dm.column_by_name("removed").map(|r| r.as_boolean().clone());
        for i in 0..dm.len() {
            if dm.is_null(i) || domain.is_null(i) {
                continue;
            }
            let gone = removed
                .as_ref()
                .is_some_and(|r| r.is_valid(i) && r.value(i));
            let value = (!gone && config.is_valid(i)).then(|| config.value(i).to_string());
            domains.insert(domain.value(i).to_string(), value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_domain_actions_replace_earlier_ones() {
        let line = |domain: &str, config: &str, removed: bool| {
            serde_json::json!({"domainMetadata": {"domain": domain, "configuration": config, "removed": removed}})
                .to_string()
        };
        let mut domains = BTreeMap::new();
        read_domains(
            &format!("{}\n{}\n", line("a", "1", false), line("b", "2", false)),
            &mut domains,
        );
        read_domains(
            &format!("{}\n{}\n", line("a", "3", false), line("b", "", true)),
            &mut domains,
        );
        assert_eq!(domains.get("a"), Some(&Some("3".to_string())));
        assert_eq!(domains.get("b"), Some(&None));
    }
}
