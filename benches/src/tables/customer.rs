//! `customer`: the TPC-DS customer dimension (18 columns).
//!
//! Rows: `Dimensions::customer` at the scale factor (100,000 at SF 1). Every row is
//! generated from its own random stream, so any file split gives the same rows.
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`):
//!
//! * `c_customer_sk` is 1..=N, dense, in row order; `c_customer_id` is its 16-letter
//!   business key ([`crate::text::business_key`]), unique.
//! * `c_current_cdemo_sk`, `c_current_hdemo_sk`, `c_current_addr_sk` are uniform over their
//!   dimensions; `c_first_sales_date_sk` is in the ten years before the sales period or in
//!   it (2447164..=2452642); `c_first_shipto_date_sk` is 0..=30 days later;
//!   `c_last_review_date_sk` is in the last year of the sales period (2452277..=2452642).
//!   These six keys are null in about 4.5% of rows each.
//! * `c_salutation` matches the first name's gender (Mr./Sir/Dr. or Mrs./Ms./Miss/Dr.);
//!   names come from fixed lists; `c_preferred_cust_flag` is Y or N;
//!   `c_birth_year` 1924..=1992, `c_birth_month` 1..=12, `c_birth_day` a valid day of that
//!   month; `c_birth_country` from a fixed list; `c_email_address` is
//!   `first.last@domain`; `c_login` is always null (as in dsdgen output).

use arrow::datatypes::SchemaRef;

use crate::calendar::{SALES_FIRST_DATE_SK, SALES_LAST_DATE_SK, days_in_month};
use crate::columns::{BatchBuilder, ColumnKind, schema_of};
use crate::driver::{RowTable, TableLayout};
use crate::rng::{Purpose, Rng};
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::values::NullLanes;
use crate::text::{self, COUNTRIES, EMAIL_DOMAINS, FIRST_NAMES_F, FIRST_NAMES_M, LAST_NAMES};

pub const FIRST_SALES_DATE_MIN_SK: i32 = SALES_FIRST_DATE_SK - 3652;
pub const LAST_REVIEW_DATE_MIN_SK: i32 = SALES_LAST_DATE_SK - 365;

pub const COLUMNS: [(&str, ColumnKind); 18] = [
    ("c_customer_sk", ColumnKind::Int32),
    ("c_customer_id", ColumnKind::Utf8),
    ("c_current_cdemo_sk", ColumnKind::Int32),
    ("c_current_hdemo_sk", ColumnKind::Int32),
    ("c_current_addr_sk", ColumnKind::Int32),
    ("c_first_shipto_date_sk", ColumnKind::Int32),
    ("c_first_sales_date_sk", ColumnKind::Int32),
    ("c_salutation", ColumnKind::Utf8),
    ("c_first_name", ColumnKind::Utf8),
    ("c_last_name", ColumnKind::Utf8),
    ("c_preferred_cust_flag", ColumnKind::Utf8),
    ("c_birth_day", ColumnKind::Int32),
    ("c_birth_month", ColumnKind::Int32),
    ("c_birth_year", ColumnKind::Int32),
    ("c_birth_country", ColumnKind::Utf8),
    ("c_login", ColumnKind::Utf8),
    ("c_email_address", ColumnKind::Utf8),
    ("c_last_review_date_sk", ColumnKind::Int32),
];

pub fn schema() -> SchemaRef {
    schema_of(COLUMNS, &["c_customer_sk", "c_customer_id"])
}

pub struct Customer {
    seed: u64,
    dims: Dimensions,
    layout: TableLayout,
}

impl Customer {
    pub fn new(seed: u64, rows: u64, files: usize, dims: Dimensions) -> Self {
        Customer {
            seed,
            dims,
            layout: TableLayout::new("customer", schema(), rows, files),
        }
    }
}

impl RowTable for Customer {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn push_row(&self, b: &mut BatchBuilder, row: u64) {
        let d = &self.dims;
        let r = &mut Rng::stream(self.seed, TableId::Customer as u64, row, Purpose::Values);
        let nulls = NullLanes::<2>::draw(r);
        let sk = row + 1;
        b.i32(0, Some(sk as i32));
        b.str(1, Some(&text::business_key(sk)));
        let cdemo = 1 + r.below(d.customer_demographics) as i32;
        let hdemo = 1 + r.below(d.household_demographics) as i32;
        let addr = 1 + r.below(d.customer_address) as i32;
        let first_sales = r.range_i32(FIRST_SALES_DATE_MIN_SK, SALES_LAST_DATE_SK);
        let first_shipto = first_sales + r.range_i32(0, 30);
        let last_review = r.range_i32(LAST_REVIEW_DATE_MIN_SK, SALES_LAST_DATE_SK);
        b.i32(2, nulls.keep(0, cdemo));
        b.i32(3, nulls.keep(1, hdemo));
        b.i32(4, nulls.keep(2, addr));
        b.i32(5, nulls.keep(3, first_shipto));
        b.i32(6, nulls.keep(4, first_sales));
        let female = r.below(2) == 0;
        let salutation = if female {
            text::pick(r, &["Mrs.", "Ms.", "Miss", "Dr."])
        } else {
            text::pick(r, &["Mr.", "Sir", "Dr."])
        };
        let first = text::pick(
            r,
            if female {
                &FIRST_NAMES_F
            } else {
                &FIRST_NAMES_M
            },
        );
        let last = text::pick(r, &LAST_NAMES);
        b.str(7, Some(salutation));
        b.str(8, Some(first));
        b.str(9, Some(last));
        b.str(10, Some(if r.below(2) == 0 { "Y" } else { "N" }));
        let year = r.range_i32(1924, 1992);
        let month = r.range_i32(1, 12);
        let day = r.range_i32(1, days_in_month(year, month as u32) as i32);
        b.i32(11, Some(day));
        b.i32(12, Some(month));
        b.i32(13, Some(year));
        b.str(14, Some(text::pick(r, &COUNTRIES)));
        b.str(15, None);
        let email = format!("{first}.{last}@{}", text::pick(r, &EMAIL_DOMAINS));
        b.str(16, Some(&email));
        b.i32(17, nulls.keep(5, last_review));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::testing::read_all;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    use std::collections::HashSet;

    #[test]
    fn value_rules_hold() {
        let dims = Dimensions::at_scale(1.0);
        let t = Customer::new(4, 20_000, 2, dims);
        let b = read_all(&t, 7_000);
        assert_eq!(b.num_rows(), 20_000);
        let int = |c: usize| b.column(c).as_primitive::<Int32Type>().clone();
        let (sk, addr, shipto, sales) = (int(0), int(4), int(5), int(6));
        let (day, month, year) = (int(11), int(12), int(13));
        let ids: HashSet<&str> = b.column(1).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids.len(), 20_000);
        for i in 0..b.num_rows() {
            assert_eq!(sk.value(i), i as i32 + 1);
            if addr.is_valid(i) {
                assert!((1..=dims.customer_address as i32).contains(&addr.value(i)));
            }
            if shipto.is_valid(i) && sales.is_valid(i) {
                assert!((0..=30).contains(&(shipto.value(i) - sales.value(i))));
            }
            let dim = days_in_month(year.value(i), month.value(i) as u32) as i32;
            assert!((1..=dim).contains(&day.value(i)));
        }
        let null_frac = addr.null_count() as f64 / 20_000.0;
        assert!((0.03..0.06).contains(&null_frac), "{null_frac}");
        assert_eq!(b.column(15).null_count(), 20_000);
    }
}
