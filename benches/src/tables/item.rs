//! `item`: the TPC-DS item dimension (22 columns), a slowly changing dimension.
//!
//! Rows: `Dimensions::item` at the scale factor (18,000 at SF 1, growing sub-linearly).
//! Every row is generated from its own random streams, so any file split gives the same
//! rows.
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`):
//!
//! * `i_item_sk` is 1..=N, dense, in row order; it is what the fact tables reference.
//! * Business keys have revisions: rows come in runs of six holding one item with one
//!   revision, one with two and one with three, so `i_item_id` (16 letters, see
//!   [`crate::text::business_key`]) repeats 1-3 times and there are N/2 distinct ids
//!   (rounded up per partial run). Revision periods: a single revision runs from 1997-10-27
//!   with no end; two revisions split at 2000-10-27; three at 1999-10-28 and 2001-10-27.
//!   `i_rec_end_date` is the day before the next revision's start, and null on the current
//!   revision.
//! * Category, class, brand and manufacturer belong to the business key (equal across its
//!   revisions): `i_category_id` 1..=10 with TPC-DS's category names, `i_class_id` 1-based
//!   within the category, `i_brand_id = category × 1,000,000 + class × 1,000 + n` (n 1..=10)
//!   with a syllable name, `i_manufact_id` 1..=1000 with `i_manufact` its syllable name.
//! * Per revision: `i_current_price` 0.09..=99.99; `i_wholesale_cost` 30%..=90% of it (at
//!   least 0.01); `i_item_desc` a sentence of at most 200 characters; size, color, units from
//!   fixed lists; `i_formulation` 20 lower-case letters and digits; `i_container` is
//!   "Unknown"; `i_manager_id` 1..=100; `i_product_name` the syllable name of `i_item_sk`.
//! * No column is null (dsdgen leaves a few percent of non-key item columns null; this
//!   generator does not).

use arrow::datatypes::SchemaRef;

use crate::calendar::{sk_of_date, unix_days_of_sk};
use crate::columns::{BatchBuilder, ColumnKind, schema_of};
use crate::driver::{RowTable, TableLayout};
use crate::rng::{Purpose, Rng};
use crate::tables::TableId;
use crate::tables::values::percent_of;
use crate::text::{self, CATEGORIES, COLORS, SIZES, UNITS};

pub const COLUMNS: [(&str, ColumnKind); 22] = [
    ("i_item_sk", ColumnKind::Int32),
    ("i_item_id", ColumnKind::Utf8),
    ("i_rec_start_date", ColumnKind::Date32),
    ("i_rec_end_date", ColumnKind::Date32),
    ("i_item_desc", ColumnKind::Utf8),
    ("i_current_price", ColumnKind::Decimal72),
    ("i_wholesale_cost", ColumnKind::Decimal72),
    ("i_brand_id", ColumnKind::Int32),
    ("i_brand", ColumnKind::Utf8),
    ("i_class_id", ColumnKind::Int32),
    ("i_class", ColumnKind::Utf8),
    ("i_category_id", ColumnKind::Int32),
    ("i_category", ColumnKind::Utf8),
    ("i_manufact_id", ColumnKind::Int32),
    ("i_manufact", ColumnKind::Utf8),
    ("i_size", ColumnKind::Utf8),
    ("i_formulation", ColumnKind::Utf8),
    ("i_color", ColumnKind::Utf8),
    ("i_units", ColumnKind::Utf8),
    ("i_container", ColumnKind::Utf8),
    ("i_manager_id", ColumnKind::Int32),
    ("i_product_name", ColumnKind::Utf8),
];

pub fn schema() -> SchemaRef {
    schema_of(COLUMNS, &["i_item_sk", "i_item_id"])
}

/// Position in a run of six rows -> (item within the run, revision, revisions of the item).
const RUN: [(u64, usize, usize); 6] = [
    (0, 0, 1),
    (1, 0, 2),
    (1, 1, 2),
    (2, 0, 3),
    (2, 1, 3),
    (2, 2, 3),
];

/// (start, end) dates of revision `rev` of an item with `revisions` revisions; `None` end is
/// the current revision.
pub fn revision_dates(revisions: usize, rev: usize) -> (i32, Option<i32>) {
    let starts: &[i32] = match revisions {
        1 => &[sk_of_date(1997, 10, 27)],
        2 => &[sk_of_date(1997, 10, 27), sk_of_date(2000, 10, 27)],
        _ => &[
            sk_of_date(1997, 10, 27),
            sk_of_date(1999, 10, 28),
            sk_of_date(2001, 10, 27),
        ],
    };
    (starts[rev], starts.get(rev + 1).map(|next| next - 1))
}

/// (0-based business key index, revision, revisions) of 0-based row `row`.
pub fn revision_of_row(row: u64) -> (u64, usize, usize) {
    let (item, rev, revisions) = RUN[(row % 6) as usize];
    ((row / 6) * 3 + item, rev, revisions)
}

pub struct Item {
    seed: u64,
    layout: TableLayout,
}

impl Item {
    pub fn new(seed: u64, rows: u64, files: usize) -> Self {
        Item {
            seed,
            layout: TableLayout::new("item", schema(), rows, files),
        }
    }
}

impl RowTable for Item {
    fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn push_row(&self, b: &mut BatchBuilder, row: u64) {
        let (key, rev, revisions) = revision_of_row(row);
        let sk = row + 1;
        // Business-key attributes: the same for every revision.
        let e = &mut Rng::stream(self.seed, TableId::Item as u64, key, Purpose::Entity);
        let category = e.below(CATEGORIES.len() as u64) as usize;
        let (category_name, classes) = CATEGORIES[category];
        let class = e.below(classes.len() as u64) as usize;
        let brand_n = e.range_i32(1, 10);
        let manufact = e.range_i32(1, 1000);
        let (category_id, class_id) = (category as i32 + 1, class as i32 + 1);
        // Revision attributes.
        let r = &mut Rng::stream(self.seed, TableId::Item as u64, row, Purpose::Values);
        let price = r.range_i64(9, 9_999);
        let wholesale = percent_of(price, r.range_i64(30, 90)).max(1);
        let (start, end) = revision_dates(revisions, rev);

        b.i32(0, Some(sk as i32));
        b.str(1, Some(&text::business_key(key + 1)));
        b.date(2, Some(unix_days_of_sk(start)));
        b.date(3, end.map(unix_days_of_sk));
        b.str(4, Some(&text::sentence(r, 200)));
        b.decimal(5, Some(price));
        b.decimal(6, Some(wholesale));
        b.i32(
            7,
            Some(category_id * 1_000_000 + class_id * 1_000 + brand_n),
        );
        let brand = format!(
            "{}{} #{brand_n}",
            text::syllable_name(category_id as u64),
            text::syllable_name(class_id as u64)
        );
        b.str(8, Some(&brand));
        b.i32(9, Some(class_id));
        b.str(10, Some(classes[class]));
        b.i32(11, Some(category_id));
        b.str(12, Some(category_name));
        b.i32(13, Some(manufact));
        b.str(14, Some(&text::syllable_name(manufact as u64)));
        b.str(15, Some(text::pick(r, &SIZES)));
        let formulation: String = (0..20)
            .map(|_| {
                let c = r.below(36) as u8;
                char::from(if c < 10 { b'0' + c } else { b'a' + c - 10 })
            })
            .collect();
        b.str(16, Some(&formulation));
        b.str(17, Some(text::pick(r, &COLORS)));
        b.str(18, Some(text::pick(r, &UNITS)));
        b.str(19, Some("Unknown"));
        b.i32(20, Some(r.range_i32(1, 100)));
        b.str(21, Some(&text::syllable_name(sk)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::testing::read_all;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, Int32Type};
    use std::collections::HashMap;

    #[test]
    fn revisions_and_value_rules() {
        let t = Item::new(1, 18_000, 3);
        let b = read_all(&t, 4_000);
        assert_eq!(b.num_rows(), 18_000);
        let sk = b.column(0).as_primitive::<Int32Type>();
        let id = b.column(1).as_string::<i32>();
        let start = b.column(2).as_primitive::<Date32Type>();
        let end = b.column(3).as_primitive::<Date32Type>();
        let price = b.column(5).as_primitive::<Decimal128Type>();
        let cost = b.column(6).as_primitive::<Decimal128Type>();
        let category = b.column(11).as_primitive::<Int32Type>();
        let desc = b.column(4).as_string::<i32>();
        let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
        for i in 0..b.num_rows() {
            assert_eq!(sk.value(i), i as i32 + 1);
            assert_eq!(id.value(i).len(), 16);
            by_id.entry(id.value(i)).or_default().push(i);
            assert!((9..=9_999).contains(&price.value(i)));
            assert!(1 <= cost.value(i) && cost.value(i) <= price.value(i));
            assert!((1..=10).contains(&category.value(i)));
            assert!(desc.value(i).len() <= 200);
        }
        assert_eq!(by_id.len(), 9_000);
        for rows in by_id.values() {
            assert!((1..=3).contains(&rows.len()));
            // Exactly one current revision; periods are contiguous.
            assert_eq!(rows.iter().filter(|&&i| end.is_null(i)).count(), 1);
            for w in rows.windows(2) {
                assert_eq!(end.value(w[0]) + 1, start.value(w[1]));
                assert_eq!(category.value(w[0]), category.value(w[1]));
            }
        }
        assert_eq!(b.column(0).null_count(), 0);
    }
}
