//! Concurrent writers on one table, made deterministic: writer A is paused (a `pause` fault
//! at a named point of its task attempts, after its files are written) until writer B has
//! committed, so A's commit always loses the race and must check B's commit with Delta's
//! conflict rules. Each test asserts that the race happened (`winning_commits_checked`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const GATE_TIMEOUT: Duration = Duration::from_secs(120);

fn write_process(table: &Path, source: &Path, extra: &[&str]) -> Command {
    silt_write_cmd(&s(table), &s(source), extra)
}

/// Runs `a` until its first attempt is paused after writing its files, then `b` to the end,
/// then lets `a` finish. Returns both results.
pub fn a_loses_the_race(dir: &Path, mut a: Command, b: impl FnOnce() -> Out) -> (Out, Out) {
    let gate = Gate::new(dir, "a-gate");
    a.env("SILT_FAULTS", gate.fault("after-close", "s*/t0/a0"));
    let pa = Daemon::spawn_capture("writer-a", a);
    gate.wait_reached(GATE_TIMEOUT);
    let ob = b();
    gate.open();
    let oa = pa.finish(WRITE_TIMEOUT);
    (oa, ob)
}

#[track_caller]
fn assert_raced(out: &Out, checked: u64) {
    assert_eq!(
        out.json()["winning_commits_checked"].as_u64(),
        Some(checked),
        "the commit must have lost the race and checked the winner\n{}",
        out.describe()
    );
}

#[test]
fn appends_racing_each_other_both_commit() {
    let seed = seed_for("appends_racing_each_other_both_commit");
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

    let (oa, ob) = a_loses_the_race(dir.path(), write_process(&t, &a, &[]), || {
        silt_write(&t, &b, &[])
    });
    ob.assert_ok();
    oa.assert_ok();
    assert_eq!(ob.version(), Some(1));
    assert_eq!(
        oa.version(),
        Some(2),
        "the paused append commits after the other"
    );
    assert_raced(&oa, 1);
    assert_same_content(
        &t,
        &[
            Expected::Parquet(&base),
            Expected::Parquet(&a),
            Expected::Parquet(&b),
        ],
        &[],
    );
}

#[test]
fn overwrite_racing_a_blind_append_follows_the_isolation_level() {
    let seed = seed_for("overwrite_racing_a_blind_append_follows_the_isolation_level");
    let dir = tempdir("race-overwrite");
    let base = Gen::new(seed, 300).write(&dir.path().join("base"));
    let app = Gen::new(seed + 1, 200)
        .id_start(1000)
        .write(&dir.path().join("app"));
    let ovw = Gen::new(seed + 2, 150)
        .id_start(2000)
        .write(&dir.path().join("ovw"));

    // WriteSerializable (the default): the blind append is ordered after the overwrite, which
    // commits on top of it; the appended rows stay.
    let t = dir.path().join("ws");
    silt_write_ok(&t, &base, &[]);
    let (oo, oa) = a_loses_the_race(
        dir.path(),
        write_process(&t, &ovw, &["--mode", "overwrite"]),
        || silt_write(&t, &app, &[]),
    );
    oa.assert_ok();
    oo.assert_ok();
    assert_raced(&oo, 1);
    assert_eq!(oo.version(), Some(2));
    assert_same_content(&t, &[Expected::Parquet(&ovw), Expected::Parquet(&app)], &[]);

    // Serializable: the append added data the overwrite read, so the overwrite fails and the
    // table keeps the base and the append.
    let dir2 = tempdir("race-overwrite-ser");
    let t = dir2.path().join("ser");
    silt_write_ok(
        &t,
        &base,
        &["--property", "delta.isolationLevel=Serializable"],
    );
    let (oo, oa) = a_loses_the_race(
        dir2.path(),
        write_process(&t, &ovw, &["--mode", "overwrite"]),
        || silt_write(&t, &app, &[]),
    );
    oa.assert_ok();
    let line = oo.assert_error(&["ConcurrentAppendException", "version 1"]);
    assert!(line.contains("nothing was committed"), "{line}");
    assert_eq!(commit_files(&t).len(), 2);
    assert_same_content(
        &t,
        &[Expected::Parquet(&base), Expected::Parquet(&app)],
        &[],
    );
    assert!(
        data_files(&t).len() == inspect(&t)["num_files"].as_u64().unwrap() as usize,
        "the failed overwrite left no files:\n{}",
        listing_text(&t)
    );

    // The append paused instead: a blind append never conflicts; it lands after the overwrite.
    let dir3 = tempdir("race-append-after-overwrite");
    let t = dir3.path().join("t");
    silt_write_ok(&t, &base, &[]);
    let (oa, oo) = a_loses_the_race(dir3.path(), write_process(&t, &app, &[]), || {
        silt_write(&t, &ovw, &["--mode", "overwrite"])
    });
    oo.assert_ok();
    oa.assert_ok();
    assert_raced(&oa, 1);
    assert_same_content(&t, &[Expected::Parquet(&ovw), Expected::Parquet(&app)], &[]);
}
