//! Trust boundaries between processes: a cluster with mutual TLS and a bearer token refuses
//! executors and clients without valid credentials before any handler runs, runs jobs (the
//! exchange included) for those with them, and never prints the token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use silt_proto::pb;
use silt_proto::security::{Security, SecurityOptions};

use crate::support::*;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const TOKEN: &str = "tok-3c1f9a77e5d04b2e8f61";

/// A CA and a certificate it signs for 127.0.0.1 / localhost (server and client use), made
/// with the `openssl` command.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki(dir: &Path, name: &str) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca_subject = format!("/CN={name}-ca");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        &ca_subject,
    ]);
    openssl(dir, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=silt-node",
    ]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    }
}

impl Pki {
    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            s(&self.cert),
            "--tls-key".into(),
            s(&self.key),
            "--tls-ca".into(),
            s(&self.ca),
        ]
    }

    fn options(&self) -> SecurityOptions {
        SecurityOptions {
            tls_cert: Some(self.cert.clone()),
            tls_key: Some(self.key.clone()),
            tls_ca: Some(self.ca.clone()),
            ..Default::default()
        }
    }
}

/// An executor of the cluster at `url` with `args` and `env`.
fn executor_cmd(url: &str, name: &str, args: &[String], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(silt_bin());
    cmd.args(["executor", "--coordinator", url, "--name", name]);
    cmd.args(args);
    cmd.env_remove("SILT_TOKEN").env_remove("SILT_TOKEN_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("SILT_LOG", "debug");
    cmd
}

/// Calls register, poll and report on the coordinator at `url` as an executor with
/// `security`; returns each call's error (None: it succeeded).
fn executor_calls(url: &str, security: &Security) -> Vec<Option<(tonic::Code, String)>> {
    use pb::executor_service_client::ExecutorServiceClient;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = match security.endpoint(url).unwrap().connect().await {
            Ok(ch) => ch,
            Err(e) => {
                let why = silt_proto::security::transport_error(&e);
                return vec![Some((tonic::Code::Unavailable, why)); 3];
            }
        };
        let mut c = ExecutorServiceClient::new(security.authenticate(channel));
        let err = |r: Result<(), tonic::Status>| r.err().map(|s| (s.code(), s.message().into()));
        vec![
            err(c
                .register(pb::RegisterRequest {
                    protocol_version: silt_proto::PROTOCOL_VERSION,
                    host: "intruder".into(),
                    slots: 1,
                    memory_limit_bytes: 1 << 30,
                    shuffle_address: "127.0.0.1:1".into(),
                })
                .await
                .map(|_| ())),
            err(c
                .poll_task(pb::PollTaskRequest {
                    executor_id: "exec-1".into(),
                    wait_ms: 10,
                })
                .await
                .map(|_| ())),
            err(c.report_task(pb::TaskReport::default()).await.map(|_| ())),
        ]
    })
}

#[test]
fn only_peers_with_the_cluster_credentials_take_part() {
    let seed = seed_for("only_peers_with_the_cluster_credentials_take_part");
    let dir = tempdir("auth");
    let good = pki(&dir.path().join("pki"), "silt");
    let rogue = pki(&dir.path().join("rogue"), "rogue");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    // The coordinator: mutual TLS, the token from a file.
    let mut cmd = Command::new(silt_bin());
    cmd.args(["coordinator", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token_file)
        .args(good.args())
        .env("SILT_LOG", "debug");
    let mut coordinator = Daemon::spawn("coordinator", cmd);
    let addr = coordinator.listening_address(START_TIMEOUT);
    let url = format!("https://{addr}");

    // Executors with the credentials (the token from the environment) register; the
    // exchange between them runs over TLS too.
    let mut executors: Vec<Daemon> = (0..2)
        .map(|i| {
            let mut d = Daemon::spawn(
                &format!("executor{i}"),
                executor_cmd(
                    &url,
                    &format!("good{i}"),
                    &good.args(),
                    &[("SILT_TOKEN", TOKEN)],
                ),
            );
            d.wait_for_line("registered with coordinator", START_TIMEOUT);
            d
        })
        .collect();

    // Executors without valid credentials cannot register: no certificate, a certificate
    // of another CA, the right certificate without the token or with a wrong one.
    let http_url = format!("http://{addr}");
    let refused: Vec<(&str, Command)> = vec![
        ("no certificate", executor_cmd(&http_url, "plain", &[], &[])),
        (
            "another CA",
            executor_cmd(&url, "rogue", &rogue.args(), &[("SILT_TOKEN", TOKEN)]),
        ),
        ("no token", executor_cmd(&url, "notoken", &good.args(), &[])),
        (
            "wrong token",
            executor_cmd(
                &url,
                "wrongtoken",
                &good.args(),
                &[("SILT_TOKEN", "tok-0000000000000000000000")],
            ),
        ),
    ];
    let refused: Vec<(&str, Daemon)> = refused
        .into_iter()
        .map(|(what, cmd)| (what, Daemon::spawn_capture(what, cmd)))
        .collect();
    let mut logs = Vec::new();
    for (what, d) in refused {
        let out = d.finish(Duration::from_secs(90));
        assert!(!out.ok(), "an executor with {what} ran\n{}", out.describe());
        let err = out.error_line().unwrap_or_default();
        match what {
            "no token" | "wrong token" => assert!(err.contains("bearer token"), "{what}: {err}"),
            _ => assert!(err.contains("cannot reach coordinator"), "{what}: {err}"),
        }
        logs.push(out.describe());
    }

    // The same at the protocol level: no call of an uncredentialed peer reaches a handler.
    let plain = Security::plain();
    let no_token = Security::load(&good.options(), |_| None).unwrap();
    let rogue_cert = Security::load(&rogue.options(), |k| {
        (k == silt_proto::security::TOKEN_ENV).then(|| TOKEN.to_string())
    })
    .unwrap();
    for (what, security, target) in [
        ("plain", &plain, http_url.as_str()),
        ("no token", &no_token, url.as_str()),
        ("another CA", &rogue_cert, url.as_str()),
    ] {
        for (call, r) in ["register", "poll", "report"]
            .iter()
            .zip(executor_calls(target, security))
        {
            let (code, msg) = r.unwrap_or_else(|| panic!("{what}: {call} went through"));
            if what == "no token" {
                assert_eq!(code, tonic::Code::Unauthenticated, "{what}: {call}: {msg}");
            } else {
                // Refused at the connection (TLS handshake, or TLS expected): no handler
                // answered (one would have taken the register and the poll, and refused the
                // empty report as an invalid argument).
                assert!(
                    !matches!(
                        code,
                        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
                    ),
                    "{what}: {call}: {code:?} {msg}"
                );
            }
        }
    }

    // Clients: without credentials nothing is submitted and no table is made.
    let src = Gen::new(seed, 400).files(3).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    let write = |coordinator: &str, args: &[String], env: &[(&str, &str)]| {
        let mut cmd = Command::new(silt_bin());
        cmd.args(["write", "--table", &s(&t), "--source", &s(&src), "--json"])
            .args(["--coordinator", coordinator])
            .args(["--partition-by", "k", "--exchange", "always"])
            .args(args)
            .env_remove("SILT_TOKEN")
            .env_remove("SILT_TOKEN_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd, Duration::from_secs(120))
    };
    // (what, coordinator URL, arguments, environment, what the error names)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<String>,
        Vec<(&'a str, &'a str)>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "https without TLS options",
            &url,
            vec![],
            vec![("SILT_TOKEN", TOKEN)],
            "--tls-ca",
        ),
        (
            "plain",
            &http_url,
            vec![],
            vec![("SILT_TOKEN", TOKEN)],
            "cannot reach coordinator",
        ),
        ("no token", &url, good.args(), vec![], "bearer token"),
        (
            "another CA",
            &url,
            rogue.args(),
            vec![("SILT_TOKEN", TOKEN)],
            "cannot reach coordinator",
        ),
    ];
    for (what, target, args, env, want) in cases {
        let out = write(target, &args, &env);
        out.assert_error(&[want]);
        assert!(!t.join("_delta_log").exists(), "{what}: a table was made");
        assert!(listing(&t).is_empty(), "{what}: files left");
        logs.push(out.describe());
    }

    // With the credentials, the job runs (through the exchange between the executors).
    let out = write(&url, &good.args(), &[("SILT_TOKEN", TOKEN)]);
    out.assert_ok();
    assert_eq!(out.version(), Some(0), "{}", out.describe());
    assert_same_content(&t, &[Expected::Parquet(&src)], &[]);
    logs.push(out.describe());
    // The token from a file works for clients too, with -vv logging.
    let token_arg = vec!["--token-file".to_string(), s(&token_file), "-vv".into()];
    let out = {
        let mut cmd = Command::new(silt_bin());
        cmd.args([
            "sql",
            &format!("DELETE FROM delta.`{}` WHERE id < 0", s(&t)),
        ])
        .args(["--json", "--coordinator", &url])
        .args(good.args())
        .args(&token_arg)
        .env_remove("SILT_TOKEN");
        run(cmd, Duration::from_secs(120))
    };
    out.assert_ok();
    logs.push(out.describe());

    // The token is never printed, by any process, nor written into the table's log.
    for commit in commit_files(&t) {
        logs.push(std::fs::read_to_string(t.join("_delta_log").join(commit)).unwrap());
    }
    logs.push(coordinator.collect());
    for e in &mut executors {
        logs.push(e.collect());
    }
    let key = std::fs::read_to_string(&good.key).unwrap();
    let key_body = key.lines().nth(1).unwrap_or_default().to_string();
    for log in &logs {
        assert!(!log.contains(TOKEN), "the token is printed:\n{log}");
        assert!(!log.contains(&key_body), "the key is printed:\n{log}");
    }
}
