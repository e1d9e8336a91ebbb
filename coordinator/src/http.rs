//! The coordinator's HTTP endpoint for probes and monitoring: `/healthz` (the process
//! answers), `/readyz` (leader, or standby ready to take over: 200; deposed: 503) and
//! `/metrics` (Prometheus text: leadership, epoch, jobs by state, executors, tasks, commits,
//! lost commit races, conflicts). A minimal HTTP/1.1 server: GET and HEAD, one request per
//! connection.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Coordinator;
use crate::election::Role;
use crate::job::JobState;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Probe {
    pub coordinator: Coordinator,
    /// The election role; `None` for a coordinator that leads alone.
    pub role: Option<watch::Receiver<Role>>,
}

/// Serves `probe` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    probe: Probe,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            _ = &mut shutdown => return,
            c = listener.accept() => c,
        };
        let Ok((mut stream, _)) = conn else { continue };
        let probe = probe.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            // The request head, bounded in size and time.
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf);
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (code, body) = match method {
                "GET" | "HEAD" => probe.answer(path),
                _ => (405, "method not allowed\n".to_string()),
            };
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let mut response = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if method != "HEAD" {
                response.push_str(&body);
            }
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

impl Probe {
    /// The status code and body for `path`.
    pub fn answer(&self, path: &str) -> (u16, String) {
        let role = self.role.as_ref().map(|r| r.borrow().clone());
        match path.split('?').next().unwrap_or("") {
            "/healthz" => (200, "ok\n".into()),
            "/readyz" => match role {
                None | Some(Role::Leader { .. }) => (200, "leader\n".into()),
                Some(Role::Standby { .. }) => (200, "standby\n".into()),
                Some(Role::Deposed { reason, .. }) => (503, format!("deposed: {reason}\n")),
            },
            "/metrics" => (200, self.metrics(role)),
            _ => (404, "not found\n".into()),
        }
    }

    fn metrics(&self, role: Option<Role>) -> String {
        let (leader, epoch) = match role {
            None => (1, self.coordinator.ctx.fence.epoch()),
            Some(Role::Leader { epoch }) => (1, epoch),
            Some(_) => (0, self.coordinator.ctx.fence.epoch()),
        };
        let scheduler = self.coordinator.scheduler();
        let (executors, slots) = scheduler.capacity();
        let stats = &self.coordinator.ctx.stats;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        gauge(
            "silt_coordinator_leader",
            "1 while this coordinator leads its cluster.",
            "gauge",
            one(leader),
        );
        gauge(
            "silt_coordinator_epoch",
            "The leadership epoch this coordinator stamps tasks with (0 before it leads).",
            "gauge",
            one(epoch),
        );
        let counts = self.coordinator.jobs().counts();
        gauge(
            "silt_jobs",
            "Jobs this coordinator knows, by state.",
            "gauge",
            [
                JobState::Queued,
                JobState::Running,
                JobState::Committing,
                JobState::Succeeded,
                JobState::Failed,
                JobState::Cancelled,
            ]
            .into_iter()
            .map(|s| {
                let n = counts
                    .iter()
                    .filter(|(c, _)| *c == s)
                    .map(|(_, n)| *n)
                    .sum::<usize>();
                (format!("{{state=\"{}\"}}", s.name()), n as u64)
            })
            .collect(),
        );
        gauge(
            "silt_executors",
            "Registered executors.",
            "gauge",
            one(executors as u64),
        );
        gauge(
            "silt_executor_slots",
            "Task slots of the registered executors.",
            "gauge",
            one(u64::from(slots)),
        );
        gauge(
            "silt_tasks_running",
            "Task attempts the executors run.",
            "gauge",
            one(scheduler.tasks_running() as u64),
        );
        gauge(
            "silt_commits_total",
            "Delta commits made.",
            "counter",
            one(stats.commits.load(Ordering::Relaxed)),
        );
        gauge(
            "silt_commit_retries_total",
            "Commit races lost to other writers (each winning commit checked, then retried).",
            "counter",
            one(stats.commit_retries.load(Ordering::Relaxed)),
        );
        gauge(
            "silt_commit_conflicts_total",
            "Commits refused by a conflict with another writer.",
            "counter",
            one(stats.commit_conflicts.load(Ordering::Relaxed)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoordinatorConfig;
    use crate::fence::SoleLeader;
    use std::sync::Arc;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn probes_and_metrics() {
        let coordinator = Coordinator::new(CoordinatorConfig::default(), Arc::new(SoleLeader));
        let (role_tx, role) = watch::channel(Role::Standby { leader: None });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = Probe {
            coordinator,
            role: Some(role),
        };
        tokio::spawn(serve(listener, probe, std::future::pending()));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let ready = get(addr, "/readyz").await;
        assert!(
            ready.starts_with("HTTP/1.1 200") && ready.ends_with("standby\n"),
            "{ready}"
        );
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("\nsilt_coordinator_leader 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("silt_jobs{state=\"running\"} 0"),
            "{metrics}"
        );
        assert!(
            metrics.contains("# TYPE silt_commits_total counter"),
            "{metrics}"
        );
        role_tx.send_replace(Role::Leader { epoch: 7 });
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("\nsilt_coordinator_leader 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nsilt_coordinator_epoch 7\n"),
            "{metrics}"
        );
        role_tx.send_replace(Role::Deposed {
            epoch: 7,
            reason: "lease expired".into(),
        });
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
