//! `silt-datagen`: generate TPC-DS-style tables as Parquet files.
//!
//! ```text
//! silt-datagen store_sales --rows 5000000 --seed 1 --out /tmp/ss --files 4
//! silt-datagen store_sales --scale 10 --seed 1 --out /data/ss
//! ```

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Parser;
use silt_benches::driver::{self, WriteOptions};
use silt_benches::tables::{Size, Table};

/// Default rows per output file when `--files` is not given (machine independent, so the
/// default output is the same everywhere).
const DEFAULT_ROWS_PER_FILE: u64 = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "silt-datagen",
    version,
    about = "Generate TPC-DS-style tables as Parquet"
)]
#[command(group(clap::ArgGroup::new("size").required(true).args(["rows", "scale"])))]
struct Args {
    /// Table to generate.
    table: Table,
    /// Exact number of rows (dimension key domains follow the equivalent scale factor).
    #[arg(long)]
    rows: Option<u64>,
    /// TPC-DS scale factor (store_sales: 2,880,404 rows per unit).
    #[arg(long)]
    scale: Option<f64>,
    /// Random seed; the output is a pure function of (table, seed, rows, files).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Number of output files [default: one per 1,048,576 rows].
    #[arg(long)]
    files: Option<usize>,
    /// Maximum rows per Parquet row group.
    #[arg(long, default_value_t = 1 << 20)]
    row_group_rows: usize,
    /// Rows per generated Arrow batch (memory/speed only; does not change the output rows).
    #[arg(long, default_value_t = 64 * 1024)]
    batch_rows: usize,
    /// Worker threads [default: available cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Replace existing part-*.parquet files in the output directory.
    #[arg(long)]
    overwrite: bool,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("silt-datagen: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let size = match (args.rows, args.scale) {
        (Some(rows), _) => Size::Rows(rows),
        (None, Some(sf)) => {
            ensure!(
                sf.is_finite() && sf > 0.0,
                "--scale must be positive, got {sf}"
            );
            Size::Scale(sf)
        }
        (None, None) => unreachable!("clap requires --rows or --scale"),
    };
    let (rows, sf) = args.table.resolve(size);
    ensure!(rows > 0, "nothing to generate: 0 rows");
    let files = args
        .files
        .unwrap_or_else(|| rows.div_ceil(DEFAULT_ROWS_PER_FILE) as usize);
    ensure!(
        (1..=driver::MAX_FILES).contains(&files) && files as u64 <= rows,
        "--files must be in 1..=min(rows, {}), got {files}",
        driver::MAX_FILES
    );
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });

    let generator = args.table.generator(args.seed, size, files);
    let report = driver::write_table(
        generator.as_ref(),
        &WriteOptions {
            out: args.out.clone(),
            threads,
            batch_rows: args.batch_rows,
            row_group_rows: args.row_group_rows,
            overwrite: args.overwrite,
        },
    )?;
    let rows_per_s = report.rows as f64 / report.seconds.max(1e-9);
    println!(
        "table={} rows={} files={} bytes={} seconds={:.3} rows_per_s={:.0} rows_per_s_per_thread={:.0} threads={} seed={} scale={:.4} out={}",
        generator.name(),
        report.rows,
        report.files,
        report.bytes,
        report.seconds,
        rows_per_s,
        rows_per_s / threads.min(files) as f64,
        threads.min(files),
        args.seed,
        sf,
        args.out.display()
    );
    Ok(())
}
