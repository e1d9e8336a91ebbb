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

/// A coordinator campaigning in cluster `it` on `listen`, with probes on `http`.
fn start_coordinator_at(name: &str, etcd: &str, listen: &str, http: &str) -> Daemon {
    let mut cmd = Command::new(silt_bin());
    cmd.args(["coordinator", "--listen", listen, "--etcd", etcd])
        .args([
            "--cluster-name",
            "it",
            "--lease-ttl-ms",
            &LEASE_MS.to_string(),
        ])
        .args(["--executor-timeout-ms", "2000", "--http-listen", http]);
    cmd.env("SILT_LOG", "info");
    let mut d = Daemon::spawn(name, cmd);
    d.wait_for_line("listening on", START_TIMEOUT);
    d
}

/// The body of an HTTP GET on loopback (empty when nothing answers).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
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

fn start_executor_with(coordinators: &str, args: &[&str]) -> Daemon {
    let mut cmd = Command::new(silt_bin());
    cmd.args(["executor", "--coordinator", coordinators, "--slots", "1"])
        .args(args);
    if !args.contains(&"--name") {
        cmd.args(["--name", "ha-exec"]);
    }
    cmd.env("SILT_LOG", "info");
    let mut d = Daemon::spawn("executor", cmd);
    d.wait_for_line("registered with coordinator", START_TIMEOUT);
    d
}

/// Two coordinators of cluster `it` — `first` leading (started with `first_env`), `second`
/// its standby — and an executor (with `executor_args`) given both.
struct Pair {
    first: Daemon,
    first_url: String,
    second: Daemon,
    second_url: String,
    /// Both coordinators' URLs, the leader's first.
    both: String,
    executor: Daemon,
}

impl Pair {
    fn start(etcd: &str, first_env: &[(&str, &str)], executor_args: &[&str]) -> Pair {
        let (mut first, first_url) = start_coordinator_with("coordinatorA", etcd, first_env);
        first.wait_for_line("leads cluster", START_TIMEOUT);
        let (second, second_url) = start_coordinator("coordinatorB", etcd);
        let both = format!("{first_url},{second_url}");
        let executor = start_executor_with(&both, executor_args);
        Pair {
            first,
            first_url,
            second,
            second_url,
            both,
            executor,
        }
    }
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
    let Pair {
        mut first,
        first_url,
        mut second,
        second_url,
        both,
        executor: _executor,
    } = Pair::start(&etcd, &[], &[]);

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
    let Pair {
        mut first,
        first_url,
        mut second,
        both,
        executor: _executor,
        ..
    } = Pair::start(&etcd, &[], &[]);
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
        let Pair {
            mut first,
            mut second,
            both,
            executor: _executor,
            ..
        } = Pair::start(&etcd, &[("SILT_COORDINATOR_CRASH", point)], &[]);

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
    let (client_port, peer_port) = (free_port(), free_port());
    let (mut etcd_daemon, etcd) = start_etcd_on(dir.path(), client_port, peer_port);
    // Slow tasks: the jobs are still running (or waiting for a slot) when etcd goes.
    let Pair {
        mut first,
        mut second,
        both,
        mut executor,
        ..
    } = Pair::start(&etcd, &[], &["--task-delay-ms", "1500"]);
    // Three jobs in flight, on three tables.
    let jobs: Vec<(std::path::PathBuf, std::path::PathBuf, Daemon)> = (0..3u64)
        .map(|i| {
            let rows = Gen::new(seed + i, 400)
                .files(2)
                .write(&dir.path().join(format!("a{i}")));
            let t = dir.path().join(format!("t{i}"));
            let mut cmd = Command::new(silt_bin());
            cmd.args(["write", "--table", &s(&t), "--source", &s(&rows)])
                .args(["--json", "-q", "--coordinator", &both]);
            (rows, t, Daemon::spawn_capture(&format!("write{i}"), cmd))
        })
        .collect();
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

    // A coordinator leads again, takes the jobs over and runs each to its one commit; the
    // clients, following them, learn that.
    for (rows, t, job) in jobs {
        let out = job.finish(Duration::from_secs(180));
        out.assert_ok();
        assert_eq!(out.version(), Some(0), "{}", out.describe());
        assert_same_content(&t, &[Expected::Parquet(&rows)], &[]);
        let info = inspect(&t);
        assert_eq!(info["version"], 0, "exactly one commit: {info}");
    }
    let mut logs = first.collect();
    logs.push_str(&second.collect());
    // The jobs the first leader had accepted are run again by the next one (at least the
    // one whose task had started; under load a client may reach a coordinator only once
    // the next leader is elected, and its job then simply starts there).
    let taken_over: usize = logs
        .lines()
        .filter_map(|l| l.split("jobs taken over: ").nth(1))
        .filter_map(|rest| {
            rest.split(" run again")
                .next()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        taken_over >= 1,
        "the jobs in flight were taken over ({taken_over} run again):\n{logs}"
    );
}

/// A small seeded generator for the fault loop's choices.
struct Rng(u64);

impl Rng {
    /// splitmix64: well mixed even for seeds that differ in a few bits.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[test]
fn seeded_faults_during_writes_leave_every_row_exactly_once() {
    // Rounds: `SILT_HA_ROUNDS` (50 in a nightly run), a few in CI.
    let rounds: u64 = std::env::var("SILT_HA_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let seed = seed_for("seeded_faults_during_writes_leave_every_row_exactly_once");
    let dir = tempdir("ha-fault-loop");
    let t = dir.path().join("t");
    let (_etcd, etcd) = start_etcd(dir.path());
    let listen: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let http: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let names = ["coordinatorA", "coordinatorB"];
    let mut coordinators: Vec<Daemon> = (0..2)
        .map(|i| start_coordinator_at(names[i], &etcd, &listen[i], &http[i]))
        .collect();
    let both = format!("http://{},http://{}", listen[0], listen[1]);
    let executor = |i: usize| {
        start_executor_with(
            &both,
            &["--task-delay-ms", "200", "--name", &format!("loop{i}")],
        )
    };
    let mut executors: Vec<Daemon> = (0..2).map(executor).collect();
    let leader = |http: &[String]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = (0..2).find(|&i| http_get(&http[i], "/readyz") == "leader\n") {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut sources = Vec::new();
    for round in 0..rounds {
        let round_seed = seed.wrapping_add(round * 7919);
        let mut rng = Rng(round_seed);
        let fault = rng.below(4);
        let delay = Duration::from_millis(rng.below(900));
        // The job under the fault: an idempotent append, a MERGE upsert (new keys: inserted
        // once however often it runs), or an OPTIMIZE (after an undisturbed append).
        let op = if round == 0 { 0 } else { rng.below(3) };
        eprintln!(
            "[fault-loop] round {round}: seed {round_seed}, op {op}, fault {fault}, after {delay:?}"
        );
        let rows = Gen::new(round_seed, 300)
            .id_start((round as i64) * 100_000)
            .files(2)
            .write(&dir.path().join(format!("src{round}")));
        // Idempotent: the same txn version however often the client retries.
        let append_cmd = || {
            let mut cmd = Command::new(silt_bin());
            cmd.args(["write", "--table", &s(&t), "--source", &s(&rows)])
                .args(["--mode", "append", "--txn-app-id", "fault-loop"])
                .args(["--txn-version", &round.to_string()])
                .args(["--json", "-q", "--coordinator", &both]);
            cmd
        };
        let sql_cmd = |sql: String| {
            let mut cmd = Command::new(silt_bin());
            cmd.args(["sql", &sql, "--json", "-q", "--coordinator", &both]);
            cmd
        };
        let write_cmd = || match op {
            1 => sql_cmd(format!(
                "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id \
                 WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
                delta_ref(&t),
                s(&rows)
            )),
            2 => sql_cmd(format!("OPTIMIZE {}", delta_ref(&t))),
            _ => append_cmd(),
        };
        if op == 2 {
            run(append_cmd(), Duration::from_secs(180)).assert_ok();
        }
        let job = Daemon::spawn_capture("write", write_cmd());
        std::thread::sleep(delay);
        let l = leader(&http);
        match fault {
            0 => {
                // The leader dies and comes back (a restarted pod).
                coordinators[l].guard.kill9();
                coordinators[l] = start_coordinator_at(names[l], &etcd, &listen[l], &http[l]);
            }
            1 => {
                // The leader stalls past its lease.
                signal(&coordinators[l], "-STOP");
                std::thread::sleep(Duration::from_millis(3 * LEASE_MS));
                signal(&coordinators[l], "-CONT");
            }
            2 => {
                let e = rng.below(2) as usize;
                executors[e].guard.kill9();
                executors[e] = executor(e);
            }
            _ => {}
        }
        let mut out = job.finish(Duration::from_secs(180));
        for retry in 0..5 {
            if out.ok() {
                break;
            }
            eprintln!(
                "[fault-loop] round {round}: retry {retry}: {}",
                out.describe()
            );
            out = run(write_cmd(), Duration::from_secs(180));
        }
        out.assert_ok();
        sources.push(rows);
    }
    let expected: Vec<Expected<'_>> = sources.iter().map(|p| Expected::Parquet(p)).collect();
    assert_same_content(&t, &expected, &[]);
}

#[test]
fn a_leader_paused_at_its_commit_is_fenced_when_it_resumes() {
    // The leader stops (SIGSTOP) just before its commit attempt passes the fence, past its
    // lease; the standby takes the job over and commits it; resumed, the old leader's
    // commit attempt is refused by the fence, it leaves the job alone and steps down. One
    // commit; the client, following the job, learns it.
    let seed = seed_for("a_leader_paused_at_its_commit_is_fenced_when_it_resumes");
    let dir = tempdir("ha-stop-at-fence");
    let rows = Gen::new(seed, 500).files(2).write(&dir.path().join("a"));
    let t = dir.path().join("t");
    let (_etcd, etcd) = start_etcd(dir.path());
    let Pair {
        mut first,
        mut second,
        both,
        executor: _executor,
        ..
    } = Pair::start(&etcd, &[("SILT_COORDINATOR_CRASH", "stop@fence")], &[]);
    let mut cmd = Command::new(silt_bin());
    cmd.args(["write", "--table", &s(&t), "--source", &s(&rows)])
        .args(["--json", "-q", "--coordinator", &both]);
    let job = Daemon::spawn_capture("write", cmd);
    first.wait_for_line("stopping at `fence`", Duration::from_secs(60));
    let line = second.wait_for_line("leads cluster", Duration::from_secs(30));
    assert!(line.contains("1 run again"), "{line}");
    second.wait_for_line("driver: committed", Duration::from_secs(60));
    signal(&first, "-CONT");
    first.wait_for_line(
        "the job is left to the next leader",
        Duration::from_secs(30),
    );
    // … and restarts as a standby.
    first.wait_for_line("standby of cluster", Duration::from_secs(30));
    assert!(first.collect().contains("stepping down"));
    let out = job.finish(Duration::from_secs(120));
    out.assert_ok();
    assert_eq!(out.version(), Some(0), "{}", out.describe());
    assert_same_content(&t, &[Expected::Parquet(&rows)], &[]);
    let info = inspect(&t);
    assert_eq!(info["version"], 0, "exactly one commit: {info}");
}
