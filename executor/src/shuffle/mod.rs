//! The executor's side of the exchange: map outputs kept locally ([`store`]), served to
//! other executors over gRPC ([`service`]), and fetched by reduce tasks ([`fetch`]).
//!
//! A map attempt's output is identified by `(job, map id)` where the map id is the
//! attempt's tag (`s<stage>-t<task>-a<attempt>`): a superseded attempt's output can never
//! mix into a reducer's input, because reducers fetch only the ids the coordinator accepted.
//! Outputs live until the coordinator says their job ended (heartbeat replies), the attempt
//! is abandoned, or the executor exits.

pub mod fetch;
pub mod service;
pub mod store;

pub use fetch::Fetcher;
pub use store::ShuffleStore;
