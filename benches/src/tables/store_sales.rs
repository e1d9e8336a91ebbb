//! `store_sales`: the TPC-DS store channel fact table, one row per line item of a ticket.
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`):
//!
//! * Tickets hold 8..=16 line items; only the table's last ticket may hold fewer. All line
//!   items of a ticket share `ss_ticket_number`, `ss_sold_date_sk`, `ss_sold_time_sk`,
//!   `ss_customer_sk`, `ss_cdemo_sk`, `ss_hdemo_sk`, `ss_addr_sk` and `ss_store_sk` (before
//!   nulls are applied); items within a ticket are distinct, so (`ss_ticket_number`,
//!   `ss_item_sk`) is unique. Ticket numbers are dense, 1..=T over the whole table,
//!   increasing with row order; a ticket never spans two blocks (see [`crate::fact`]).
//! * `ss_sold_date_sk` is in 2450816..=2452642 (1998-01-02..2003-01-02), non-decreasing with
//!   the ticket number, with more sales per day in Aug-Oct and most in Nov-Dec.
//!   `ss_sold_time_sk` is in 28800..=75599 (store hours 08:00:00-20:59:59).
//! * Keys are uniform over their dimension (sizes from [`crate::scale::Dimensions`]):
//!   item, customer, customer_demographics, household_demographics, customer_address,
//!   store, promotion; all are 1-based.
//! * Each nullable key column (every key except `ss_item_sk` and `ss_ticket_number`, which
//!   are the primary key) is null in about 4.5% of rows, independently per row and column,
//!   as in dsdgen output. Quantities and amounts are never null (the schema still declares
//!   them nullable, as the TPC-DS DDL does).
//! * Pricing, in cents, all rounded half up:
//!   `ss_quantity` 1..=100; `ss_wholesale_cost` 1.00..=100.00;
//!   `ss_list_price = wholesale × (1 + markup)`, markup 0%..=100%;
//!   `ss_sales_price = list × (1 − discount)`, discount 0%..=100%;
//!   `ss_ext_discount_amt = quantity × (list − sales)`; `ss_ext_sales_price = quantity × sales`;
//!   `ss_ext_wholesale_cost = quantity × wholesale`; `ss_ext_list_price = quantity × list`;
//!   `ss_coupon_amt` is 0 except on ~20% of line items, where it is 1%..=50% of the extended
//!   sales price; `ss_net_paid = ext_sales − coupon`; `ss_ext_tax = net_paid × tax`, tax
//!   0%..=9%; `ss_net_paid_inc_tax = net_paid + ext_tax`;
//!   `ss_net_profit = net_paid − ext_wholesale_cost` (may be negative).
//!   Every amount fits `Decimal(7,2)`: the largest, net_paid_inc_tax, is at most 21,800.00.
//!
//! The rows are a pure function of (seed, rows): [`StoreSalesStream`] produces them block by
//! block, and `store_returns` replays the same stream to pick the line items it returns.

use std::ops::Range;

use arrow::datatypes::SchemaRef;
use parquet::file::properties::WriterPropertiesBuilder;

use crate::calendar::{STORE_CLOSE_TIME_SK, STORE_OPEN_TIME_SK, SalesDates};
use crate::columns::{disable_dictionary, fact_schema};
use crate::driver::{Batches, TableGenerator, TableLayout, rows_in_batches};
use crate::fact::{GroupPlan, LineCursor};
use crate::rng::{Purpose, Rng};
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::values::{NULL_PER_65536, percent_of};

pub const ITEMS_PER_TICKET_MIN: u64 = 8;
pub const ITEMS_PER_TICKET_MAX: u64 = 16;
const COUPON_PERCENT_OF_LINES: u64 = 20;

/// Column names in TPC-DS order. The first nine are Int32 keys, then the Int64 ticket
/// number, the Int32 quantity and twelve Decimal(7,2) amounts.
pub const COLUMNS: [&str; 23] = [
    "ss_sold_date_sk",
    "ss_sold_time_sk",
    "ss_item_sk",
    "ss_customer_sk",
    "ss_cdemo_sk",
    "ss_hdemo_sk",
    "ss_addr_sk",
    "ss_store_sk",
    "ss_promo_sk",
    "ss_ticket_number",
    "ss_quantity",
    "ss_wholesale_cost",
    "ss_list_price",
    "ss_sales_price",
    "ss_ext_discount_amt",
    "ss_ext_sales_price",
    "ss_ext_wholesale_cost",
    "ss_ext_list_price",
    "ss_ext_tax",
    "ss_coupon_amt",
    "ss_net_paid",
    "ss_net_paid_inc_tax",
    "ss_net_profit",
];

/// Columns with too many distinct values per row group for a dictionary to pay off: the
/// dictionary attempt would cost a hash lookup per value (most of the generator's time)
/// and then overflow the dictionary page limit and fall back to plain encoding anyway.
const NO_DICTIONARY: [&str; 12] = [
    "ss_ticket_number",
    "ss_customer_sk",
    "ss_cdemo_sk",
    "ss_ext_discount_amt",
    "ss_ext_sales_price",
    "ss_ext_wholesale_cost",
    "ss_ext_list_price",
    "ss_ext_tax",
    "ss_coupon_amt",
    "ss_net_paid",
    "ss_net_paid_inc_tax",
    "ss_net_profit",
];

pub fn schema() -> SchemaRef {
    // TPC-DS DDL: only the primary key (ss_item_sk, ss_ticket_number) is NOT NULL.
    fact_schema(&COLUMNS, "ss_item_sk", "ss_ticket_number")
}

/// Key positions in [`SaleLine::keys`].
pub const K_DATE: usize = 0;
pub const K_TIME: usize = 1;
pub const K_ITEM: usize = 2;
pub const K_CUSTOMER: usize = 3;
pub const K_CDEMO: usize = 4;
pub const K_HDEMO: usize = 5;
pub const K_ADDR: usize = 6;
pub const K_STORE: usize = 7;
pub const K_PROMO: usize = 8;

/// Amount positions in [`SaleLine::amounts`] (cents), in column order.
pub const A_WHOLESALE: usize = 0;
pub const A_LIST: usize = 1;
pub const A_SALES: usize = 2;
pub const A_EXT_DISCOUNT: usize = 3;
pub const A_EXT_SALES: usize = 4;
pub const A_EXT_WHOLESALE: usize = 5;
pub const A_EXT_LIST: usize = 6;
pub const A_EXT_TAX: usize = 7;
pub const A_COUPON: usize = 8;
pub const A_NET_PAID: usize = 9;
pub const A_NET_PAID_INC_TAX: usize = 10;
pub const A_NET_PROFIT: usize = 11;

/// One generated line item, before it becomes a row.
#[derive(Clone, Debug, Default)]
pub struct SaleLine {
    /// The nine keys in column order; the value is set even where the column is null.
    pub keys: [i32; 9],
    /// Whether each key is non-null (`ss_item_sk` always is).
    pub valid: [bool; 9],
    pub ticket: i64,
    pub quantity: i32,
    pub amounts: [i64; 12],
}

impl SaleLine {
    pub fn key(&self, k: usize) -> Option<i32> {
        self.valid[k].then_some(self.keys[k])
    }
}

/// The virtual `store_sales` line stream: its block plan and everything needed to generate
/// any block. Shared by `store_sales` and `store_returns`.
pub struct StoreSalesStream {
    dims: Dimensions,
    plan: GroupPlan,
    dates: SalesDates,
}

impl StoreSalesStream {
    pub fn new(seed: u64, rows: u64, dims: Dimensions) -> Self {
        assert!(
            dims.item >= ITEMS_PER_TICKET_MAX,
            "item domain too small for distinct items per ticket"
        );
        let plan = GroupPlan::new(
            seed,
            TableId::StoreSales as u64,
            rows,
            ITEMS_PER_TICKET_MIN,
            ITEMS_PER_TICKET_MAX,
        );
        StoreSalesStream {
            dims,
            dates: SalesDates::new(plan.total_groups()),
            plan,
        }
    }

    pub fn plan(&self) -> &GroupPlan {
        &self.plan
    }

    pub fn dims(&self) -> &Dimensions {
        &self.dims
    }

    pub fn total_tickets(&self) -> u64 {
        self.plan.total_groups()
    }

    /// A cursor positioned at the first row of `block`.
    pub fn cursor_at_block(&self, block: usize) -> SalesCursor<'_> {
        let mut cursor = SalesCursor {
            stream: self,
            block,
            values: Rng::from_seed(0),
            sizes: Rng::from_seed(0),
            rows_left_in_block: 0,
            next_ticket: 0,
            ticket: Ticket::default(),
            date_pos: 0,
        };
        cursor.enter_block(block);
        cursor
    }

    /// A cursor positioned at global row `row` (replays and drops the block's earlier rows).
    pub fn cursor_at_row(&self, row: u64) -> SalesCursor<'_> {
        if row >= self.plan.rows() {
            let mut c = self.cursor_at_block(self.plan.blocks());
            c.rows_left_in_block = 0;
            return c;
        }
        let block = self.plan.block_of_row(row);
        let mut cursor = self.cursor_at_block(block);
        let mut line = SaleLine::default();
        for _ in self.plan.block_start(block)..row {
            cursor.next_into(&mut line);
        }
        cursor
    }
}

#[derive(Default)]
struct Ticket {
    lines_left: u64,
    number: i64,
    date_sk: i32,
    time_sk: i32,
    customer_sk: i32,
    cdemo_sk: i32,
    hdemo_sk: i32,
    addr_sk: i32,
    store_sk: i32,
    items: [i32; ITEMS_PER_TICKET_MAX as usize],
    item_count: usize,
}

/// Walks the sales stream row by row, crossing blocks as needed.
pub struct SalesCursor<'a> {
    stream: &'a StoreSalesStream,
    block: usize,
    values: Rng,
    sizes: Rng,
    rows_left_in_block: u64,
    /// Global 0-based index of the next ticket to open.
    next_ticket: u64,
    ticket: Ticket,
    /// Day index of the current date (see [`SalesDates::advance`]); only moves forward.
    date_pos: usize,
}

impl SalesCursor<'_> {
    /// The sales block the next row comes from.
    pub fn block(&self) -> usize {
        self.block
    }

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
        self.next_ticket = plan.block_first_group(block);
        self.ticket = Ticket::default();
        self.date_pos = self.stream.dates.day_index(self.next_ticket);
    }

    fn open_ticket(&mut self) {
        let dims = self.stream.dims;
        let g = self.next_ticket;
        self.next_ticket += 1;
        let date_sk = self.stream.dates.advance(g, &mut self.date_pos);
        let lines = self
            .stream
            .plan
            .next_group_size(&mut self.sizes, self.rows_left_in_block);
        let r = &mut self.values;
        self.ticket = Ticket {
            lines_left: lines,
            number: g as i64 + 1,
            date_sk,
            time_sk: r.range_i32(STORE_OPEN_TIME_SK, STORE_CLOSE_TIME_SK),
            customer_sk: 1 + r.below(dims.customer) as i32,
            cdemo_sk: 1 + r.below(dims.customer_demographics) as i32,
            hdemo_sk: 1 + r.below(dims.household_demographics) as i32,
            addr_sk: 1 + r.below(dims.customer_address) as i32,
            store_sk: 1 + r.below(dims.store) as i32,
            items: [0; ITEMS_PER_TICKET_MAX as usize],
            item_count: 0,
        };
    }

    /// Writes the next line item into `line`; false at the end of the table.
    pub fn next_into(&mut self, line: &mut SaleLine) -> bool {
        if self.rows_left_in_block == 0 {
            if self.block + 1 >= self.stream.plan.blocks() {
                return false;
            }
            self.enter_block(self.block + 1);
        }
        if self.ticket.lines_left == 0 {
            self.open_ticket();
        }
        self.rows_left_in_block -= 1;
        self.ticket.lines_left -= 1;
        let dims = self.stream.dims;
        let r = &mut self.values;
        let t = &mut self.ticket;

        // Nulls: eight 16-bit lanes from two draws, one lane per nullable key.
        let (n0, n1) = (r.next_u64(), r.next_u64());
        let lane = |i: usize| {
            let bits = if i < 4 { n0 } else { n1 };
            (bits >> ((i % 4) * 16)) & 0xFFFF >= NULL_PER_65536
        };
        line.valid = [
            lane(0),
            lane(1),
            true,
            lane(2),
            lane(3),
            lane(4),
            lane(5),
            lane(6),
            lane(7),
        ];

        let item = loop {
            let candidate = 1 + r.below(dims.item) as i32;
            if !t.items[..t.item_count].contains(&candidate) {
                break candidate;
            }
        };
        t.items[t.item_count] = item;
        t.item_count += 1;

        line.keys[K_DATE] = t.date_sk;
        line.keys[K_TIME] = t.time_sk;
        line.keys[K_ITEM] = item;
        line.keys[K_CUSTOMER] = t.customer_sk;
        line.keys[K_CDEMO] = t.cdemo_sk;
        line.keys[K_HDEMO] = t.hdemo_sk;
        line.keys[K_ADDR] = t.addr_sk;
        line.keys[K_STORE] = t.store_sk;
        line.keys[K_PROMO] = 1 + r.below(dims.promotion) as i32;
        line.ticket = t.number;

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
        line.quantity = quantity as i32;
        line.amounts = [
            wholesale,
            list,
            sales,
            quantity * (list - sales),
            ext_sales,
            ext_wholesale,
            quantity * list,
            ext_tax,
            coupon,
            net_paid,
            net_paid + ext_tax,
            net_paid - ext_wholesale,
        ];
        true
    }
}

impl LineCursor for SalesCursor<'_> {
    type Line = SaleLine;
    fn next_into(&mut self, line: &mut SaleLine) -> bool {
        SalesCursor::next_into(self, line)
    }
}

/// Plan and shared state of one `store_sales` generation: the stream plus its file split.
pub struct StoreSales {
    stream: StoreSalesStream,
    layout: TableLayout,
}

impl StoreSales {
    pub fn new(seed: u64, rows: u64, files: usize, dims: Dimensions) -> Self {
        StoreSales {
            layout: TableLayout::new("store_sales", schema(), rows, files),
            stream: StoreSalesStream::new(seed, rows, dims),
        }
    }

    pub fn total_tickets(&self) -> u64 {
        self.stream.total_tickets()
    }
}

impl TableGenerator for StoreSales {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn row_batches(&self, rows: Range<u64>, batch_rows: usize) -> Batches<'_> {
        let mut cursor = self.stream.cursor_at_row(rows.start);
        let mut line = SaleLine::default();
        rows_in_batches(self.layout.schema(), rows, batch_rows, move |b, _| {
            let more = cursor.next_into(&mut line);
            assert!(more, "store_sales stream ended before its planned rows");
            for k in 0..9 {
                b.i32(k, line.key(k));
            }
            b.i64(9, Some(line.ticket));
            b.i32(10, Some(line.quantity));
            for (a, &v) in line.amounts.iter().enumerate() {
                b.decimal(11 + a, Some(v));
            }
        })
    }

    fn configure(&self, props: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
        disable_dictionary(props, &NO_DICTIONARY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};
    use std::collections::HashSet;

    fn generate(seed: u64, rows: u64, files: usize, batch_rows: usize) -> Vec<Vec<RecordBatch>> {
        let t = StoreSales::new(seed, rows, files, Dimensions::at_scale(1.0));
        (0..files)
            .map(|f| t.file_batches(f, batch_rows).collect())
            .collect()
    }

    fn all(files: &[Vec<RecordBatch>]) -> RecordBatch {
        let batches: Vec<RecordBatch> = files.iter().flatten().cloned().collect();
        arrow::compute::concat_batches(&schema(), &batches).unwrap()
    }

    fn i32s(b: &RecordBatch, name: &str) -> Vec<Option<i32>> {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Int32Type>()
            .iter()
            .collect()
    }

    fn dec(b: &RecordBatch, name: &str) -> Vec<i128> {
        let a = b
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Decimal128Type>();
        assert_eq!(a.null_count(), 0, "{name}");
        a.values().to_vec()
    }

    #[test]
    fn deterministic_and_independent_of_batch_size_and_files() {
        let a = generate(11, 150_000, 3, 4096);
        let b = generate(11, 150_000, 3, 50_000);
        for (fa, fb) in a.iter().zip(&b) {
            let ca = arrow::compute::concat_batches(&schema(), fa).unwrap();
            let cb = arrow::compute::concat_batches(&schema(), fb).unwrap();
            assert_eq!(ca, cb);
        }
        // The rows do not depend on how they are split into files.
        let one = generate(11, 150_000, 1, 65_536);
        let seven = generate(11, 150_000, 7, 10_000);
        assert_eq!(all(&a), all(&one));
        assert_eq!(all(&a), all(&seven));
        let c = generate(12, 150_000, 3, 4096);
        assert_ne!(a[0][0], c[0][0]);
    }

    #[test]
    fn value_rules_hold() {
        let files = generate(5, 160_000, 4, 10_000);
        let dims = Dimensions::at_scale(1.0);
        let mut ticket_items: HashSet<(i64, i32)> = HashSet::new();
        let mut ticket_sizes: Vec<usize> = Vec::new();
        let mut last_ticket = 0i64;
        let mut last_date = 0i32;
        let mut rows = 0usize;
        let mut nulls = 0usize;
        let mut coupons = 0usize;
        for file in &files {
            for b in file {
                rows += b.num_rows();
                assert_eq!(b.schema(), schema());
                let ticket: Vec<i64> = b
                    .column_by_name("ss_ticket_number")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec();
                let date = i32s(b, "ss_sold_date_sk");
                let time = i32s(b, "ss_sold_time_sk");
                let item = i32s(b, "ss_item_sk");
                let store = i32s(b, "ss_store_sk");
                let qty = i32s(b, "ss_quantity");
                nulls += b.column_by_name("ss_customer_sk").unwrap().null_count();
                let [w, l, s, ed, es, ew, el, et, cp, np, npt, pr] = [
                    "ss_wholesale_cost",
                    "ss_list_price",
                    "ss_sales_price",
                    "ss_ext_discount_amt",
                    "ss_ext_sales_price",
                    "ss_ext_wholesale_cost",
                    "ss_ext_list_price",
                    "ss_ext_tax",
                    "ss_coupon_amt",
                    "ss_net_paid",
                    "ss_net_paid_inc_tax",
                    "ss_net_profit",
                ]
                .map(|n| dec(b, n));
                for i in 0..b.num_rows() {
                    assert!(ticket[i] == last_ticket || ticket[i] == last_ticket + 1);
                    if ticket[i] != last_ticket {
                        ticket_sizes.push(0);
                    }
                    *ticket_sizes.last_mut().unwrap() += 1;
                    last_ticket = ticket[i];
                    if let Some(d) = date[i] {
                        assert!((2_450_816..=2_452_642).contains(&d));
                        assert!(d >= last_date);
                        last_date = d;
                    }
                    if let Some(t) = time[i] {
                        assert!((28_800..=75_599).contains(&t));
                    }
                    if let Some(st) = store[i] {
                        assert!((1..=dims.store as i32).contains(&st));
                    }
                    let it = item[i].unwrap();
                    assert!((1..=dims.item as i32).contains(&it));
                    assert!(ticket_items.insert((ticket[i], it)), "duplicate item");
                    let q = i128::from(qty[i].unwrap());
                    assert!((1..=100).contains(&q));
                    assert!((100..=10_000).contains(&w[i]));
                    assert!(w[i] <= l[i] && l[i] <= 2 * w[i]);
                    assert!(0 <= s[i] && s[i] <= l[i]);
                    assert_eq!(ed[i], q * (l[i] - s[i]));
                    assert_eq!(es[i], q * s[i]);
                    assert_eq!(ew[i], q * w[i]);
                    assert_eq!(el[i], q * l[i]);
                    assert!(0 <= cp[i] && cp[i] <= es[i]);
                    coupons += usize::from(cp[i] > 0);
                    assert_eq!(np[i], es[i] - cp[i]);
                    assert!(0 <= et[i] && et[i] * 100 <= np[i] * 9 + 50);
                    assert_eq!(npt[i], np[i] + et[i]);
                    assert_eq!(pr[i], np[i] - ew[i]);
                    assert!(npt[i] <= 9_999_999);
                }
            }
        }
        assert_eq!(rows, 160_000);
        // Only the last ticket of the table may be short.
        let (last, whole) = ticket_sizes.split_last().unwrap();
        assert!(whole.iter().all(|&n| (8..=16).contains(&n)));
        assert!((1..=16).contains(last));
        let null_fraction = nulls as f64 / rows as f64;
        assert!((0.035..0.055).contains(&null_fraction), "{null_fraction}");
        let coupon_fraction = coupons as f64 / rows as f64;
        assert!((0.15..0.25).contains(&coupon_fraction), "{coupon_fraction}");
        let tickets = StoreSales::new(5, 160_000, 4, dims).total_tickets();
        assert_eq!(last_ticket as u64, tickets);
        assert!((160_000 / 16..=160_000 / 8 + 1).contains(&tickets));
    }

    #[test]
    fn cursor_at_row_matches_a_full_walk() {
        let stream = StoreSalesStream::new(2, 140_000, Dimensions::at_scale(1.0));
        let mut full = stream.cursor_at_row(0);
        let mut lines = Vec::new();
        let mut line = SaleLine::default();
        while full.next_into(&mut line) {
            lines.push((line.ticket, line.keys, line.amounts));
        }
        assert_eq!(lines.len(), 140_000);
        for row in [1u64, 65_535, 65_536, 70_000, 139_999] {
            let mut c = stream.cursor_at_row(row);
            assert!(c.next_into(&mut line));
            assert_eq!((line.ticket, line.keys, line.amounts), lines[row as usize]);
        }
        let mut end = stream.cursor_at_row(140_000);
        assert!(!end.next_into(&mut line));
    }
}
