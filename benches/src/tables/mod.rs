//! One module per TPC-DS table. A table module exposes its Arrow schema, its value rules in
//! the module docs, and a type implementing [`crate::driver::TableGenerator`].
//!
//! To add a table (store_returns, web_returns, item, customer, date_dim, ...): add a module,
//! a [`TableId`] variant (its number seeds the table's random streams, so never renumber),
//! a [`Table`] variant, and a match arm in [`Table::generator`]; take key domains from
//! [`crate::scale::Dimensions`] so foreign keys resolve across tables.

use crate::driver::TableGenerator;
use crate::scale::{Dimensions, STORE_SALES_ROWS_PER_SF};

pub mod store_sales;

/// Stable numeric identity of each table, mixed into its random streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum TableId {
    StoreSales = 1,
}

/// Tables the generator can produce, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    #[value(name = "store_sales")]
    StoreSales,
}

/// How big to make a table: an explicit row count or a TPC-DS scale factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    Rows(u64),
    Scale(f64),
}

impl Table {
    /// Rows of this table at a scale factor.
    pub fn rows_per_scale(self) -> u64 {
        match self {
            Table::StoreSales => STORE_SALES_ROWS_PER_SF,
        }
    }

    /// (rows, scale factor used for dimension domains) of a requested size.
    pub fn resolve(self, size: Size) -> (u64, f64) {
        let per_sf = self.rows_per_scale() as f64;
        match size {
            Size::Rows(rows) => (rows, rows as f64 / per_sf),
            Size::Scale(sf) => ((per_sf * sf).round() as u64, sf),
        }
    }

    pub fn generator(self, seed: u64, size: Size, files: usize) -> Box<dyn TableGenerator> {
        let (rows, sf) = self.resolve(size);
        match self {
            Table::StoreSales => Box::new(store_sales::StoreSales::new(
                seed,
                rows,
                files,
                Dimensions::at_scale(sf),
            )),
        }
    }
}
