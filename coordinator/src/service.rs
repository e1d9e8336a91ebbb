//! gRPC services: decode the request, call the coordinator or scheduler, map errors.
//! No scheduling or planning logic lives here.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use silt_common::request::JobRequest;
use silt_proto::PROTOCOL_VERSION;
use silt_proto::security::Security;
use silt_proto::{leader, pb};
use tonic::{Request, Response, Status};

use crate::election::Role;
use crate::job::{JobState, JobStatus};
use crate::scheduler::AttemptKey;
use crate::{Coordinator, Liveness};

/// Client-facing job service.
pub struct JobServiceImpl(pub Coordinator);
/// Executor-facing service.
pub struct ExecutorServiceImpl(pub Coordinator);

fn state_to_pb(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Committing => pb::JobState::Committing,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn event(s: &JobStatus) -> pb::JobEvent {
    pb::JobEvent {
        job_id: s.job_id.clone(),
        state: state_to_pb(s.state) as i32,
        stage: s.stage.clone(),
        tasks_total: s.tasks_total,
        tasks_succeeded: s.tasks_succeeded,
        tasks_running: s.tasks_running,
        task_retries: s.task_retries,
        message: s.message.clone(),
    }
}

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobServiceImpl {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let liveness = if request.detach {
            Liveness::Detached
        } else {
            Liveness::BoundToClient
        };
        let req =
            JobRequest::try_from(request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let job_id = self
            .0
            .submit(req, liveness)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::SubmitJobResponse { job_id }))
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = request.into_inner().job_id;
        let no_job = || Status::not_found(format!("no job {id}"));
        let mut rx = self.0.jobs().watch(&id).ok_or_else(no_job)?;
        // The client follows the job while this stream is open (a job bound to its client is
        // cancelled when none does).
        let following = self.0.jobs().follow(&id).ok_or_else(no_job)?;
        let stream = async_stream(move |tx| async move {
            let _following = following;
            loop {
                let ev = {
                    let s = rx.borrow_and_update();
                    (event(&s), s.state.is_terminal())
                };
                if tx.send(Ok(ev.0)).await.is_err() || ev.1 {
                    return;
                }
                // A client that goes away is noticed at once, not at the next event.
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_job_result(
        &self,
        request: Request<pb::GetJobResultRequest>,
    ) -> Result<Response<pb::JobResult>, Status> {
        let id = request.into_inner().job_id;
        let s = self
            .0
            .jobs()
            .status(&id)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let o = s.outcome.clone().unwrap_or_default();
        Ok(Response::new(pb::JobResult {
            job_id: id,
            state: state_to_pb(s.state) as i32,
            version: o.version,
            error: o.error,
            metrics: o.metrics.into_iter().collect(),
            summary: o.summary,
            rows_json: o
                .rows
                .map(|r| serde_json::json!({ "columns": r.columns, "rows": r.rows }).to_string()),
            winning_commits_checked: o.winning_commits_checked,
            task_retries: s.task_retries,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let id = request.into_inner().job_id;
        Ok(Response::new(pb::CancelJobResponse {
            cancelled: self.0.cancel(&id, "at a client's request"),
        }))
    }
}

/// A stream fed by a spawned producer through a bounded channel.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<pb::JobEvent, Status>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::JobEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn key_from_pb(k: pb::TaskKey) -> AttemptKey {
    AttemptKey {
        job_id: k.job_id,
        stage: k.stage,
        index: k.index,
        attempt: k.attempt,
    }
}

fn key_to_pb(k: AttemptKey) -> pb::TaskKey {
    pb::TaskKey {
        job_id: k.job_id,
        stage: k.stage,
        index: k.index,
        attempt: k.attempt,
    }
}

#[tonic::async_trait]
impl pb::executor_service_server::ExecutorService for ExecutorServiceImpl {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "executor protocol version {} is not the coordinator's {PROTOCOL_VERSION}; run matching silt versions",
                r.protocol_version
            )));
        }
        let reg =
            self.0
                .scheduler()
                .register(r.slots, r.memory_limit_bytes, &r.host, &r.shuffle_address);
        Ok(Response::new(pb::RegisterResponse {
            executor_id: reg.executor_id,
            heartbeat_interval_ms: reg.heartbeat_interval_ms,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let reply = self.0.scheduler().heartbeat(
            &r.executor_id,
            r.running.into_iter().map(key_from_pb).collect(),
            &r.shuffle_jobs,
        );
        Ok(Response::new(pb::HeartbeatResponse {
            reregister: reply.reregister,
            cancel: reply.cancel.into_iter().map(key_to_pb).collect(),
            drop_shuffle_jobs: reply.drop_shuffle_jobs,
        }))
    }

    async fn poll_task(
        &self,
        request: Request<pb::PollTaskRequest>,
    ) -> Result<Response<pb::PollTaskResponse>, Status> {
        let r = request.into_inner();
        match self
            .0
            .scheduler()
            .poll(&r.executor_id, Duration::from_millis(r.wait_ms))
            .await
        {
            Ok(task) => Ok(Response::new(pb::PollTaskResponse {
                task: task.as_ref().map(pb::TaskSpec::from),
                reregister: false,
            })),
            Err(()) => Ok(Response::new(pb::PollTaskResponse {
                task: None,
                reregister: true,
            })),
        }
    }

    async fn report_task(
        &self,
        request: Request<pb::TaskReport>,
    ) -> Result<Response<pb::ReportTaskResponse>, Status> {
        let r = request.into_inner();
        let key = key_from_pb(
            r.key
                .ok_or_else(|| Status::invalid_argument("report without key"))?,
        );
        let outcome = match r.outcome {
            Some(pb::task_report::Outcome::Success(o)) => Ok(o.into()),
            Some(pb::task_report::Outcome::Failure(f)) => Err(silt_common::task::TaskFailure {
                message: f.message,
                retryable: f.retryable,
                lost_map_outputs: f.lost_map_outputs,
            }),
            None => return Err(Status::invalid_argument("report without outcome")),
        };
        let accepted = self
            .0
            .scheduler()
            .report(&r.executor_id, &key, r.epoch, outcome);
        Ok(Response::new(pb::ReportTaskResponse { accepted }))
    }
}

/// Why the coordinator's services stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Security(#[from] silt_proto::security::SecurityError),
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Who is served.
#[derive(Clone)]
pub enum Gate {
    /// Everyone: a coordinator that is its own leader.
    Open,
    /// Only while this coordinator leads; otherwise every call is refused as `Unavailable`,
    /// naming the leader when known, so that clients and executors go there.
    Leader(tokio::sync::watch::Receiver<Role>),
}

impl Gate {
    fn admit(&self) -> Result<(), Status> {
        let Gate::Leader(role) = self else {
            return Ok(());
        };
        match &*role.borrow() {
            Role::Leader { .. } => Ok(()),
            Role::Standby { leader } => Err(leader::refusal(
                &match leader {
                    Some(l) => format!("this coordinator is a standby; the leader is {l}"),
                    None => "this coordinator is a standby; no leader is elected yet".into(),
                },
                leader.as_deref(),
            )),
            Role::Deposed { reason, .. } => Err(leader::refusal(
                &format!("this coordinator lost its leadership ({reason})"),
                None,
            )),
        }
    }
}

/// Serves the coordinator's services on `listener` until `shutdown`: to peers `security`
/// admits (TLS handshake, then the token, before any handler), and of those to whom `gate`
/// admits.
pub async fn serve(
    coordinator: Coordinator,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    gate: Gate,
    security: &Security,
) -> Result<(), ServeError> {
    // No Nagle delay: replies are small and latency-bound (a poll answer would otherwise
    // wait for the client's delayed ACK, ~40 ms on Linux).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let admit = security.clone();
    security
        .server()?
        // Clients that vanish without closing their connection (a host gone) are noticed,
        // and their jobs' streams end.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(tonic::service::InterceptorLayer::new(
            move |req: Request<()>| -> Result<Request<()>, Status> {
                admit.admit(&req)?;
                gate.admit()?;
                Ok(req)
            },
        ))
        .add_service(
            pb::job_service_server::JobServiceServer::new(JobServiceImpl(coordinator.clone()))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .add_service(
            pb::executor_service_server::ExecutorServiceServer::new(ExecutorServiceImpl(
                coordinator,
            ))
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
