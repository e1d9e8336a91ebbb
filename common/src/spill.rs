//! What an operator that sorts or joins may hold in memory, and where it spills past that.

use std::path::Path;
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::Result;

/// A memory budget and the local directory spilled runs go to (the system temporary
/// directory when `None`).
#[derive(Debug, Clone)]
pub struct Budget {
    pub bytes: usize,
    pub spill_dir: Option<Arc<Path>>,
}

impl Budget {
    /// The same directory with another byte count.
    pub fn with_bytes(&self, bytes: usize) -> Self {
        Self {
            bytes,
            spill_dir: self.spill_dir.clone(),
        }
    }

    /// A DataFusion runtime holding at most the budget's bytes, spilling to its directory.
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let mut runtime = RuntimeEnvBuilder::new().with_memory_limit(self.bytes, 1.0);
        if let Some(dir) = &self.spill_dir {
            runtime = runtime.with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![dir.to_path_buf()])),
            );
        }
        Ok(runtime.build_arc()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_joins_spill_under_the_budgets_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir: Arc<Path> = root.path().join("sort").into();
        let budget = Budget {
            bytes: 1 << 20,
            spill_dir: Some(dir.clone()),
        };
        let runtime = budget.runtime().unwrap();
        let paths = runtime.disk_manager.temp_dir_paths();
        assert!(!paths.is_empty());
        assert!(paths.iter().all(|p| p.starts_with(&*dir)), "{paths:?}");
        let file = runtime
            .disk_manager
            .create_tmp_file("a test spill")
            .unwrap();
        let path = file.path().expect("a file on disk");
        assert!(path.starts_with(&*dir), "{path:?}");
        // Another budget with the same directory and other bytes.
        assert_eq!(budget.with_bytes(7).spill_dir, Some(dir));
    }
}
