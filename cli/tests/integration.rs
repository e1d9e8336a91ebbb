//! End-to-end tests of `silt write` and `silt sql`: the real binary on an embedded cluster (coordinator and
//! 2 executors over loopback gRPC) or as separate daemon processes, checked against an
//! independent oracle (`tests/python/oracle.py`: delta-rs writes the expected tables; delta-rs,
//! polars and DuckDB's Delta extension read what silt wrote).
//!
//! Random data comes from a seed logged by every test (`[seed] …` on stderr); rerun a failure
//! with `SILT_TEST_SEED=<base>`. Python: `<repo>/.venv/bin/python` or `$SILT_PYTHON`. Golden
//! tables: `<repo>/tests/golden/` (copied to a temp dir before any write).

#[path = "integration/support.rs"]
mod support;

#[path = "integration/write_modes.rs"]
mod write_modes;

#[path = "integration/partitions.rs"]
mod partitions;

#[path = "integration/schema.rs"]
mod schema;

#[path = "integration/golden.rs"]
mod golden;

#[path = "integration/bad_input.rs"]
mod bad_input;

#[path = "integration/cluster.rs"]
mod cluster;

#[path = "integration/auth.rs"]
mod auth;

#[path = "integration/concurrency.rs"]
mod concurrency;

#[path = "integration/s3.rs"]
mod s3;

#[path = "integration/dml.rs"]
mod dml;

#[path = "integration/dv.rs"]
mod dv;

#[path = "integration/column_mapping.rs"]
mod column_mapping;

#[path = "integration/cdf.rs"]
mod cdf;

#[path = "integration/clustered.rs"]
mod clustered;

#[path = "integration/row_tracking.rs"]
mod row_tracking;

#[path = "integration/identity.rs"]
mod identity;

#[path = "integration/constraints.rs"]
mod constraints;

#[path = "integration/conflicts.rs"]
mod conflicts;

#[path = "integration/sql.rs"]
mod sql;

#[path = "integration/faults.rs"]
mod faults;

#[path = "integration/deploy.rs"]
mod deploy;

#[path = "integration/merge.rs"]
mod merge;

#[path = "integration/analyze.rs"]
mod analyze;
#[path = "integration/compact_service.rs"]
mod compact_service;
#[path = "integration/optimize.rs"]
mod optimize;
#[path = "integration/vacuum.rs"]
mod vacuum;

#[path = "integration/ha.rs"]
mod ha;
