//! Delta tables as silt sees them: the snapshot a job plans on ([`snapshot`]), its typed
//! properties ([`properties`]), pruning of its files by partition values and statistics
//! ([`prune`]), and reading its data files back as rows ([`dv`] applies deletion vectors;
//! the rows themselves are read through [`crate::source::read_split`]).

pub mod column_mapping;
pub mod domains;
pub mod dv;
pub mod identity;
pub mod properties;
pub mod prune;
pub mod row_tracking;
pub mod snapshot;

pub use properties::{IsolationLevel, TableProperties};
pub use snapshot::{
    ActiveFile, TableSnapshot, TimeTravel, decode_path, file_split, load_properties, load_table,
    load_table_at, table_builder,
};
