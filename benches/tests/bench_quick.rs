//! The benchmark suite's quick profile, run inside the test suite so the runner keeps
//! working: `benches/bench.py --profile quick` with the debug `silt` binary (built by
//! `cargo build --workspace --bins`, which scripts/test.sh runs first) and this crate's
//! `silt-datagen`, then assertions on what it wrote.
//!
//! Needs the Python venv with deltalake/pyarrow/matplotlib (scripts/setup.sh, which
//! scripts/test.sh runs): `$SILT_PYTHON`, else `<repo>/.venv/bin/python`. A missing venv or
//! silt binary fails the test; it is never skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous bound; the quick profile takes well under two minutes on a 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn python() -> PathBuf {
    let python = std::env::var_os("SILT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        python.is_file(),
        "no Python at {} (set SILT_PYTHON or run scripts/setup.sh, which creates .venv with \
         deltalake, pyarrow and matplotlib)",
        python.display()
    );
    python
}

/// The debug `silt` next to this test: target/debug/deps/<test> -> target/debug/silt.
fn silt_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let debug_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps");
    let silt = debug_dir.join("silt");
    assert!(
        silt.is_file(),
        "no silt binary at {}: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        silt.display()
    );
    silt
}

fn run_with_timeout(cmd: &mut Command, out_dir: &Path) -> (bool, String) {
    let log = out_dir.join("runner.log");
    let file = fs::File::create(&log).expect("runner log");
    let mut child = cmd
        .stdout(Stdio::from(file.try_clone().expect("log handle")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("spawn bench.py");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bench.py") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(s) => (s.success(), output),
        None => panic!("bench.py did not finish in {TIMEOUT:?}:\n{output}"),
    }
}

fn side<'a>(scenario: &'a Value, name: &str) -> &'a Value {
    &scenario["sides"][name]
}

#[test]
fn quick_profile_measures_both_sides_and_reports_missing_ones() {
    let python = python();
    let silt = silt_bin();
    let tmp = tempfile::tempdir().expect("temp dir");
    let out_dir = tmp.path().join("results");
    let work = tmp.path().join("work");
    fs::create_dir_all(&out_dir).expect("results dir");
    let started = Instant::now();
    let (ok, log) = run_with_timeout(
        Command::new(&python)
            .arg(repo().join("benches/bench.py"))
            .args(["--profile", "quick", "--executors", "2", "--no-build"])
            .arg("--silt-bin")
            .arg(&silt)
            .arg("--datagen-bin")
            .arg(env!("CARGO_BIN_EXE_silt-datagen"))
            .arg("--python")
            .arg(&python)
            .arg("--workdir")
            .arg(&work)
            .arg("--out-dir")
            .arg(&out_dir)
            .current_dir(repo()),
        &out_dir,
    );
    eprintln!("bench.py --profile quick took {:?}", started.elapsed());
    assert!(ok, "bench.py --profile quick failed:\n{log}");

    let text = fs::read_to_string(out_dir.join("results.json")).expect("results.json written");
    let r: Value = serde_json::from_str(&text).expect("results.json parses");
    assert_eq!(r["failed"], Value::Bool(false), "{log}");
    assert_eq!(r["profile"], "quick");
    assert!(r["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(
        r["versions"]["deltalake"].is_string(),
        "deltalake version recorded"
    );
    assert!(r["versions"]["silt"].is_string(), "silt --version recorded");
    let parent_rss = r["parent_peak_rss_mib"].as_f64().expect("runner peak RSS");
    assert!(
        parent_rss < 100.0,
        "the runner must stay small (children's ru_maxrss inherit it): {parent_rss} MiB"
    );

    let scenarios = r["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for expected in [
        "load",
        "load/by_store",
        "load/by_date",
        "compaction",
        "zorder",
        "zorder/long_prefix",
        "delete/date_range",
        "delete/scattered",
        "update/date_range",
        "update/scattered",
        "merge/load/upsert_10pct",
        "merge/clustered/upsert",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let web_merges = names
        .iter()
        .filter(|n| n.starts_with("merge/web_returns/"))
        .count();
    assert_eq!(
        web_merges, 17,
        "Delta's 16 merge cases plus ours: {names:?}"
    );
    for prefix in [
        "merge/web_returns/single_insert_only",
        "merge/web_returns/multiple_insert_only",
        "merge/web_returns/delete_only",
        "merge/web_returns/upsert_",
        "merge/web_returns/upsert_changed_only",
        "merge/store_sales/",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no {prefix}* scenario"
        );
    }

    for sc in scenarios {
        let name = sc["name"].as_str().unwrap_or("?");
        let d = side(sc, "delta-rs");
        assert_eq!(d["available"], true, "{name}: delta-rs side must run");
        assert_eq!(d["ok_runs"], 1, "{name}: delta-rs run failed: {d}");
        let run = &d["runs"][0];
        assert!(
            run["wall_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{name}: wall time"
        );
        assert!(
            run["peak_rss_mib"].as_f64().unwrap_or(0.0) > 10.0,
            "{name}: RSS"
        );
        let s = side(sc, "silt");
        let load = name == "load" || name.starts_with("load/");
        let dml = name.starts_with("delete/") || name.starts_with("update/");
        let merge = name.starts_with("merge/");
        let optimize = name == "compaction" || name.starts_with("zorder");
        if load || dml || merge || optimize {
            assert_eq!(s["available"], true, "silt has {name}");
            assert_eq!(s["ok_runs"], 1, "silt {name} failed: {s}");
            let ratio = &sc["ratio_silt_over_delta_rs"]["wall_s"];
            assert!(
                ratio["median"].as_f64().unwrap_or(0.0) > 0.0,
                "{name} ratio: {ratio}"
            );
            assert_eq!(ratio["n"], 1);
        } else {
            assert_eq!(
                s["available"], false,
                "{name}: silt side must be not available"
            );
            assert!(
                s["reason"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("silt has no"),
                "{name}: {s}"
            );
            assert_eq!(s["runs"].as_array().map(Vec::len), Some(0), "{name}");
            assert!(sc["ratio_silt_over_delta_rs"].is_null(), "{name}: no ratio");
        }
        if load {
            // Data files written, from the verified tables: at least one per partition
            // (verification already checked the partition columns and count).
            let partitions = sc["params"]["partitions"].as_f64().unwrap_or(1.0);
            for (side_name, summary) in [("silt", &s["summary"]), ("delta-rs", &d["summary"])] {
                let files = summary["files_written"]["median"].as_f64();
                assert!(
                    files.is_some_and(|f| f >= partitions),
                    "{name}: {side_name} wrote {files:?} files for {partitions} partitions"
                );
            }
        }
        if dml {
            // Files rewritten: no more than delta-rs rewrites.
            let removed = |side: &Value| side["summary"]["files_removed"]["median"].as_f64();
            let (ours, theirs) = (removed(s), removed(d));
            assert!(
                ours.is_some() && theirs.is_some() && ours <= theirs,
                "{name}: silt removed {ours:?} files, delta-rs {theirs:?}"
            );
        }
    }

    // Layout analyses: skipping on the tables both engines wrote, at load, compaction and
    // Z-order.
    let skipping = r["skipping"].as_array().expect("skipping");
    let entry = |layout: &str, side: &str| {
        skipping
            .iter()
            .find(|e| e["layout"] == layout && e["side"] == side)
            .unwrap_or_else(|| panic!("no skipping entry for {layout} / {side}"))
    };
    for side in ["silt", "delta-rs"] {
        for layout in ["after load", "after load by store", "after load by date"] {
            let e = entry(layout, side);
            assert_eq!(e["available"], true);
            let preds = e["predicates"].as_array().expect("predicates");
            assert!(preds.len() >= 4, "{e}");
            for p in preds {
                let (scanned, total) = (
                    p["files_scanned"].as_f64().unwrap_or(-1.0),
                    p["files_total"].as_f64().unwrap_or(0.0),
                );
                assert!(total >= 1.0 && (0.0..=total).contains(&scanned), "{p}");
            }
        }
        // Partition pruning: a 30-day range touches a small part of the date partitions.
        let by_date = entry("after load by date", side);
        let range = by_date["predicates"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["predicate"] == "range 30 days"))
            .unwrap_or_else(|| panic!("no 30-day range after load by date: {by_date}"));
        let (scanned, total) = (
            range["files_scanned"].as_f64().unwrap_or(-1.0),
            range["files_total"].as_f64().unwrap_or(0.0),
        );
        assert!(scanned >= 1.0 && scanned * 10.0 < total, "{side}: {range}");
    }
    for side in ["silt", "delta-rs"] {
        for layout in [
            "after compaction",
            "after Z-order",
            "after Z-order, long prefix",
        ] {
            assert_eq!(entry(layout, side)["available"], true, "{layout} / {side}");
        }
    }
    let clustering = r["clustering"]["tables"].as_array().expect("clustering");
    assert!(clustering.len() >= 3, "{clustering:?}");
    let sizes = r["file_sizes"].as_array().expect("file sizes");
    assert!(sizes.len() >= 3, "{sizes:?}");

    let md = fs::read_to_string(out_dir.join("results.md")).expect("results.md written");
    assert!(md.contains("| load |") && md.contains("n/a"), "{md}");
    assert!(
        md.contains("| load/by_store |") && md.contains("| load/by_date |"),
        "{md}"
    );
    for chart in [
        "time.png",
        "memory.png",
        "file_sizes.png",
        "clustering.png",
        "skipping.png",
    ] {
        let bytes = fs::read(out_dir.join(chart)).unwrap_or_default();
        assert!(
            bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{chart} is not a PNG ({} bytes)",
            bytes.len()
        );
    }
}
