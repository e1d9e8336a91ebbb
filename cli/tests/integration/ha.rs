//! Highly available coordinators: a real etcd (Debian's `etcd-server`) on loopback, two
//! `silt coordinator --etcd` processes campaigning for one cluster, an executor and clients
//! given both coordinators' URLs. The leader is killed (SIGKILL) or paused (SIGSTOP past its
//! lease); the standby takes over, jobs go to it, and the table holds each job's rows once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The leader lease of these tests.
const LEASE_MS: u64 = 1_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// etcd on free loopback ports, with a heartbeat short enough for one-second leases.
fn start_etcd(dir: &Path) -> (Daemon, String) {
    start_etcd_on(dir, free_port(), free_port())
}

/// … on these ports (to start it again where it was).
fn start_etcd_on(dir: &Path, client: u16, peer: u16) -> (Daemon, String) {
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", "it", "--data-dir", &s(&dir.join("etcd"))])
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("it={peer_url}")])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let mut etcd = Daemon::spawn("etcd", cmd);
    etcd.wait_for_line("ready to serve client requests", START_TIMEOUT);
    (etcd, url)
}

/// A coordinator campaigning in cluster `it`; returns it and its URL.
fn start_coordinator(name: &str, etcd: &str) -> (Daemon, String) {
    start_coordinator_with(name, etcd, &[])
}

/// … with `env` set (test-only fault injection).
fn start_coordinator_with(name: &str, etcd: &str, env: &[(&str, &str)]) -> (Daemon, String) {
    let mut cmd = Command::new(silt_bin());
    cmd.envs(env.iter().copied());
    cmd.args(["coordinator", "--listen", "127.0.0.1:0", "--etcd", etcd])
        .args([
            "--cluster-name",
            "it",
            "--lease-ttl-ms",
            &LEASE_MS.to_string(),
        ])
        .args(["--executor-timeout-ms", "2000"]);
    cmd.env("SILT_LOG", "info");
    let mut d = Daemon::spawn(name, cmd);
    let line = d.wait_for_line("listening on", START_TIMEOUT);
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("no address in `{line}`"));
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    (d, format!("http://{addr}"))
}

fn start_executor(coordinators: &str) -> Daemon {
    start_executor_with(coordinators, &[])
}

fn start_executor_with(coordinators: &str, args: &[&str]) -> Daemon {
    let mut cmd = Command::new(silt_bin());
    cmd.args(["executor", "--coordinator", coordinators, "--slots", "1"])
        .args(["--name", "ha-exec"])
        .args(args);
    cmd.env("SILT_LOG", "info");
    let mut d = Daemon::spawn("executor", cmd);
    d.wait_for_line("registered with coordinator", START_TIMEOUT);
    d
}

fn write(table: &Path, source: &Path, coordinators: &str) -> Out {
    let mut cmd = Command::new(silt_bin());
    cmd.args(["write", "--table", &s(table), "--source", &s(source)])
        .args(["--json", "-q", "--coordinator", coordinators]);
    Daemon::spawn_capture("write", cmd).finish(Duration::from_secs(120))
}

fn signal(d: &Daemon, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &d.guard.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} failed");
}

#[test]
fn a_killed_leader_is_replaced_and_jobs_reach_the_new_one() {
    let seed = seed_for("a_killed_leader_is_replaced_and_jobs_reach_the_new_one");
    let dir = tempdir("ha-kill");
    let a_rows = Gen::new(seed, 500).files(2).write(&dir.path().join("a"));
    let b_rows = Gen::new(seed + 1, 300)
        .id_start(10_000)
        .files(2)
        .write(&dir.path().join("b"));
    let t = dir.path().join("t");
    let (_etcd, etcd) = start_etcd(dir.path());
    let (mut first, first_url) = start_coordinator("coordinatorA", &etcd);
    first.wait_for_line("leads cluster", START_TIMEOUT);
    let (mut second, second_url) = start_coordinator("coordinatorB", &etcd);
    let both = format!("{first_url},{second_url}");
    let _executor = start_executor(&both);

    // The standby, asked first, names the leader; the job goes there.
    let out = write(&t, &a_rows, &format!("{second_url},{first_url}"));
    out.assert_ok();
    assert_eq!(out.version(), Some(0), "{}", out.describe());
    let first_job = out.json()["job_id"].as_str().unwrap().to_string();
    assert!(
        !second.collect().contains("leads cluster"),
        "one leader at a time"
    );

    let killed = Instant::now();
    first.guard.kill9();
    second.wait_for_line("leads cluster", Duration::from_secs(30));
    let takeover = killed.elapsed();
    eprintln!("[ha] the standby led {takeover:?} after the leader was killed");
    assert!(
        takeover < Duration::from_millis(LEASE_MS) + Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    // The killed leader first in the list: the client passes over it.
    let out = write(&t, &b_rows, &both);
    out.assert_ok();
    assert_eq!(out.version(), Some(1), "{}", out.describe());
    assert_same_content(
        &t,
        &[Expected::Parquet(&a_rows), Expected::Parquet(&b_rows)],
        &[],
    );
    // The new leader answers for the job the killed one ran (from the job journal).
    let mut cmd = Command::new(silt_bin());
    cmd.args([
        "job",
        "status",
        &first_job,
        "--json",
        "--coordinator",
        &both,
    ]);
    let status = run(cmd, Duration::from_secs(60));
    status.assert_ok();
    let j = status.json();
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["version"], 0, "{j}");
    let mut cmd = Command::new(silt_bin());
    cmd.args(["job", "status", "jnosuchjob", "--coordinator", &both]);
    run(cmd, Duration::from_secs(60)).assert_error(&["no job jnosuchjob"]);
}

#[test]
fn a_paused_leader_loses_its_lease_steps_down_and_serves_again_as_a_standby() {
    let seed = seed_for("a_paused_leader_loses_its_lease_steps_down_and_serves_again_as_a_standby");
    let dir = tempdir("ha-pause");
    let a_rows = Gen::new(seed, 400).files(2).write(&dir.path().join("a"));
    let b_rows = Gen::new(seed + 1, 200)
        .id_start(10_000)
        .files(1)
        .write(&dir.path().join("b"));
    let c_rows = Gen::new(seed + 2, 100)
        .id_start(20_000)
        .files(1)
        .write(&dir.path().join("c"));
    let t = dir.path().join("t");
    let (_etcd, etcd) = start_etcd(dir.path());
    let (mut first, first_url) = start_coordinator("coordinatorA", &etcd);
    first.wait_for_line("leads cluster", START_TIMEOUT);
    let (mut second, second_url) = start_coordinator("coordinatorB", &etcd);
    let both = format!("{first_url},{second_url}");
    let _executor = start_executor(&both);
    write(&t, &a_rows, &both).assert_ok();

    // Paused past its lease (SIGSTOP): the standby takes over and jobs go to it, the
    // paused leader (first in the list) passed over.
    signal(&first, "-STOP");
    second.wait_for_line("leads cluster", Duration::from_secs(30));
    let out = write(&t, &b_rows, &both);
    out.assert_ok();
    assert_eq!(out.version(), Some(1), "{}", out.describe());

    // Resumed, the old leader finds its lease gone and steps down: it starts afresh as a
    // standby, at the same address.
    signal(&first, "-CONT");
    let line = first.wait_for_line("stepping down", Duration::from_secs(30));
    assert!(line.contains("lost"), "{line}");
    let line = first.wait_for_line("listening on", Duration::from_secs(30));
    let port = first_url.rsplit(':').next().unwrap();
    assert!(
        line.contains(&format!("127.0.0.1:{port}: standby")),
        "{line}"
    );
    // It leads again when the other leader goes.
    second.guard.kill9();
    first.wait_for_line("leads cluster", Duration::from_secs(30));
    let out = write(&t, &c_rows, &both);
    out.assert_ok();
    assert_eq!(out.version(), Some(2), "{}", out.describe());
    assert_same_content(
        &t,
        &[
            Expected::Parquet(&a_rows),
            Expected::Parquet(&b_rows),
            Expected::Parquet(&c_rows),
        ],
        &[],
    );
    let info = inspect(&t);
    assert_eq!(info["version"], 2, "exactly three commits: {info}");
}

#[test]
fn a_leader_dying_mid_job_leaves_the_job_to_the_next_one() {
    // Before the job's tasks run, after the fence allowed its commit but before the commit
    // was written, and after it was written: every time the job ends with exactly one
    // commit, and its client, following it to the new leader, learns the outcome.
    for (point, taken_over) in [
        ("dispatch", "1 run again"),
        ("commit", "1 run again"),
        ("committed", "1 committed before"),
    ] {
        let seed = seed_for(&format!(
            "a_leader_dying_mid_job_leaves_the_job_to_the_next_one/{point}"
        ));
        let dir = tempdir(&format!("ha-crash-{point}"));
        let rows = Gen::new(seed, 600).files(3).write(&dir.path().join("a"));
        let t = dir.path().join("t");
        let (_etcd, etcd) = start_etcd(dir.path());
        let (mut first, first_url) =
            start_coordinator_with("coordinatorA", &etcd, &[("SILT_COORDINATOR_CRASH", point)]);
        first.wait_for_line("leads cluster", START_TIMEOUT);
        let (mut second, second_url) = start_coordinator("coordinatorB", &etcd);
        let both = format!("{first_url},{second_url}");
        let _executor = start_executor(&both);

        let out = write(&t, &rows, &both);
        first.wait_for_line(&format!("dying at `{point}`"), Duration::from_secs(10));
        let line = second.wait_for_line("leads cluster", Duration::from_secs(30));
        out.assert_ok();
        assert_eq!(out.version(), Some(0), "[{point}] {}", out.describe());
        assert!(line.contains(taken_over), "[{point}] {line}");
        assert_same_content(&t, &[Expected::Parquet(&rows)], &[]);
        let info = inspect(&t);
        assert_eq!(info["version"], 0, "[{point}] exactly one commit: {info}");
    }
}

#[test]
fn jobs_stall_while_etcd_is_down_and_finish_when_it_returns() {
    let seed = seed_for("jobs_stall_while_etcd_is_down_and_finish_when_it_returns");
    let dir = tempdir("ha-etcd-restart");
    let rows = Gen::new(seed, 800).files(4).write(&dir.path().join("a"));
    let t = dir.path().join("t");
    let (client_port, peer_port) = (free_port(), free_port());
    let (mut etcd_daemon, etcd) = start_etcd_on(dir.path(), client_port, peer_port);
    let (mut first, first_url) = start_coordinator("coordinatorA", &etcd);
    first.wait_for_line("leads cluster", START_TIMEOUT);
    let (mut second, second_url) = start_coordinator("coordinatorB", &etcd);
    let both = format!("{first_url},{second_url}");
    // Slow tasks: the job is still running when etcd goes.
    let mut executor = start_executor_with(&both, &["--task-delay-ms", "1500"]);
    let mut cmd = Command::new(silt_bin());
    cmd.args(["write", "--table", &s(&t), "--source", &s(&rows)])
        .args(["--json", "-q", "--coordinator", &both]);
    let job = Daemon::spawn_capture("write", cmd);
    executor.wait_for_line("task started", Duration::from_secs(30));

    etcd_daemon.guard.kill9();
    // Past the lease: the leader cannot renew it and steps down; nobody can lead.
    first.wait_for_line("stepping down", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(2 * LEASE_MS));
    assert!(
        !second.collect().contains("leads cluster"),
        "no leader without etcd"
    );
    let (_etcd_again, _) = start_etcd_on(dir.path(), client_port, peer_port);

    // A coordinator leads again, takes the job over and runs it to its one commit; the
    // client, following it, learns that.
    let out = job.finish(Duration::from_secs(120));
    out.assert_ok();
    assert_eq!(out.version(), Some(0), "{}", out.describe());
    let mut logs = first.collect();
    logs.push_str(&second.collect());
    assert!(
        logs.contains("1 run again"),
        "the job was taken over:\n{logs}"
    );
    assert_same_content(&t, &[Expected::Parquet(&rows)], &[]);
    let info = inspect(&t);
    assert_eq!(info["version"], 0, "exactly one commit: {info}");
}
