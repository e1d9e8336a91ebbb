//! Block structure shared by the fact tables (`store_sales`, `web_sales`) and the selection
//! of their returned line items (`store_returns`, `web_returns`).
//!
//! # Blocks
//!
//! A sales table is a sequence of *groups* (a store ticket, a web order) of `min..=max` line
//! items. The table is cut into **blocks** of whole groups: a block draws group sizes from its
//! own random stream until it holds at least [`BLOCK_TARGET_ROWS`] rows. Only the very last
//! group of the table is cut short, so that the table has exactly the requested row count.
//! Every block has its own random streams, keyed by the block index, so a block can be
//! generated without generating the blocks before it. Output files are plain row ranges
//! over the blocks: a file that starts inside a block replays that block's first rows and
//! drops them. The rows of a table are therefore a pure function of (table, seed, rows),
//! whatever the number of files, threads or batch size.
//!
//! A planning pass replays every block's group-size stream (one draw per group, about
//! `rows / 12` draws) to learn each block's first row and first group number, so group
//! numbers are dense (1..=G) over the whole table.
//!
//! # Returns
//!
//! A returns table holds exactly `R` of the `S` sales line items, each at most once. Block
//! `b` of the sales table, holding sales rows `start(b)..start(b+1)`, contributes exactly
//! `floor(start(b+1)·R/S) − floor(start(b)·R/S)` returns, chosen by selection sampling
//! (Knuth's algorithm S) with one draw per sales row from the block's own selection stream:
//! row `i` of `n` is taken with probability `(wanted − taken) / (n − i)`. The selection is
//! therefore exact, uniform, streaming and local to a block, and the returns keep the sales
//! order. Each return draws its own values (quantity, amounts, ...) from a stream keyed by
//! its return number.

use crate::rng::{Purpose, Rng};

/// Minimum rows per block (the last block of a table may hold fewer).
pub const BLOCK_TARGET_ROWS: u64 = 1 << 16;

/// First row and first group of every block of one sales table.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    rows: u64,
    /// `block_start[b]` is the first row of block `b`; one extra entry holds `rows`.
    block_start: Vec<u64>,
    /// 0-based index of the first group of each block.
    block_first_group: Vec<u64>,
    total_groups: u64,
    seed: u64,
    table_id: u64,
    min_group: u64,
    max_group: u64,
}

impl GroupPlan {
    /// Plans a table of `rows` rows made of groups of `min_group..=max_group` rows.
    pub fn new(seed: u64, table_id: u64, rows: u64, min_group: u64, max_group: u64) -> Self {
        assert!(
            0 < min_group && min_group <= max_group,
            "group sizes must be positive"
        );
        let mut block_start = vec![0];
        let mut block_first_group = Vec::new();
        let mut row = 0u64;
        let mut groups = 0u64;
        let mut block = 0u64;
        while row < rows {
            block_first_group.push(groups);
            let mut sizes = Self::sizes_stream_of(seed, table_id, block);
            let mut in_block = 0u64;
            while in_block < BLOCK_TARGET_ROWS && row < rows {
                let size = sizes
                    .range_i64(min_group as i64, max_group as i64)
                    .unsigned_abs();
                let take = size.min(rows - row);
                in_block += take;
                row += take;
                groups += 1;
            }
            block_start.push(row);
            block += 1;
        }
        GroupPlan {
            rows,
            block_start,
            block_first_group,
            total_groups: groups,
            seed,
            table_id,
            min_group,
            max_group,
        }
    }

    fn sizes_stream_of(seed: u64, table_id: u64, block: u64) -> Rng {
        Rng::stream(seed, table_id, block, Purpose::GroupSizes)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn blocks(&self) -> usize {
        self.block_first_group.len()
    }

    pub fn total_groups(&self) -> u64 {
        self.total_groups
    }

    pub fn block_start(&self, block: usize) -> u64 {
        self.block_start[block]
    }

    pub fn block_rows(&self, block: usize) -> u64 {
        self.block_start[block + 1] - self.block_start[block]
    }

    pub fn block_first_group(&self, block: usize) -> u64 {
        self.block_first_group[block]
    }

    /// The block holding row `row` (`row < rows`).
    pub fn block_of_row(&self, row: u64) -> usize {
        debug_assert!(row < self.rows);
        self.block_start.partition_point(|&s| s <= row) - 1
    }

    /// The group-size stream of a block; the generator must draw one size per group with
    /// [`GroupPlan::next_group_size`], exactly as the planning pass did.
    pub fn sizes_stream(&self, block: usize) -> Rng {
        Self::sizes_stream_of(self.seed, self.table_id, block as u64)
    }

    /// Draws the next group size from a block's size stream, cut to the rows left in the
    /// block (only the table's last group is ever cut).
    pub fn next_group_size(&self, sizes: &mut Rng, rows_left_in_block: u64) -> u64 {
        let size = sizes
            .range_i64(self.min_group as i64, self.max_group as i64)
            .unsigned_abs();
        size.min(rows_left_in_block)
    }

    /// A random stream for `purpose` that belongs to one block of this table.
    pub fn block_stream(&self, block: usize, purpose: Purpose) -> Rng {
        Rng::stream(self.seed, self.table_id, block as u64, purpose)
    }
}

/// Which sales rows are returned: exactly `returns` of the plan's rows (see module docs).
#[derive(Clone, Debug)]
pub struct ReturnsPlan {
    sales_rows: u64,
    returns: u64,
    seed: u64,
    /// Table id of the returns table (keys its selection and value streams).
    table_id: u64,
}

impl ReturnsPlan {
    pub fn new(seed: u64, returns_table_id: u64, sales_rows: u64, returns: u64) -> Self {
        assert!(
            returns <= sales_rows,
            "cannot return more line items ({returns}) than were sold ({sales_rows})"
        );
        ReturnsPlan {
            sales_rows,
            returns,
            seed,
            table_id: returns_table_id,
        }
    }

    pub fn returns(&self) -> u64 {
        self.returns
    }

    /// Returns taken from sales rows `0..sales_row` when `sales_row` is a block start.
    pub fn returns_before(&self, sales_row: u64) -> u64 {
        if self.sales_rows == 0 {
            return 0;
        }
        (u128::from(sales_row) * u128::from(self.returns) / u128::from(self.sales_rows)) as u64
    }

    /// The block holding return number `index` (0-based, `index < returns`).
    pub fn block_of_return(&self, sales: &GroupPlan, index: u64) -> usize {
        debug_assert!(index < self.returns);
        // Last block whose first return is <= index.
        let (mut lo, mut hi) = (0usize, sales.blocks());
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.returns_before(sales.block_start(mid)) <= index {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The selection state of one block of the sales table.
    pub fn block_selector(&self, sales: &GroupPlan, block: usize) -> Selector {
        let first = self.returns_before(sales.block_start(block));
        let next = self.returns_before(sales.block_start(block) + sales.block_rows(block));
        Selector {
            rng: Rng::stream(self.seed, self.table_id, block as u64, Purpose::Selection),
            rows_left: sales.block_rows(block),
            wanted_left: next - first,
            first_return: first,
        }
    }

    /// The random stream for the values of return number `index` (one stream per return,
    /// so a file can start at any return without replaying the values before it).
    pub fn values_stream(&self, index: u64) -> Rng {
        Rng::stream(self.seed, self.table_id, index, Purpose::Values)
    }
}

/// `amount × part / whole` rounded half up, for `amount >= 0` and `0 < part <= whole`: the
/// share of a line's amount that a partial return carries.
pub fn share(amount: i64, part: i64, whole: i64) -> i64 {
    debug_assert!(amount >= 0 && 0 < part && part <= whole);
    (2 * amount * part + whole) / (2 * whole)
}

/// Algorithm S over one block: call [`Selector::take`] once per sales row, in order.
#[derive(Clone, Debug)]
pub struct Selector {
    rng: Rng,
    rows_left: u64,
    wanted_left: u64,
    /// Global index of the block's first return.
    pub first_return: u64,
}

impl Selector {
    /// Whether the next sales row is returned. Takes exactly the block's quota.
    pub fn take(&mut self) -> bool {
        assert!(
            self.rows_left > 0,
            "selector asked past the end of its block"
        );
        let take = self.rng.below(self.rows_left) < self.wanted_left;
        self.rows_left -= 1;
        if take {
            self.wanted_left -= 1;
        }
        take
    }
}

/// A row-by-row walk over a sales table (see [`crate::tables::sales::SalesCursor`]).
pub trait LineCursor {
    type Line: Default;
    /// Writes the next line item into `line`; false at the end of the table.
    fn next_into(&mut self, line: &mut Self::Line) -> bool;
}

/// Walks the returned line items of a sales table in sales order, starting at a given
/// return number: yields each returned sales line with its global return number (0-based).
pub struct ReturnsWalker<'a, C: LineCursor> {
    returns: &'a ReturnsPlan,
    sales: &'a GroupPlan,
    cursor: C,
    block: usize,
    selector: Selector,
    rows_left_in_block: u64,
    next_return: u64,
    line: C::Line,
}

impl<'a, C: LineCursor> ReturnsWalker<'a, C> {
    /// `cursor_at_block` must return a cursor at the first row of the given sales block.
    pub fn new(
        returns: &'a ReturnsPlan,
        sales: &'a GroupPlan,
        first: u64,
        cursor_at_block: impl FnOnce(usize) -> C,
    ) -> Self {
        assert!(sales.blocks() > 0, "returns of an empty sales table");
        let block = if first < returns.returns() {
            returns.block_of_return(sales, first)
        } else {
            sales.blocks().saturating_sub(1)
        };
        let selector = returns.block_selector(sales, block);
        let mut walker = ReturnsWalker {
            returns,
            sales,
            cursor: cursor_at_block(block),
            block,
            next_return: selector.first_return,
            selector,
            rows_left_in_block: sales.block_rows(block),
            line: C::Line::default(),
        };
        while walker.next_return < first {
            if walker.advance().is_none() {
                break;
            }
        }
        walker
    }

    /// The next returned sales line and its return number, or `None` after the last one.
    pub fn advance(&mut self) -> Option<(u64, &C::Line)> {
        loop {
            if self.rows_left_in_block == 0 {
                if self.block + 1 >= self.sales.blocks() {
                    return None;
                }
                self.block += 1;
                self.selector = self.returns.block_selector(self.sales, self.block);
                self.rows_left_in_block = self.sales.block_rows(self.block);
            }
            if !self.cursor.next_into(&mut self.line) {
                return None;
            }
            self.rows_left_in_block -= 1;
            if self.selector.take() {
                let index = self.next_return;
                self.next_return += 1;
                return Some((index, &self.line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_table_with_whole_groups() {
        let plan = GroupPlan::new(3, 99, 300_001, 8, 16);
        assert_eq!(plan.block_start(0), 0);
        assert_eq!(plan.block_start(plan.blocks()), 300_001);
        for b in 0..plan.blocks() - 1 {
            let n = plan.block_rows(b);
            assert!(
                (BLOCK_TARGET_ROWS..BLOCK_TARGET_ROWS + 16).contains(&n),
                "{n}"
            );
        }
        // Replaying the size streams gives back the planned rows and group numbers.
        let mut groups = 0;
        for b in 0..plan.blocks() {
            assert_eq!(plan.block_first_group(b), groups);
            let mut sizes = plan.sizes_stream(b);
            let mut left = plan.block_rows(b);
            while left > 0 {
                let s = plan.next_group_size(&mut sizes, left);
                assert!((1..=16).contains(&s));
                assert!(
                    s >= 8 || (b == plan.blocks() - 1 && s == left),
                    "short group"
                );
                left -= s;
                groups += 1;
            }
        }
        assert_eq!(groups, plan.total_groups());
        assert_eq!(plan.block_of_row(0), 0);
        assert_eq!(plan.block_of_row(plan.block_start(1)), 1);
        assert_eq!(plan.block_of_row(plan.block_start(1) - 1), 0);
        assert_eq!(plan.block_of_row(300_000), plan.blocks() - 1);
    }

    #[test]
    fn selection_is_exact_per_block_and_overall() {
        let sales = GroupPlan::new(1, 99, 250_000, 8, 16);
        let returns = ReturnsPlan::new(1, 100, 250_000, 24_950);
        let mut total = 0;
        for b in 0..sales.blocks() {
            let mut sel = returns.block_selector(&sales, b);
            assert_eq!(sel.first_return, total);
            let taken = (0..sales.block_rows(b)).filter(|_| sel.take()).count() as u64;
            let expected = returns.returns_before(sales.block_start(b) + sales.block_rows(b))
                - returns.returns_before(sales.block_start(b));
            assert_eq!(taken, expected);
            total += taken;
            if b > 0 {
                assert_eq!(returns.block_of_return(&sales, sel.first_return), b);
            }
        }
        assert_eq!(total, 24_950);
        assert_eq!(returns.block_of_return(&sales, 24_949), sales.blocks() - 1);
    }

    #[test]
    fn tiny_tables_plan() {
        let plan = GroupPlan::new(0, 1, 5, 8, 16);
        assert_eq!(plan.blocks(), 1);
        assert_eq!(plan.block_rows(0), 5);
        assert_eq!(plan.total_groups(), 1);
        let empty = GroupPlan::new(0, 1, 0, 8, 16);
        assert_eq!(empty.blocks(), 0);
    }

    /// A cursor over "lines" that are just their row numbers.
    struct Rows(u64, u64);
    impl LineCursor for Rows {
        type Line = u64;
        fn next_into(&mut self, line: &mut u64) -> bool {
            if self.0 >= self.1 {
                return false;
            }
            *line = self.0;
            self.0 += 1;
            true
        }
    }

    #[test]
    fn walker_starts_anywhere_and_agrees_with_a_full_walk() {
        let sales = GroupPlan::new(4, 99, 200_000, 8, 16);
        let returns = ReturnsPlan::new(4, 100, 200_000, 19_970);
        let cursor = |b: usize| Rows(sales.block_start(b), sales.rows());
        let mut all = Vec::new();
        let mut w = ReturnsWalker::new(&returns, &sales, 0, cursor);
        while let Some((i, &row)) = w.advance() {
            assert_eq!(i as usize, all.len());
            all.push(row);
        }
        assert_eq!(all.len(), 19_970);
        assert!(
            all.windows(2).all(|p| p[0] < p[1]),
            "each sale returned once, in order"
        );
        for first in [1u64, 6_000, 6_543, 19_969] {
            let mut w = ReturnsWalker::new(&returns, &sales, first, cursor);
            let (i, &row) = w.advance().unwrap();
            assert_eq!((i, row), (first, all[first as usize]));
        }
        let mut end = ReturnsWalker::new(&returns, &sales, 19_970, cursor);
        assert!(end.advance().is_none());
    }
}
