//! Bin-packing compaction (OPTIMIZE), pure: which files are rewritten together.
//!
//! Per partition, the files below the minimum size are packed into bins of at most the
//! target size, balanced (the partition's small files are spread over as few bins as the
//! target allows, largest file first into the emptiest bin); a bin of one file is left
//! alone, since rewriting it changes nothing. A file whose deletion vector deletes more
//! than the purge ratio of its rows is rewritten whatever its size (in its partition's
//! bins when small, else alone), so that the deleted rows are dropped.
//!
//! Used by OPTIMIZE (`ops/optimize.rs`).

use std::collections::BTreeMap;

use silt_common::table::ActiveFile;

/// What a compaction plans with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// Bins (and so output files) hold at most this many bytes of input.
    pub target_size: u64,
    /// Files below this size are compacted.
    pub min_file_size: u64,
    /// Files whose deletion vector deletes more than this fraction of their rows are
    /// rewritten to purge them.
    pub max_deleted_ratio: f64,
}

impl CompactionConfig {
    /// Delta's defaults around a target size: files below half of it are compacted; files
    /// with more than 5% of their rows deleted are purged.
    pub fn for_target(target_size: u64) -> Self {
        Self {
            target_size,
            min_file_size: target_size / 2,
            max_deleted_ratio: 0.05,
        }
    }
}

impl CompactionConfig {
    /// `REORG … APPLY (PURGE)` over files that all have deletion vectors: every one of
    /// them is rewritten, the small ones packed together up to the target.
    pub fn purge(target_size: u64) -> Self {
        Self {
            target_size,
            min_file_size: target_size,
            max_deleted_ratio: 0.0,
        }
    }
}

/// Files to rewrite together into one partition's new files.
#[derive(Debug, Clone)]
pub struct Bin {
    pub partition: BTreeMap<String, Option<String>>,
    pub files: Vec<ActiveFile>,
}

impl Bin {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(size).sum()
    }
}

fn size(f: &ActiveFile) -> u64 {
    u64::try_from(f.file.size_bytes).unwrap_or(0)
}

/// Whether the file's deletion vector deletes more than `ratio` of its rows.
fn needs_purge(f: &ActiveFile, ratio: f64) -> bool {
    match (&f.file.deletion_vector, f.file.num_records) {
        (Some(dv), n) if n > 0 => dv.cardinality as f64 / n as f64 > ratio,
        (Some(_), _) => true,
        _ => false,
    }
}

/// The bins of a compaction of `files`, partition by partition (in partition order).
pub fn plan_bins(files: &[ActiveFile], cfg: &CompactionConfig) -> Vec<Bin> {
    let mut by_partition: BTreeMap<Vec<(String, Option<String>)>, Vec<&ActiveFile>> =
        BTreeMap::new();
    for f in files {
        let key: Vec<_> = f
            .file
            .partition_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        by_partition.entry(key).or_default().push(f);
    }
    let target = cfg.target_size.max(1);
    let mut bins = Vec::new();
    for (key, files) in by_partition {
        let partition: BTreeMap<String, Option<String>> = key.into_iter().collect();
        let (mut small, large): (Vec<&ActiveFile>, Vec<&ActiveFile>) =
            files.into_iter().partition(|f| size(f) < cfg.min_file_size);
        // Large files with many deleted rows are rewritten alone.
        for f in large {
            if needs_purge(f, cfg.max_deleted_ratio) {
                bins.push(Bin {
                    partition: partition.clone(),
                    files: vec![f.clone()],
                });
            }
        }
        if small.is_empty() {
            continue;
        }
        let total: u64 = small.iter().map(|f| size(f)).sum();
        let n = total.div_ceil(target).max(1) as usize;
        // Largest first into the emptiest bin keeps the bins within the target and even.
        small.sort_by_key(|f| std::cmp::Reverse(size(f)));
        let mut packed: Vec<(u64, Vec<ActiveFile>)> = vec![(0, Vec::new()); n];
        for f in small {
            let s = size(f);
            match packed.iter_mut().min_by_key(|(bytes, _)| *bytes) {
                Some(bin) if bin.1.is_empty() || bin.0 + s <= target => {
                    bin.0 += s;
                    bin.1.push(f.clone());
                }
                // Every bin is too full for it: the target bounds bins, so open another.
                _ => packed.push((s, vec![f.clone()])),
            }
        }
        for (_, files) in packed {
            let purge = files.iter().any(|f| needs_purge(f, cfg.max_deleted_ratio));
            if files.len() > 1 || (files.len() == 1 && purge) {
                bins.push(Bin {
                    partition: partition.clone(),
                    files,
                });
            }
        }
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::sized_files as files;
    use silt_common::task::DeletionVector;

    fn sizes(bins: &[Bin]) -> Vec<Vec<i64>> {
        bins.iter()
            .map(|b| b.files.iter().map(|f| f.file.size_bytes).collect())
            .collect()
    }

    #[test]
    fn small_files_are_packed_per_partition_and_balanced() {
        let cfg = CompactionConfig::for_target(100);
        // Partition 1: 30+30+30+30+20 = 140 bytes of small files -> 2 bins of ~70.
        // Partition 2: one small file and a large one -> nothing to do.
        let fs = files(&[
            ("1", 30),
            ("1", 30),
            ("2", 10),
            ("1", 30),
            ("1", 20),
            ("2", 90),
            ("1", 30),
        ]);
        let bins = plan_bins(&fs, &cfg);
        assert_eq!(bins.len(), 2, "{:?}", sizes(&bins));
        for b in &bins {
            assert_eq!(b.partition.get("p"), Some(&Some("1".to_string())));
            assert!(b.bytes() <= 100 && b.bytes() >= 60, "{:?}", sizes(&bins));
        }
        assert_eq!(bins.iter().map(|b| b.files.len()).sum::<usize>(), 5);
        // Never above the target, even when even shares do not fit.
        let fs = files(&[("1", 49), ("1", 49), ("1", 49), ("1", 49), ("1", 4)]);
        let bins = plan_bins(&fs, &cfg);
        assert!(bins.iter().all(|b| b.bytes() <= 100), "{:?}", sizes(&bins));
        // The 4-byte file fits no bin and would be a bin of its own: it stays as it is.
        assert_eq!(sizes(&bins), vec![vec![49, 49], vec![49, 49]]);
    }

    #[test]
    fn nothing_to_do_when_compacted_and_purges_deleted_rows() {
        let cfg = CompactionConfig::for_target(100);
        // Already compacted: one file per partition, or only large files.
        assert!(plan_bins(&files(&[("1", 80), ("1", 90), ("2", 10)]), &cfg).is_empty());
        // A large file with 10% of its rows deleted is rewritten alone; 1% is left.
        let mut fs = files(&[("1", 80), ("1", 90)]);
        let dv = |cardinality| DeletionVector {
            storage_type: "u".into(),
            path_or_inline_dv: "x".into(),
            offset: None,
            size_in_bytes: 1,
            cardinality,
        };
        fs[0].file.deletion_vector = Some(dv(10));
        fs[1].file.deletion_vector = Some(dv(1));
        let bins = plan_bins(&fs, &cfg);
        assert_eq!(sizes(&bins), vec![vec![80]]);
    }
}
