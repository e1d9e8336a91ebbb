//! End-to-end: generate tables through the driver, read them back with the Parquet
//! reader, and compare with the in-memory batches and across file splits.

use std::fs;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use silt_benches::driver::{WriteOptions, file_name, write_table};
use silt_benches::tables::store_sales::{COLUMNS, schema};
use silt_benches::tables::{Size, Table};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("silt-datagen-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(out: &TempDir, threads: usize) -> WriteOptions {
    WriteOptions {
        out: out.0.clone(),
        threads,
        batch_rows: 5_000,
        row_group_rows: 8_192,
        overwrite: false,
    }
}

fn read_file(path: &std::path::Path) -> (RecordBatch, usize, Compression) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    let meta = builder.metadata().clone();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let compression = meta.row_group(0).column(0).compression();
    (
        concat_batches(&schema, &batches).unwrap(),
        meta.num_row_groups(),
        compression,
    )
}

#[test]
fn written_files_match_generated_batches() {
    let dir = TempDir::new("roundtrip");
    let rows = 30_001;
    let files = 3;
    let table = Table::StoreSales
        .generator(9, Size::Rows(rows), files)
        .unwrap();
    let report = write_table(table.as_ref(), &options(&dir, 2)).unwrap();
    assert_eq!(report.rows, rows);
    assert_eq!(report.files, files);

    let mut total = 0;
    let mut bytes = 0;
    for f in 0..files {
        let path = dir.0.join(file_name(f));
        bytes += fs::metadata(&path).unwrap().len();
        let (got, row_groups, compression) = read_file(&path);
        let expected: Vec<RecordBatch> = table.file_batches(f, 7_777).collect();
        let expected = concat_batches(&schema(), &expected).unwrap();
        assert_eq!(got.schema().fields().len(), COLUMNS.len());
        for (g, e) in got.schema().fields().iter().zip(schema().fields()) {
            assert_eq!(
                (g.name(), g.data_type(), g.is_nullable()),
                (e.name(), e.data_type(), e.is_nullable())
            );
        }
        assert_eq!(got.columns(), expected.columns(), "file {f}");
        assert_eq!(row_groups, (table.file_rows(f) as usize).div_ceil(8_192));
        assert_eq!(compression, Compression::SNAPPY);
        total += got.num_rows() as u64;
    }
    assert_eq!(total, rows);
    assert_eq!(bytes, report.bytes);
    let leftovers: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn output_is_independent_of_threads_and_refuses_to_clobber() {
    let one = TempDir::new("threads1");
    let two = TempDir::new("threads2");
    let table = Table::StoreSales
        .generator(3, Size::Rows(20_000), 4)
        .unwrap();
    write_table(table.as_ref(), &options(&one, 1)).unwrap();
    write_table(table.as_ref(), &options(&two, 3)).unwrap();
    for f in 0..4 {
        let a = fs::read(one.0.join(file_name(f))).unwrap();
        let b = fs::read(two.0.join(file_name(f))).unwrap();
        assert!(a == b, "file {f} differs between 1 and 3 threads");
    }

    let err = write_table(table.as_ref(), &options(&one, 1)).unwrap_err();
    assert!(err.to_string().contains("--overwrite"), "{err}");
    let mut opts = options(&one, 1);
    opts.overwrite = true;
    write_table(table.as_ref(), &opts).unwrap();
}

#[test]
fn scale_sets_rows_and_key_domains() {
    let r = Table::StoreSales.resolve(Size::Scale(0.01)).unwrap();
    assert_eq!(r.rows, 28_804);
    assert!((r.scale - 0.01).abs() < 1e-12);
    let r = Table::StoreSales
        .resolve(Size::Rows(2_880_404 * 2))
        .unwrap();
    assert_eq!(r.rows, 5_760_808);
    assert!((r.scale - 2.0).abs() < 1e-12);
}

fn read_dir_concat(dir: &std::path::Path, files: usize) -> RecordBatch {
    let batches: Vec<RecordBatch> = (0..files)
        .map(|f| read_file(&dir.join(file_name(f))).0)
        .collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[test]
fn every_table_writes_and_is_independent_of_the_file_split() {
    for table in Table::ALL {
        // Small but real sizes: SF 0.02 for facts, a few thousand rows for dimensions.
        let size = match table {
            Table::Item | Table::Customer => Size::Rows(3_001),
            Table::DateDim => Size::Scale(1.0),
            _ => Size::Scale(0.02),
        };
        let expected_rows = table.resolve(size).unwrap().rows;
        let a = TempDir::new(&format!("{}-a", table.name()));
        let b = TempDir::new(&format!("{}-b", table.name()));
        let one = table.generator(21, size, 1).unwrap();
        let five = table.generator(21, size, 5).unwrap();
        let ra = write_table(one.as_ref(), &options(&a, 2)).unwrap();
        let rb = write_table(five.as_ref(), &options(&b, 3)).unwrap();
        assert_eq!(
            (ra.rows, rb.rows),
            (expected_rows, expected_rows),
            "{}",
            table.name()
        );
        let ta = read_dir_concat(&a.0, 1);
        let tb = read_dir_concat(&b.0, 5);
        assert_eq!(ta.num_rows() as u64, expected_rows);
        assert_eq!(
            ta.schema().fields(),
            one.schema().fields(),
            "{}",
            table.name()
        );
        assert!(ta == tb, "{}: rows depend on the file split", table.name());
    }
}
