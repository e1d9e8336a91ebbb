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
    /// `bytes`, spilling to the system temporary directory.
    pub fn new(bytes: usize) -> Self {
        Self {
            bytes,
            spill_dir: None,
        }
    }

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
