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

use arrow::datatypes::SchemaRef;

use crate::columns::fact_schema;
use crate::rng::Rng;
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::sales::{
    Channel, DistinctItems, LinePrices, Sales, SalesLine, SalesStream, draw_customer_keys,
};
use crate::tables::values::percent_of;

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

/// Amount positions in [`WebLine::amounts`] (cents), in column order.
pub const A_WHOLESALE: usize = 0;
pub const A_LIST: usize = 1;
pub const A_SALES: usize = 2;
pub const A_EXT_TAX: usize = 7;
pub const A_COUPON: usize = 8;
pub const A_EXT_SHIP: usize = 9;
pub const A_NET_PAID: usize = 10;
const AMOUNTS: usize = 15;

const _: () = assert!(COLUMNS.len() == KEYS + 2 + AMOUNTS);

pub fn schema() -> SchemaRef {
    fact_schema(&COLUMNS, "ws_item_sk", "ws_order_number")
}

/// One generated `web_sales` line item (`number` is the order number).
pub type WebLine = SalesLine<KEYS, AMOUNTS>;

/// The virtual `web_sales` line stream, shared by `web_sales` and `web_returns`.
pub type WebSalesStream = SalesStream<WebChannel>;

/// The `web_sales` table generator.
pub type WebSales = Sales<WebChannel>;

/// The web channel's columns and keys.
pub struct WebChannel;

impl Channel for WebChannel {
    const NAME: &'static str = "web_sales";
    const TABLE: TableId = TableId::WebSales;
    const NO_DICTIONARY: &'static [&'static str] = &NO_DICTIONARY;
    /// Order-level keys, by key position (only the order-level positions are used).
    type Group = [i32; KEYS];
    type Line = WebLine;

    fn schema() -> SchemaRef {
        schema()
    }

    fn open_group(dims: &Dimensions, r: &mut Rng, sold_date_sk: i32) -> [i32; KEYS] {
        let mut keys = [0i32; KEYS];
        keys[K_SOLD_DATE] = sold_date_sk;
        keys[K_SOLD_TIME] = r.range_i32(0, 86_399);
        keys[K_SHIP_DATE] = sold_date_sk + r.range_i32(1, SHIP_DAYS_MAX);
        let bill = draw_customer_keys(dims, r);
        // Draw the alternative ship-to keys always, so the stream does not fork.
        let other = draw_customer_keys(dims, r);
        let same = r.below(100) < SAME_SHIP_CUSTOMER_PERCENT;
        keys[K_BILL_CUSTOMER..=K_BILL_ADDR].copy_from_slice(&bill);
        keys[K_SHIP_CUSTOMER..=K_SHIP_ADDR].copy_from_slice(if same { &bill } else { &other });
        keys[K_WEB_SITE] = 1 + r.below(dims.web_site) as i32;
        keys[K_SHIP_MODE] = 1 + r.below(dims.ship_mode) as i32;
        keys
    }

    fn next_line(
        dims: &Dimensions,
        r: &mut Rng,
        order: &[i32; KEYS],
        number: i64,
        items: &mut DistinctItems,
        line: &mut WebLine,
    ) {
        // Nulls: sixteen 16-bit lanes from four draws, one per nullable key (every key but
        // the item, in column order).
        line.draw_valid::<4>(r, K_ITEM);
        line.keys = *order;
        line.keys[K_ITEM] = items.draw(r, dims.item);
        line.keys[K_WEB_PAGE] = 1 + r.below(dims.web_page) as i32;
        line.keys[K_WAREHOUSE] = 1 + r.below(dims.warehouse) as i32;
        line.keys[K_PROMO] = 1 + r.below(dims.promotion) as i32;
        line.number = number;

        let p = LinePrices::draw(r);
        let ext_ship = p.quantity * percent_of(p.list, r.range_i64(0, 50));
        line.quantity = p.quantity as i32;
        line.amounts[..A_EXT_SHIP].copy_from_slice(&p.leading_amounts());
        line.amounts[A_EXT_SHIP..].copy_from_slice(&[
            ext_ship,
            p.net_paid,
            p.net_paid + p.ext_tax,
            p.net_paid + ext_ship,
            p.net_paid + ext_ship + p.ext_tax,
            p.net_profit(),
        ]);
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
            assert!(line.number == last_order || line.number == last_order + 1);
            let k = line.keys;
            if line.number != last_order {
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
            last_order = line.number;
            assert!(seen.insert((line.number, k[K_ITEM])));
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
