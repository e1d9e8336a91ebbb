//! What the returns tables (`store_returns`, `web_returns`) share: the walk over the
//! returned line items of the sales stream, the amounts of a return, and the table
//! generator. What differs — the columns and the keys each table draws — is a
//! [`ReturnsChannel`], implemented in each table's module next to its value rules.

use std::marker::PhantomData;
use std::ops::Range;

use arrow::datatypes::SchemaRef;

use crate::columns::BatchBuilder;
use crate::driver::{Batches, TableGenerator, TableLayout, rows_in_batches};
use crate::fact::{ReturnsPlan, ReturnsWalker, share};
use crate::rng::Rng;
use crate::scale::Dimensions;
use crate::tables::TableId;
use crate::tables::sales::{Channel, SalesStream};
use crate::tables::values::percent_of;

/// A line is returned 0..=`RETURN_DAYS_MAX` days after it was sold (web: shipped).
pub const RETURN_DAYS_MAX: i32 = 90;

/// What a returns table does differently from the other one.
pub trait ReturnsChannel: 'static {
    /// The sales table the returns are drawn from.
    type Sales: Channel;
    /// TPC-DS table name.
    const NAME: &'static str;
    /// Keys the table's random streams.
    const TABLE: TableId;

    fn schema() -> SchemaRef;
    /// Appends the return of `sale` as a row, its values drawn from `r` (the return's own
    /// stream).
    fn push_row(
        dims: &Dimensions,
        r: &mut Rng,
        sale: &<Self::Sales as Channel>::Line,
        b: &mut BatchBuilder,
    );
}

/// How a return's shipping cost is derived from the sale.
#[derive(Clone, Copy, Debug)]
pub enum ReturnShipping {
    /// `q_r × round(list price × s%)`, s drawn in 0..=50.
    PercentOfList(i64),
    /// The returned share of the sale's extended shipping cost.
    ShareOf(i64),
}

/// The returned quantity and the amounts of one return, in cents.
#[derive(Clone, Copy, Debug)]
pub struct ReturnAmounts {
    pub quantity: i64,
    pub amount: i64,
    pub tax: i64,
    pub fee: i64,
    pub ship_cost: i64,
    /// `amount` split into refunded cash, reversed charge and credit.
    pub refund: [i64; 3],
}

impl ReturnAmounts {
    /// Draws the return of a line sold `sold_quantity` times for `net_paid` with `ext_tax`:
    /// the returned quantity 1..=sold, the returned share (rounded half up) of net paid and
    /// tax, a fee of 0.50..=100.00, the shipping cost and the refund split.
    #[inline(always)]
    pub fn draw(
        r: &mut Rng,
        sold_quantity: i32,
        net_paid: i64,
        ext_tax: i64,
        shipping: ReturnShipping,
    ) -> Self {
        let q = i64::from(sold_quantity);
        let quantity = r.range_i64(1, q);
        let amount = share(net_paid, quantity, q);
        let tax = share(ext_tax, quantity, q);
        let fee = r.range_i64(50, 10_000);
        let ship_cost = match shipping {
            ReturnShipping::PercentOfList(list) => quantity * percent_of(list, r.range_i64(0, 50)),
            ReturnShipping::ShareOf(ext_ship) => share(ext_ship, quantity, q),
        };
        let cash = percent_of(amount, r.range_i64(0, 100));
        let reversed = percent_of(amount - cash, r.range_i64(0, 100));
        ReturnAmounts {
            quantity,
            amount,
            tax,
            fee,
            ship_cost,
            refund: [cash, reversed, amount - cash - reversed],
        }
    }

    /// Appends the Int32 quantity at column `col`, then the nine amount columns: amount,
    /// tax, amount incl. tax, fee, ship cost, cash, reversed charge, credit, net loss.
    #[inline(always)]
    pub fn push(&self, b: &mut BatchBuilder, col: usize) {
        let (amt, tax, ship, fee) = (self.amount, self.tax, self.ship_cost, self.fee);
        let [cash, reversed, credit] = self.refund;
        b.i32(col, Some(self.quantity as i32));
        for (i, v) in [
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
            b.decimal(col + 1 + i, Some(v));
        }
    }
}

/// A returns table: the sales stream it replays, which of its lines are returned, and its
/// file split.
pub struct Returns<R: ReturnsChannel> {
    sales: SalesStream<R::Sales>,
    returns: ReturnsPlan,
    layout: TableLayout,
    channel: PhantomData<fn() -> R>,
}

impl<R: ReturnsChannel> Returns<R> {
    /// `rows` returns out of `sales_rows` sales line items.
    pub fn new(seed: u64, rows: u64, sales_rows: u64, files: usize, dims: Dimensions) -> Self {
        Returns {
            layout: TableLayout::new(R::NAME, R::schema(), rows, files),
            sales: SalesStream::new(seed, sales_rows, dims),
            returns: ReturnsPlan::new(seed, R::TABLE as u64, sales_rows, rows),
            channel: PhantomData,
        }
    }
}

impl<R: ReturnsChannel> TableGenerator for Returns<R> {
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
                .unwrap_or_else(|| panic!("{} ran out of returned line items", R::Sales::NAME));
            let r = &mut self.returns.values_stream(index);
            R::push_row(self.sales.dims(), r, sale, b);
        })
    }
}
