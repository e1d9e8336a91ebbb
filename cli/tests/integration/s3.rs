//! `s3://` tables against a real S3 API: moto's server (from the test venv) on loopback.
//! silt reaches it through the usual `AWS_*` environment variables; commits rely on S3
//! conditional puts (`If-None-Match: *`), which the racing writers below exercise.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// A moto S3 server on a free loopback port, killed when dropped.
struct S3Server {
    endpoint: String,
    _daemon: Daemon,
}

impl S3Server {
    fn start() -> S3Server {
        let moto = python()
            .parent()
            .map(|bin| bin.join("moto_server"))
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        assert!(
            moto.exists(),
            "{} not found: the test venv needs moto[server] (scripts/setup.sh installs it)",
            moto.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free loopback port")
            .port();
        let mut cmd = Command::new(&moto);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let daemon = Daemon::spawn("moto", cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            _daemon: daemon,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "silt-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "silt-test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    fn create_bucket(&self, bucket: &str) {
        let mut cmd = Command::new(python());
        cmd.args([
            "-c",
            "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='silt-test', aws_secret_access_key='silt-test').create_bucket(Bucket=sys.argv[2])",
            &self.endpoint,
            bucket,
        ]);
        let out = run(cmd, Duration::from_secs(60));
        assert!(out.ok(), "cannot create bucket\n{}", out.describe());
    }

    fn write_cmd(&self, table: &str, source: &std::path::Path, extra: &[&str]) -> Command {
        let mut cmd = silt_write_cmd(table, &s(source), extra);
        cmd.envs(self.env());
        cmd
    }

    #[track_caller]
    fn write_ok(&self, table: &str, source: &std::path::Path, extra: &[&str]) -> Option<i64> {
        let out = run(self.write_cmd(table, source, extra), WRITE_TIMEOUT);
        out.assert_ok();
        out.version()
    }

    /// The oracle's `compare` (delta-rs and polars reading the table from S3).
    #[track_caller]
    fn assert_content(&self, table: &str, expected: &[&std::path::Path]) {
        let mut cmd = Command::new(python());
        cmd.arg(oracle_script()).args(["compare", "--table", table]);
        for e in expected {
            cmd.args(["--expected-parquet", &s(e)]);
        }
        cmd.envs(self.env());
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
        let out = run(cmd, ORACLE_TIMEOUT);
        assert!(
            out.ok(),
            "S3 table content differs from the expected content\n{}",
            out.describe()
        );
    }
}

#[test]
fn s3_tables_write_partition_overwrite_and_race() {
    let seed = seed_for("s3_tables_write_partition_overwrite_and_race");
    let dir = tempdir("s3");
    let a = Gen::new(seed, 600).files(3).write(&dir.path().join("a"));
    let b = Gen::new(seed + 1, 300)
        .id_start(10_000)
        .write(&dir.path().join("b"));
    let c = Gen::new(seed + 2, 200)
        .id_start(20_000)
        .write(&dir.path().join("c"));
    let d = Gen::new(seed + 3, 150)
        .id_start(30_000)
        .write(&dir.path().join("d"));
    let s3 = S3Server::start();
    s3.create_bucket("silt-it");
    let t = "s3://silt-it/tables/sales";

    // Partitioned by a string column whose values need escaping (`s`), through the exchange,
    // whose files live on S3 too.
    assert_eq!(s3.write_ok(t, &a, &["--partition-by", "s"]), Some(0));
    assert_eq!(s3.write_ok(t, &b, &[]), Some(1));
    s3.assert_content(t, &[&a, &b]);

    // Overwrite: the removes must pair with the escaped adds, or old rows would survive.
    assert_eq!(s3.write_ok(t, &c, &["--mode", "overwrite"]), Some(2));
    s3.assert_content(t, &[&c]);

    // Two writers race for version 3: put-if-absent lets one win, the other commits next.
    let pa = Daemon::spawn_capture("s3-writer-a", s3.write_cmd(t, &a, &[]));
    let pb = Daemon::spawn_capture("s3-writer-b", s3.write_cmd(t, &d, &[]));
    let (oa, ob) = (pa.finish(WRITE_TIMEOUT), pb.finish(WRITE_TIMEOUT));
    oa.assert_ok();
    ob.assert_ok();
    let mut versions = [oa.version(), ob.version()];
    versions.sort();
    assert_eq!(
        versions,
        [Some(3), Some(4)],
        "both appends commit, at distinct versions"
    );
    s3.assert_content(t, &[&c, &a, &d]);

    // A missing bucket is a clear error, not a hang.
    let out = run(
        s3.write_cmd("s3://no-such-bucket/t", &a, &[]),
        WRITE_TIMEOUT,
    );
    out.assert_error(&["no-such-bucket"]);
}
