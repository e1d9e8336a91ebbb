//! `date_dim`: the TPC-DS calendar dimension (28 columns), 73,049 days from 1900-01-02
//! (`d_date_sk` 2415022) to 2100-01-01 (2488070) at every scale factor.
//!
//! Nothing is random: every column is calendar arithmetic on the date key, a Julian day
//! number ([`crate::calendar`]). Rules (checked by the tests below and by
//! `benches/check_datagen.py`):
//!
//! * `d_date_sk` is dense and `d_date` is the matching calendar date; `d_date_id` is the
//!   16-letter business key of `d_date_sk`.
//! * `d_month_seq = (year − 1900) × 12 + month − 1`; `d_quarter_seq = (year − 1900) × 4 +
//!   quarter` (1-based); `d_week_seq` counts Sunday-to-Saturday weeks, 1 for the week of
//!   1900-01-02; the fiscal year is the calendar year (`d_fy_*` equal the calendar ones).
//! * `d_dow` 0 = Sunday .. 6 = Saturday, `d_day_name` its English name, `d_weekend` Y on
//!   Saturday and Sunday; `d_qoy` 1..=4, `d_quarter_name` e.g. "1999Q3".
//! * `d_holiday` is Y on the fixed-date US holidays (Jan 1, Jul 4, Nov 11, Dec 25) and
//!   `d_following_holiday` Y on the day after one.
//! * `d_first_dom` / `d_last_dom` are the keys of the first and last day of the month;
//!   `d_same_day_ly` / `d_same_day_lq` the key of the same day of month one year / three
//!   months earlier (clamped to the month's last day).
//! * The `d_current_*` flags are Y for the day, week, month, quarter and year of
//!   [`CURRENT_DATE_SK`] (2003-01-02, the last day of sales).

use arrow::datatypes::SchemaRef;

use crate::calendar::{
    SALES_LAST_DATE_SK, date_of_sk, day_of_week, days_in_month, sk_of_date, unix_days_of_sk,
};
use crate::columns::{BatchBuilder, ColumnKind, schema_of};
use crate::driver::{RowTable, TableLayout};
use crate::scale::DATE_DIM_ROWS;
use crate::text;

/// First date key, 1900-01-02.
pub const FIRST_DATE_SK: i32 = 2_415_022;
/// The date the `d_current_*` flags refer to.
pub const CURRENT_DATE_SK: i32 = SALES_LAST_DATE_SK;
/// 1899-12-31, the Sunday starting week 1.
const WEEK_ZERO_SK: i32 = 2_415_020;

pub const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub const COLUMNS: [(&str, ColumnKind); 28] = [
    ("d_date_sk", ColumnKind::Int32),
    ("d_date_id", ColumnKind::Utf8),
    ("d_date", ColumnKind::Date32),
    ("d_month_seq", ColumnKind::Int32),
    ("d_week_seq", ColumnKind::Int32),
    ("d_quarter_seq", ColumnKind::Int32),
    ("d_year", ColumnKind::Int32),
    ("d_dow", ColumnKind::Int32),
    ("d_moy", ColumnKind::Int32),
    ("d_dom", ColumnKind::Int32),
    ("d_qoy", ColumnKind::Int32),
    ("d_fy_year", ColumnKind::Int32),
    ("d_fy_quarter_seq", ColumnKind::Int32),
    ("d_fy_week_seq", ColumnKind::Int32),
    ("d_day_name", ColumnKind::Utf8),
    ("d_quarter_name", ColumnKind::Utf8),
    ("d_holiday", ColumnKind::Utf8),
    ("d_weekend", ColumnKind::Utf8),
    ("d_following_holiday", ColumnKind::Utf8),
    ("d_first_dom", ColumnKind::Int32),
    ("d_last_dom", ColumnKind::Int32),
    ("d_same_day_ly", ColumnKind::Int32),
    ("d_same_day_lq", ColumnKind::Int32),
    ("d_current_day", ColumnKind::Utf8),
    ("d_current_week", ColumnKind::Utf8),
    ("d_current_month", ColumnKind::Utf8),
    ("d_current_quarter", ColumnKind::Utf8),
    ("d_current_year", ColumnKind::Utf8),
];

pub fn schema() -> SchemaRef {
    schema_of(COLUMNS, &["d_date_sk", "d_date_id"])
}

fn is_holiday(month: u32, day: u32) -> bool {
    matches!((month, day), (1, 1) | (7, 4) | (11, 11) | (12, 25))
}

/// Key of the same day of month `months_back` months earlier, clamped to that month's end.
fn same_day_months_back(year: i32, month: u32, day: u32, months_back: u32) -> i32 {
    let total = year * 12 + month as i32 - 1 - months_back as i32;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    sk_of_date(y, m, day.min(days_in_month(y, m)))
}

fn flag(b: bool) -> &'static str {
    if b { "Y" } else { "N" }
}

pub struct DateDim {
    layout: TableLayout,
    current: (i32, u32, u32),
}

impl DateDim {
    pub fn new(files: usize) -> Self {
        DateDim {
            layout: TableLayout::new("date_dim", schema(), DATE_DIM_ROWS, files),
            current: date_of_sk(CURRENT_DATE_SK),
        }
    }
}

impl RowTable for DateDim {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn push_row(&self, b: &mut BatchBuilder, row: u64) {
        let sk = FIRST_DATE_SK + row as i32;
        let (year, month, day) = date_of_sk(sk);
        let qoy = (month - 1) / 3 + 1;
        let dow = day_of_week(sk);
        let week_seq = (sk - WEEK_ZERO_SK) / 7 + 1;
        let quarter_seq = (year - 1900) * 4 + qoy as i32;
        let (cy, cm, _) = self.current;
        let current_week_seq = (CURRENT_DATE_SK - WEEK_ZERO_SK) / 7 + 1;
        let (_, pm, pd) = date_of_sk(sk - 1);

        b.i32(0, Some(sk));
        b.str(1, Some(&text::business_key(sk as u64)));
        b.date(2, Some(unix_days_of_sk(sk)));
        b.i32(3, Some((year - 1900) * 12 + month as i32 - 1));
        b.i32(4, Some(week_seq));
        b.i32(5, Some(quarter_seq));
        b.i32(6, Some(year));
        b.i32(7, Some(dow as i32));
        b.i32(8, Some(month as i32));
        b.i32(9, Some(day as i32));
        b.i32(10, Some(qoy as i32));
        b.i32(11, Some(year));
        b.i32(12, Some(quarter_seq));
        b.i32(13, Some(week_seq));
        b.str(14, Some(DAY_NAMES[dow as usize]));
        b.str(15, Some(&format!("{year}Q{qoy}")));
        b.str(16, Some(flag(is_holiday(month, day))));
        b.str(17, Some(flag(dow == 0 || dow == 6)));
        b.str(18, Some(flag(is_holiday(pm, pd))));
        b.i32(19, Some(sk - day as i32 + 1));
        b.i32(
            20,
            Some(sk - day as i32 + days_in_month(year, month) as i32),
        );
        b.i32(21, Some(same_day_months_back(year, month, day, 12)));
        b.i32(22, Some(same_day_months_back(year, month, day, 3)));
        b.str(23, Some(flag(sk == CURRENT_DATE_SK)));
        b.str(24, Some(flag(week_seq == current_week_seq)));
        b.str(25, Some(flag(year == cy && month == cm)));
        b.str(26, Some(flag(year == cy && qoy == (cm - 1) / 3 + 1)));
        b.str(27, Some(flag(year == cy)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::testing::read_all;
    use arrow::array::AsArray;
    use arrow::datatypes::Int32Type;

    #[test]
    fn calendar_columns() {
        let t = DateDim::new(2);
        let b = read_all(&t, 10_000);
        assert_eq!(b.num_rows(), 73_049);
        let int = |c: usize| b.column(c).as_primitive::<Int32Type>().clone();
        let sk = int(0);
        assert_eq!(sk.value(0), 2_415_022);
        assert_eq!(sk.value(73_048), 2_488_070);
        assert_eq!(date_of_sk(2_488_070), (2100, 1, 1));
        let name = b.column(14).as_string::<i32>();
        assert_eq!(name.value(0), "Tuesday");
        assert_eq!(int(4).value(0), 1);
        assert_eq!(int(3).value(0), 0);
        // 2000-02-29: leap day; same day last year clamps to 1999-02-28.
        let i = (sk_of_date(2000, 2, 29) - FIRST_DATE_SK) as usize;
        assert_eq!(int(21).value(i), sk_of_date(1999, 2, 28));
        assert_eq!(int(20).value(i), sk_of_date(2000, 2, 29));
        assert_eq!(int(19).value(i), sk_of_date(2000, 2, 1));
        let cur = b.column(23).as_string::<i32>();
        assert_eq!(cur.iter().filter(|v| *v == Some("Y")).count(), 1);
        let holiday = b.column(16).as_string::<i32>();
        let j = (sk_of_date(1999, 7, 4) - FIRST_DATE_SK) as usize;
        assert_eq!(holiday.value(j), "Y");
        assert_eq!(b.column(18).as_string::<i32>().value(j + 1), "Y");
        // Weeks run Sunday..Saturday.
        let dow = int(7);
        let week = int(4);
        for k in 1..1_000 {
            assert_eq!(week.value(k) != week.value(k - 1), dow.value(k) == 0);
        }
    }
}
