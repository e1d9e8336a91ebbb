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

use arrow::datatypes::SchemaRef;

use crate::calendar::{STORE_CLOSE_TIME_SK, STORE_OPEN_TIME_SK};
use crate::columns::{BatchBuilder, fact_schema};
use crate::rng::Rng;
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::returns::{
    RETURN_DAYS_MAX, ReturnAmounts, ReturnShipping, Returns, ReturnsChannel,
};
use crate::tables::store_sales::{self as ss, SaleLine, StoreChannel};
use crate::tables::values::NullLanes;

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

/// The `store_returns` table generator.
pub type StoreReturns = Returns<StoreReturnsChannel>;

/// The columns and keys of store returns.
pub struct StoreReturnsChannel;

impl ReturnsChannel for StoreReturnsChannel {
    type Sales = StoreChannel;
    const NAME: &'static str = "store_returns";
    const TABLE: TableId = TableId::StoreReturns;

    fn schema() -> SchemaRef {
        schema()
    }

    fn push_row(dims: &Dimensions, r: &mut Rng, sale: &SaleLine, b: &mut BatchBuilder) {
        let nulls = NullLanes::<1>::draw(r);
        let date = sale.keys[ss::K_DATE] + r.range_i32(0, RETURN_DAYS_MAX);
        let time = r.range_i32(STORE_OPEN_TIME_SK, STORE_CLOSE_TIME_SK);
        let reason = 1 + r.below(dims.reason) as i32;
        let shipping = ReturnShipping::PercentOfList(sale.amounts[ss::A_LIST]);
        let amounts = ReturnAmounts::draw(
            r,
            sale.quantity,
            sale.amounts[ss::A_NET_PAID],
            sale.amounts[ss::A_EXT_TAX],
            shipping,
        );

        b.i32(0, nulls.keep(0, date));
        b.i32(1, nulls.keep(1, time));
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
        b.i32(8, nulls.keep(2, reason));
        b.i64(9, Some(sale.number));
        amounts.push(b, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::share;
    use crate::tables::store_sales::StoreSales;
    use crate::tables::testing::{dec_at, i32_at, read_all, returned_sales};

    #[test]
    fn returns_reference_sales_and_follow_the_rules() {
        let dims = Dimensions::at_scale(1.0);
        let (sales_rows, rows) = (150_000, 14_975);
        let sales = read_all(&StoreSales::new(8, sales_rows, 3, dims), 3_000);
        let returns = read_all(&StoreReturns::new(8, rows, sales_rows, 4, dims), 3_000);
        assert_eq!(returns.num_rows() as u64, rows);
        let sale_of = returned_sales(
            &sales,
            ["ss_ticket_number", "ss_item_sk"],
            &returns,
            ["sr_ticket_number", "sr_item_sk"],
        );
        let mut null_dates = 0;
        for (i, &s) in sale_of.iter().enumerate() {
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
        let one = read_all(&StoreReturns::new(2, 20_000, 200_000, 1, dims), 3_000);
        let many = read_all(&StoreReturns::new(2, 20_000, 200_000, 7, dims), 3_000);
        assert_eq!(one, many);
    }
}
