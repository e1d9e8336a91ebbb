//! Multi-dimensional clustering (OPTIMIZE … ZORDER BY), pure: which files are clustered
//! together, which of them to sample, and from the sample the curve's bounds and, per
//! partition, how many reducers its rows go to and where its curve is cut between them.
//!
//! A partition's files that no earlier clustering run by the same columns and curve wrote
//! (all of them with `full`) form a *group*. A group at most one target size large is
//! sorted by one task; a larger one goes through a range exchange into
//! `ceil(bytes / target)` reducers, each receiving one contiguous stretch of the curve,
//! which it sorts and writes as files of the target size. Every group's reducers are
//! distinct partitions of one exchange.
//!
//! Used by OPTIMIZE (`ops/optimize.rs`).

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, RecordBatch};
use silt_common::cluster::{Curve, CurveSpec, splits_for};
use silt_common::table::ActiveFile;

/// `add` tags of files a clustering run wrote (Delta's ZCube tags).
pub const TAG_ID: &str = "ZCUBE_ID";
pub const TAG_COLUMNS: &str = "ZCUBE_ZORDER_BY";
pub const TAG_CURVE: &str = "ZCUBE_ZORDER_CURVE";

/// At most this many files are sampled per clustering job.
pub const MAX_SAMPLED_FILES: usize = 128;
/// At most this many rows are kept of each sampled file.
pub const SAMPLE_ROWS_PER_FILE: usize = 8192;

pub type PartitionKey = BTreeMap<String, Option<String>>;

/// The tags a clustering run by `columns` along `curve` gives the files it writes.
pub fn tags(job_id: &str, columns: &[String], curve: Curve) -> Vec<(String, String)> {
    vec![
        (TAG_ID.to_string(), job_id.to_string()),
        (TAG_COLUMNS.to_string(), columns_tag(columns)),
        (TAG_CURVE.to_string(), curve.name().to_string()),
    ]
}

fn columns_tag(columns: &[String]) -> String {
    serde_json::to_string(columns).unwrap_or_default()
}

/// Whether a clustering run by `columns` along `curve` wrote `file`.
pub fn clustered_by(file: &ActiveFile, columns: &[String], curve: Curve) -> bool {
    file.tags.contains_key(TAG_ID)
        && file.tags.get(TAG_COLUMNS) == Some(&columns_tag(columns))
        && file.tags.get(TAG_CURVE).map(String::as_str) == Some(curve.name())
}

/// One partition's files to cluster together.
#[derive(Debug, Clone)]
pub struct Group {
    pub partition: PartitionKey,
    pub files: Vec<ActiveFile>,
}

impl Group {
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| u64::try_from(f.file.size_bytes).unwrap_or(0))
            .sum()
    }
}

/// The groups to cluster (by partition, in partition order) and how many files were left
/// alone as already clustered.
pub fn groups(
    files: &[ActiveFile],
    columns: &[String],
    curve: Curve,
    full: bool,
) -> (Vec<Group>, usize) {
    let mut by_partition: BTreeMap<Vec<(String, Option<String>)>, Group> = BTreeMap::new();
    let mut skipped = 0;
    for f in files {
        if !full && clustered_by(f, columns, curve) {
            skipped += 1;
            continue;
        }
        let key: Vec<_> = f.file.partition_values.clone().into_iter().collect();
        by_partition
            .entry(key)
            .or_insert_with(|| Group {
                partition: f.file.partition_values.clone(),
                files: Vec::new(),
            })
            .files
            .push(f.clone());
    }
    (by_partition.into_values().collect(), skipped)
}

/// Reducers a group needs for files of `target` bytes.
pub fn reducers_for(bytes: u64, target: u64) -> u32 {
    u32::try_from(bytes.div_ceil(target.max(1)).max(1)).unwrap_or(u32::MAX)
}

/// The files to sample: spread evenly over the groups that need an exchange (their cut
/// points come from their own rows), the rest over all files, at most `max` in all.
pub fn files_to_sample(groups: &[Group], target: u64, max: usize) -> Vec<ActiveFile> {
    let exchanged: Vec<&Group> = groups
        .iter()
        .filter(|g| reducers_for(g.bytes(), target) > 1)
        .collect();
    let mut picked: Vec<ActiveFile> = Vec::new();
    if !exchanged.is_empty() {
        let per_group = (max / exchanged.len()).max(1);
        for g in &exchanged {
            picked.extend(spread(&g.files, per_group));
        }
    }
    let all: Vec<ActiveFile> = groups
        .iter()
        .filter(|g| reducers_for(g.bytes(), target) <= 1)
        .flat_map(|g| g.files.iter().cloned())
        .collect();
    let room = max.saturating_sub(picked.len()).max(1);
    picked.extend(spread(&all, room));
    picked
}

/// At most `n` of `items`, evenly spaced.
fn spread<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// Sampled rows (the clustering columns only) by partition.
pub type Sample = BTreeMap<Vec<(String, Option<String>)>, Vec<RecordBatch>>;

/// A group with its share of the exchange.
#[derive(Debug, Clone)]
pub struct PlannedGroup {
    pub group: Group,
    /// 1: one task sorts the group's files (no exchange).
    pub reducers: u32,
    /// `reducers - 1` cut points of the curve.
    pub splits: Vec<u64>,
    /// The group's first exchange partition.
    pub offset: u32,
}

/// A clustering job's plan.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub curve: CurveSpec,
    pub groups: Vec<PlannedGroup>,
    /// Exchange partitions over all exchanged groups.
    pub partitions: u32,
}

/// Plans clustering `groups` by `columns` along `curve` into files of `target` bytes, from
/// `sample`.
pub fn plan(
    groups: Vec<Group>,
    columns: &[String],
    curve: Curve,
    sample: &Sample,
    target: u64,
) -> silt_common::Result<ClusterPlan> {
    let values: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            let arrays: Vec<&dyn arrow::array::Array> = sample
                .values()
                .flatten()
                .map(|b| b.column(i).as_ref())
                .collect();
            if arrays.is_empty() {
                return Ok(arrow::array::new_null_array(
                    &arrow::datatypes::DataType::Null,
                    0,
                ));
            }
            Ok(arrow::compute::concat(&arrays)?)
        })
        .collect::<silt_common::Result<_>>()?;
    let spec = CurveSpec::from_sample(columns.to_vec(), curve, &values)?;
    let keyer = spec.keyer()?;
    let mut planned = Vec::with_capacity(groups.len());
    let mut offset = 0u32;
    for group in groups {
        let wanted = reducers_for(group.bytes(), target);
        let (reducers, splits) = if wanted <= 1 {
            (1, Vec::new())
        } else {
            let key: Vec<_> = group.partition.clone().into_iter().collect();
            let mut keys = Vec::new();
            for b in sample.get(&key).into_iter().flatten() {
                keys.extend_from_slice(keyer.keys(b)?.values());
            }
            let splits = splits_for(keys, wanted as usize);
            (splits.len() as u32 + 1, splits)
        };
        let this_offset = if reducers > 1 { offset } else { 0 };
        if reducers > 1 {
            offset += reducers;
        }
        planned.push(PlannedGroup {
            group,
            reducers,
            splits,
            offset: this_offset,
        });
    }
    Ok(ClusterPlan {
        curve: spec,
        groups: planned,
        partitions: offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::sized_files as files;
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn cols() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn clustered_files_are_left_alone_unless_full() {
        let mut fs = files(&[("1", 10), ("1", 10), ("2", 10)]);
        for (k, v) in tags("j0", &cols(), Curve::ZOrder) {
            fs[0].tags.insert(k, v);
        }
        let (g, skipped) = groups(&fs, &cols(), Curve::ZOrder, false);
        assert_eq!((g.len(), skipped), (2, 1));
        assert_eq!(g[0].files.len(), 1);
        // Another curve or other columns: not clustered by this run's standard.
        let (_, skipped) = groups(&fs, &cols(), Curve::Hilbert, false);
        assert_eq!(skipped, 0);
        let (_, skipped) = groups(&fs, &["b".into(), "a".into()], Curve::ZOrder, false);
        assert_eq!(skipped, 0);
        let (g, skipped) = groups(&fs, &cols(), Curve::ZOrder, true);
        assert_eq!((g[0].files.len(), skipped), (2, 0));
    }

    #[test]
    fn large_groups_are_cut_into_ranges_of_the_exchange() {
        // Partition 1: 250 bytes -> 3 reducers; partition 2: 80 bytes -> one local task.
        let fs = files(&[("1", 100), ("1", 100), ("1", 50), ("2", 80)]);
        let (g, _) = groups(&fs, &cols(), Curve::Hilbert, false);
        let sampled = files_to_sample(&g, 100, 4);
        assert_eq!(sampled.len(), 4, "3 of the exchanged group, 1 more");
        let rows = |offset: i64| {
            RecordBatch::try_from_iter(vec![
                (
                    "a",
                    Arc::new(Int64Array::from_iter_values(
                        (0..900).map(|i| offset + i % 30),
                    )) as ArrayRef,
                ),
                (
                    "b",
                    Arc::new(Int64Array::from_iter_values((0..900).map(|i| i / 30))) as ArrayRef,
                ),
            ])
            .unwrap()
        };
        let mut sample = Sample::new();
        sample.insert(vec![("p".into(), Some("1".into()))], vec![rows(0)]);
        sample.insert(vec![("p".into(), Some("2".into()))], vec![rows(100)]);
        let p = plan(g, &cols(), Curve::Hilbert, &sample, 100).unwrap();
        assert_eq!(p.partitions, 3);
        assert_eq!(
            (
                p.groups[0].reducers,
                p.groups[0].splits.len(),
                p.groups[0].offset
            ),
            (3, 2, 0)
        );
        assert_eq!((p.groups[1].reducers, p.groups[1].offset), (1, 0));
        // The bounds cover both partitions' values.
        assert_eq!(p.curve.bounds[0].len(), 60);
    }
}
