//! The shuffle endpoint every executor serves: streams the blocks of one partition of one
//! map output it holds. Blocks are read one at a time and the stream holds at most a couple
//! in flight, so a slow reducer pushes back instead of growing memory here.

use std::net::SocketAddr;
use std::pin::Pin;

use futures::Stream;
use silt_proto::pb;
use silt_proto::pb::shuffle_service_server::{ShuffleService, ShuffleServiceServer};
use silt_proto::security::Security;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::store::ShuffleStore;

/// Blocks queued ahead of the reducer per fetch.
const BLOCKS_IN_FLIGHT: usize = 2;

pub struct ShuffleEndpoint {
    store: ShuffleStore,
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<pb::ShuffleBlock, Status>> + Send>>;

#[tonic::async_trait]
impl ShuffleService for ShuffleEndpoint {
    type FetchPartitionStream = BlockStream;

    async fn fetch_partition(
        &self,
        request: Request<pb::FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        let r = request.into_inner();
        let blocks = self
            .store
            .blocks(&r.job_id, &r.map_id, r.partition)
            .ok_or_else(|| {
                Status::not_found(format!("no map output {} of job {}", r.map_id, r.job_id))
            })?;
        let (tx, rx) = tokio::sync::mpsc::channel(BLOCKS_IN_FLIGHT);
        tokio::spawn(async move {
            let blocks = std::sync::Arc::new(blocks);
            for i in 0..blocks.len() {
                let b = blocks.clone();
                let block = tokio::task::spawn_blocking(move || b.read(i)).await;
                let item = match block {
                    Ok(Ok(data)) => Ok(pb::ShuffleBlock {
                        data: data.to_vec(),
                    }),
                    Ok(Err(e)) => Err(Status::not_found(e.to_string())),
                    Err(e) => Err(Status::internal(e.to_string())),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves `store` on `listener`, to the peers `security` admits, until the returned task is
/// aborted.
pub fn serve(
    store: ShuffleStore,
    listener: tokio::net::TcpListener,
    security: &Security,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = security.server().map_err(|e| e.to_string())?;
    let admit = security.clone();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let svc = ShuffleServiceServer::new(ShuffleEndpoint { store })
        .max_encoding_message_size(256 << 20)
        .max_decoding_message_size(256 << 20);
    let handle = tokio::spawn(async move {
        let r = server
            .layer(tonic::service::InterceptorLayer::new(
                move |req: Request<()>| -> Result<Request<()>, Status> {
                    admit.admit(&req)?;
                    Ok(req)
                },
            ))
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = r {
            tracing::error!("shuffle endpoint stopped: {e}");
        }
    });
    Ok((addr, handle))
}
