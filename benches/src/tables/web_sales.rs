//! `web_sales`: the TPC-DS web channel fact table, one row per line item of an order.
//!
//! `web_returns` is drawn from this table's line items, so the two must be generated with
//! the same seed and scale factor; the rows are a pure function of (seed, rows), whatever
//! the file split (see [`crate::fact`]).
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`):
//!
//! * Orders hold 8..=16 distinct items (only the table's last order may hold fewer), so
//!   (`ws_order_number`, `ws_item_sk`) is unique. Order numbers are dense, 1..=O, in row
//!   order. All line items of an order share `ws_order_number`, `ws_sold_date_sk`,
//!   `ws_sold_time_sk`, `ws_ship_date_sk`, the four `ws_bill_*` keys, the four `ws_ship_*`
//!   keys, `ws_web_site_sk` and `ws_ship_mode_sk` (before nulls are applied).
//! * `ws_sold_date_sk` is in 2450816..=2452642, non-decreasing with the order number, with the
//!   same seasonal weights as `store_sales`; `ws_sold_time_sk` is any second of the day
//!   (0..=86399); `ws_ship_date_sk` is 1..=120 days after the sale.
//! * The ship-to customer is the bill-to customer on 90% of orders (then the ship-to
//!   demographics and address are the bill-to ones too), otherwise a random one.
//! * Keys are uniform over their dimension ([`crate::scale::Dimensions`]): item, customer,
//!   customer_demographics, household_demographics, customer_address, web_page, web_site,
//!   ship_mode, warehouse, promotion; 1-based.
//! * Every key except `ws_item_sk` and `ws_order_number` is null in about 4.5% of rows,
//!   independently per row and column.
//! * Pricing, in cents, rounded half up, exactly as in `store_sales` (quantity, wholesale,
//!   list, sales price, ext_* amounts, coupon on ~20% of lines, tax 0..=9% of net paid),
//!   plus shipping: `ws_ext_ship_cost = quantity × round(list × ship%)`, ship% 0..=50;
//!   `ws_net_paid = ext_sales − coupon`; `ws_net_paid_inc_tax = net_paid + ext_tax`;
//!   `ws_net_paid_inc_ship = net_paid + ext_ship_cost`;
//!   `ws_net_paid_inc_ship_tax = net_paid_inc_ship + ext_tax`;
//!   `ws_net_profit = net_paid − ext_wholesale_cost`. The largest amount is at most
//!   31,800.00, within `Decimal(7,2)`.

use std::ops::Range;

use arrow::datatypes::SchemaRef;
use parquet::file::properties::WriterPropertiesBuilder;

use crate::calendar::SalesDates;
use crate::columns::{disable_dictionary, fact_schema};
use crate::driver::{Batches, TableGenerator, TableLayout, rows_in_batches};
use crate::fact::{GroupPlan, LineCursor};
use crate::rng::{Purpose, Rng};
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::values::{NULL_PER_65536, percent_of};

pub const ITEMS_PER_ORDER_MIN: u64 = 8;
pub const ITEMS_PER_ORDER_MAX: u64 = 16;
const COUPON_PERCENT_OF_LINES: u64 = 20;
const SAME_SHIP_CUSTOMER_PERCENT: u64 = 90;
pub const SHIP_DAYS_MAX: i32 = 120;

pub const COLUMNS: [&str; 34] = [
    "ws_sold_date_sk",
    "ws_sold_time_sk",
    "ws_ship_date_sk",
    "ws_item_sk",
    "ws_bill_customer_sk",
    "ws_bill_cdemo_sk",
    "ws_bill_hdemo_sk",
    "ws_bill_addr_sk",
    "ws_ship_customer_sk",
    "ws_ship_cdemo_sk",
    "ws_ship_hdemo_sk",
    "ws_ship_addr_sk",
    "ws_web_page_sk",
    "ws_web_site_sk",
    "ws_ship_mode_sk",
    "ws_warehouse_sk",
    "ws_promo_sk",
    "ws_order_number",
    "ws_quantity",
    "ws_wholesale_cost",
    "ws_list_price",
    "ws_sales_price",
    "ws_ext_discount_amt",
    "ws_ext_sales_price",
    "ws_ext_wholesale_cost",
    "ws_ext_list_price",
    "ws_ext_tax",
    "ws_coupon_amt",
    "ws_ext_ship_cost",
    "ws_net_paid",
    "ws_net_paid_inc_tax",
    "ws_net_paid_inc_ship",
    "ws_net_paid_inc_ship_tax",
    "ws_net_profit",
];

const NO_DICTIONARY: [&str; 15] = [
    "ws_order_number",
    "ws_bill_customer_sk",
    "ws_bill_cdemo_sk",
    "ws_ship_customer_sk",
    "ws_ship_cdemo_sk",
    "ws_bill_addr_sk",
    "ws_ship_addr_sk",
    "ws_ext_discount_amt",
    "ws_ext_sales_price",
    "ws_ext_wholesale_cost",
    "ws_ext_list_price",
    "ws_net_paid",
    "ws_net_paid_inc_tax",
    "ws_net_paid_inc_ship",
    "ws_net_paid_inc_ship_tax",
];

/// Key positions in [`WebLine::keys`] (= column positions).
pub const K_SOLD_DATE: usize = 0;
pub const K_SOLD_TIME: usize = 1;
pub const K_SHIP_DATE: usize = 2;
pub const K_ITEM: usize = 3;
pub const K_BILL_CUSTOMER: usize = 4;
pub const K_BILL_CDEMO: usize = 5;
pub const K_BILL_HDEMO: usize = 6;
pub const K_BILL_ADDR: usize = 7;
pub const K_SHIP_CUSTOMER: usize = 8;
pub const K_SHIP_CDEMO: usize = 9;
pub const K_SHIP_HDEMO: usize = 10;
pub const K_SHIP_ADDR: usize = 11;
pub const K_WEB_PAGE: usize = 12;
pub const K_WEB_SITE: usize = 13;
pub const K_SHIP_MODE: usize = 14;
pub const K_WAREHOUSE: usize = 15;
pub const K_PROMO: usize = 16;
const KEYS: usize = 17;
const FIRST_AMOUNT_COLUMN: usize = 19;

/// Amount positions in [`WebLine::amounts`] (cents), in column order.
pub const A_WHOLESALE: usize = 0;
pub const A_LIST: usize = 1;
pub const A_SALES: usize = 2;
pub const A_EXT_TAX: usize = 7;
pub const A_COUPON: usize = 8;
pub const A_EXT_SHIP: usize = 9;
pub const A_NET_PAID: usize = 10;

pub fn schema() -> SchemaRef {
    fact_schema(&COLUMNS, "ws_item_sk", "ws_order_number")
}

/// One generated web line item.
#[derive(Clone, Debug, Default)]
pub struct WebLine {
    /// The 17 keys in column order; set even where the column is null.
    pub keys: [i32; KEYS],
    pub valid: [bool; KEYS],
    pub order: i64,
    pub quantity: i32,
    pub amounts: [i64; 15],
}

impl WebLine {
    pub fn key(&self, k: usize) -> Option<i32> {
        self.valid[k].then_some(self.keys[k])
    }
}

/// The virtual `web_sales` line stream, shared by `web_sales` and `web_returns`.
pub struct WebSalesStream {
    dims: Dimensions,
    plan: GroupPlan,
    dates: SalesDates,
}

impl WebSalesStream {
    pub fn new(seed: u64, rows: u64, dims: Dimensions) -> Self {
        assert!(
            dims.item >= ITEMS_PER_ORDER_MAX,
            "item domain too small for distinct items per order"
        );
        let plan = GroupPlan::new(
            seed,
            TableId::WebSales as u64,
            rows,
            ITEMS_PER_ORDER_MIN,
            ITEMS_PER_ORDER_MAX,
        );
        WebSalesStream {
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

    pub fn cursor_at_block(&self, block: usize) -> WebCursor<'_> {
        let mut c = WebCursor {
            stream: self,
            block,
            values: Rng::from_seed(0),
            sizes: Rng::from_seed(0),
            rows_left_in_block: 0,
            next_order: 0,
            order: Order::default(),
            date_pos: 0,
        };
        c.enter_block(block);
        c
    }

    pub fn cursor_at_row(&self, row: u64) -> WebCursor<'_> {
        if row >= self.plan.rows() {
            return self.cursor_at_block(self.plan.blocks());
        }
        let block = self.plan.block_of_row(row);
        let mut c = self.cursor_at_block(block);
        let mut line = WebLine::default();
        for _ in self.plan.block_start(block)..row {
            c.next_into(&mut line);
        }
        c
    }
}

#[derive(Default)]
struct Order {
    lines_left: u64,
    number: i64,
    /// Order-level keys, by key position (only the order-level positions are used).
    keys: [i32; KEYS],
    items: [i32; ITEMS_PER_ORDER_MAX as usize],
    item_count: usize,
}

pub struct WebCursor<'a> {
    stream: &'a WebSalesStream,
    block: usize,
    values: Rng,
    sizes: Rng,
    rows_left_in_block: u64,
    next_order: u64,
    order: Order,
    date_pos: usize,
}

impl WebCursor<'_> {
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
        self.next_order = plan.block_first_group(block);
        self.order = Order::default();
        self.date_pos = self.stream.dates.day_index(self.next_order);
    }

    fn open_order(&mut self) {
        let d = self.stream.dims;
        let g = self.next_order;
        self.next_order += 1;
        let sold = self.stream.dates.advance(g, &mut self.date_pos);
        let lines = self
            .stream
            .plan
            .next_group_size(&mut self.sizes, self.rows_left_in_block);
        let r = &mut self.values;
        let mut keys = [0i32; KEYS];
        keys[K_SOLD_DATE] = sold;
        keys[K_SOLD_TIME] = r.range_i32(0, 86_399);
        keys[K_SHIP_DATE] = sold + r.range_i32(1, SHIP_DAYS_MAX);
        keys[K_BILL_CUSTOMER] = 1 + r.below(d.customer) as i32;
        keys[K_BILL_CDEMO] = 1 + r.below(d.customer_demographics) as i32;
        keys[K_BILL_HDEMO] = 1 + r.below(d.household_demographics) as i32;
        keys[K_BILL_ADDR] = 1 + r.below(d.customer_address) as i32;
        // Draw the alternative ship-to keys always, so the stream does not fork.
        let other = [
            1 + r.below(d.customer) as i32,
            1 + r.below(d.customer_demographics) as i32,
            1 + r.below(d.household_demographics) as i32,
            1 + r.below(d.customer_address) as i32,
        ];
        let same = r.below(100) < SAME_SHIP_CUSTOMER_PERCENT;
        for (i, &o) in other.iter().enumerate() {
            keys[K_SHIP_CUSTOMER + i] = if same { keys[K_BILL_CUSTOMER + i] } else { o };
        }
        keys[K_WEB_SITE] = 1 + r.below(d.web_site) as i32;
        keys[K_SHIP_MODE] = 1 + r.below(d.ship_mode) as i32;
        self.order = Order {
            lines_left: lines,
            number: g as i64 + 1,
            keys,
            items: [0; ITEMS_PER_ORDER_MAX as usize],
            item_count: 0,
        };
    }

    pub fn next_into(&mut self, line: &mut WebLine) -> bool {
        if self.rows_left_in_block == 0 {
            if self.block + 1 >= self.stream.plan.blocks() {
                return false;
            }
            self.enter_block(self.block + 1);
        }
        if self.order.lines_left == 0 {
            self.open_order();
        }
        self.rows_left_in_block -= 1;
        self.order.lines_left -= 1;
        let d = self.stream.dims;
        let r = &mut self.values;
        let o = &mut self.order;

        // Nulls: sixteen 16-bit lanes from four draws, one per nullable key (every key but
        // the item, in column order).
        let lanes = [r.next_u64(), r.next_u64(), r.next_u64(), r.next_u64()];
        for (k, v) in line.valid.iter_mut().enumerate() {
            if k == K_ITEM {
                *v = true;
                continue;
            }
            let lane = if k < K_ITEM { k } else { k - 1 };
            *v = (lanes[lane / 4] >> ((lane % 4) * 16)) & 0xFFFF >= NULL_PER_65536;
        }
        let item = loop {
            let candidate = 1 + r.below(d.item) as i32;
            if !o.items[..o.item_count].contains(&candidate) {
                break candidate;
            }
        };
        o.items[o.item_count] = item;
        o.item_count += 1;

        line.keys = o.keys;
        line.keys[K_ITEM] = item;
        line.keys[K_WEB_PAGE] = 1 + r.below(d.web_page) as i32;
        line.keys[K_WAREHOUSE] = 1 + r.below(d.warehouse) as i32;
        line.keys[K_PROMO] = 1 + r.below(d.promotion) as i32;
        line.order = o.number;

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
        let ext_ship = quantity * percent_of(list, r.range_i64(0, 50));
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
            ext_ship,
            net_paid,
            net_paid + ext_tax,
            net_paid + ext_ship,
            net_paid + ext_ship + ext_tax,
            net_paid - ext_wholesale,
        ];
        true
    }
}

impl LineCursor for WebCursor<'_> {
    type Line = WebLine;
    fn next_into(&mut self, line: &mut WebLine) -> bool {
        WebCursor::next_into(self, line)
    }
}

pub struct WebSales {
    stream: WebSalesStream,
    layout: TableLayout,
}

impl WebSales {
    pub fn new(seed: u64, rows: u64, files: usize, dims: Dimensions) -> Self {
        WebSales {
            layout: TableLayout::new("web_sales", schema(), rows, files),
            stream: WebSalesStream::new(seed, rows, dims),
        }
    }
}

impl TableGenerator for WebSales {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn row_batches(&self, rows: Range<u64>, batch_rows: usize) -> Batches<'_> {
        let mut cursor = self.stream.cursor_at_row(rows.start);
        let mut line = WebLine::default();
        rows_in_batches(self.layout.schema(), rows, batch_rows, move |b, _| {
            let more = cursor.next_into(&mut line);
            assert!(more, "web_sales stream ended before its planned rows");
            for k in 0..KEYS {
                b.i32(k, line.key(k));
            }
            b.i64(17, Some(line.order));
            b.i32(18, Some(line.quantity));
            for (a, &v) in line.amounts.iter().enumerate() {
                b.decimal(FIRST_AMOUNT_COLUMN + a, Some(v));
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
    use std::collections::HashSet;

    #[test]
    fn order_rules_hold() {
        let dims = Dimensions::at_scale(1.0);
        let stream = WebSalesStream::new(3, 150_000, dims);
        let mut c = stream.cursor_at_row(0);
        let mut line = WebLine::default();
        let mut seen = HashSet::new();
        let (mut last_order, mut last_date, mut rows, mut same_ship) = (0i64, 0i32, 0u64, 0u64);
        let mut order_keys = [0i32; KEYS];
        while c.next_into(&mut line) {
            rows += 1;
            assert!(line.order == last_order || line.order == last_order + 1);
            let k = line.keys;
            if line.order != last_order {
                assert!(k[K_SOLD_DATE] >= last_date);
                last_date = k[K_SOLD_DATE];
                same_ship += u64::from(k[K_SHIP_CUSTOMER] == k[K_BILL_CUSTOMER]);
                order_keys = k;
            }
            for shared in [
                K_SOLD_DATE,
                K_SHIP_DATE,
                K_BILL_CUSTOMER,
                K_SHIP_ADDR,
                K_WEB_SITE,
            ] {
                assert_eq!(k[shared], order_keys[shared]);
            }
            last_order = line.order;
            assert!(seen.insert((line.order, k[K_ITEM])));
            assert!((1..=SHIP_DAYS_MAX).contains(&(k[K_SHIP_DATE] - k[K_SOLD_DATE])));
            assert!((0..=86_399).contains(&k[K_SOLD_TIME]));
            assert!((1..=dims.web_page as i32).contains(&k[K_WEB_PAGE]));
            let a = line.amounts;
            let q = i64::from(line.quantity);
            assert_eq!(a[A_NET_PAID], q * a[A_SALES] - a[A_COUPON]);
            assert_eq!(a[11], a[A_NET_PAID] + a[A_EXT_TAX]);
            assert_eq!(a[12], a[A_NET_PAID] + a[A_EXT_SHIP]);
            assert_eq!(a[13], a[12] + a[A_EXT_TAX]);
            assert!(a[A_EXT_SHIP] <= q * ((a[A_LIST] + 1) / 2));
            assert!(a.iter().all(|v| v.abs() <= 9_999_999));
        }
        assert_eq!(rows, 150_000);
        assert_eq!(last_order as u64, stream.plan().total_groups());
        let frac = same_ship as f64 / last_order as f64;
        assert!((0.85..0.95).contains(&frac), "{frac}");
    }
}
