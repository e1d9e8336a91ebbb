//! The executor's local scratch space: one directory per executor process under the spill
//! root (`--spill-dir`, else the system temporary directory), holding its map outputs past
//! the memory budget and the spilled runs of its sorts and joins. It is deleted when the
//! executor stops; an executor that was killed cannot delete it, so each executor, as it
//! starts, deletes the directories under the same root that no live executor holds. A live
//! executor holds an exclusive lock on its directory's `.lock` file for as long as it runs;
//! the lock goes with the process, however it ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

/// The prefix of every executor's directory under the spill root.
const PREFIX: &str = "silt-executor-";
/// The lock file a live executor holds.
const LOCK: &str = ".lock";
/// A directory without a lock file is being created (the lock file is put in place, locked,
/// right after the directory), or was left by a process killed in between: it is deleted
/// once this old.
const UNLOCKED_GRACE: Duration = Duration::from_secs(3600);

/// An executor's scratch directory: deleted on drop.
#[derive(Debug)]
pub struct WorkDir {
    dir: tempfile::TempDir,
    /// Held (locked) for the life of the directory.
    _lock: File,
}

impl WorkDir {
    /// Deletes the stale directories under `root` (the system temporary directory when
    /// `None`) and creates this executor's, locked.
    pub fn create(root: Option<&Path>) -> std::io::Result<Self> {
        let root = match root {
            Some(r) => {
                std::fs::create_dir_all(r)?;
                r.to_path_buf()
            }
            None => std::env::temp_dir(),
        };
        sweep(&root);
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(&root)?;
        // Locked under another name, then renamed: a sweeper never finds the lock file
        // unlocked while its executor lives.
        let staging = dir.path().join(".lock-staging");
        let lock = File::create(&staging)?;
        lock.lock()?;
        std::fs::rename(&staging, dir.path().join(LOCK))?;
        Ok(Self { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Deletes the executor directories under `root` whose lock no process holds. Best effort:
/// what cannot be read or deleted is logged and left.
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        if is_stale(&path) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    info!(dir = %path.display(), "deleted the scratch directory of an executor that is gone")
                }
                // Another starting executor deleted it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(dir = %path.display(), error = %e, "cannot delete a stale scratch directory")
                }
            }
        }
    }
}

fn is_stale(dir: &Path) -> bool {
    match File::open(dir.join(LOCK)) {
        // Locked by nobody: its executor is gone (the lock is released as the file closes).
        Ok(f) => f.try_lock().is_ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > UNLOCKED_GRACE),
        Err(_) => false,
    }
}

/// Where DataFusion spills under `root`.
pub fn sort_dir(root: &Path) -> PathBuf {
    root.join("sort")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_executor_deletes_only_the_directories_of_executors_that_are_gone() {
        let root = tempfile::tempdir().unwrap();
        let live = WorkDir::create(Some(root.path())).unwrap();
        std::fs::write(live.path().join("spill"), b"live").unwrap();

        // An executor killed mid-job: its directory and lock file remain, unlocked.
        let dead = root.path().join(format!("{PREFIX}dead"));
        std::fs::create_dir_all(dead.join("sort")).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("sort").join("run"), b"old").unwrap();
        // One being created right now (no lock file yet), and what is not an executor's.
        let young = root.path().join(format!("{PREFIX}young"));
        std::fs::create_dir_all(&young).unwrap();
        let other = root.path().join("other");
        std::fs::create_dir_all(&other).unwrap();

        let next = WorkDir::create(Some(root.path())).unwrap();
        assert!(!dead.exists(), "a dead executor's directory is deleted");
        assert!(
            live.path().join("spill").exists(),
            "a live executor's is kept"
        );
        assert!(young.exists() && other.exists());
        assert_ne!(next.path(), live.path());

        // Gone with its owner, however many there are.
        let (a, b) = (live.path().to_path_buf(), next.path().to_path_buf());
        drop(live);
        drop(next);
        assert!(!a.exists() && !b.exists());
    }

    #[test]
    fn a_lock_held_by_another_process_keeps_the_directory() {
        // The lock is per open file, so a second open in this process stands in for
        // another process: it must see the directory as live.
        let root = tempfile::tempdir().unwrap();
        let live = WorkDir::create(Some(root.path())).unwrap();
        assert!(!is_stale(live.path()));
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }
}
