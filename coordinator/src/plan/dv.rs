//! Deletion vectors in a plan: whether an operation marks rows deleted instead of rewriting
//! their files, the stage that turns what marking tasks reported into vectors, and Delta's
//! counts of vectors added, updated and removed.
//!
//! Marking tasks (`Sink::MarkRows`) report, per file ordinal, the positions of the rows they
//! took out among the file's live rows. One file's rows may come from several tasks (a MERGE
//! exchange spreads a file's rows over partitions), so the vectors are written by a stage of
//! their own: its tasks get each file's merged rows (`Input::DeletedRows`), merge them with
//! the file's vector and write the new vectors (`Sink::DeletionVectors`), reporting each file
//! removed and added again with its new vector (or only removed when no row is left).
//!
//! Copy-on-write is cheaper for a small file that the statement leaves mostly deleted (a
//! vector would make every later read skip most of a file that costs little to rewrite):
//! such files go to tasks of the same stage that rewrite them without the rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use roaring::RoaringTreemap;
use silt_common::table::dv::{deserialize_rows, serialize_rows};
use silt_common::table::{ActiveFile, TableSnapshot};
use silt_common::task::{DataFile, FileSpec, Input, Sink, TableSpec, Task, TaskOutput};

use crate::driver::JobError;

/// Name of the stage writing deletion vectors.
pub const DV_STAGE: &str = "deletion-vectors";

/// Files per deletion-vector task at least (each is a small read and a few bytes written).
const FILES_PER_TASK: usize = 64;
/// Files up to this size are rewritten rather than given a vector when the statement leaves
/// more than half of their rows deleted.
pub const REWRITE_MAX_BYTES: i64 = 8 << 20;

/// Whether rewriting `file` without its rows is cheaper than a vector once `newly` more of
/// its rows are deleted: a small file left mostly deleted (but not empty: an empty file is
/// just removed).
pub fn cheaper_to_rewrite(file: &DataFile, newly: u64) -> bool {
    let old = file
        .deletion_vector
        .as_ref()
        .map_or(0, |d| d.cardinality.max(0) as u64);
    let rows = u64::try_from(file.num_records).unwrap_or(0);
    let deleted = old + newly;
    file.size_bytes <= REWRITE_MAX_BYTES && rows > 0 && deleted * 2 > rows && deleted < rows
}

/// Whether an operation on this table marks rows in deletion vectors: the table has the
/// feature and `delta.enableDeletionVectors = true`, and copy-on-write was not asked for.
pub fn enabled(snapshot: &TableSnapshot, copy_on_write: bool) -> bool {
    !copy_on_write
        // Change data is recorded by rewrites (copy-on-write).
        && !snapshot.properties.change_data_feed
        && snapshot.properties.deletion_vectors
        && snapshot
            .writer_features
            .iter()
            .any(|f| f == "deletionVectors")
}

/// The rows every marking task took out, merged per file ordinal.
pub fn gather<'a>(
    outputs: impl IntoIterator<Item = &'a TaskOutput>,
) -> Result<BTreeMap<u32, RoaringTreemap>, JobError> {
    let mut all: BTreeMap<u32, RoaringTreemap> = BTreeMap::new();
    for o in outputs {
        for r in &o.deleted_rows {
            let rows = deserialize_rows(&r.rows)?;
            *all.entry(r.file).or_default() |= rows;
        }
    }
    Ok(all)
}

/// The tasks writing the vectors of the marked files (`files[ordinal]`), at most one per slot
/// of each kind; files where [`cheaper_to_rewrite`] go to tasks rewriting them as `files_out`
/// says.
pub fn tasks(
    table: &TableSpec,
    files: &[DataFile],
    marked: BTreeMap<u32, RoaringTreemap>,
    files_out: &FileSpec,
    slots: u32,
) -> Result<Vec<Task>, JobError> {
    let (mut vectors, mut rewrites) = (Vec::new(), Vec::new());
    for (ordinal, rows) in marked {
        let file = files.get(ordinal as usize).ok_or_else(|| {
            JobError::Common(silt_common::Error::internal(format!(
                "a task marked rows of unknown file {ordinal}"
            )))
        })?;
        if rows.is_empty() {
            continue;
        }
        let entry = (file.clone(), serialize_rows(&rows));
        if cheaper_to_rewrite(file, rows.len()) {
            rewrites.push(entry);
        } else {
            vectors.push(entry);
        }
    }
    let mut out = chunked(table, vectors, files_out, None, slots);
    out.extend(chunked(table, rewrites, files_out, Some(files_out), slots));
    Ok(out)
}

/// The stage writing the vectors ([`tasks`]), if any file has rows to mark.
pub fn stage(
    table: &TableSpec,
    files: &[DataFile],
    marked: BTreeMap<u32, RoaringTreemap>,
    files_out: &FileSpec,
    slots: u32,
) -> Result<Vec<crate::driver::StagePlan>, JobError> {
    let tasks = tasks(table, files, marked, files_out, slots)?;
    Ok(if tasks.is_empty() {
        Vec::new()
    } else {
        vec![crate::driver::StagePlan::new(DV_STAGE, tasks)]
    })
}

/// The candidates a job's tasks report removed (by path), in candidate order.
pub fn reported_removed<'a>(
    candidates: &[ActiveFile],
    outputs: impl IntoIterator<Item = &'a TaskOutput>,
) -> Vec<ActiveFile> {
    let removed: HashSet<&str> = outputs
        .into_iter()
        .flat_map(|o| &o.removes)
        .map(|f| f.path.as_str())
        .collect();
    candidates
        .iter()
        .filter(|f| removed.contains(f.file.path.as_str()))
        .cloned()
        .collect()
}

/// Tasks over `entries` (file, rows), at most one per slot.
fn chunked(
    table: &TableSpec,
    entries: Vec<(DataFile, Vec<u8>)>,
    files_out: &FileSpec,
    rewrite: Option<&FileSpec>,
    slots: u32,
) -> Vec<Task> {
    if entries.is_empty() {
        return Vec::new();
    }
    let n = entries
        .len()
        .div_ceil(FILES_PER_TASK)
        .clamp(1, slots.max(1) as usize);
    let per_task = entries.len().div_ceil(n);
    entries
        .chunks(per_task)
        .map(|chunk| Task {
            table: table.clone(),
            input: Input::DeletedRows {
                files: chunk.iter().map(|(f, _)| f.clone()).collect(),
                rows: chunk.iter().map(|(_, r)| r.clone()).collect(),
            },
            transforms: Vec::new(),
            sink: Sink::DeletionVectors {
                file_prefix: files_out.file_prefix.clone(),
                rewrite: rewrite.cloned(),
            },
        })
        .collect()
}

/// Delta's deletion vector counts of a commit: vectors added to files that had none,
/// updated (a file's vector replaced), removed (files with a vector removed for good).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DvCounts {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

impl DvCounts {
    pub fn of(adds: &[&DataFile], removed: &[ActiveFile]) -> Self {
        let had: HashMap<&str, bool> = removed
            .iter()
            .map(|f| (f.file.path.as_str(), f.file.deletion_vector.is_some()))
            .collect();
        let mut c = DvCounts::default();
        let mut readded = HashSet::new();
        for a in adds.iter().filter(|a| a.deletion_vector.is_some()) {
            readded.insert(a.path.as_str());
            match had.get(a.path.as_str()) {
                Some(true) => c.updated += 1,
                _ => c.added += 1,
            }
        }
        c.removed = removed
            .iter()
            .filter(|f| f.file.deletion_vector.is_some() && !readded.contains(f.file.path.as_str()))
            .count();
        c
    }

    /// The data files a commit writes and those it takes away for good, leaving out files
    /// removed and added again with a new deletion vector (Delta counts those as vectors, not
    /// files).
    pub fn files<'a>(
        adds: &[&'a DataFile],
        removed: &'a [ActiveFile],
    ) -> (Vec<&'a DataFile>, Vec<&'a ActiveFile>) {
        let readded: HashSet<&str> = adds
            .iter()
            .filter(|a| a.deletion_vector.is_some())
            .map(|a| a.path.as_str())
            .collect();
        let gone: HashSet<&str> = removed.iter().map(|r| r.file.path.as_str()).collect();
        (
            adds.iter()
                .filter(|a| !gone.contains(a.path.as_str()))
                .copied()
                .collect(),
            removed
                .iter()
                .filter(|r| !readded.contains(r.file.path.as_str()))
                .collect(),
        )
    }

    pub fn record(&self, txn: &mut crate::txn::Txn, prefix: &str) {
        txn.metric(&format!("num{prefix}DeletionVectorsAdded"), self.added);
        txn.metric(&format!("num{prefix}DeletionVectorsRemoved"), self.removed);
        txn.metric(&format!("num{prefix}DeletionVectorsUpdated"), self.updated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::sized_files;
    use silt_common::task::{DeletionVector, FileRows};

    fn rows(r: &[u64]) -> Vec<u8> {
        serialize_rows(&r.iter().copied().collect())
    }

    #[test]
    fn rows_of_a_file_from_several_tasks_are_merged_into_one_vector_task() {
        let files: Vec<DataFile> = sized_files(&[("1", 10), ("2", 10), ("3", 10)])
            .into_iter()
            .map(|f| f.file)
            .collect();
        let out = |file, r: &[u64]| TaskOutput {
            deleted_rows: vec![FileRows {
                file,
                rows: rows(r),
            }],
            ..Default::default()
        };
        let outputs = [out(0, &[1, 2]), out(2, &[5]), out(0, &[7])];
        let marked = gather(&outputs).unwrap();
        assert_eq!(marked[&0].iter().collect::<Vec<_>>(), vec![1, 2, 7]);
        let table = TableSpec {
            uri: "file:///t/".into(),
            schema_json: "{}".into(),
            partition_columns: vec![],
        };
        let files_out = FileSpec {
            target_file_size_bytes: 1 << 20,
            stats: Default::default(),
            file_prefix: "part-j".into(),
            sort_by: None,
            checks: vec![],
            iso_timestamp_partitions: vec![],
            change_data: false,
        };
        let t = tasks(&table, &files, marked, &files_out, 4).unwrap();
        assert_eq!(t.len(), 1, "few files: one task");
        match &t[0].input {
            Input::DeletedRows { files: f, rows: r } => {
                assert_eq!(f.len(), 2);
                assert_eq!(f[1].path, files[2].path);
                assert_eq!(deserialize_rows(&r[0]).unwrap().len(), 3);
            }
            other => panic!("{other:?}"),
        }
        let bad = gather(&[out(9, &[1])]).unwrap();
        assert!(tasks(&table, &files, bad, &files_out, 4).is_err());

        // 100 rows each: 60 deleted in a small file is rewritten, 40 is not, a large file
        // never is, all 100 is a removal (a vector task drops it).
        let marked: BTreeMap<u32, RoaringTreemap> = [
            (0, (0..60).collect()),
            (1, (0..40).collect()),
            (2, (0..100).collect()),
        ]
        .into_iter()
        .collect();
        let t = tasks(&table, &files, marked, &files_out, 4).unwrap();
        let kinds: Vec<(usize, bool)> = t
            .iter()
            .map(|t| match (&t.input, &t.sink) {
                (Input::DeletedRows { files, .. }, Sink::DeletionVectors { rewrite, .. }) => {
                    (files.len(), rewrite.is_some())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![(2, false), (1, true)]);
        let mut large = files[0].clone();
        large.size_bytes = REWRITE_MAX_BYTES + 1;
        assert!(!cheaper_to_rewrite(&large, 60));
        assert!(cheaper_to_rewrite(&files[0], 60));
    }

    #[test]
    fn counts_tell_added_updated_and_removed_vectors_apart() {
        let mut removed = sized_files(&[("1", 10), ("2", 10), ("3", 10)]);
        let dv = DeletionVector {
            storage_type: "u".into(),
            path_or_inline_dv: "x".repeat(20),
            offset: Some(1),
            size_in_bytes: 10,
            cardinality: 1,
        };
        removed[1].file.deletion_vector = Some(dv.clone());
        removed[2].file.deletion_vector = Some(dv.clone());
        // File 0 gets its first vector, file 1 a new one, file 2 is removed whole.
        let mut a0 = removed[0].file.clone();
        a0.deletion_vector = Some(dv.clone());
        let mut a1 = removed[1].file.clone();
        a1.deletion_vector = Some(dv);
        let c = DvCounts::of(&[&a0, &a1], &removed);
        assert_eq!(
            c,
            DvCounts {
                added: 1,
                updated: 1,
                removed: 1
            }
        );
    }
}
