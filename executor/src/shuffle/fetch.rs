//! Reduce-side fetching: a partition's blocks from every map output, read from this
//! executor's own store when it holds the output and streamed from the holder's shuffle
//! endpoint otherwise. At most [`FETCH_CONCURRENCY`] map outputs are fetched at once, each
//! a gRPC stream pulled only as fast as the reducer consumes it (HTTP/2 flow control is the
//! backpressure). A fetch that fails part-way resumes after the blocks already consumed;
//! an endpoint that stays unreachable, or does not hold the output, is a
//! [`Error::FetchFailed`]: the coordinator then re-runs the map task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use silt_common::task::MapOutputRef;
use silt_common::{Error, Result};
use silt_proto::pb;
use silt_proto::pb::shuffle_service_client::ShuffleServiceClient;
use silt_proto::security::{AuthChannel, Security};

use super::store::ShuffleStore;

/// Map outputs fetched at once by one reduce task.
pub const FETCH_CONCURRENCY: usize = 4;
/// Tries per map output before the fetch fails (with a short backoff between them).
const FETCH_TRIES: u32 = 3;

/// Fetches exchange partitions; cheap to clone (channels to other executors are shared).
#[derive(Clone)]
pub struct Fetcher {
    store: ShuffleStore,
    /// This executor's own shuffle address (outputs there are read locally).
    own_address: String,
    channels: Arc<Mutex<HashMap<String, AuthChannel>>>,
    /// Credentials for the other executors' shuffle endpoints.
    security: Security,
}

/// Where a reduce task's blocks came from.
#[derive(Debug, Default, Clone, Copy)]
pub struct FetchStats {
    pub local_bytes: u64,
    pub remote_bytes: u64,
}

impl Fetcher {
    pub fn new(store: ShuffleStore, own_address: String, security: Security) -> Self {
        Self {
            store,
            own_address,
            channels: Arc::default(),
            security,
        }
    }

    /// The blocks of `partition` from every output in `maps`, as (bytes, fetched remotely).
    pub fn partition(
        &self,
        job: &str,
        maps: &[MapOutputRef],
        partition: u32,
    ) -> BoxStream<'static, Result<(Bytes, bool)>> {
        let this = self.clone();
        let job = job.to_string();
        futures::stream::iter(maps.to_vec())
            .map(move |m| this.clone().one(job.clone(), m, partition))
            .flatten_unordered(FETCH_CONCURRENCY)
            .boxed()
    }

    fn one(
        self,
        job: String,
        map: MapOutputRef,
        partition: u32,
    ) -> BoxStream<'static, Result<(Bytes, bool)>> {
        if map.address == self.own_address {
            let Some(blocks) = self.store.blocks(&job, &map.map_id, partition) else {
                let e = lost(&map, "this executor no longer holds it");
                return futures::stream::once(async move { Err(e) }).boxed();
            };
            let blocks = Arc::new(blocks);
            return futures::stream::iter(0..blocks.len())
                .then(move |i| {
                    let b = blocks.clone();
                    async move {
                        tokio::task::spawn_blocking(move || b.read(i))
                            .await
                            .map_err(|e| Error::internal(e.to_string()))?
                            .map(|data| (data, false))
                    }
                })
                .boxed();
        }
        let req = pb::FetchPartitionRequest {
            job_id: job,
            map_id: map.map_id.clone(),
            partition,
        };
        // State: (fetcher, request, blocks consumed, tries left, open stream).
        type Open = tonic::Streaming<pb::ShuffleBlock>;
        let init: (
            Fetcher,
            MapOutputRef,
            pb::FetchPartitionRequest,
            usize,
            u32,
            Option<Open>,
        ) = (self, map, req, 0, FETCH_TRIES, None);
        futures::stream::unfold(Some(init), |state| async move {
            let (this, map, req, mut consumed, mut tries, mut open) = state?;
            loop {
                if open.is_none() {
                    match this.open(&map, &req, consumed).await {
                        Ok(s) => open = Some(s),
                        Err(e) if tries > 1 && e.1 => {
                            tries -= 1;
                            backoff(tries).await;
                            continue;
                        }
                        Err(e) => return Some((Err(e.0), None)),
                    }
                }
                let Some(stream) = open.as_mut() else {
                    continue;
                };
                match stream.message().await {
                    Ok(Some(block)) => {
                        consumed += 1;
                        let item = Ok((Bytes::from(block.data), true));
                        return Some((item, Some((this, map, req, consumed, tries, open))));
                    }
                    Ok(None) => return None,
                    Err(status) if tries > 1 && retryable(&status) => {
                        tries -= 1;
                        open = None;
                        backoff(tries).await;
                    }
                    Err(status) => return Some((Err(lost(&map, status.message())), None)),
                }
            }
        })
        .boxed()
    }

    /// Opens the stream and skips the `skip` blocks already consumed. The flag says whether
    /// trying again may help.
    async fn open(
        &self,
        map: &MapOutputRef,
        req: &pb::FetchPartitionRequest,
        skip: usize,
    ) -> std::result::Result<tonic::Streaming<pb::ShuffleBlock>, (Error, bool)> {
        let channel = self
            .channel(&map.address)
            .await
            .map_err(|reason| (lost(map, &reason), true))?;
        let mut client = ShuffleServiceClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let mut stream = match client.fetch_partition(req.clone()).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if retryable(&status) {
                    self.forget(&map.address);
                }
                return Err((lost(map, status.message()), retryable(&status)));
            }
        };
        for _ in 0..skip {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err((lost(map, "the output shrank between fetches"), false));
                }
                Err(status) => return Err((lost(map, status.message()), retryable(&status))),
            }
        }
        Ok(stream)
    }

    async fn channel(&self, address: &str) -> std::result::Result<AuthChannel, String> {
        if let Some(ch) = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(address)
        {
            return Ok(ch.clone());
        }
        let ch = self
            .security
            .endpoint(address)
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                format!(
                    "cannot connect: {}",
                    silt_proto::security::transport_error(&e)
                )
            })?;
        let ch = self.security.authenticate(ch);
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(address.to_string(), ch.clone());
        Ok(ch)
    }

    fn forget(&self, address: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(address);
    }
}

fn retryable(status: &tonic::Status) -> bool {
    !matches!(
        status.code(),
        tonic::Code::NotFound | tonic::Code::InvalidArgument
    )
}

async fn backoff(tries_left: u32) {
    let ms = 100u64 << (FETCH_TRIES - tries_left).min(4);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn lost(map: &MapOutputRef, reason: &str) -> Error {
    Error::FetchFailed {
        address: map.address.clone(),
        map_id: map.map_id.clone(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! Real gRPC on loopback: a store served by the shuffle endpoint, fetched locally and
    //! remotely; unreachable endpoints and missing outputs are `FetchFailed`.
    use super::*;
    use crate::shuffle::service;

    fn output(store: &ShuffleStore, job: &str, map_id: &str, blocks: &[&[u8]]) {
        store.open(job, map_id, 2);
        for b in blocks {
            store.put(job, map_id, 1, b.to_vec()).unwrap();
        }
        store.complete(job, map_id).unwrap();
    }

    fn map_ref(address: &str, map_id: &str) -> MapOutputRef {
        MapOutputRef {
            address: address.to_string(),
            map_id: map_id.to_string(),
            map_stage: 0,
            map_index: 0,
        }
    }

    async fn collect(
        f: &Fetcher,
        maps: &[MapOutputRef],
        partition: u32,
    ) -> Result<Vec<(Vec<u8>, bool)>> {
        let mut s = f.partition("j", maps, partition);
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            let (bytes, remote) = b?;
            out.push((bytes.to_vec(), remote));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn fetches_local_and_remote_outputs_and_names_lost_ones() {
        // The serving executor: a store holding one output, spilled past a tiny budget.
        let served = ShuffleStore::new(4, None).unwrap();
        output(&served, "j", "s0-t0-a0", &[b"abc", b"defgh"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, server) = service::serve(served.clone(), listener, &Security::plain()).unwrap();
        let remote = addr.to_string();

        // The fetching executor holds another output itself.
        let own = ShuffleStore::new(1 << 20, None).unwrap();
        output(&own, "j", "s0-t1-a0", &[b"local"]);
        let f = Fetcher::new(own, "127.0.0.1:1".into(), Security::plain());
        let mut got = collect(
            &f,
            &[
                map_ref(&remote, "s0-t0-a0"),
                map_ref("127.0.0.1:1", "s0-t1-a0"),
            ],
            1,
        )
        .await
        .unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                (b"abc".to_vec(), true),
                (b"defgh".to_vec(), true),
                (b"local".to_vec(), false)
            ]
        );
        // A partition without rows is an empty stream, not an error.
        assert!(
            collect(&f, &[map_ref(&remote, "s0-t0-a0")], 0)
                .await
                .unwrap()
                .is_empty()
        );

        // An output the endpoint does not hold (dropped, never written): lost at once.
        match collect(&f, &[map_ref(&remote, "s0-t9-a0")], 1).await {
            Err(Error::FetchFailed {
                address, map_id, ..
            }) => {
                assert_eq!(
                    (address.as_str(), map_id.as_str()),
                    (remote.as_str(), "s0-t9-a0")
                );
            }
            other => panic!("{other:?}"),
        }
        // The endpoint's executor is gone: lost after the retries.
        server.abort();
        let _ = server.await;
        drop(served);
        let f = Fetcher::new(
            ShuffleStore::new(1, None).unwrap(),
            "127.0.0.1:1".into(),
            Security::plain(),
        );
        match collect(&f, &[map_ref(&remote, "s0-t0-a0")], 1).await {
            Err(e @ Error::FetchFailed { .. }) => {
                assert_eq!(
                    silt_common::task::TaskFailure::from(&e).lost_map_outputs,
                    vec![remote]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
