//! `store_sales`: the TPC-DS store channel fact table, one row per line item of a ticket.
//!
//! Value rules (checked by the tests below and by `benches/check_datagen.py`):
//!
//! * Tickets hold 8..=16 line items. All line items of a ticket share `ss_ticket_number`,
//!   `ss_sold_date_sk`, `ss_sold_time_sk`, `ss_customer_sk`, `ss_cdemo_sk`, `ss_hdemo_sk`,
//!   `ss_addr_sk` and `ss_store_sk` (before nulls are applied); items within a ticket are
//!   distinct. Ticket numbers are dense, 1..=T over the whole table, increasing with file
//!   and row order; a ticket never spans two files.
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

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::file::properties::WriterPropertiesBuilder;
use parquet::schema::types::ColumnPath;

use crate::calendar::{
    SALES_FIRST_DATE_SK, STORE_CLOSE_TIME_SK, STORE_OPEN_TIME_SK, sales_cumulative_weights,
};
use crate::driver::{TableGenerator, split_rows};
use crate::rng::{Purpose, Rng};
use crate::scale::Dimensions;
use crate::tables::TableId;

pub const ITEMS_PER_TICKET_MIN: i64 = 8;
pub const ITEMS_PER_TICKET_MAX: i64 = 16;
/// Null probability of a nullable key, in 1/65536 units: 2949 / 65536 = 4.5%.
const NULL_PER_65536: u64 = 2949;
const COUPON_PERCENT_OF_LINES: u64 = 20;
const DECIMAL_PRECISION: u8 = 7;
const DECIMAL_SCALE: i8 = 2;

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
    let decimal = DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE);
    let fields: Vec<Field> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            let data_type = match i {
                9 => DataType::Int64,
                0..=10 => DataType::Int32,
                _ => decimal.clone(),
            };
            // TPC-DS DDL: only the primary key (ss_item_sk, ss_ticket_number) is NOT NULL.
            let nullable = !matches!(name, "ss_item_sk" | "ss_ticket_number");
            Field::new(name, data_type, nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Plan and shared state of one `store_sales` generation: (seed, rows, files) determine the
/// output; `dims` (from the scale factor) determine the key domains.
pub struct StoreSales {
    seed: u64,
    dims: Dimensions,
    file_rows: Vec<u64>,
    /// Global index (0-based) of the first ticket of each file.
    file_first_ticket: Vec<u64>,
    total_tickets: u64,
    /// Cumulative day weights over the sales period (see [`sales_cumulative_weights`]).
    date_cum: Vec<u64>,
    schema: SchemaRef,
}

impl StoreSales {
    pub fn new(seed: u64, rows: u64, files: usize, dims: Dimensions) -> Self {
        assert!(files > 0, "at least one file");
        assert!(
            dims.item >= ITEMS_PER_TICKET_MAX as u64,
            "item domain too small for distinct items per ticket"
        );
        let file_rows = split_rows(rows, files);
        // Planning pass: count each file's tickets by replaying its ticket-size stream, so
        // ticket numbers can be dense across files while files are generated independently.
        let mut file_first_ticket = Vec::with_capacity(files);
        let mut total_tickets = 0u64;
        for (file, &n) in file_rows.iter().enumerate() {
            file_first_ticket.push(total_tickets);
            let mut sizes = Self::sizes_stream(seed, file);
            let mut left = n;
            while left > 0 {
                left -= left.min(next_ticket_size(&mut sizes));
                total_tickets += 1;
            }
        }
        StoreSales {
            seed,
            dims,
            file_rows,
            file_first_ticket,
            total_tickets,
            date_cum: sales_cumulative_weights(),
            schema: schema(),
        }
    }

    fn sizes_stream(seed: u64, file: usize) -> Rng {
        Rng::stream(
            seed,
            TableId::StoreSales as u64,
            file as u64,
            Purpose::GroupSizes,
        )
    }

    pub fn total_tickets(&self) -> u64 {
        self.total_tickets
    }

    fn file_generator(&self, file: usize) -> FileGen<'_> {
        FileGen {
            table: self,
            values: Rng::stream(
                self.seed,
                TableId::StoreSales as u64,
                file as u64,
                Purpose::Values,
            ),
            sizes: Self::sizes_stream(self.seed, file),
            rows_left: self.file_rows[file],
            next_ticket: self.file_first_ticket[file],
            ticket: Ticket::default(),
            date_pos: 0,
        }
    }
}

fn next_ticket_size(sizes: &mut Rng) -> u64 {
    sizes.range_i64(ITEMS_PER_TICKET_MIN, ITEMS_PER_TICKET_MAX) as u64
}

#[derive(Default)]
struct Ticket {
    lines_left: u64,
    number: i64,
    date_sk: i32,
    time_sk: i32,
    customer_sk: i32,
    cdemo_sk: i32,
    hdemo_sk: i32,
    addr_sk: i32,
    store_sk: i32,
    items: [i32; ITEMS_PER_TICKET_MAX as usize],
    item_count: usize,
}

struct FileGen<'a> {
    table: &'a StoreSales,
    values: Rng,
    sizes: Rng,
    rows_left: u64,
    /// Global 0-based index of the next ticket to open.
    next_ticket: u64,
    ticket: Ticket,
    /// Index into `date_cum` of the current date; only moves forward.
    date_pos: usize,
}

/// One batch under construction: one vector per column, plus validity for nullable keys.
struct Columns {
    keys: [Vec<i32>; 9],
    valid: [Vec<bool>; 8],
    ticket: Vec<i64>,
    quantity: Vec<i32>,
    amounts: [Vec<i128>; 12],
}

/// Key column positions in `Columns::keys`; the first eight are also the nullable ones, in
/// `Columns::valid` order, except item which is never null.
const K_DATE: usize = 0;
const K_TIME: usize = 1;
const K_ITEM: usize = 2;
const K_CUSTOMER: usize = 3;
const K_CDEMO: usize = 4;
const K_HDEMO: usize = 5;
const K_ADDR: usize = 6;
const K_STORE: usize = 7;
const K_PROMO: usize = 8;
/// Nullable keys, in `Columns::valid` order.
const NULLABLE_KEYS: [usize; 8] = [
    K_DATE, K_TIME, K_CUSTOMER, K_CDEMO, K_HDEMO, K_ADDR, K_STORE, K_PROMO,
];

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Columns {
            keys: std::array::from_fn(|_| Vec::with_capacity(n)),
            valid: std::array::from_fn(|_| Vec::with_capacity(n)),
            ticket: Vec::with_capacity(n),
            quantity: Vec::with_capacity(n),
            amounts: std::array::from_fn(|_| Vec::with_capacity(n)),
        }
    }

    fn finish(self, schema: &SchemaRef) -> RecordBatch {
        let Columns {
            keys,
            valid,
            ticket,
            quantity,
            amounts,
        } = self;
        let mut valid = valid.map(Some);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
        for (k, values) in keys.into_iter().enumerate() {
            let nulls = NULLABLE_KEYS
                .iter()
                .position(|&nk| nk == k)
                .and_then(|v| valid[v].take())
                .map(NullBuffer::from)
                .filter(|nb| nb.null_count() > 0);
            arrays.push(Arc::new(Int32Array::new(ScalarBuffer::from(values), nulls)));
        }
        arrays.push(Arc::new(Int64Array::new(ScalarBuffer::from(ticket), None)));
        arrays.push(Arc::new(Int32Array::new(
            ScalarBuffer::from(quantity),
            None,
        )));
        for values in amounts {
            arrays.push(Arc::new(
                Decimal128Array::new(ScalarBuffer::from(values), None)
                    .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
                    .expect("valid decimal type"),
            ));
        }
        RecordBatch::try_new(schema.clone(), arrays).expect("batch matches schema")
    }
}

/// `a × percent / 100`, rounded half up, for non-negative `a` and `percent`.
#[inline]
fn percent_of(a: i64, percent: i64) -> i64 {
    (a * percent + 50) / 100
}

impl FileGen<'_> {
    fn open_ticket(&mut self) {
        let table = self.table;
        let dims = &table.dims;
        let g = self.next_ticket;
        self.next_ticket += 1;
        // Dates advance with the ticket index so that each day gets its weighted share of
        // tickets: ticket g falls on the first day whose cumulative weight exceeds the
        // midpoint of its share.
        let total_weight = *table.date_cum.last().expect("non-empty calendar");
        let target = ((2 * u128::from(g) + 1) * u128::from(total_weight)
            / (2 * u128::from(table.total_tickets))) as u64;
        while u128::from(table.date_cum[self.date_pos]) <= u128::from(target) {
            self.date_pos += 1;
        }
        let r = &mut self.values;
        self.ticket = Ticket {
            lines_left: next_ticket_size(&mut self.sizes),
            number: g as i64 + 1,
            date_sk: SALES_FIRST_DATE_SK + self.date_pos as i32,
            time_sk: r.range_i32(STORE_OPEN_TIME_SK, STORE_CLOSE_TIME_SK),
            customer_sk: 1 + r.below(dims.customer) as i32,
            cdemo_sk: 1 + r.below(dims.customer_demographics) as i32,
            hdemo_sk: 1 + r.below(dims.household_demographics) as i32,
            addr_sk: 1 + r.below(dims.customer_address) as i32,
            store_sk: 1 + r.below(dims.store) as i32,
            items: [0; ITEMS_PER_TICKET_MAX as usize],
            item_count: 0,
        };
    }

    fn next_batch(&mut self, batch_rows: usize) -> Option<RecordBatch> {
        if self.rows_left == 0 {
            return None;
        }
        let n = (batch_rows as u64).min(self.rows_left) as usize;
        self.rows_left -= n as u64;
        let mut c = Columns::with_capacity(n);
        let dims = self.table.dims;
        for _ in 0..n {
            if self.ticket.lines_left == 0 {
                self.open_ticket();
            }
            self.ticket.lines_left -= 1;
            let r = &mut self.values;
            let t = &mut self.ticket;

            // Nulls: eight 16-bit lanes from two draws, one lane per nullable key.
            let (n0, n1) = (r.next_u64(), r.next_u64());
            for (lane, v) in c.valid.iter_mut().enumerate() {
                let bits = if lane < 4 { n0 } else { n1 };
                let lane16 = (bits >> ((lane % 4) * 16)) & 0xFFFF;
                v.push(lane16 >= NULL_PER_65536);
            }

            let item = loop {
                let candidate = 1 + r.below(dims.item) as i32;
                if !t.items[..t.item_count].contains(&candidate) {
                    break candidate;
                }
            };
            t.items[t.item_count] = item;
            t.item_count += 1;

            c.keys[K_DATE].push(t.date_sk);
            c.keys[K_TIME].push(t.time_sk);
            c.keys[K_ITEM].push(item);
            c.keys[K_CUSTOMER].push(t.customer_sk);
            c.keys[K_CDEMO].push(t.cdemo_sk);
            c.keys[K_HDEMO].push(t.hdemo_sk);
            c.keys[K_ADDR].push(t.addr_sk);
            c.keys[K_STORE].push(t.store_sk);
            c.keys[K_PROMO].push(1 + r.below(dims.promotion) as i32);
            c.ticket.push(t.number);

            let quantity = r.range_i64(1, 100);
            let wholesale = r.range_i64(100, 10_000);
            let list = percent_of(wholesale, 100 + r.range_i64(0, 100));
            let sales = percent_of(list, 100 - r.range_i64(0, 100));
            let ext_discount = quantity * (list - sales);
            let ext_sales = quantity * sales;
            let ext_wholesale = quantity * wholesale;
            let ext_list = quantity * list;
            let coupon = if r.below(100) < COUPON_PERCENT_OF_LINES {
                percent_of(ext_sales, r.range_i64(1, 50))
            } else {
                0
            };
            let net_paid = ext_sales - coupon;
            let ext_tax = percent_of(net_paid, r.range_i64(0, 9));
            let net_paid_inc_tax = net_paid + ext_tax;
            let net_profit = net_paid - ext_wholesale;

            c.quantity.push(quantity as i32);
            let amounts = [
                wholesale,
                list,
                sales,
                ext_discount,
                ext_sales,
                ext_wholesale,
                ext_list,
                ext_tax,
                coupon,
                net_paid,
                net_paid_inc_tax,
                net_profit,
            ];
            for (col, v) in c.amounts.iter_mut().zip(amounts) {
                col.push(i128::from(v));
            }
        }
        Some(c.finish(&self.table.schema))
    }
}

impl TableGenerator for StoreSales {
    fn name(&self) -> &'static str {
        "store_sales"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn file_count(&self) -> usize {
        self.file_rows.len()
    }

    fn file_rows(&self, file: usize) -> u64 {
        self.file_rows[file]
    }

    fn file_batches(
        &self,
        file: usize,
        batch_rows: usize,
    ) -> Box<dyn Iterator<Item = RecordBatch> + Send + '_> {
        assert!(batch_rows > 0);
        let mut generator = self.file_generator(file);
        Box::new(std::iter::from_fn(move || generator.next_batch(batch_rows)))
    }

    fn configure(&self, mut props: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
        for name in NO_DICTIONARY {
            props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
        props
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};
    use std::collections::HashSet;

    fn generate(seed: u64, rows: u64, files: usize, batch_rows: usize) -> Vec<Vec<RecordBatch>> {
        let t = StoreSales::new(seed, rows, files, Dimensions::at_scale(1.0));
        (0..files)
            .map(|f| t.file_batches(f, batch_rows).collect())
            .collect()
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
    fn deterministic_and_independent_of_batch_size() {
        let a = generate(11, 50_000, 3, 4096);
        let b = generate(11, 50_000, 3, 50_000);
        for (fa, fb) in a.iter().zip(&b) {
            let ca = arrow::compute::concat_batches(&schema(), fa).unwrap();
            let cb = arrow::compute::concat_batches(&schema(), fb).unwrap();
            assert_eq!(ca, cb);
        }
        let c = generate(12, 50_000, 3, 4096);
        assert_ne!(a[0][0], c[0][0]);
    }

    #[test]
    fn value_rules_hold() {
        let files = generate(5, 120_000, 4, 10_000);
        let dims = Dimensions::at_scale(1.0);
        let mut ticket_items: HashSet<(i64, i32)> = HashSet::new();
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
                let [w, l, s, ed, es, ew, el, et, cp, np, npt, pr] = [
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
                ]
                .map(|n| dec(b, n));
                for i in 0..b.num_rows() {
                    assert!(ticket[i] == last_ticket || ticket[i] == last_ticket + 1);
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
        assert_eq!(rows, 120_000);
        let null_fraction = nulls as f64 / rows as f64;
        assert!((0.035..0.055).contains(&null_fraction), "{null_fraction}");
        let coupon_fraction = coupons as f64 / rows as f64;
        assert!((0.15..0.25).contains(&coupon_fraction), "{coupon_fraction}");
        let tickets = StoreSales::new(5, 120_000, 4, dims).total_tickets();
        assert_eq!(last_ticket as u64, tickets);
        assert!((120_000 / 16..=120_000 / 8 + 4).contains(&tickets));
    }
}
