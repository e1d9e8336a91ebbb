//! One module per TPC-DS table. A table module exposes its Arrow schema, its value rules in
//! the module docs, and a type implementing [`crate::driver::TableGenerator`]. What several
//! tables share lives once: [`sales`] (the walk over tickets/orders, line prices and the
//! generator of both sales tables), [`returns`] (return amounts and the generator of both
//! returns tables) and [`values`] (null flags, percentages); a dimension table implements
//! [`crate::driver::RowTable`].
//!
//! To add a table: add a module, a [`TableId`] variant (its number seeds the table's random
//! streams, so never renumber), a [`Table`] variant, and match arms in [`Table`]'s methods;
//! take key domains from [`crate::scale::Dimensions`] so foreign keys resolve across tables.
//!
//! Sizes: fact tables scale linearly with the scale factor (SF); dimension tables follow
//! TPC-DS's table of cardinalities ([`crate::scale`]); `date_dim` is fixed. A returns table
//! is drawn from its sales table at the same SF, so `store_returns` and `web_returns`
//! generated with the same `--seed` and `--scale` as `store_sales` and `web_sales` reference
//! exactly the sales those produce.

use crate::driver::TableGenerator;
use crate::error::{Error, Result};
use crate::scale::{
    DATE_DIM_ROWS, Dimensions, STORE_RETURNS_ROWS_PER_SF, STORE_SALES_ROWS_PER_SF,
    WEB_RETURNS_ROWS_PER_SF, WEB_SALES_ROWS_PER_SF,
};

pub mod customer;
pub mod date_dim;
pub mod item;
pub mod returns;
pub mod sales;
pub mod store_returns;
pub mod store_sales;
#[cfg(test)]
mod testing;
pub mod values;
pub mod web_returns;
pub mod web_sales;

/// Stable numeric identity of each table, mixed into its random streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum TableId {
    StoreSales = 1,
    StoreReturns = 2,
    WebSales = 3,
    WebReturns = 4,
    Item = 5,
    Customer = 6,
    DateDim = 7,
}

/// Tables the generator can produce, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    #[value(name = "store_sales")]
    StoreSales,
    #[value(name = "store_returns")]
    StoreReturns,
    #[value(name = "web_sales")]
    WebSales,
    #[value(name = "web_returns")]
    WebReturns,
    #[value(name = "item")]
    Item,
    #[value(name = "customer")]
    Customer,
    #[value(name = "date_dim")]
    DateDim,
}

/// How big to make a table: an explicit row count or a TPC-DS scale factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    Rows(u64),
    Scale(f64),
}

/// A resolved size: the table's rows, the scale factor its key domains come from, and for
/// a returns table the rows of the sales table it is drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resolved {
    pub rows: u64,
    pub scale: f64,
    pub sales_rows: Option<u64>,
}

fn linear(per_sf: u64, sf: f64) -> u64 {
    (per_sf as f64 * sf).round() as u64
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::StoreSales,
        Table::StoreReturns,
        Table::WebSales,
        Table::WebReturns,
        Table::Item,
        Table::Customer,
        Table::DateDim,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::StoreSales => "store_sales",
            Table::StoreReturns => "store_returns",
            Table::WebSales => "web_sales",
            Table::WebReturns => "web_returns",
            Table::Item => "item",
            Table::Customer => "customer",
            Table::DateDim => "date_dim",
        }
    }

    /// Rows of this table at a scale factor.
    pub fn rows_at_scale(self, sf: f64) -> u64 {
        match self {
            Table::StoreSales => linear(STORE_SALES_ROWS_PER_SF, sf),
            Table::StoreReturns => linear(STORE_RETURNS_ROWS_PER_SF, sf),
            Table::WebSales => linear(WEB_SALES_ROWS_PER_SF, sf),
            Table::WebReturns => linear(WEB_RETURNS_ROWS_PER_SF, sf),
            Table::Item => Dimensions::at_scale(sf).item,
            Table::Customer => Dimensions::at_scale(sf).customer,
            Table::DateDim => DATE_DIM_ROWS,
        }
    }

    /// Rows, key-domain scale factor and (for returns) sales rows of a requested size.
    ///
    /// With `Rows(n)`: a fact table's scale factor is `n` over its rows at SF 1 (a returns
    /// table then draws from `round(sales rows per SF × that SF)` sales); a dimension table
    /// gets exactly `n` rows and SF 1 key domains; `date_dim` only accepts its fixed size.
    pub fn resolve(self, size: Size) -> Result<Resolved> {
        if let Size::Scale(sf) = size
            && !(sf.is_finite() && sf > 0.0)
        {
            return Err(Error::InvalidArgument(format!(
                "scale factor must be positive, got {sf}"
            )));
        }
        let per_sf = match self {
            Table::StoreSales => Some(STORE_SALES_ROWS_PER_SF),
            Table::StoreReturns => Some(STORE_RETURNS_ROWS_PER_SF),
            Table::WebSales => Some(WEB_SALES_ROWS_PER_SF),
            Table::WebReturns => Some(WEB_RETURNS_ROWS_PER_SF),
            _ => None,
        };
        let (rows, scale) = match (size, per_sf) {
            (Size::Scale(sf), _) => (self.rows_at_scale(sf), sf),
            (Size::Rows(n), Some(per)) => (n, n as f64 / per as f64),
            (Size::Rows(n), None) if self == Table::DateDim && n != DATE_DIM_ROWS => {
                return Err(Error::InvalidArgument(format!(
                    "date_dim always has {DATE_DIM_ROWS} rows (asked for {n})"
                )));
            }
            (Size::Rows(n), None) => (n, 1.0),
        };
        let sales_rows = match self {
            Table::StoreReturns => Some(Table::StoreSales.rows_at_scale(scale).max(rows)),
            Table::WebReturns => Some(Table::WebSales.rows_at_scale(scale).max(rows)),
            _ => None,
        };
        Ok(Resolved {
            rows,
            scale,
            sales_rows,
        })
    }

    pub fn generator(self, seed: u64, size: Size, files: usize) -> Result<Box<dyn TableGenerator>> {
        let r = self.resolve(size)?;
        if files == 0 || files as u64 > r.rows.max(1) {
            return Err(Error::InvalidArgument(format!(
                "{}: file count must be in 1..={}, got {files}",
                self.name(),
                r.rows.max(1)
            )));
        }
        let dims = Dimensions::at_scale(r.scale);
        let sales_rows = r.sales_rows.unwrap_or(0);
        Ok(match self {
            Table::StoreSales => Box::new(store_sales::StoreSales::new(seed, r.rows, files, dims)),
            Table::StoreReturns => Box::new(store_returns::StoreReturns::new(
                seed, r.rows, sales_rows, files, dims,
            )),
            Table::WebSales => Box::new(web_sales::WebSales::new(seed, r.rows, files, dims)),
            Table::WebReturns => Box::new(web_returns::WebReturns::new(
                seed, r.rows, sales_rows, files, dims,
            )),
            Table::Item => Box::new(item::Item::new(seed, r.rows, files)),
            Table::Customer => Box::new(customer::Customer::new(seed, r.rows, files, dims)),
            Table::DateDim => Box::new(date_dim::DateDim::new(files)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_row_counts_at_sf1() {
        let rows: Vec<u64> = Table::ALL.iter().map(|t| t.rows_at_scale(1.0)).collect();
        assert_eq!(
            rows,
            vec![2_880_404, 287_514, 719_384, 71_763, 18_000, 100_000, 73_049]
        );
        let r = Table::StoreReturns.resolve(Size::Scale(0.5)).unwrap();
        assert_eq!((r.rows, r.sales_rows), (143_757, Some(1_440_202)));
        let r = Table::WebReturns.resolve(Size::Rows(71_763)).unwrap();
        assert_eq!(r.sales_rows, Some(719_384));
        assert!(Table::DateDim.resolve(Size::Rows(5)).is_err());
        assert!(Table::Item.resolve(Size::Scale(-1.0)).is_err());
        assert!(Table::Item.generator(0, Size::Rows(3), 4).is_err());
    }
}
