//! The map outputs an executor holds: blocks per (job, map output, partition), in memory up
//! to a byte budget shared by every output, then appended to a spill file per map output in
//! the executor's local spill directory. Nothing here touches a table's store.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use silt_common::{Error, Result};

/// Where one block is.
#[derive(Debug, Clone)]
enum Block {
    Memory(Bytes),
    Disk { offset: u64, len: u64 },
}

#[derive(Default)]
struct MapOut {
    partitions: Vec<Vec<Block>>,
    spill: Option<(PathBuf, File, u64)>,
    memory: usize,
    complete: bool,
}

#[derive(Default)]
struct State {
    memory: usize,
    outputs: HashMap<(String, String), MapOut>,
}

/// Counters of what the store holds and has spilled (tests).
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub outputs: usize,
    pub memory_bytes: usize,
    pub spilled_bytes: u64,
}

/// The executor's map output store; cheap to clone.
#[derive(Clone)]
pub struct ShuffleStore {
    inner: Arc<Inner>,
}

struct Inner {
    budget: usize,
    dir: tempfile::TempDir,
    state: Mutex<State>,
}

/// A partition's blocks, as they were when asked for: read them with [`ShuffleStore::read`].
pub struct PartitionBlocks {
    blocks: Vec<Block>,
    spill: Option<PathBuf>,
}

impl PartitionBlocks {
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Block `i`'s bytes (a blocking read for spilled blocks).
    pub fn read(&self, i: usize) -> Result<Bytes> {
        match &self.blocks[i] {
            Block::Memory(b) => Ok(b.clone()),
            Block::Disk { offset, len } => {
                let path = self
                    .spill
                    .as_ref()
                    .ok_or_else(|| Error::internal("spilled block without a spill file"))?;
                let mut f = File::open(path).map_err(|e| io_error("open", path, e))?;
                f.seek(SeekFrom::Start(*offset))
                    .map_err(|e| io_error("seek", path, e))?;
                let mut buf = vec![0u8; *len as usize];
                f.read_exact(&mut buf)
                    .map_err(|e| io_error("read", path, e))?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

fn io_error(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
    Error::internal(format!("shuffle spill {what} {}: {e}", path.display()))
}

impl ShuffleStore {
    /// A store keeping up to `budget` bytes in memory, spilling under `spill_root` (the
    /// system temporary directory when `None`) in a directory deleted with the store.
    pub fn new(budget: usize, spill_root: Option<&std::path::Path>) -> Result<Self> {
        let dir = match spill_root {
            Some(root) => {
                std::fs::create_dir_all(root).map_err(|e| io_error("create", root, e))?;
                tempfile::Builder::new()
                    .prefix("silt-shuffle-")
                    .tempdir_in(root)
            }
            None => tempfile::Builder::new().prefix("silt-shuffle-").tempdir(),
        }
        .map_err(|e| Error::internal(format!("cannot create the shuffle spill directory: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                budget,
                dir,
                state: Mutex::new(State::default()),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a map output with `partitions` partitions (replacing any of the same id).
    pub fn open(&self, job: &str, map_id: &str, partitions: u32) {
        let mut st = self.lock();
        let key = (job.to_string(), map_id.to_string());
        if let Some(old) = st.outputs.remove(&key) {
            release(&mut st, old);
        }
        st.outputs.insert(
            key,
            MapOut {
                partitions: vec![Vec::new(); partitions as usize],
                ..Default::default()
            },
        );
    }

    /// Appends a block to a partition of an open map output: in memory while the store's
    /// budget allows, else to the output's spill file. Returns the bytes spilled (0 or the
    /// block's length).
    pub fn put(&self, job: &str, map_id: &str, partition: u32, block: Vec<u8>) -> Result<u64> {
        let mut st = self.lock();
        let fits = st.memory + block.len() <= self.inner.budget;
        let key = (job.to_string(), map_id.to_string());
        let dir = self.inner.dir.path().to_path_buf();
        let out = st
            .outputs
            .get_mut(&key)
            .ok_or_else(|| Error::internal(format!("map output {map_id} is not open")))?;
        let slot = out
            .partitions
            .get_mut(partition as usize)
            .ok_or_else(|| Error::internal(format!("partition {partition} out of range")))?;
        if fits {
            let len = block.len();
            slot.push(Block::Memory(Bytes::from(block)));
            out.memory += len;
            st.memory += len;
            return Ok(0);
        }
        if out.spill.is_none() {
            let path = dir.join(format!("{}-{}.spill", sanitize(job), sanitize(map_id)));
            let f = File::create(&path).map_err(|e| io_error("create", &path, e))?;
            tracing::info!(
                job,
                map_id,
                budget = self.inner.budget,
                "map output spills to local disk past the memory budget"
            );
            out.spill = Some((path, f, 0));
        }
        let Some((path, f, end)) = out.spill.as_mut() else {
            return Err(Error::internal("spill file vanished"));
        };
        f.write_all(&block)
            .map_err(|e| io_error("write", path, e))?;
        slot.push(Block::Disk {
            offset: *end,
            len: block.len() as u64,
        });
        *end += block.len() as u64;
        Ok(block.len() as u64)
    }

    /// Marks a map output complete: from now on it is served.
    pub fn complete(&self, job: &str, map_id: &str) -> Result<()> {
        let mut st = self.lock();
        let out = st
            .outputs
            .get_mut(&(job.to_string(), map_id.to_string()))
            .ok_or_else(|| Error::internal(format!("map output {map_id} is not open")))?;
        if let Some((path, f, _)) = out.spill.as_mut() {
            f.flush().map_err(|e| io_error("flush", path, e))?;
        }
        out.complete = true;
        Ok(())
    }

    /// A complete map output's blocks of one partition; `None` when the store does not hold
    /// that output (never written, abandoned, or its job dropped).
    pub fn blocks(&self, job: &str, map_id: &str, partition: u32) -> Option<PartitionBlocks> {
        let st = self.lock();
        let out = st
            .outputs
            .get(&(job.to_string(), map_id.to_string()))
            .filter(|o| o.complete)?;
        Some(PartitionBlocks {
            blocks: out
                .partitions
                .get(partition as usize)
                .cloned()
                .unwrap_or_default(),
            spill: out.spill.as_ref().map(|(p, _, _)| p.clone()),
        })
    }

    /// Drops one map output (an abandoned attempt).
    pub fn remove(&self, job: &str, map_id: &str) {
        let mut st = self.lock();
        if let Some(out) = st.outputs.remove(&(job.to_string(), map_id.to_string())) {
            release(&mut st, out);
        }
    }

    /// Drops every output of a job (it ended).
    pub fn drop_job(&self, job: &str) {
        let mut st = self.lock();
        let keys: Vec<_> = st
            .outputs
            .keys()
            .filter(|(j, _)| j == job)
            .cloned()
            .collect();
        for k in keys {
            if let Some(out) = st.outputs.remove(&k) {
                release(&mut st, out);
            }
        }
    }

    /// Jobs this store holds outputs of.
    pub fn jobs(&self) -> Vec<String> {
        let st = self.lock();
        let mut jobs: Vec<String> = st.outputs.keys().map(|(j, _)| j.clone()).collect();
        jobs.sort();
        jobs.dedup();
        jobs
    }

    #[cfg(test)]
    pub fn stats(&self) -> StoreStats {
        let st = self.lock();
        StoreStats {
            outputs: st.outputs.len(),
            memory_bytes: st.memory,
            spilled_bytes: st
                .outputs
                .values()
                .filter_map(|o| o.spill.as_ref().map(|(_, _, n)| *n))
                .sum(),
        }
    }
}

/// Frees an output's memory and deletes its spill file. Readers holding its blocks keep
/// the memory blocks alive (shared bytes); a spilled block read after this fails.
fn release(st: &mut State, out: MapOut) {
    st.memory -= out.memory;
    if let Some((path, f, _)) = out.spill {
        drop(f);
        let _ = std::fs::remove_file(path);
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_spill_past_the_budget_and_read_back() {
        let store = ShuffleStore::new(10, None).unwrap();
        store.open("j", "m", 2);
        assert_eq!(store.put("j", "m", 0, vec![1; 6]).unwrap(), 0);
        assert_eq!(store.put("j", "m", 1, vec![2; 6]).unwrap(), 6); // over budget: spilled
        assert_eq!(store.put("j", "m", 0, vec![3; 3]).unwrap(), 0); // fits again
        assert!(
            store.blocks("j", "m", 0).is_none(),
            "served before complete"
        );
        store.complete("j", "m").unwrap();
        let s = store.stats();
        assert_eq!((s.memory_bytes, s.spilled_bytes), (9, 6));
        let p0 = store.blocks("j", "m", 0).unwrap();
        assert_eq!(p0.len(), 2);
        assert_eq!(&p0.read(1).unwrap()[..], &[3; 3]);
        let p1 = store.blocks("j", "m", 1).unwrap();
        assert_eq!(&p1.read(0).unwrap()[..], &[2; 6]);
        assert_eq!(store.jobs(), vec!["j".to_string()]);
        store.drop_job("j");
        assert_eq!(store.stats(), StoreStats::default());
        assert!(store.blocks("j", "m", 0).is_none());
        assert_eq!(
            std::fs::read_dir(store.inner.dir.path()).unwrap().count(),
            0
        );
    }
}
