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

use arrow::datatypes::SchemaRef;

use crate::columns::{BatchBuilder, fact_schema};
use crate::rng::Rng;
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::returns::{
    RETURN_DAYS_MAX, ReturnAmounts, ReturnShipping, Returns, ReturnsChannel,
};
use crate::tables::values::NullLanes;
use crate::tables::web_sales::{self as ws, WebChannel, WebLine};

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

/// The `web_returns` table generator.
pub type WebReturns = Returns<WebReturnsChannel>;

/// The columns and keys of web returns.
pub struct WebReturnsChannel;

impl ReturnsChannel for WebReturnsChannel {
    type Sales = WebChannel;
    const NAME: &'static str = "web_returns";
    const TABLE: TableId = TableId::WebReturns;

    fn schema() -> SchemaRef {
        schema()
    }

    fn push_row(dims: &Dimensions, r: &mut Rng, sale: &WebLine, b: &mut BatchBuilder) {
        let nulls = NullLanes::<1>::draw(r);
        let date = sale.keys[ws::K_SHIP_DATE] + r.range_i32(0, RETURN_DAYS_MAX);
        let time = r.range_i32(0, 86_399);
        let page = 1 + r.below(dims.web_page) as i32;
        let reason = 1 + r.below(dims.reason) as i32;
        let shipping = ReturnShipping::ShareOf(sale.amounts[ws::A_EXT_SHIP]);
        let amounts = ReturnAmounts::draw(
            r,
            sale.quantity,
            sale.amounts[ws::A_NET_PAID],
            sale.amounts[ws::A_EXT_TAX],
            shipping,
        );

        b.i32(0, nulls.keep(0, date));
        b.i32(1, nulls.keep(1, time));
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
        b.i32(11, nulls.keep(2, page));
        b.i32(12, nulls.keep(3, reason));
        b.i64(13, Some(sale.number));
        amounts.push(b, 14);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::share;
    use crate::tables::testing::{dec_at, i32_at, read_all, returned_sales};
    use crate::tables::web_sales::WebSales;

    #[test]
    fn returns_reference_web_sales() {
        let dims = Dimensions::at_scale(1.0);
        let (sales_rows, rows) = (140_000, 13_966);
        let sales = read_all(&WebSales::new(6, sales_rows, 5, dims), 2_500);
        let returns = read_all(&WebReturns::new(6, rows, sales_rows, 3, dims), 2_500);
        assert_eq!(returns.num_rows() as u64, rows);
        let sale_of = returned_sales(
            &sales,
            ["ws_order_number", "ws_item_sk"],
            &returns,
            ["wr_order_number", "wr_item_sk"],
        );
        for (i, &s) in sale_of.iter().enumerate() {
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
