//! Where a task's rows go.

/// How data files collect statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSpec {
    /// `delta.dataSkippingNumIndexedCols`: first N leaf columns; -1 means all.
    pub num_indexed_cols: i32,
    /// `delta.dataSkippingStatsColumns`: explicit columns; takes precedence when set.
    pub stats_columns: Option<Vec<String>>,
    /// Prefix length to which string min/max are truncated (Delta default 32).
    pub string_prefix_len: usize,
}

impl Default for StatsSpec {
    fn default() -> Self {
        Self {
            num_indexed_cols: 32,
            stats_columns: None,
            string_prefix_len: 32,
        }
    }
}

/// How a task writes Delta data files into its table.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Roll to a new file once the current one reaches this many bytes.
    pub target_file_size_bytes: u64,
    pub stats: StatsSpec,
    /// File name prefix, unique per job, e.g. `part-<job>`; the executor appends the
    /// attempt tag (`-s0-t3-a1`), and files are named `<prefix>-<tag>-<n>.<codec>.parquet`.
    pub file_prefix: String,
}

/// Where a task's rows go.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// Delta data files of the task's table (Hive-style partition directories, rolled at
    /// the target size), returned as `adds`.
    DataFiles(FileSpec),
    /// An exchange: each row goes to partition `hash(keys) % partitions`, where `keys` are
    /// SQL expressions over the row (e.g. partition columns, or a MERGE join key).
    /// The output stays on the executor that runs the attempt (memory, then local spill).
    Exchange { keys: Vec<String>, partitions: u32 },
}

impl Sink {
    pub fn name(&self) -> &'static str {
        match self {
            Sink::DataFiles(_) => "data-files",
            Sink::Exchange { .. } => "exchange",
        }
    }
}
