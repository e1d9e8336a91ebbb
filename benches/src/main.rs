//! `silt-datagen`: generate TPC-DS-style tables as Parquet files, or as Delta tables
//! written through `silt write`.
//!
//! ```text
//! silt-datagen store_sales --rows 5000000 --seed 1 --out /tmp/ss --files 4
//! silt-datagen store_sales,store_returns,web_returns --scale 1 --seed 1 --out /data/sf1
//! silt-datagen all --scale 1 --out /data/sf1-delta --delta
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use silt_benches::driver::{self, WriteOptions};
use silt_benches::tables::{Size, Table};

/// Default rows per output file when `--files` is not given (machine independent, so the
/// default output is the same everywhere).
const DEFAULT_ROWS_PER_FILE: u64 = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "silt-datagen",
    version,
    about = "Generate TPC-DS-style tables as Parquet files or Delta tables"
)]
#[command(group(clap::ArgGroup::new("size").required(true).args(["rows", "scale"])))]
struct Args {
    /// Tables to generate, comma separated, or `all`: store_sales, store_returns, web_sales,
    /// web_returns, item, customer, date_dim.
    #[arg(required = true, value_delimiter = ',')]
    tables: Vec<String>,
    /// Exact number of rows (one table only; key domains follow the equivalent scale).
    #[arg(long)]
    rows: Option<u64>,
    /// TPC-DS scale factor (store_sales: 2,880,404 rows per unit).
    #[arg(long)]
    scale: Option<f64>,
    /// Random seed; the output is a pure function of (table, seed, size).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output: a directory of Parquet files, or with --delta a table location (path or
    /// URL). With several tables, one subdirectory / table per table name under it.
    #[arg(long)]
    out: String,
    /// Number of output files per table [default: one per 1,048,576 rows].
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
    /// Replace existing part files (with --delta: write with --mode overwrite).
    #[arg(long)]
    overwrite: bool,
    /// Write Delta tables through `silt write` (Parquet is generated into a staging
    /// directory first and removed afterwards).
    #[arg(long)]
    delta: bool,
    /// The silt binary for --delta [default: `silt` next to this binary, else on PATH].
    #[arg(long)]
    silt_bin: Option<PathBuf>,
    /// Local staging directory for --delta [default: under the system temp directory].
    #[arg(long)]
    staging: Option<PathBuf>,
    /// Extra argument for `silt write` (repeatable), e.g. --silt-arg=--executors=2.
    #[arg(long, allow_hyphen_values = true)]
    silt_arg: Vec<String>,
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

fn parse_tables(names: &[String]) -> Result<Vec<Table>> {
    let mut tables: Vec<Table> = Vec::new();
    for name in names {
        let named: Vec<Table> = if name == "all" {
            Table::ALL.to_vec()
        } else {
            let table = Table::from_str(name, false).map_err(|_| {
                let known: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
                anyhow::anyhow!(
                    "unknown table `{name}` (expected all, {})",
                    known.join(", ")
                )
            })?;
            vec![table]
        };
        for t in named {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
    }
    Ok(tables)
}

fn run(args: Args) -> Result<()> {
    let tables = parse_tables(&args.tables)?;
    let size = match (args.rows, args.scale) {
        (Some(rows), _) => {
            ensure!(
                tables.len() == 1,
                "--rows sizes a single table; use --scale for several tables"
            );
            Size::Rows(rows)
        }
        (None, Some(sf)) => Size::Scale(sf),
        (None, None) => bail!("one of --rows or --scale is required"),
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let silt = if args.delta {
        Some(find_silt(args.silt_bin.as_deref())?)
    } else {
        None
    };
    for &table in &tables {
        let location = if tables.len() == 1 {
            args.out.clone()
        } else {
            format!("{}/{}", args.out.trim_end_matches('/'), table.name())
        };
        generate_one(&args, table, size, threads, &location, silt.as_deref())?;
    }
    Ok(())
}

fn generate_one(
    args: &Args,
    table: Table,
    size: Size,
    threads: usize,
    location: &str,
    silt: Option<&Path>,
) -> Result<()> {
    let resolved = table.resolve(size)?;
    ensure!(
        resolved.rows > 0,
        "{}: nothing to generate (0 rows)",
        table.name()
    );
    let files = args
        .files
        .unwrap_or_else(|| resolved.rows.div_ceil(DEFAULT_ROWS_PER_FILE) as usize);
    let generator = table.generator(args.seed, size, files)?;
    let out = match silt {
        None => PathBuf::from(location),
        Some(_) => args.staging.clone().map_or_else(
            || {
                std::env::temp_dir().join(format!(
                    "silt-datagen-{}-{}",
                    std::process::id(),
                    table.name()
                ))
            },
            |s| s.join(table.name()),
        ),
    };
    let report = driver::write_table(
        generator.as_ref(),
        &WriteOptions {
            out: out.clone(),
            threads,
            batch_rows: args.batch_rows,
            row_group_rows: args.row_group_rows,
            overwrite: args.overwrite || silt.is_some(),
        },
    );
    let report = match (report, silt) {
        (Err(e), Some(_)) => {
            let _ = std::fs::remove_dir_all(&out);
            return Err(e.into());
        }
        (r, _) => r?,
    };
    let rows_per_s = report.rows as f64 / report.seconds.max(1e-9);
    let mut line = format!(
        "table={} rows={} files={} bytes={} seconds={:.3} rows_per_s={:.0} rows_per_s_per_thread={:.0} threads={} seed={} scale={:.4}",
        generator.name(),
        report.rows,
        report.files,
        report.bytes,
        report.seconds,
        rows_per_s,
        rows_per_s / threads.min(files) as f64,
        threads.min(files),
        args.seed,
        resolved.scale,
    );
    if let Some(silt) = silt {
        let written = write_delta(args, silt, &out, location);
        let _ = std::fs::remove_dir_all(&out);
        let seconds = written?;
        line.push_str(&format!(" delta_seconds={seconds:.3} delta={location}"));
    } else {
        line.push_str(&format!(" out={location}"));
    }
    println!("{line}");
    Ok(())
}

/// `silt write`s the staged Parquet files into a Delta table at `location`.
fn write_delta(args: &Args, silt: &Path, staging: &Path, location: &str) -> Result<f64> {
    let started = std::time::Instant::now();
    let mode = if args.overwrite { "overwrite" } else { "error" };
    let output = Command::new(silt)
        .arg("write")
        .args([
            "--table", location, "--format", "parquet", "--mode", mode, "-q",
        ])
        .arg("--source")
        .arg(staging)
        .args(&args.silt_arg)
        .output()
        .with_context(|| format!("running {}", silt.display()))?;
    if !output.status.success() {
        bail!(
            "`{} write --table {location}` failed ({}): {}",
            silt.display(),
            output.status,
            strip_ansi(&String::from_utf8_lossy(&output.stderr)).trim()
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

fn find_silt(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        ensure!(p.is_file(), "--silt-bin {} does not exist", p.display());
        return Ok(p.to_path_buf());
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("silt")));
    if let Some(s) = sibling.filter(|s| s.is_file()) {
        return Ok(s);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("silt"))
            .find(|p| p.is_file())
    });
    on_path.context("no silt binary next to silt-datagen or on PATH; pass --silt-bin")
}

/// Removes terminal colour sequences (`ESC [ ... m`) from a child's stderr.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
