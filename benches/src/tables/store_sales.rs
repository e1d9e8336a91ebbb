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

use arrow::datatypes::SchemaRef;

use crate::calendar::{STORE_CLOSE_TIME_SK, STORE_OPEN_TIME_SK};
use crate::columns::fact_schema;
use crate::rng::Rng;
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::sales::{
    Channel, DistinctItems, LinePrices, Sales, SalesLine, SalesStream, draw_customer_keys,
};

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
const KEYS: usize = 9;

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
const AMOUNTS: usize = 12;

const _: () = assert!(COLUMNS.len() == KEYS + 2 + AMOUNTS);

/// One generated `store_sales` line item (`number` is the ticket number).
pub type SaleLine = SalesLine<KEYS, AMOUNTS>;

/// The virtual `store_sales` line stream, shared by `store_sales` and `store_returns`.
pub type StoreSalesStream = SalesStream<StoreChannel>;

/// The `store_sales` table generator.
pub type StoreSales = Sales<StoreChannel>;

/// The store channel's columns and keys.
pub struct StoreChannel;

impl Channel for StoreChannel {
    const NAME: &'static str = "store_sales";
    const TABLE: TableId = TableId::StoreSales;
    const NO_DICTIONARY: &'static [&'static str] = &NO_DICTIONARY;
    /// The ticket's keys at their positions (item and promotion unset).
    type Group = [i32; KEYS];
    type Line = SaleLine;

    fn schema() -> SchemaRef {
        schema()
    }

    fn open_group(dims: &Dimensions, r: &mut Rng, sold_date_sk: i32) -> [i32; KEYS] {
        let mut keys = [0; KEYS];
        keys[K_DATE] = sold_date_sk;
        keys[K_TIME] = r.range_i32(STORE_OPEN_TIME_SK, STORE_CLOSE_TIME_SK);
        keys[K_CUSTOMER..=K_ADDR].copy_from_slice(&draw_customer_keys(dims, r));
        keys[K_STORE] = 1 + r.below(dims.store) as i32;
        keys
    }

    fn next_line(
        dims: &Dimensions,
        r: &mut Rng,
        ticket: &[i32; KEYS],
        number: i64,
        items: &mut DistinctItems,
        line: &mut SaleLine,
    ) {
        // Nulls: eight 16-bit lanes from two draws, one lane per nullable key.
        line.draw_valid::<2>(r, K_ITEM);
        line.keys = *ticket;
        line.keys[K_ITEM] = items.draw(r, dims.item);
        line.keys[K_PROMO] = 1 + r.below(dims.promotion) as i32;
        line.number = number;

        let p = LinePrices::draw(r);
        line.quantity = p.quantity as i32;
        line.amounts[..A_NET_PAID].copy_from_slice(&p.leading_amounts());
        line.amounts[A_NET_PAID..].copy_from_slice(&[
            p.net_paid,
            p.net_paid + p.ext_tax,
            p.net_profit(),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::TableGenerator;
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
                let amounts: [&str; AMOUNTS] = COLUMNS[KEYS + 2..].try_into().unwrap();
                let [w, l, s, ed, es, ew, el, et, cp, np, npt, pr] = amounts.map(|n| dec(b, n));
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
        let tickets = StoreSales::new(5, 160_000, 4, dims).total_groups();
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
            lines.push((line.number, line.keys, line.amounts));
        }
        assert_eq!(lines.len(), 140_000);
        for row in [1u64, 65_535, 65_536, 70_000, 139_999] {
            let mut c = stream.cursor_at_row(row);
            assert!(c.next_into(&mut line));
            assert_eq!((line.number, line.keys, line.amounts), lines[row as usize]);
        }
        let mut end = stream.cursor_at_row(140_000);
        assert!(!end.next_into(&mut line));
    }
}
