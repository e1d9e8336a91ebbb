//! Helpers shared by the integration tests: running `silt` and the Python oracle with
//! bounded waits, seeds, directory snapshots, golden tables, child-process guards.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Upper bound for one `silt write` on the embedded cluster (debug build, busy 2-core box).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(180);
/// Upper bound for one oracle invocation.
pub const ORACLE_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

/// The repository root (parent of the `cli` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli crate has a parent directory")
        .to_path_buf()
}

/// The Python interpreter with deltalake/polars/pyarrow: `$SILT_PYTHON` or `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    match std::env::var_os("SILT_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv").join("bin").join("python"),
    }
}

pub fn oracle_script() -> PathBuf {
    repo_root().join("tests").join("python").join("oracle.py")
}

/// A copy of golden table `<rel>/delta` at `dir/name`.
pub fn golden_copy(rel: &str, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    copy_dir(&golden(&format!("{rel}/delta")), &dst);
    dst
}

/// A golden table path: `<repo>/tests/golden/<rel>` (or `$SILT_GOLDEN_DIR/<rel>`).
pub fn golden(rel: &str) -> PathBuf {
    let root = match std::env::var_os("SILT_GOLDEN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("tests").join("golden"),
    };
    let p = root.join(rel);
    assert!(
        p.exists(),
        "golden data not found: {} (see tests/golden/README.md)",
        p.display()
    );
    p
}

pub fn silt_bin() -> &'static str {
    env!("CARGO_BIN_EXE_silt")
}

pub fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("silt-it-{name}-"))
        .tempdir()
        .expect("create temp dir")
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

fn base_seed() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let seed = match std::env::var("SILT_TEST_SEED") {
            Ok(v) if !v.trim().is_empty() => {
                v.trim().parse().expect("SILT_TEST_SEED must be an integer")
            }
            _ => {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(42)
                    % 1_000_000_007
            }
        };
        eprintln!("[seed] SILT_TEST_SEED={seed}");
        seed
    })
}

/// A reproducible seed per test: derived from the run's base seed (logged) and the test name.
/// A count a test takes from the environment (e.g. its number of random steps), else
/// `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn seed_for(test: &str) -> u64 {
    let base = base_seed();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in test.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let seed = (base ^ h) % (1 << 31);
    eprintln!("[seed] test {test}: seed {seed} (reproduce the run with SILT_TEST_SEED={base})");
    seed
}

// ---------------------------------------------------------------------------------------------
// Running processes with bounded waits
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The `--json` result line of `silt write`.
    pub fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "no JSON line on stdout of {}\n{}",
                    self.cmdline,
                    self.describe()
                )
            });
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON `{line}`: {e}"))
    }

    /// Committed version from the `--json` result (None when nothing was committed).
    pub fn version(&self) -> Option<i64> {
        self.json()["version"].as_i64()
    }

    /// The last `error: …` line on stderr.
    pub fn error_line(&self) -> Option<String> {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .map(str::to_string)
    }

    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "command failed\n{}", self.describe());
        self
    }

    /// A failed `silt` run: non-zero exit and an `error:` line that is self-contained (one
    /// line) and mentions every term (case-insensitive). Returns the error line.
    #[track_caller]
    pub fn assert_error(&self, terms: &[&str]) -> String {
        assert!(
            !self.ok(),
            "expected a failure, but the command succeeded\n{}",
            self.describe()
        );
        assert_ne!(self.code(), Some(0));
        let line = self
            .error_line()
            .unwrap_or_else(|| panic!("no `error:` line on stderr\n{}", self.describe()));
        let lower = line.to_lowercase();
        for t in terms {
            assert!(
                lower.contains(&t.to_lowercase()),
                "the error line does not mention `{t}` (the cause must be on the one `error:` line)\nerror line: {line}\n{}",
                self.describe()
            );
        }
        line
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.contains([' ', '\'', '"', '>', '<', '=']) {
            format!("'{a}'")
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

fn drain<R: Read + Send + 'static>(r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for a child with a deadline; kills it when the deadline passes.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

/// Runs a command to completion with a timeout (panics on timeout).
pub fn run(mut cmd: Command, timeout: Duration) -> Out {
    let line = cmdline(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env("NO_COLOR", "1");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_with_timeout(&mut child, timeout);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Out {
            status,
            stdout,
            stderr,
            cmdline: line,
        },
        None => panic!(
            "timed out after {timeout:?}: {line}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

/// Kills the child (SIGKILL) and reaps it when dropped.
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A background process whose stderr lines are forwarded to a channel (and kept).
pub struct Daemon {
    pub guard: ChildGuard,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub cmdline: String,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Daemon {
    /// Starts a daemon: stderr lines go to the channel, stdout is discarded.
    pub fn spawn(name: &str, cmd: Command) -> Daemon {
        Self::start(name, cmd, false)
    }

    /// Starts a client process: stderr lines go to the channel, stdout is kept for [`Daemon::finish`].
    pub fn spawn_capture(name: &str, cmd: Command) -> Daemon {
        Self::start(name, cmd, true)
    }

    fn start(name: &str, mut cmd: Command, capture: bool) -> Daemon {
        let line = cmdline(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(if capture {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        cmd.env("NO_COLOR", "1");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        eprintln!("[{name}] started pid {}: {line}", child.id());
        Daemon {
            guard: ChildGuard {
                name: name.to_string(),
                child,
            },
            lines: rx,
            seen: Vec::new(),
            cmdline: line,
            stdout,
        }
    }

    /// Waits for the process to exit (killing it after `timeout`, which panics).
    pub fn finish(mut self, timeout: Duration) -> Out {
        let status = wait_with_timeout(&mut self.guard.child, timeout);
        // The stderr reader ends at EOF; give it a moment to forward the last lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => break,
                Err(_) => {}
            }
        }
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self.seen.join("\n");
        match status {
            Some(status) => Out {
                status,
                stdout,
                stderr,
                cmdline: self.cmdline.clone(),
            },
            None => panic!(
                "timed out after {timeout:?}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.cmdline
            ),
        }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "[{}] no line containing `{needle}` within {timeout:?}; stderr so far:\n{}",
                    self.guard.name,
                    self.seen.join("\n")
                ),
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] no line containing `{needle}` within {timeout:?}; stderr so far:\n{}",
                    self.guard.name,
                    self.seen.join("\n")
                );
            }
        }
    }

    /// The `HOST:PORT` a daemon says it listens on (`… listening on ADDR`), asserted to be
    /// on loopback.
    #[track_caller]
    pub fn listening_address(&mut self, timeout: Duration) -> String {
        let line = self.wait_for_line("listening on", timeout);
        let addr = line
            .rsplit("listening on")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "a daemon must listen on loopback: {line}"
        );
        addr
    }

    /// Everything printed so far (non-blocking).
    pub fn collect(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// silt
// ---------------------------------------------------------------------------------------------

/// `silt write --table T --source S` on an embedded cluster of 2 executors, with `--json -q`
/// and the extra arguments.
pub fn silt_write(table: &Path, source: &Path, extra: &[&str]) -> Out {
    silt_write_args(&s(table), &s(source), extra)
}

pub fn silt_write_args(table: &str, source: &str, extra: &[&str]) -> Out {
    run(silt_write_cmd(table, source, extra), WRITE_TIMEOUT)
}

/// The command line of [`silt_write_args`], to run some other way (in parallel, with an
/// environment).
pub fn silt_write_cmd(table: &str, source: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(silt_bin());
    cmd.args([
        "write", "--table", table, "--source", source, "--json", "-q",
    ]);
    if !extra
        .iter()
        .any(|a| *a == "--coordinator" || *a == "--executors")
    {
        cmd.args(["--executors", "2"]);
    }
    cmd.args(extra);
    cmd
}

/// A write that must succeed; returns its committed version (None for a no-op).
#[track_caller]
pub fn silt_write_ok(table: &Path, source: &Path, extra: &[&str]) -> Option<i64> {
    let out = silt_write(table, source, extra);
    out.assert_ok();
    let j = out.json();
    assert_eq!(j["state"], "succeeded", "{}", out.describe());
    j["version"].as_i64()
}

// ---------------------------------------------------------------------------------------------
// The Python oracle
// ---------------------------------------------------------------------------------------------

pub fn oracle<I, A>(args: I) -> Out
where
    I: IntoIterator<Item = A>,
    A: AsRef<OsStr>,
{
    let mut cmd = Command::new(python());
    cmd.arg(oracle_script()).args(args);
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    run(cmd, ORACLE_TIMEOUT)
}

#[track_caller]
pub fn oracle_ok(args: &[&str]) -> Out {
    let out = oracle(args);
    assert!(out.ok(), "oracle failed\n{}", out.describe());
    out
}

/// Options for generated source data.
#[derive(Clone, Debug)]
pub struct Gen {
    pub seed: u64,
    pub rows: usize,
    pub files: usize,
    pub format: &'static str,
    pub variant: &'static str,
    pub id_start: i64,
    pub k_domain: &'static str,
    pub null_k: bool,
    pub row_group_rows: Option<usize>,
}

impl Gen {
    pub fn new(seed: u64, rows: usize) -> Gen {
        Gen {
            seed,
            rows,
            files: 2,
            format: "parquet",
            variant: "base",
            id_start: 0,
            k_domain: "0,1,2,3",
            null_k: true,
            row_group_rows: None,
        }
    }
    pub fn files(mut self, n: usize) -> Self {
        self.files = n;
        self
    }
    pub fn format(mut self, f: &'static str) -> Self {
        self.format = f;
        self
    }
    pub fn variant(mut self, v: &'static str) -> Self {
        self.variant = v;
        self
    }
    pub fn id_start(mut self, i: i64) -> Self {
        self.id_start = i;
        self
    }
    pub fn k_domain(mut self, d: &'static str) -> Self {
        self.k_domain = d;
        self
    }
    pub fn no_null_k(mut self) -> Self {
        self.null_k = false;
        self
    }
    pub fn row_groups(mut self, rows: usize) -> Self {
        self.row_group_rows = Some(rows);
        self
    }

    /// Writes the source files into `dir` (created).
    #[track_caller]
    pub fn write(&self, dir: &Path) -> PathBuf {
        let mut args: Vec<String> = vec![
            "gen".into(),
            "--seed".into(),
            self.seed.to_string(),
            "--rows".into(),
            self.rows.to_string(),
            "--out".into(),
            s(dir),
            "--format".into(),
            self.format.into(),
            "--files".into(),
            self.files.to_string(),
            "--variant".into(),
            self.variant.into(),
            "--id-start".into(),
            self.id_start.to_string(),
            "--k-domain".into(),
            self.k_domain.into(),
        ];
        if !self.null_k {
            args.push("--no-null-k".into());
        }
        if let Some(r) = self.row_group_rows {
            args.push("--row-group-rows".into());
            args.push(r.to_string());
        }
        let out = oracle(&args);
        assert!(out.ok(), "oracle gen failed\n{}", out.describe());
        dir.to_path_buf()
    }
}

/// Writes `source` into the expected table `table` with delta-rs.
#[track_caller]
pub fn oracle_write(table: &Path, source: &Path, format: &str, extra: &[&str]) {
    let mut args = vec![
        "oracle-write".to_string(),
        "--table".into(),
        s(table),
        "--source".into(),
        s(source),
        "--format".into(),
        format.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = oracle(&args);
    assert!(out.ok(), "oracle-write failed\n{}", out.describe());
}

/// What a table is compared with.
pub enum Expected<'a> {
    Table(&'a Path),
    Parquet(&'a Path),
}

/// Compares the content of `table` (read by delta-rs AND polars) with the expected parts
/// (concatenated). `extra` passes options such as `--loose-types` or `--readers deltalake`.
#[track_caller]
pub fn assert_same_content(table: &Path, expected: &[Expected<'_>], extra: &[&str]) {
    let mut args = vec!["compare".to_string(), "--table".into(), s(table)];
    for e in expected {
        match e {
            Expected::Table(p) => {
                args.push("--expected".into());
                args.push(s(p));
            }
            Expected::Parquet(p) => {
                args.push("--expected-parquet".into());
                args.push(s(p));
            }
        }
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = oracle(&args);
    assert!(
        out.ok(),
        "table content differs from the expected content\n{}\n--- table files ---\n{}",
        out.describe(),
        listing_text(table)
    );
}

/// JSON facts about a table (see `oracle.py inspect`).
#[track_caller]
pub fn inspect(table: &Path) -> Value {
    inspect_with(table, &[])
}

#[track_caller]
pub fn inspect_with(table: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["inspect".to_string(), "--table".into(), s(table)];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = oracle(&args);
    assert!(out.ok(), "oracle inspect failed\n{}", out.describe());
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("bad inspect JSON: {e}\n{}", out.stdout))
}

// ---------------------------------------------------------------------------------------------
// Files on disk
// ---------------------------------------------------------------------------------------------

/// Recursive listing of a directory: relative path -> size in bytes (files only).
pub fn listing(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, md.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Recursive listing including directories (to detect leftovers such as empty shuffle dirs).
pub fn listing_with_dirs(dir: &Path) -> BTreeMap<String, Option<u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<u64>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                out.insert(format!("{rel}/"), None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(md.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn listing_text(dir: &Path) -> String {
    listing(dir)
        .iter()
        .map(|(k, v)| format!("  {k} ({v} B)"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that two listings are identical, printing the difference.
#[track_caller]
pub fn assert_same_listing<V: PartialEq + std::fmt::Debug>(
    before: &BTreeMap<String, V>,
    after: &BTreeMap<String, V>,
    what: &str,
) {
    if before != after {
        let mut diff = Vec::new();
        for (k, v) in after {
            match before.get(k) {
                None => diff.push(format!("  + {k} {v:?}")),
                Some(b) if b != v => diff.push(format!("  ~ {k} {b:?} -> {v:?}")),
                _ => {}
            }
        }
        for (k, v) in before {
            if !after.contains_key(k) {
                diff.push(format!("  - {k} {v:?}"));
            }
        }
        panic!("{what}: the table directory changed:\n{}", diff.join("\n"));
    }
}

/// Copies a directory tree (for golden tables: shared/ is read-only).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        let t = dst.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap_or_else(|err| panic!("copy {}: {err}", p.display()));
        }
    }
}

/// Copies only the `*.parquet` files of `src` (not recursive) into `dst`.
pub fn copy_parquet_files(src: &Path, dst: &Path) -> usize {
    std::fs::create_dir_all(dst).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && !name.starts_with(['.', '_']) {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
            n += 1;
        }
    }
    n
}

/// Number of commits (`_delta_log/NNN.json`) of a table.
pub fn commit_files(table: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && n.len() == 25)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Data files (`*.parquet` outside `_delta_log`), relative paths.
pub fn data_files(table: &Path) -> Vec<String> {
    listing(table)
        .into_keys()
        .filter(|k| k.ends_with(".parquet") && !k.starts_with("_delta_log"))
        .collect()
}

/// Percent-decodes a Delta log path.
pub fn pct_decode(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A partition directory name as silt writes it (and delta-rs): Hive-style `col=value`,
/// where every UTF-8 byte of the value outside `A-Za-z0-9-._~` is escaped as `%XX`
/// (upper-case hex); null (and the empty string) is `__HIVE_DEFAULT_PARTITION__`.
pub fn partition_dir_name(col: &str, value: Option<&str>) -> String {
    let v = match value {
        None | Some("") => "__HIVE_DEFAULT_PARTITION__".to_string(),
        Some(v) => v
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    };
    format!("{col}={v}")
}

/// Sleeps in small steps until `f` holds or the timeout passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

// ---------------------------------------------------------------------------------------------
// silt sql, DML oracle, fault gates
// ---------------------------------------------------------------------------------------------

/// `delta.\`<path>\`` for a SQL statement.
pub fn delta_ref(table: &Path) -> String {
    format!("delta.`{}`", s(table))
}

/// The command line of `silt sql STATEMENT --json -q` on an embedded cluster of 2 executors.
pub fn silt_sql_cmd(sql: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(silt_bin());
    cmd.args(["sql", sql, "--json", "-q"]);
    if !extra
        .iter()
        .any(|a| *a == "--coordinator" || *a == "--executors")
    {
        cmd.args(["--executors", "2"]);
    }
    cmd.args(extra);
    cmd
}

/// Runs `silt sql` (see [`silt_sql_cmd`]).
pub fn silt_sql(sql: &str, extra: &[&str]) -> Out {
    run(silt_sql_cmd(sql, extra), WRITE_TIMEOUT)
}

/// A statement that must succeed; returns its `--json` result.
#[track_caller]
pub fn silt_sql_ok(sql: &str) -> Value {
    let out = silt_sql(sql, &[]);
    out.assert_ok();
    let j = out.json();
    assert_eq!(j["state"], "succeeded", "{}", out.describe());
    j
}

/// A Delta metric of a `--json` result as a number (metrics are strings, as in the log).
#[track_caller]
pub fn metric(result: &Value, name: &str) -> i64 {
    result["metrics"][name]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric `{name}` in {result}"))
}

/// delta-rs's DELETE or UPDATE on `table` in place (`oracle.py dml`): `{metrics, version}`.
#[track_caller]
pub fn oracle_dml(table: &Path, op: &str, predicate: Option<&str>, sets: &[(&str, &str)]) -> Value {
    let mut args = vec![
        "dml".to_string(),
        "--table".into(),
        s(table),
        "--op".into(),
        op.into(),
    ];
    if let Some(p) = predicate {
        args.push("--predicate".into());
        args.push(p.into());
    }
    for (c, e) in sets {
        args.push("--set".into());
        args.push(format!("{c}={e}"));
    }
    let out = oracle(&args);
    assert!(out.ok(), "oracle dml failed\n{}", out.describe());
    serde_json::from_str(out.stdout.trim()).expect("oracle dml prints JSON")
}

/// The actions of a table's latest commit, read straight from its log.
pub fn last_commit(table: &Path) -> Vec<Value> {
    let log = table.join("_delta_log");
    let latest = commit_files(table)
        .into_iter()
        .max()
        .expect("the table has commits");
    std::fs::read_to_string(log.join(latest))
        .expect("read commit")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("commit line is JSON"))
        .collect()
}

/// The `commitInfo` of a table's latest commit.
pub fn last_commit_info(table: &Path) -> Value {
    last_commit(table)
        .into_iter()
        .find_map(|a| a.get("commitInfo").cloned())
        .expect("the latest commit has a commitInfo")
}

/// A gate for the `pause=` fault: an attempt that reaches it waits until it is opened.
pub struct Gate {
    path: PathBuf,
}

impl Gate {
    pub fn new(dir: &Path, name: &str) -> Gate {
        Gate {
            path: dir.join(name),
        }
    }

    /// `SILT_FAULTS` value pausing attempts matching `selector` at `point` on this gate.
    pub fn fault(&self, point: &str, selector: &str) -> String {
        format!("{point}:{selector}:pause={}", s(&self.path))
    }

    /// Waits until an attempt has reached the gate.
    #[track_caller]
    pub fn wait_reached(&self, timeout: Duration) {
        let reached = PathBuf::from(format!("{}.reached", s(&self.path)));
        assert!(
            wait_until(timeout, || reached.exists()),
            "no attempt reached the gate {} within {timeout:?}",
            s(&self.path)
        );
    }

    pub fn open(&self) {
        std::fs::write(&self.path, b"").expect("open gate");
    }
}
