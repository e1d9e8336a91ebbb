//! TPC-DS calendar conventions.
//!
//! TPC-DS date surrogate keys (`d_date_sk`, `*_sold_date_sk`) are Julian day numbers:
//! `date_dim` starts at 2415022 = 1900-01-02 and sales happen between
//! [`SALES_FIRST_DATE_SK`] = 1998-01-02 and [`SALES_LAST_DATE_SK`] = 2003-01-02.
//! Time surrogate keys (`t_time_sk`) are seconds since midnight; store sales happen during
//! store hours, 08:00:00 to 20:59:59.

/// First date of the sales period, 1998-01-02.
pub const SALES_FIRST_DATE_SK: i32 = 2_450_816;
/// Last date of the sales period, 2003-01-02.
pub const SALES_LAST_DATE_SK: i32 = 2_452_642;
/// Julian day number of 1970-01-01.
const JDN_UNIX_EPOCH: i32 = 2_440_588;

/// First second of store hours (08:00:00).
pub const STORE_OPEN_TIME_SK: i32 = 8 * 3600;
/// Last second of store hours (20:59:59).
pub const STORE_CLOSE_TIME_SK: i32 = 21 * 3600 - 1;

pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => panic!("month out of range: {month}"),
    }
}

/// Calendar date (year, month 1-12, day 1-31) of a date surrogate key (Julian day number).
/// Walks whole years then months from 1970; dates far from that are rare enough here.
pub fn date_of_sk(date_sk: i32) -> (i32, u32, u32) {
    let mut days = date_sk - JDN_UNIX_EPOCH; // days since 1970-01-01
    let mut year = 1970;
    loop {
        if days < 0 {
            year -= 1;
            days += if is_leap_year(year) { 366 } else { 365 };
        } else {
            let len = if is_leap_year(year) { 366 } else { 365 };
            if days < len {
                break;
            }
            days -= len;
            year += 1;
        }
    }
    let mut month = 1;
    loop {
        let len = days_in_month(year, month) as i32;
        if days < len {
            return (year, month, days as u32 + 1);
        }
        days -= len;
        month += 1;
    }
}

/// Relative sales volume of a day in a month, TPC-DS style: low January to July, higher
/// August to October, highest in November and December.
pub fn sales_weight_of_month(month: u32) -> u64 {
    match month {
        1..=7 => 2,
        8..=10 => 3,
        11 | 12 => 5,
        _ => panic!("month out of range: {month}"),
    }
}

/// Cumulative sales weights over the sales period: `cum[i]` is the total weight of days
/// `SALES_FIRST_DATE_SK ..= SALES_FIRST_DATE_SK + i`.
pub fn sales_cumulative_weights() -> Vec<u64> {
    let mut total = 0;
    (SALES_FIRST_DATE_SK..=SALES_LAST_DATE_SK)
        .map(|sk| {
            total += sales_weight_of_month(date_of_sk(sk).1);
            total
        })
        .collect()
}

/// Assigns sales dates to the groups (tickets, orders) of a sales table: group `g` of `G`
/// falls on the first day whose cumulative sales weight exceeds the midpoint of its share
/// `(2g + 1) / 2G` of the total weight, so dates never decrease with `g` and each day gets
/// its weighted share of groups.
#[derive(Clone, Debug)]
pub struct SalesDates {
    cum: Vec<u64>,
    groups: u64,
}

impl SalesDates {
    pub fn new(total_groups: u64) -> Self {
        SalesDates {
            cum: sales_cumulative_weights(),
            groups: total_groups.max(1),
        }
    }

    fn target(&self, g: u64) -> u128 {
        let total = u128::from(*self.cum.last().expect("non-empty calendar"));
        (2 * u128::from(g) + 1) * total / (2 * u128::from(self.groups))
    }

    /// Day index (from [`SALES_FIRST_DATE_SK`]) of group `g`, computed from scratch.
    pub fn day_index(&self, g: u64) -> usize {
        let target = self.target(g);
        self.cum.partition_point(|&c| u128::from(c) <= target)
    }

    /// Date key of group `g`, advancing `pos` from an earlier group's day index (cheaper
    /// than [`SalesDates::day_index`] when groups are visited in order).
    pub fn advance(&self, g: u64, pos: &mut usize) -> i32 {
        let target = self.target(g);
        while u128::from(self.cum[*pos]) <= target {
            *pos += 1;
        }
        SALES_FIRST_DATE_SK + *pos as i32
    }
}

/// Days since 1970-01-01 of a date key (Julian day number).
pub fn unix_days_of_sk(date_sk: i32) -> i32 {
    date_sk - JDN_UNIX_EPOCH
}

/// Date key (Julian day number) of a calendar date.
pub fn sk_of_date(year: i32, month: u32, day: u32) -> i32 {
    // Days from 1970-01-01 by whole years, then months.
    let mut days: i32 = 0;
    if year >= 1970 {
        for y in 1970..year {
            days += if is_leap_year(y) { 366 } else { 365 };
        }
    } else {
        for y in year..1970 {
            days -= if is_leap_year(y) { 366 } else { 365 };
        }
    }
    for m in 1..month {
        days += days_in_month(year, m) as i32;
    }
    JDN_UNIX_EPOCH + days + day as i32 - 1
}

/// Day of the week of a date key, 0 = Sunday .. 6 = Saturday.
pub fn day_of_week(date_sk: i32) -> u32 {
    // Julian day number 0 mod 7 is a Monday.
    ((date_sk + 1).rem_euclid(7)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpcds_date_keys() {
        assert_eq!(date_of_sk(2_415_022), (1900, 1, 2));
        assert_eq!(date_of_sk(SALES_FIRST_DATE_SK), (1998, 1, 2));
        assert_eq!(date_of_sk(SALES_LAST_DATE_SK), (2003, 1, 2));
        assert_eq!(date_of_sk(JDN_UNIX_EPOCH), (1970, 1, 1));
        assert_eq!(date_of_sk(2_451_604), (2000, 2, 29));
        assert_eq!(date_of_sk(2_451_605), (2000, 3, 1));
    }

    #[test]
    fn cumulative_weights_are_increasing() {
        let cum = sales_cumulative_weights();
        assert_eq!(
            cum.len(),
            (SALES_LAST_DATE_SK - SALES_FIRST_DATE_SK + 1) as usize
        );
        assert!(cum.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sales_dates_are_monotone_and_consistent() {
        let dates = SalesDates::new(1_000);
        let mut pos = dates.day_index(0);
        let mut last = 0;
        for g in 0..1_000 {
            let d = dates.advance(g, &mut pos);
            assert_eq!(d, SALES_FIRST_DATE_SK + dates.day_index(g) as i32);
            assert!(d >= last && (SALES_FIRST_DATE_SK..=SALES_LAST_DATE_SK).contains(&d));
            last = d;
        }
    }

    #[test]
    fn date_arithmetic() {
        for sk in [2_415_022, 2_440_587, 2_440_588, 2_451_604, 2_488_070] {
            let (y, m, d) = date_of_sk(sk);
            assert_eq!(sk_of_date(y, m, d), sk);
        }
        assert_eq!(unix_days_of_sk(JDN_UNIX_EPOCH), 0);
        // 1900-01-02 was a Tuesday, 2000-01-01 a Saturday.
        assert_eq!(day_of_week(2_415_022), 2);
        assert_eq!(day_of_week(sk_of_date(2000, 1, 1)), 6);
    }
}
