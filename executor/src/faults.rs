//! Fault injection for tests: named points in a task attempt where a test makes the attempt
//! fail, pause or sleep, chosen by stage, task and attempt. Deterministic, unlike timing.
//!
//! A fault is `<point>:<selector>:<action>`:
//! * point: `start` (before reading input), `before-close` (input drained, sink still open),
//!   `after-close` (files written and closed, before the report);
//! * selector: `s<stage>/t<task>/a<attempt>`, each part a number or `*` (e.g. `s0/t1/a0`,
//!   `s*/t*/a*`);
//! * action: `fail` (a retryable failure; the attempt deletes what it wrote), `fatal` (a
//!   non-retryable failure), `fail-keep` (a retryable failure that leaves the attempt's
//!   closed files behind, as a crash would; only at `after-close`), `pause=<file>` (create
//!   `<file>.reached`, then wait until `<file>` exists), `sleep=<ms>`.
//!
//! Several faults are separated by `;` (e.g. in `SILT_FAULTS`).

use std::path::PathBuf;
use std::time::Duration;

use silt_common::Error;
use silt_common::task::TaskSpec;

/// Where in an attempt a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Start,
    BeforeClose,
    AfterClose,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Fail,
    Fatal,
    FailKeep,
    Pause(PathBuf),
    Sleep(Duration),
}

#[derive(Debug, Clone, PartialEq)]
struct Fault {
    point: Point,
    stage: Option<u32>,
    task: Option<u32>,
    attempt: Option<u32>,
    action: Action,
}

/// What a fault point tells the attempt to do.
#[derive(Debug)]
pub enum Hit {
    /// Go on.
    Continue,
    /// Fail with this error (the attempt cleans up as on any failure).
    Fail(Error),
    /// Fail with this error without deleting the closed files.
    FailKeepingFiles(Error),
}

/// The faults an executor injects (none in production).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults(Vec<Fault>);

impl Faults {
    /// Parses `;`-separated fault specs.
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        spec.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_one)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Faults)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the faults matching this point and attempt, in order.
    pub async fn at(&self, point: Point, spec: &TaskSpec) -> Hit {
        for f in self
            .0
            .iter()
            .filter(|f| f.point == point && f.matches(spec))
        {
            let tag = format!("injected fault at {point:?} of {}", spec.display_id());
            match &f.action {
                Action::Fail => return Hit::Fail(Error::internal(tag)),
                Action::Fatal => return Hit::Fail(Error::invalid(tag)),
                Action::FailKeep => return Hit::FailKeepingFiles(Error::internal(tag)),
                Action::Pause(gate) => {
                    // Tells the test the attempt got here.
                    let mut reached = gate.clone().into_os_string();
                    reached.push(".reached");
                    let _ = std::fs::write(&reached, spec.display_id());
                    while !gate.exists() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                Action::Sleep(d) => tokio::time::sleep(*d).await,
            }
        }
        Hit::Continue
    }
}

impl Fault {
    fn matches(&self, spec: &TaskSpec) -> bool {
        self.stage.is_none_or(|s| s == spec.stage)
            && self.task.is_none_or(|t| t == spec.index)
            && self.attempt.is_none_or(|a| a == spec.attempt)
    }
}

fn parse_one(s: &str) -> std::result::Result<Fault, String> {
    let bad = |why: &str| format!("bad fault `{s}`: {why}");
    let mut parts = s.splitn(3, ':');
    let (Some(point), Some(selector), Some(action)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected <point>:<selector>:<action>"));
    };
    let point = match point {
        "start" => Point::Start,
        "before-close" => Point::BeforeClose,
        "after-close" => Point::AfterClose,
        _ => return Err(bad("point is start, before-close or after-close")),
    };
    let sel: Vec<&str> = selector.split('/').collect();
    let [st, t, a] = sel.as_slice() else {
        return Err(bad("selector is s<stage>/t<task>/a<attempt>"));
    };
    let num = |part: &str, prefix: char| -> std::result::Result<Option<u32>, String> {
        let v = part
            .strip_prefix(prefix)
            .ok_or_else(|| bad("selector is s<stage>/t<task>/a<attempt>"))?;
        if v == "*" {
            Ok(None)
        } else {
            v.parse().map(Some).map_err(|_| bad("not a number"))
        }
    };
    let action = match action.split_once('=') {
        None if action == "fail" => Action::Fail,
        None if action == "fatal" => Action::Fatal,
        None if action == "fail-keep" && point == Point::AfterClose => Action::FailKeep,
        Some(("pause", file)) => Action::Pause(PathBuf::from(file)),
        Some(("sleep", ms)) => Action::Sleep(Duration::from_millis(
            ms.parse().map_err(|_| bad("sleep=<ms>"))?,
        )),
        _ => {
            return Err(bad(
                "action is fail, fatal, fail-keep (after-close), pause=<file> or sleep=<ms>",
            ));
        }
    };
    Ok(Fault {
        point,
        stage: num(st, 's')?,
        task: num(t, 't')?,
        attempt: num(a, 'a')?,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_common::task::{FileSpec, Input, Sink, TableSpec, Task};

    fn spec(stage: u32, index: u32, attempt: u32) -> TaskSpec {
        TaskSpec {
            job_id: "j".into(),
            stage,
            index,
            attempt,
            epoch: 1,
            snapshot_version: 0,
            task: Task {
                table: TableSpec {
                    uri: "file:///t".into(),
                    schema_json: "{}".into(),
                    partition_columns: vec![],
                },
                input: Input::Exchange {
                    map_outputs: vec![],
                    partition: 0,
                },
                transforms: vec![],
                sink: Sink::DataFiles(FileSpec {
                    target_file_size_bytes: 1,
                    stats: Default::default(),
                    file_prefix: "p".into(),
                    sort_by: None,
                    checks: vec![],
                    iso_timestamp_partitions: vec![],
                    change_data: false,
                }),
            },
        }
    }

    #[tokio::test]
    async fn faults_hit_only_their_point_and_attempt() {
        let f = Faults::parse("start:s0/t1/a0:fail; after-close:s*/t*/a1:fail-keep").unwrap();
        assert!(
            matches!(f.at(Point::Start, &spec(0, 1, 0)).await, Hit::Fail(e) if e.is_retryable())
        );
        assert!(matches!(
            f.at(Point::Start, &spec(0, 1, 1)).await,
            Hit::Continue
        ));
        assert!(matches!(
            f.at(Point::Start, &spec(0, 2, 0)).await,
            Hit::Continue
        ));
        assert!(matches!(
            f.at(Point::AfterClose, &spec(3, 4, 1)).await,
            Hit::FailKeepingFiles(_)
        ));
        let fatal = Faults::parse("before-close:s0/t0/a0:fatal").unwrap();
        assert!(
            matches!(fatal.at(Point::BeforeClose, &spec(0, 0, 0)).await, Hit::Fail(e) if !e.is_retryable())
        );
    }

    #[tokio::test]
    async fn pause_waits_for_its_gate() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("go");
        let f = Faults::parse(&format!("start:s*/t*/a*:pause={}", gate.display())).unwrap();
        let s = spec(0, 0, 0);
        let waiting = f.at(Point::Start, &s);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                .await
                .is_err()
        );
        assert!(dir.path().join("go.reached").exists());
        std::fs::write(&gate, b"").unwrap();
        assert!(matches!(waiting.await, Hit::Continue));
    }

    #[test]
    fn bad_specs_are_refused() {
        for s in [
            "nowhere:s0/t0/a0:fail",
            "start:s0/t0:fail",
            "start:x0/t0/a0:fail",
            "start:s0/t0/a0:explode",
            "start:s0/t0/a0:fail-keep",
            "start:s0/t0/a0:sleep=x",
        ] {
            assert!(Faults::parse(s).is_err(), "{s}");
        }
    }
}
