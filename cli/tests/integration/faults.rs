//! The driver's guarantees under faults injected at named points of task attempts
//! (`SILT_FAULTS`, see `silt_executor::faults`), instead of timing: superseded attempts'
//! files are removed after a successful job, a straggler of a failed job is cancelled and its
//! files removed, attempts are bounded, bad input fails at once without retries.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const GATE_TIMEOUT: Duration = Duration::from_secs(120);

fn with_faults(mut cmd: Command, faults: &str) -> Command {
    cmd.env("SILT_FAULTS", faults);
    cmd
}

/// Data files of a table whose names carry this attempt tag (e.g. `-s0-t0-a0-`).
fn files_of_attempt(t: &Path, tag: &str) -> Vec<String> {
    data_files(t)
        .into_iter()
        .filter(|f| f.contains(tag))
        .collect()
}

#[test]
fn superseded_attempt_files_are_removed_after_a_successful_job() {
    let seed = seed_for("superseded_attempt_files_are_removed_after_a_successful_job");
    let dir = tempdir("fault-superseded");
    let src = Gen::new(seed, 500).files(2).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    // The first attempt writes and closes its files, then fails as a crash would: its files
    // stay behind. The second attempt succeeds.
    let out = run(
        with_faults(
            silt_write_cmd(&s(&t), &s(&src), &[]),
            "after-close:s0/t0/a0:fail-keep",
        ),
        WRITE_TIMEOUT,
    );
    out.assert_ok();
    let j = out.json();
    assert_eq!(j["version"], 0);
    assert_eq!(j["task_retries"], 1, "{}", out.describe());
    assert!(
        files_of_attempt(&t, "-s0-t0-a0-").is_empty(),
        "the superseded attempt's files were not removed:\n{}",
        listing_text(&t)
    );
    assert!(!files_of_attempt(&t, "-s0-t0-a1-").is_empty());
    assert_same_content(&t, &[Expected::Parquet(&src)], &[]);
    assert_eq!(
        data_files(&t).len() as u64,
        inspect(&t)["num_files"].as_u64().unwrap()
    );
}

#[test]
fn straggler_of_a_failed_job_is_cancelled_and_its_files_removed() {
    let seed = seed_for("straggler_of_a_failed_job_is_cancelled_and_its_files_removed");
    let dir = tempdir("fault-straggler");
    let src = Gen::new(seed, 3000).files(2).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    // Partitioned: one map task, then 4 reduce tasks on 2 executors. Reducer 1 writes and
    // closes its files, then stops before reporting; reducer 0 fails for good once reducer 1
    // is paused, which fails the job while reducer 1 still runs with its files written.
    let straggler = Gate::new(dir.path(), "straggler");
    let failer = Gate::new(dir.path(), "failer");
    let faults = format!(
        "{};{};start:s1/t0/a0:fatal",
        straggler.fault("after-close", "s1/t1/a0"),
        failer.fault("start", "s1/t0/a0"),
    );
    let cmd = with_faults(
        silt_write_cmd(
            &s(&t),
            &s(&src),
            &["--partition-by", "k", "--exchange", "always"],
        ),
        &faults,
    );
    let job = Daemon::spawn_capture("write", cmd);
    straggler.wait_reached(GATE_TIMEOUT);
    let written_before_failure = data_files(&t).len();
    failer.wait_reached(GATE_TIMEOUT);
    failer.open();
    let out = job.finish(WRITE_TIMEOUT);
    out.assert_error(&["injected fault"]);
    // Resume the straggler: it was cancelled, so nothing more appears.
    straggler.open();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        written_before_failure > 0,
        "the straggler had written files before the job failed"
    );
    assert!(
        data_files(&t).is_empty(),
        "files of the failed job remain:\n{}",
        listing_text(&t)
    );
    assert!(commit_files(&t).is_empty(), "nothing was committed");
}

#[test]
fn attempts_are_bounded() {
    let seed = seed_for("attempts_are_bounded");
    let dir = tempdir("fault-attempts");
    let src = Gen::new(seed, 100).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    let out = run(
        with_faults(silt_write_cmd(&s(&t), &s(&src), &[]), "start:s0/t0/a*:fail"),
        WRITE_TIMEOUT,
    );
    out.assert_error(&["failed 4 times", "injected fault"]);
    assert_eq!(out.json()["task_retries"], 3);
    assert!(data_files(&t).is_empty() && commit_files(&t).is_empty());
}

#[test]
fn bad_input_fails_at_once_without_retries() {
    let seed = seed_for("bad_input_fails_at_once_without_retries");
    let dir = tempdir("fault-bad-input");
    let src = Gen::new(seed, 100).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    silt_write_ok(&t, &src, &[]);
    let before = listing_with_dirs(&t);
    // A value that does not fit the column, found by the executor while rewriting:
    // deterministic, so no retry.
    let out = silt_sql(
        &format!(
            "UPDATE {} SET k = id * 1000000000 WHERE id < 10",
            delta_ref(&t)
        ),
        &[],
    );
    out.assert_error(&["`k`", "cannot convert"]);
    assert_eq!(out.json()["task_retries"], 0, "{}", out.describe());
    assert_same_listing(&before, &listing_with_dirs(&t), "the failed UPDATE");
}
