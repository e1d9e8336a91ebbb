//! `web_returns`: line items of `web_sales` that came back; the target table of Delta's
//! MERGE benchmark.
//!
//! Exactly `round(71,763 × SF)` of the `round(719,384 × SF)` web_sales line items are
//! returned, each at most once, chosen uniformly by the block-local selection described in
//! [`crate::fact`]; the returns keep the sales order. `web_sales` does not need to be
//! written for this: its line stream is replayed in memory. Generate it with the same seed
//! and scale factor to get the sales the returns reference.
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`):
//!
//! * (`wr_order_number`, `wr_item_sk`) is a `web_sales` (`ws_order_number`, `ws_item_sk`),
//!   and unique.
//! * The refunded customer (`wr_refunded_customer_sk`, `_cdemo_sk`, `_hdemo_sk`,
//!   `_addr_sk`) is the sale's bill-to customer; the returning customer is the sale's
//!   ship-to customer (null where the sale's key is null).
//! * `wr_returned_date_sk` is 0..=90 days after the sale's ship date (so after its sold
//!   date); `wr_returned_time_sk` is any second of the day; `wr_web_page_sk` and
//!   `wr_reason_sk` are uniform over their dimensions. These four are null in about 4.5% of
//!   rows each.
//! * `wr_return_quantity` is 1..=`ws_quantity`. With `q_r / q` the returned share, in cents,
//!   rounded half up: `wr_return_amt = ws_net_paid × q_r / q`;
//!   `wr_return_tax = ws_ext_tax × q_r / q`; `wr_return_amt_inc_tax = amt + tax`;
//!   `wr_fee` is 0.50..=100.00; `wr_return_ship_cost = ws_ext_ship_cost × q_r / q`; the
//!   refund splits `wr_return_amt` exactly into `wr_refunded_cash` + `wr_reversed_charge` +
//!   `wr_account_credit` (each ≥ 0); `wr_net_loss = amt_inc_tax + return_ship_cost − fee`.

use std::ops::Range;

use arrow::datatypes::SchemaRef;

use crate::columns::{BatchBuilder, fact_schema};
use crate::driver::{Batches, TableGenerator, TableLayout, rows_in_batches};
use crate::fact::{ReturnsPlan, ReturnsWalker, share};
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::store_returns::{RETURN_DAYS_MAX, split_refund};
use crate::tables::values::NULL_PER_65536;
use crate::tables::web_sales::{self as ws, WebLine, WebSalesStream};

pub const COLUMNS: [&str; 24] = [
    "wr_returned_date_sk",
    "wr_returned_time_sk",
    "wr_item_sk",
    "wr_refunded_customer_sk",
    "wr_refunded_cdemo_sk",
    "wr_refunded_hdemo_sk",
    "wr_refunded_addr_sk",
    "wr_returning_customer_sk",
    "wr_returning_cdemo_sk",
    "wr_returning_hdemo_sk",
    "wr_returning_addr_sk",
    "wr_web_page_sk",
    "wr_reason_sk",
    "wr_order_number",
    "wr_return_quantity",
    "wr_return_amt",
    "wr_return_tax",
    "wr_return_amt_inc_tax",
    "wr_fee",
    "wr_return_ship_cost",
    "wr_refunded_cash",
    "wr_reversed_charge",
    "wr_account_credit",
    "wr_net_loss",
];

pub fn schema() -> SchemaRef {
    fact_schema(&COLUMNS, "wr_item_sk", "wr_order_number")
}

pub struct WebReturns {
    sales: WebSalesStream,
    returns: ReturnsPlan,
    layout: TableLayout,
}

impl WebReturns {
    /// `rows` returns out of `sales_rows` web_sales line items.
    pub fn new(seed: u64, rows: u64, sales_rows: u64, files: usize, dims: Dimensions) -> Self {
        WebReturns {
            layout: TableLayout::new("web_returns", schema(), rows, files),
            sales: WebSalesStream::new(seed, sales_rows, dims),
            returns: ReturnsPlan::new(seed, TableId::WebReturns as u64, sales_rows, rows),
        }
    }

    fn push_row(&self, b: &mut BatchBuilder, index: u64, sale: &WebLine) {
        let dims = self.sales.dims();
        let r = &mut self.returns.values_stream(index);
        let nulls = r.next_u64();
        let present = |lane: usize| (nulls >> (lane * 16)) & 0xFFFF >= NULL_PER_65536;
        let date = sale.keys[ws::K_SHIP_DATE] + r.range_i32(0, RETURN_DAYS_MAX);
        let time = r.range_i32(0, 86_399);
        let page = 1 + r.below(dims.web_page) as i32;
        let reason = 1 + r.below(dims.reason) as i32;
        let q = i64::from(sale.quantity);
        let qr = r.range_i64(1, q);
        let amt = share(sale.amounts[ws::A_NET_PAID], qr, q);
        let tax = share(sale.amounts[ws::A_EXT_TAX], qr, q);
        let fee = r.range_i64(50, 10_000);
        let ship = share(sale.amounts[ws::A_EXT_SHIP], qr, q);
        let [cash, reversed, credit] = split_refund(r, amt);

        b.i32(0, present(0).then_some(date));
        b.i32(1, present(1).then_some(time));
        b.i32(2, Some(sale.keys[ws::K_ITEM]));
        for (col, k) in [
            (3, ws::K_BILL_CUSTOMER),
            (4, ws::K_BILL_CDEMO),
            (5, ws::K_BILL_HDEMO),
            (6, ws::K_BILL_ADDR),
            (7, ws::K_SHIP_CUSTOMER),
            (8, ws::K_SHIP_CDEMO),
            (9, ws::K_SHIP_HDEMO),
            (10, ws::K_SHIP_ADDR),
        ] {
            b.i32(col, sale.key(k));
        }
        b.i32(11, present(2).then_some(page));
        b.i32(12, present(3).then_some(reason));
        b.i64(13, Some(sale.number));
        b.i32(14, Some(qr as i32));
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
            b.decimal(15 + col, Some(v));
        }
    }
}

impl TableGenerator for WebReturns {
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
                .expect("web_sales ran out of returned line items");
            self.push_row(b, index, sale);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::web_sales::WebSales;
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};
    use std::collections::HashMap;

    fn read_all(t: &dyn TableGenerator) -> RecordBatch {
        let batches: Vec<RecordBatch> = (0..t.file_count())
            .flat_map(|f| t.file_batches(f, 2_500).collect::<Vec<_>>())
            .collect();
        concat_batches(&t.schema(), &batches).unwrap()
    }

    fn i32_at(b: &RecordBatch, name: &str, i: usize) -> Option<i32> {
        let a = b.column_by_name(name).unwrap().as_primitive::<Int32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn dec_at(b: &RecordBatch, name: &str, i: usize) -> i64 {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .value(i) as i64
    }

    #[test]
    fn returns_reference_web_sales() {
        let dims = Dimensions::at_scale(1.0);
        let (sales_rows, rows) = (140_000, 13_966);
        let sales = read_all(&WebSales::new(6, sales_rows, 5, dims));
        let returns = read_all(&WebReturns::new(6, rows, sales_rows, 3, dims));
        assert_eq!(returns.num_rows() as u64, rows);
        let so = sales
            .column_by_name("ws_order_number")
            .unwrap()
            .as_primitive::<Int64Type>();
        let si = sales
            .column_by_name("ws_item_sk")
            .unwrap()
            .as_primitive::<Int32Type>();
        let by_key: HashMap<(i64, i32), usize> = (0..sales.num_rows())
            .map(|i| ((so.value(i), si.value(i)), i))
            .collect();
        let ro = returns
            .column_by_name("wr_order_number")
            .unwrap()
            .as_primitive::<Int64Type>();
        let ri = returns
            .column_by_name("wr_item_sk")
            .unwrap()
            .as_primitive::<Int32Type>();
        let mut last = None;
        for i in 0..returns.num_rows() {
            let s = by_key[&(ro.value(i), ri.value(i))];
            assert!(last < Some(s));
            last = Some(s);
            assert_eq!(
                i32_at(&returns, "wr_refunded_customer_sk", i),
                i32_at(&sales, "ws_bill_customer_sk", s)
            );
            assert_eq!(
                i32_at(&returns, "wr_returning_addr_sk", i),
                i32_at(&sales, "ws_ship_addr_sk", s)
            );
            if let (Some(rd), Some(sd)) = (
                i32_at(&returns, "wr_returned_date_sk", i),
                i32_at(&sales, "ws_ship_date_sk", s),
            ) {
                assert!((0..=RETURN_DAYS_MAX).contains(&(rd - sd)));
            }
            let q = i64::from(i32_at(&sales, "ws_quantity", s).unwrap());
            let qr = i64::from(i32_at(&returns, "wr_return_quantity", i).unwrap());
            assert!((1..=q).contains(&qr));
            let amt = dec_at(&returns, "wr_return_amt", i);
            assert_eq!(amt, share(dec_at(&sales, "ws_net_paid", s), qr, q));
            assert_eq!(
                dec_at(&returns, "wr_return_ship_cost", i),
                share(dec_at(&sales, "ws_ext_ship_cost", s), qr, q)
            );
            let parts = dec_at(&returns, "wr_refunded_cash", i)
                + dec_at(&returns, "wr_reversed_charge", i)
                + dec_at(&returns, "wr_account_credit", i);
            assert_eq!(parts, amt);
        }
    }
}
