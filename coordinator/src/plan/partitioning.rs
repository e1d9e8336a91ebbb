//! How a write to a partitioned table brings each partition's rows together (pure).
//!
//! * **Direct**: no exchange; every task keeps one rolling writer per partition it sees
//!   (the data file writer bounds their memory, closing its largest file early) and writes
//!   them at the target size. Cheapest when partitions are few relative to the data per
//!   task: each task's slice of a partition is then a reasonably large file.
//! * **Exchange**: map tasks route rows by partition values to reducers, each partition to
//!   exactly one reducer, so a partition's rows end in as few files as its size allows.
//!   Needed when partitions are many (direct writing would make tasks × partitions small
//!   files) or their number is unknown.
//!
//! The estimate comes from a sample of the source (its partition columns, read by the
//! coordinator while planning: the first rows of splits spread over the source) or, failing
//! that, from the partitions the table has. When each sampled split sees only a small part
//! of the partitions the sample saw in all, the source is clustered by partition (e.g. a
//! fact table written in date order): each task then sees few partitions, and writing
//! directly makes about as many files as an exchange would, without its cost.

use silt_common::request::ExchangeMode;

/// Partitions per task up to which writing directly is considered.
pub const MAX_DIRECT_PARTITIONS: u64 = 64;
/// Smallest expected size of one task's slice of one partition for writing directly.
pub const MIN_DIRECT_SLICE_BYTES: u64 = 1 << 20;
/// Coverage (see [`PartitionEstimate::coverage`]) at or below which the source counts as
/// clustered by partition.
pub const CLUSTERED_COVERAGE: f64 = 0.5;
/// Upper bound on reducers of an exchange.
pub const MAX_REDUCERS: u32 = 256;
/// Input bytes per reducer below which fewer reducers are used.
const MIN_REDUCER_BYTES: u64 = 8 << 20;

/// What is known of the number of partitions the new rows fall into.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionEstimate {
    /// Distinct partition values seen.
    pub distinct: u64,
    /// Rows sampled (0 when the estimate is not from a row sample).
    pub rows: u64,
    /// Where it comes from, for the user: e.g. "a 65,536-row source sample".
    pub basis: String,
    /// The mean share of the `distinct` values that one sampled split's rows fall into:
    /// near 1 when every part of the source spreads over all partitions, small when the
    /// source is clustered by partition. 1 when unknown.
    pub coverage: f64,
}

impl PartitionEstimate {
    /// Whether the sample saw the partitions repeat enough to believe it saw (nearly) all
    /// of them: fewer than one distinct value per 10 rows.
    fn saturated(&self) -> bool {
        self.rows == 0 || self.distinct.saturating_mul(10) <= self.rows
    }
}

/// The plan chosen, and why (shown in the job's progress and summary).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionChoice {
    pub exchange: bool,
    /// Reducers of the exchange (0 when direct).
    pub reducers: u32,
    pub reason: String,
}

/// Chooses between writing partitions directly and through an exchange.
pub fn choose(
    mode: ExchangeMode,
    tasks: usize,
    total_bytes: u64,
    slots: u32,
    estimate: Option<&PartitionEstimate>,
) -> PartitionChoice {
    let reducers = reducers(total_bytes, slots);
    let exchange = |reason: String| PartitionChoice {
        exchange: true,
        reducers,
        reason,
    };
    let direct = |reason: String| PartitionChoice {
        exchange: false,
        reducers: 0,
        reason,
    };
    match mode {
        ExchangeMode::Always => {
            // Asked for: as parallel as the slots allow, whatever the size.
            return PartitionChoice {
                exchange: true,
                reducers: slots.saturating_mul(2).clamp(1, MAX_REDUCERS),
                reason: "exchange requested".into(),
            };
        }
        ExchangeMode::Never => return direct("no exchange requested".into()),
        ExchangeMode::Auto => {}
    }
    let Some(est) = estimate else {
        return exchange("partition count unknown".into());
    };
    let seen = format!("~{} partition(s) in {}", est.distinct, est.basis);
    if tasks <= 1 {
        // One task writes each partition once either way; an exchange would only add work.
        return direct(format!("{seen}, one task"));
    }
    if est.coverage <= CLUSTERED_COVERAGE {
        return direct(format!(
            "{seen}, each sampled part of the source holding ~{:.0}% of them (clustered by partition)",
            est.coverage * 100.0
        ));
    }
    if !est.saturated() {
        return exchange(format!(
            "{seen}, most rows in a new partition: many partitions"
        ));
    }
    if est.distinct > MAX_DIRECT_PARTITIONS {
        return exchange(format!("{seen}: more than {MAX_DIRECT_PARTITIONS}"));
    }
    let slice = total_bytes / tasks as u64 / est.distinct.max(1);
    if slice < MIN_DIRECT_SLICE_BYTES {
        return exchange(format!(
            "{seen}, {tasks} tasks: ~{} KiB per task and partition",
            slice >> 10
        ));
    }
    direct(format!(
        "{seen}, {tasks} tasks: ~{} MiB per task and partition",
        slice >> 20
    ))
}

/// Reducers for an exchange the planner chose for `total_bytes`: two per slot, fewer for
/// small inputs.
fn reducers(total_bytes: u64, slots: u32) -> u32 {
    let by_size = u32::try_from(total_bytes / MIN_REDUCER_BYTES).unwrap_or(u32::MAX);
    (slots.saturating_mul(2))
        .min(by_size.max(1))
        .clamp(1, MAX_REDUCERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(distinct: u64, rows: u64) -> PartitionEstimate {
        PartitionEstimate {
            distinct,
            rows,
            basis: "a sample".into(),
            coverage: 1.0,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn few_partitions_with_enough_data_per_task_are_written_directly() {
        let c = choose(ExchangeMode::Auto, 4, 400 * MIB, 2, Some(&est(12, 65_536)));
        assert!(!c.exchange, "{c:?}");
        assert!(c.reason.contains("~12 partition(s)"), "{}", c.reason);
        // A source clustered by partition: each task sees few partitions.
        let clustered = PartitionEstimate {
            coverage: 0.12,
            ..est(48, 65_536)
        };
        let c = choose(ExchangeMode::Auto, 4, 400 * MIB, 2, Some(&clustered));
        assert!(!c.exchange && c.reason.contains("clustered"), "{c:?}");
        // A single task never needs an exchange, however many partitions.
        let c = choose(ExchangeMode::Auto, 1, MIB, 2, Some(&est(400, 500)));
        assert!(!c.exchange, "{c:?}");
    }

    #[test]
    fn many_partitions_small_slices_or_unknown_go_through_an_exchange() {
        for (tasks, bytes, e) in [
            (4, 400 * MIB, Some(est(1_800, 65_536))),
            (4, 400 * MIB, Some(est(30, 100))),
            (12, 36 * MIB, Some(est(12, 65_536))),
            (4, 400 * MIB, None),
        ] {
            let c = choose(ExchangeMode::Auto, tasks, bytes, 2, e.as_ref());
            assert!(c.exchange, "{c:?}");
            assert_eq!(c.reducers, 4);
        }
    }

    #[test]
    fn the_mode_overrides_and_reducers_follow_slots_and_size() {
        let e = est(3, 65_536);
        assert!(choose(ExchangeMode::Always, 4, 400 * MIB, 2, Some(&e)).exchange);
        assert_eq!(choose(ExchangeMode::Always, 1, MIB, 2, None).reducers, 4);
        assert!(!choose(ExchangeMode::Never, 4, 400 * MIB, 2, None).exchange);
        assert_eq!(reducers(MIB, 8), 1);
        assert_eq!(reducers(24 * MIB, 8), 3);
        assert_eq!(reducers(u64::MAX, 1_000), MAX_REDUCERS);
    }
}
