//! `store_returns`: line items of `store_sales` that came back.
//!
//! Exactly `round(287,514 × SF)` of the `round(2,880,404 × SF)` store_sales line items are
//! returned, each at most once, chosen uniformly by the block-local selection described in
//! [`crate::fact`]; the returns keep the sales order. Generate `store_sales` with the same
//! seed and scale factor to get the sales they reference.
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`, which joins
//! the two tables):
//!
//! * (`sr_ticket_number`, `sr_item_sk`) is a `store_sales` (`ss_ticket_number`,
//!   `ss_item_sk`), and unique.
//! * `sr_customer_sk`, `sr_cdemo_sk`, `sr_hdemo_sk`, `sr_addr_sk`, `sr_store_sk` are the
//!   sale's values (null where the sale's is null).
//! * `sr_returned_date_sk` is 0..=90 days after the sale's date; `sr_return_time_sk` is in
//!   store hours (28800..=75599); `sr_reason_sk` is uniform over `reason`. These three are
//!   null in about 4.5% of rows each.
//! * `sr_return_quantity` is 1..=`ss_quantity`. With `q_r / q` the returned share, in cents,
//!   rounded half up: `sr_return_amt = ss_net_paid × q_r / q`;
//!   `sr_return_tax = ss_ext_tax × q_r / q`; `sr_return_amt_inc_tax = amt + tax`;
//!   `sr_fee` is 0.50..=100.00; `sr_return_ship_cost = q_r × round(ss_list_price × s%)`,
//!   s 0..=50; the refund splits `sr_return_amt` exactly into `sr_refunded_cash` +
//!   `sr_reversed_charge` + `sr_store_credit` (each ≥ 0);
//!   `sr_net_loss = amt_inc_tax + return_ship_cost − fee`.

use std::ops::Range;

use arrow::datatypes::SchemaRef;

use crate::calendar::{STORE_CLOSE_TIME_SK, STORE_OPEN_TIME_SK};
use crate::columns::{BatchBuilder, fact_schema};
use crate::driver::{Batches, TableGenerator, TableLayout, rows_in_batches};
use crate::fact::{ReturnsPlan, ReturnsWalker, share};
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::store_sales::{self as ss, SaleLine, StoreSalesStream};
use crate::tables::values::{NULL_PER_65536, percent_of};

pub const RETURN_DAYS_MAX: i32 = 90;

pub const COLUMNS: [&str; 20] = [
    "sr_returned_date_sk",
    "sr_return_time_sk",
    "sr_item_sk",
    "sr_customer_sk",
    "sr_cdemo_sk",
    "sr_hdemo_sk",
    "sr_addr_sk",
    "sr_store_sk",
    "sr_reason_sk",
    "sr_ticket_number",
    "sr_return_quantity",
    "sr_return_amt",
    "sr_return_tax",
    "sr_return_amt_inc_tax",
    "sr_fee",
    "sr_return_ship_cost",
    "sr_refunded_cash",
    "sr_reversed_charge",
    "sr_store_credit",
    "sr_net_loss",
];

pub fn schema() -> SchemaRef {
    fact_schema(&COLUMNS, "sr_item_sk", "sr_ticket_number")
}

/// Refund split shared by the returns tables: `amount` = cash + reversed + credit.
pub fn split_refund(r: &mut crate::rng::Rng, amount: i64) -> [i64; 3] {
    let cash = percent_of(amount, r.range_i64(0, 100));
    let reversed = percent_of(amount - cash, r.range_i64(0, 100));
    [cash, reversed, amount - cash - reversed]
}

pub struct StoreReturns {
    sales: StoreSalesStream,
    returns: ReturnsPlan,
    layout: TableLayout,
}

impl StoreReturns {
    /// `rows` returns out of `sales_rows` store_sales line items.
    pub fn new(seed: u64, rows: u64, sales_rows: u64, files: usize, dims: Dimensions) -> Self {
        StoreReturns {
            layout: TableLayout::new("store_returns", schema(), rows, files),
            sales: StoreSalesStream::new(seed, sales_rows, dims),
            returns: ReturnsPlan::new(seed, TableId::StoreReturns as u64, sales_rows, rows),
        }
    }

    fn push_row(&self, b: &mut BatchBuilder, index: u64, sale: &SaleLine) {
        let dims = self.sales.dims();
        let r = &mut self.returns.values_stream(index);
        let nulls = r.next_u64();
        let present = |lane: usize| (nulls >> (lane * 16)) & 0xFFFF >= NULL_PER_65536;
        let date = sale.keys[ss::K_DATE] + r.range_i32(0, RETURN_DAYS_MAX);
        let time = r.range_i32(STORE_OPEN_TIME_SK, STORE_CLOSE_TIME_SK);
        let reason = 1 + r.below(dims.reason) as i32;
        let q = i64::from(sale.quantity);
        let qr = r.range_i64(1, q);
        let amt = share(sale.amounts[ss::A_NET_PAID], qr, q);
        let tax = share(sale.amounts[ss::A_EXT_TAX], qr, q);
        let fee = r.range_i64(50, 10_000);
        let ship = qr * percent_of(sale.amounts[ss::A_LIST], r.range_i64(0, 50));
        let [cash, reversed, credit] = split_refund(r, amt);

        b.i32(0, present(0).then_some(date));
        b.i32(1, present(1).then_some(time));
        b.i32(2, Some(sale.keys[ss::K_ITEM]));
        for (col, k) in [
            (3, ss::K_CUSTOMER),
            (4, ss::K_CDEMO),
            (5, ss::K_HDEMO),
            (6, ss::K_ADDR),
            (7, ss::K_STORE),
        ] {
            b.i32(col, sale.key(k));
        }
        b.i32(8, present(2).then_some(reason));
        b.i64(9, Some(sale.number));
        b.i32(10, Some(qr as i32));
        for (col, v) in [
            amt,
            tax,
            amt + tax,
            fee,
            ship,
            cash,
            reversed,
            credit,
            amt + tax + ship - fee,
        ]
        .into_iter()
        .enumerate()
        {
            b.decimal(11 + col, Some(v));
        }
    }
}

impl TableGenerator for StoreReturns {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn row_batches(&self, rows: Range<u64>, batch_rows: usize) -> Batches<'_> {
        if rows.is_empty() {
            return Box::new(std::iter::empty());
        }
        let mut walker = ReturnsWalker::new(&self.returns, self.sales.plan(), rows.start, |b| {
            self.sales.cursor_at_block(b)
        });
        rows_in_batches(self.layout.schema(), rows, batch_rows, move |b, _| {
            let (index, sale) = walker
                .advance()
                .expect("store_sales ran out of returned line items");
            self.push_row(b, index, sale);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::store_sales::StoreSales;
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};
    use std::collections::HashMap;

    fn read_all(t: &dyn TableGenerator) -> RecordBatch {
        let batches: Vec<RecordBatch> = (0..t.file_count())
            .flat_map(|f| t.file_batches(f, 3_000).collect::<Vec<_>>())
            .collect();
        concat_batches(&t.schema(), &batches).unwrap()
    }

    fn i32_at(b: &RecordBatch, name: &str, i: usize) -> Option<i32> {
        let a = b.column_by_name(name).unwrap().as_primitive::<Int32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn dec_at(b: &RecordBatch, name: &str, i: usize) -> i64 {
        let a = b
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Decimal128Type>();
        assert!(a.is_valid(i), "{name} null");
        a.value(i) as i64
    }

    #[test]
    fn returns_reference_sales_and_follow_the_rules() {
        let dims = Dimensions::at_scale(1.0);
        let (sales_rows, rows) = (150_000, 14_975);
        let sales = read_all(&StoreSales::new(8, sales_rows, 3, dims));
        let returns = read_all(&StoreReturns::new(8, rows, sales_rows, 4, dims));
        assert_eq!(returns.num_rows() as u64, rows);
        let st = sales
            .column_by_name("ss_ticket_number")
            .unwrap()
            .as_primitive::<Int64Type>();
        let si = sales
            .column_by_name("ss_item_sk")
            .unwrap()
            .as_primitive::<Int32Type>();
        let by_key: HashMap<(i64, i32), usize> = (0..sales.num_rows())
            .map(|i| ((st.value(i), si.value(i)), i))
            .collect();
        let rt = returns
            .column_by_name("sr_ticket_number")
            .unwrap()
            .as_primitive::<Int64Type>();
        let ri = returns
            .column_by_name("sr_item_sk")
            .unwrap()
            .as_primitive::<Int32Type>();
        let mut last_sale = None;
        let mut null_dates = 0;
        for i in 0..returns.num_rows() {
            let s = by_key[&(rt.value(i), ri.value(i))];
            assert!(last_sale < Some(s), "returns are unique and in sales order");
            last_sale = Some(s);
            for (rc, sc) in [
                ("sr_customer_sk", "ss_customer_sk"),
                ("sr_cdemo_sk", "ss_cdemo_sk"),
                ("sr_store_sk", "ss_store_sk"),
            ] {
                assert_eq!(i32_at(&returns, rc, i), i32_at(&sales, sc, s));
            }
            match (
                i32_at(&returns, "sr_returned_date_sk", i),
                i32_at(&sales, "ss_sold_date_sk", s),
            ) {
                (Some(rd), Some(sd)) => assert!((0..=RETURN_DAYS_MAX).contains(&(rd - sd))),
                (None, _) => null_dates += 1,
                _ => {}
            }
            let q = i64::from(i32_at(&sales, "ss_quantity", s).unwrap());
            let qr = i64::from(i32_at(&returns, "sr_return_quantity", i).unwrap());
            assert!((1..=q).contains(&qr));
            let amt = dec_at(&returns, "sr_return_amt", i);
            let tax = dec_at(&returns, "sr_return_tax", i);
            assert_eq!(amt, share(dec_at(&sales, "ss_net_paid", s), qr, q));
            assert_eq!(tax, share(dec_at(&sales, "ss_ext_tax", s), qr, q));
            assert_eq!(dec_at(&returns, "sr_return_amt_inc_tax", i), amt + tax);
            let parts: i64 = ["sr_refunded_cash", "sr_reversed_charge", "sr_store_credit"]
                .iter()
                .map(|c| {
                    let v = dec_at(&returns, c, i);
                    assert!(v >= 0);
                    v
                })
                .sum();
            assert_eq!(parts, amt);
            let fee = dec_at(&returns, "sr_fee", i);
            assert!((50..=10_000).contains(&fee));
            let ship = dec_at(&returns, "sr_return_ship_cost", i);
            assert_eq!(dec_at(&returns, "sr_net_loss", i), amt + tax + ship - fee);
        }
        let frac = null_dates as f64 / rows as f64;
        assert!((0.03..0.06).contains(&frac), "{frac}");
    }

    #[test]
    fn file_split_does_not_change_the_rows() {
        let dims = Dimensions::at_scale(1.0);
        let one = read_all(&StoreReturns::new(2, 20_000, 200_000, 1, dims));
        let many = read_all(&StoreReturns::new(2, 20_000, 200_000, 7, dims));
        assert_eq!(one, many);
    }
}
