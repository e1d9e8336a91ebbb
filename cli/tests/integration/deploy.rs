//! The Kubernetes manifests in `deploy/k8s/`, checked statically (there is no cluster here):
//! every option they pass exists in this `silt` binary, every `$(VAR)` they use is defined,
//! listen ports are declared, executors advertise a reachable shuffle address and spill to
//! a mounted volume (`tests/python/check_manifests.py`).

use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn kubernetes_manifests_match_the_binary() {
    let dir = repo_root().join("deploy").join("k8s");
    let mut manifests: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| s(&p))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 2, "manifests: {manifests:?}");
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/python/check_manifests.py"))
        .arg(silt_bin())
        .args(&manifests);
    let out = run(cmd, Duration::from_secs(60));
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(
        out.json()["checked"],
        3,
        "coordinator, executor and compaction service containers"
    );
}
