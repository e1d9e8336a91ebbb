//! What the sales tables (`store_sales`, `web_sales`) share: the line item record, the walk
//! over blocks and groups (tickets, orders) that produces the lines, distinct items per
//! group, the prices of a line, and the table generator. What differs — the columns and the
//! keys each table draws — is a [`Channel`], implemented in each table's module next to its
//! value rules.
//!
//! A line's values come from its block's `Values` stream (see [`crate::fact`]), in this
//! order: when a line opens a group, the group's keys ([`Channel::open_group`], after the
//! group's sold date and size, which come from the date curve and the size stream); then the
//! line's null flags, its item, its own keys and its prices ([`Channel::next_line`]).

use std::marker::PhantomData;
use std::ops::Range;

use arrow::datatypes::SchemaRef;
use parquet::file::properties::WriterPropertiesBuilder;

use crate::calendar::SalesDates;
use crate::columns::{BatchBuilder, disable_dictionary};
use crate::driver::{Batches, TableGenerator, TableLayout, rows_in_batches};
use crate::fact::{GroupPlan, LineCursor};
use crate::rng::{Purpose, Rng};
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::values::{NullLanes, percent_of};

/// Line items per ticket / order (only the table's last group may hold fewer).
pub const ITEMS_PER_GROUP_MIN: u64 = 8;
pub const ITEMS_PER_GROUP_MAX: u64 = 16;
const COUPON_PERCENT_OF_LINES: u64 = 20;

/// What a sales table does differently from the other one.
pub trait Channel: 'static {
    /// TPC-DS table name.
    const NAME: &'static str;
    /// Keys the table's random streams.
    const TABLE: TableId;
    /// Columns written without dictionary encoding (see `configure`).
    const NO_DICTIONARY: &'static [&'static str];
    /// The values every line of a group shares.
    type Group: Default + Send + Sync;
    type Line: Default + Send + Sync + PushRow;

    fn schema() -> SchemaRef;
    /// Draws the shared values of a new group sold on `sold_date_sk`.
    fn open_group(dims: &Dimensions, r: &mut Rng, sold_date_sk: i32) -> Self::Group;
    /// Draws the next line of `group`, group number `number` (1-based), into `line`.
    fn next_line(
        dims: &Dimensions,
        r: &mut Rng,
        group: &Self::Group,
        number: i64,
        items: &mut DistinctItems,
        line: &mut Self::Line,
    );
}

/// A value that appends itself to a batch as one row.
pub trait PushRow {
    fn push(&self, b: &mut BatchBuilder);
}

/// One generated line item of a sales table with `K` key columns and `A` amount columns,
/// before it becomes a row.
#[derive(Clone, Debug)]
pub struct SalesLine<const K: usize, const A: usize> {
    /// The keys in column order; the value is set even where the column is null.
    pub keys: [i32; K],
    /// Whether each key is non-null (the item always is).
    pub valid: [bool; K],
    /// The ticket / order number.
    pub number: i64,
    pub quantity: i32,
    /// Amounts in cents, in column order.
    pub amounts: [i64; A],
}

impl<const K: usize, const A: usize> Default for SalesLine<K, A> {
    fn default() -> Self {
        SalesLine {
            keys: [0; K],
            valid: [false; K],
            number: 0,
            quantity: 0,
            amounts: [0; A],
        }
    }
}

impl<const K: usize, const A: usize> SalesLine<K, A> {
    pub fn key(&self, k: usize) -> Option<i32> {
        self.valid[k].then_some(self.keys[k])
    }

    /// Draws the null flags of the keys from `N` draws: every key but the item (at
    /// `item`) is nullable, and the lanes go to the nullable keys in column order.
    #[inline(always)]
    pub fn draw_valid<const N: usize>(&mut self, r: &mut Rng, item: usize) {
        debug_assert!(K <= 4 * N + 1, "not enough null lanes");
        let lanes = NullLanes::<N>::draw(r);
        for (k, v) in self.valid.iter_mut().enumerate() {
            *v = k == item || lanes.present(if k < item { k } else { k - 1 });
        }
    }
}

/// Columns: the `K` keys, the Int64 number, the Int32 quantity, the `A` amounts.
impl<const K: usize, const A: usize> PushRow for SalesLine<K, A> {
    #[inline(always)]
    fn push(&self, b: &mut BatchBuilder) {
        for k in 0..K {
            b.i32(k, self.key(k));
        }
        b.i64(K, Some(self.number));
        b.i32(K + 1, Some(self.quantity));
        for (a, &v) in self.amounts.iter().enumerate() {
            b.decimal(K + 2 + a, Some(v));
        }
    }
}

/// The items of the open group, so that its lines get distinct items.
#[derive(Default)]
pub struct DistinctItems {
    items: [i32; ITEMS_PER_GROUP_MAX as usize],
    count: usize,
}

impl DistinctItems {
    fn clear(&mut self) {
        self.count = 0;
    }

    /// A uniform item key in `1..=domain` that the group does not hold yet.
    #[inline(always)]
    pub fn draw(&mut self, r: &mut Rng, domain: u64) -> i32 {
        let item = loop {
            let candidate = 1 + r.below(domain) as i32;
            if !self.items[..self.count].contains(&candidate) {
                break candidate;
            }
        };
        self.items[self.count] = item;
        self.count += 1;
        item
    }
}

/// Uniform customer, customer_demographics, household_demographics and customer_address
/// keys, in that order.
#[inline(always)]
pub fn draw_customer_keys(dims: &Dimensions, r: &mut Rng) -> [i32; 4] {
    [
        1 + r.below(dims.customer) as i32,
        1 + r.below(dims.customer_demographics) as i32,
        1 + r.below(dims.household_demographics) as i32,
        1 + r.below(dims.customer_address) as i32,
    ]
}

/// The prices of one line item in cents, drawn as both sales tables do (see the pricing rules
/// in `store_sales`).
#[derive(Clone, Copy, Debug)]
pub struct LinePrices {
    pub quantity: i64,
    pub wholesale: i64,
    pub list: i64,
    pub sales: i64,
    pub ext_sales: i64,
    pub ext_wholesale: i64,
    pub coupon: i64,
    pub net_paid: i64,
    pub ext_tax: i64,
}

impl LinePrices {
    #[inline(always)]
    pub fn draw(r: &mut Rng) -> Self {
        let quantity = r.range_i64(1, 100);
        let wholesale = r.range_i64(100, 10_000);
        let list = percent_of(wholesale, 100 + r.range_i64(0, 100));
        let sales = percent_of(list, 100 - r.range_i64(0, 100));
        let ext_sales = quantity * sales;
        let ext_wholesale = quantity * wholesale;
        let coupon = if r.below(100) < COUPON_PERCENT_OF_LINES {
            percent_of(ext_sales, r.range_i64(1, 50))
        } else {
            0
        };
        let net_paid = ext_sales - coupon;
        let ext_tax = percent_of(net_paid, r.range_i64(0, 9));
        LinePrices {
            quantity,
            wholesale,
            list,
            sales,
            ext_sales,
            ext_wholesale,
            coupon,
            net_paid,
            ext_tax,
        }
    }

    /// The amount columns both sales tables start with: wholesale cost, list price, sales
    /// price, ext discount, ext sales price, ext wholesale cost, ext list price, ext tax,
    /// coupon.
    #[inline(always)]
    pub fn leading_amounts(&self) -> [i64; 9] {
        let q = self.quantity;
        [
            self.wholesale,
            self.list,
            self.sales,
            q * (self.list - self.sales),
            self.ext_sales,
            self.ext_wholesale,
            q * self.list,
            self.ext_tax,
            self.coupon,
        ]
    }

    pub fn net_profit(&self) -> i64 {
        self.net_paid - self.ext_wholesale
    }
}

/// The virtual line stream of a sales table: its block plan and everything needed to
/// generate any block. Shared by the sales table and its returns table.
pub struct SalesStream<C: Channel> {
    dims: Dimensions,
    plan: GroupPlan,
    dates: SalesDates,
    channel: PhantomData<fn() -> C>,
}

impl<C: Channel> SalesStream<C> {
    pub fn new(seed: u64, rows: u64, dims: Dimensions) -> Self {
        assert!(
            dims.item >= ITEMS_PER_GROUP_MAX,
            "item domain too small for distinct items per group"
        );
        let plan = GroupPlan::new(
            seed,
            C::TABLE as u64,
            rows,
            ITEMS_PER_GROUP_MIN,
            ITEMS_PER_GROUP_MAX,
        );
        SalesStream {
            dims,
            dates: SalesDates::new(plan.total_groups()),
            plan,
            channel: PhantomData,
        }
    }

    pub fn plan(&self) -> &GroupPlan {
        &self.plan
    }

    pub fn dims(&self) -> &Dimensions {
        &self.dims
    }

    /// A cursor positioned at the first row of `block`.
    pub fn cursor_at_block(&self, block: usize) -> SalesCursor<'_, C> {
        let mut cursor = SalesCursor {
            stream: self,
            block,
            values: Rng::from_seed(0),
            sizes: Rng::from_seed(0),
            rows_left_in_block: 0,
            next_group: 0,
            group: C::Group::default(),
            number: 0,
            lines_left: 0,
            items: DistinctItems::default(),
            date_pos: 0,
        };
        cursor.enter_block(block);
        cursor
    }

    /// A cursor positioned at global row `row` (replays and drops the block's earlier rows).
    pub fn cursor_at_row(&self, row: u64) -> SalesCursor<'_, C> {
        if row >= self.plan.rows() {
            return self.cursor_at_block(self.plan.blocks());
        }
        let block = self.plan.block_of_row(row);
        let mut cursor = self.cursor_at_block(block);
        let mut line = C::Line::default();
        for _ in self.plan.block_start(block)..row {
            cursor.next_into(&mut line);
        }
        cursor
    }
}

/// Walks a sales stream row by row, crossing blocks as needed.
pub struct SalesCursor<'a, C: Channel> {
    stream: &'a SalesStream<C>,
    block: usize,
    values: Rng,
    sizes: Rng,
    rows_left_in_block: u64,
    /// Global 0-based index of the next group to open.
    next_group: u64,
    /// The open group: its shared values, number and lines still to come.
    group: C::Group,
    number: i64,
    lines_left: u64,
    items: DistinctItems,
    /// Day index of the current date (see [`SalesDates::advance`]); only moves forward.
    date_pos: usize,
}

impl<C: Channel> SalesCursor<'_, C> {
    fn enter_block(&mut self, block: usize) {
        let plan = &self.stream.plan;
        self.block = block;
        if block >= plan.blocks() {
            self.rows_left_in_block = 0;
            return;
        }
        self.values = plan.block_stream(block, Purpose::Values);
        self.sizes = plan.sizes_stream(block);
        self.rows_left_in_block = plan.block_rows(block);
        self.next_group = plan.block_first_group(block);
        self.lines_left = 0;
        self.date_pos = self.stream.dates.day_index(self.next_group);
    }

    fn open_group(&mut self) {
        let g = self.next_group;
        self.next_group += 1;
        let sold_date_sk = self.stream.dates.advance(g, &mut self.date_pos);
        self.lines_left = self
            .stream
            .plan
            .next_group_size(&mut self.sizes, self.rows_left_in_block);
        self.number = g as i64 + 1;
        self.items.clear();
        self.group = C::open_group(&self.stream.dims, &mut self.values, sold_date_sk);
    }

    /// Writes the next line item into `line`; false at the end of the table.
    pub fn next_into(&mut self, line: &mut C::Line) -> bool {
        if self.rows_left_in_block == 0 {
            if self.block + 1 >= self.stream.plan.blocks() {
                return false;
            }
            self.enter_block(self.block + 1);
        }
        if self.lines_left == 0 {
            self.open_group();
        }
        self.rows_left_in_block -= 1;
        self.lines_left -= 1;
        C::next_line(
            &self.stream.dims,
            &mut self.values,
            &self.group,
            self.number,
            &mut self.items,
            line,
        );
        true
    }
}

impl<C: Channel> LineCursor for SalesCursor<'_, C> {
    type Line = C::Line;
    fn next_into(&mut self, line: &mut C::Line) -> bool {
        SalesCursor::next_into(self, line)
    }
}

/// A sales table: its line stream plus its file split.
pub struct Sales<C: Channel> {
    stream: SalesStream<C>,
    layout: TableLayout,
}

impl<C: Channel> Sales<C> {
    pub fn new(seed: u64, rows: u64, files: usize, dims: Dimensions) -> Self {
        Sales {
            layout: TableLayout::new(C::NAME, C::schema(), rows, files),
            stream: SalesStream::new(seed, rows, dims),
        }
    }

    /// Tickets / orders in the table.
    pub fn total_groups(&self) -> u64 {
        self.stream.plan.total_groups()
    }
}

impl<C: Channel> TableGenerator for Sales<C> {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn row_batches(&self, rows: Range<u64>, batch_rows: usize) -> Batches<'_> {
        let mut cursor = self.stream.cursor_at_row(rows.start);
        let mut line = C::Line::default();
        rows_in_batches(self.layout.schema(), rows, batch_rows, move |b, _| {
            let more = cursor.next_into(&mut line);
            assert!(more, "{} stream ended before its planned rows", C::NAME);
            line.push(b);
        })
    }

    fn configure(&self, props: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
        disable_dictionary(props, C::NO_DICTIONARY)
    }
}
