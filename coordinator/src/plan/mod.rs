//! Pure planning helpers shared by operations: sizing tasks and packing work into them
//! ([`binpack`]), choosing the files a condition touches ([`rewrite`]), and how a
//! partitioned write brings partitions together ([`partitioning`]), and which target rows a
//! MERGE can change given its source's keys ([`merge_prune`], not yet used by an operation).

pub mod binpack;
pub mod merge_prune;
pub mod partitioning;
pub mod rewrite;
