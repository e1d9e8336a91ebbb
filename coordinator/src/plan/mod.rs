//! Pure planning helpers shared by operations: sizing tasks and packing work into them
//! ([`binpack`]), choosing the files a condition touches ([`rewrite`]), and how a
//! partitioned write brings partitions together ([`partitioning`]).

pub mod binpack;
pub mod partitioning;
pub mod rewrite;
