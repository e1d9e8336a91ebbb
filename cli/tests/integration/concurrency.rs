//! Concurrent writers on one table: separate `silt write` processes racing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn write_process(table: &Path, source: &Path, extra: &[&str]) -> Command {
    silt_write_cmd(&s(table), &s(source), extra)
}

/// Starts both writers at once and waits for both.
fn race(a: Command, b: Command) -> (Out, Out) {
    let pa = Daemon::spawn_capture("writer-a", a);
    let pb = Daemon::spawn_capture("writer-b", b);
    let oa = pa.finish(WRITE_TIMEOUT);
    let ob = pb.finish(WRITE_TIMEOUT);
    (oa, ob)
}

#[test]
fn concurrent_appends_both_commit() {
    let seed = seed_for("concurrent_appends_both_commit");
    let dir = tempdir("race-append");
    let base = Gen::new(seed, 300).write(&dir.path().join("base"));
    let a = Gen::new(seed + 1, 200)
        .files(2)
        .id_start(1000)
        .write(&dir.path().join("a"));
    let b = Gen::new(seed + 2, 200)
        .files(2)
        .id_start(2000)
        .write(&dir.path().join("b"));
    let t = dir.path().join("t");
    assert_eq!(silt_write_ok(&t, &base, &["--partition-by", "k"]), Some(0));

    for round in 0..2 {
        let (oa, ob) = race(write_process(&t, &a, &[]), write_process(&t, &b, &[]));
        oa.assert_ok();
        ob.assert_ok();
        let (va, vb) = (oa.version().unwrap(), ob.version().unwrap());
        assert_ne!(va, vb, "two commits cannot share a version");
        let lo = 1 + 2 * round;
        let mut vs = [va, vb];
        vs.sort();
        assert_eq!(
            vs,
            [lo, lo + 1],
            "round {round}: versions of the two appends"
        );
    }
    assert_same_content(
        &t,
        &[
            Expected::Parquet(&base),
            Expected::Parquet(&a),
            Expected::Parquet(&b),
            Expected::Parquet(&a),
            Expected::Parquet(&b),
        ],
        &[],
    );
    assert_eq!(inspect(&t)["version"], 4);
}

#[test]
fn overwrite_racing_append_is_consistent() {
    let seed = seed_for("overwrite_racing_append_is_consistent");
    let dir = tempdir("race-overwrite");
    let base = Gen::new(seed, 300).write(&dir.path().join("base"));
    let app = Gen::new(seed + 1, 200)
        .id_start(1000)
        .write(&dir.path().join("app"));
    let ovw = Gen::new(seed + 2, 150)
        .id_start(2000)
        .write(&dir.path().join("ovw"));
    let t = dir.path().join("t");

    for round in 0..2 {
        let _ = std::fs::remove_dir_all(&t);
        assert_eq!(silt_write_ok(&t, &base, &[]), Some(0));
        // Alternate who starts first.
        let (append_cmd, overwrite_cmd) = (
            write_process(&t, &app, &["--mode", "append"]),
            write_process(&t, &ovw, &["--mode", "overwrite"]),
        );
        let (oa, oo) = if round == 0 {
            race(append_cmd, overwrite_cmd)
        } else {
            let (oo, oa) = race(overwrite_cmd, append_cmd);
            (oa, oo)
        };
        let conflict = |o: &Out| {
            let l = o.error_line().unwrap_or_default().to_lowercase();
            l.contains("conflict") || l.contains("concurrent")
        };
        let expected: Vec<Expected<'_>> = match (oa.ok(), oo.ok()) {
            (true, true) => {
                let (va, vo) = (oa.version().unwrap(), oo.version().unwrap());
                assert_ne!(va, vo);
                if va < vo {
                    // The overwrite came after the append: only its rows remain. (Under Delta's
                    // rules this is only valid if the overwrite read the append's version.)
                    vec![Expected::Parquet(&ovw)]
                } else {
                    vec![Expected::Parquet(&ovw), Expected::Parquet(&app)]
                }
            }
            (true, false) => {
                assert!(
                    conflict(&oo),
                    "the overwrite failed without a conflict error\n{}",
                    oo.describe()
                );
                vec![Expected::Parquet(&base), Expected::Parquet(&app)]
            }
            (false, true) => {
                assert!(
                    conflict(&oa),
                    "the append failed without a conflict error\n{}",
                    oa.describe()
                );
                vec![Expected::Parquet(&ovw)]
            }
            (false, false) => panic!("both writers failed\n{}\n{}", oa.describe(), oo.describe()),
        };
        eprintln!(
            "[race round {round}] append ok={} v={:?}, overwrite ok={} v={:?}",
            oa.ok(),
            oa.ok().then(|| oa.version()),
            oo.ok(),
            oo.ok().then(|| oo.version())
        );
        assert_same_content(&t, &expected, &[]);
        std::thread::sleep(Duration::from_millis(10));
    }
}
