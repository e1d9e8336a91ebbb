//! Pure planning helpers shared by operations: sizing tasks and packing work into them
//! ([`binpack`]), choosing the files a condition touches ([`rewrite`]), how a partitioned
//! write brings partitions together ([`partitioning`]), which target rows a MERGE can change
//! given its source's keys ([`merge_prune`]), the bins of a compaction ([`compaction`]) and
//! the groups, sample and curve cuts of a clustering run ([`clustering`]), and what VACUUM
//! deletes ([`vacuum`]); the stage writing deletion vectors for rows that tasks marked
//! deleted ([`dv`]); the identity values new rows get ([`identity`]).

pub mod binpack;
pub mod clustering;
pub mod compaction;
pub mod dv;
pub mod identity;
pub mod merge_prune;
pub mod partitioning;
pub mod rewrite;
pub mod vacuum;
