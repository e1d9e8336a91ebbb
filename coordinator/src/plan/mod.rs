//! Pure planning helpers shared by operations: sizing tasks and packing work into them
//! ([`binpack`]), and choosing the files a condition touches ([`rewrite`]).

pub mod binpack;
pub mod rewrite;
