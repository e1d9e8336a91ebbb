//! Leader election through etcd, and the fence every commit of the leader passes.
//!
//! The coordinators of one cluster campaign for one key, `/silt/<cluster>/leader`, whose
//! value is the winner's advertised URL. A campaign is a transaction that creates the key
//! under the candidate's lease only if it does not exist; the revision that created it is
//! the leader's *epoch*, which grows with every new leader. The leader renews its lease
//! and re-reads the key every third of the lease's TTL; a leader paused past its lease
//! (SIGSTOP, a long stall) or cut off from etcd loses the key to the lease's expiry, and a
//! standby, watching the key, takes it.
//!
//! [`Leadership::check`] (the [`LeaderFence`]) asks etcd, in a transaction that succeeds only
//! while the key is still the one this leader created under its lease, and refuses when
//! the lease may have expired by the local clock; it never answers from a cache. Once lost,
//! leadership stays lost: the process steps down ([`Leadership::lost`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::fence::{Fenced, LeaderFence};

/// What campaigning needs.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// etcd client URLs (`http://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// Coordinators of the same cluster name elect one leader.
    pub cluster: String,
    /// The lease behind leadership (etcd grants whole seconds; at least its minimum).
    pub lease_ttl: Duration,
    /// The URL clients and executors reach this coordinator at.
    pub advertise: String,
}

/// Why campaigning failed.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("invalid election settings: {0}")]
    Invalid(String),
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
}

/// This coordinator's role, as it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Campaigning; another coordinator leads (its URL when known).
    Standby { leader: Option<String> },
    /// Leading in this epoch.
    Leader { epoch: u64 },
    /// Was leader and lost it (lease expired, key gone, etcd unreachable past the lease).
    Deposed { epoch: u64, reason: String },
}

/// The etcd key of a cluster's leader.
pub fn leader_key(cluster: &str) -> String {
    format!("/silt/{cluster}/leader")
}

/// Leadership won in an election; renews itself until lost.
pub struct Leadership {
    client: Client,
    cluster: String,
    key: String,
    epoch: u64,
    lease: i64,
    /// When the lease expires unless renewed: the send time of the last renewal plus the
    /// TTL etcd granted with it.
    expires: Arc<Mutex<Instant>>,
    role: watch::Receiver<Role>,
    margin: Duration,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Campaigns until this coordinator leads. `role` hears while it waits who leads, and later
/// that the leadership was lost; the caller [`announce`]s [`Role::Leader`] once it is ready
/// to lead.
pub async fn campaign(
    config: &ElectionConfig,
    role: &watch::Sender<Role>,
) -> Result<Leadership, ElectionError> {
    if config.endpoints.is_empty() {
        return Err(ElectionError::Invalid("no etcd endpoint".into()));
    }
    if config.cluster.is_empty() || config.cluster.contains('/') {
        return Err(ElectionError::Invalid(format!(
            "cluster name `{}` must be non-empty and contain no `/`",
            config.cluster
        )));
    }
    let ttl_secs = i64::try_from(config.lease_ttl.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1);
    let endpoints = config.endpoints.join(",");
    let etcd = |source| ElectionError::Etcd {
        endpoints: endpoints.clone(),
        source,
    };
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    let mut client = connect(&config.endpoints, options).await.map_err(etcd)?;
    let key = leader_key(&config.cluster);
    loop {
        let grant = match client.lease_grant(ttl_secs, None).await {
            Ok(g) => g,
            Err(e) => {
                // etcd unavailable: keep campaigning until it returns.
                warn!("etcd: cannot grant a lease: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let lease = grant.id();
        let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1).max(1));
        let sent = Instant::now();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                config.advertise.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = match client.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                warn!("etcd: campaign failed: {e}");
                let _ = client.lease_revoke(lease).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            let epoch = u64::try_from(revision).unwrap_or(0);
            info!(epoch, key = %key, "elected leader");
            let expires = Arc::new(Mutex::new(sent + granted));
            let margin = (granted / 10).max(Duration::from_millis(100));
            let renewer = tokio::spawn(renew(
                client.clone(),
                key.clone(),
                revision,
                lease,
                expires.clone(),
                role.clone(),
            ));
            return Ok(Leadership {
                client,
                cluster: config.cluster.clone(),
                key,
                epoch,
                lease,
                expires,
                role: role.subscribe(),
                margin,
                renewer,
            });
        }
        let _ = client.lease_revoke(lease).await;
        let leader = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .and_then(|kv| kv.value_str().ok().map(str::to_string)),
            _ => None,
        });
        if leader.is_none() {
            // Deleted between the compare and the read: campaign again at once.
            continue;
        }
        role.send_replace(Role::Standby {
            leader: leader.clone(),
        });
        wait_for_vacancy(&mut client, &key, revision + 1, granted).await;
    }
}

/// Connects to etcd, retrying for a while when it is not up yet.
async fn connect(
    endpoints: &[String],
    options: ConnectOptions,
) -> Result<Client, etcd_client::Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(endpoints, Some(options.clone())).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => {
                warn!("etcd: cannot connect yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Waits until the leader key is deleted (its lease expired or was revoked), watching from
/// `revision`; returns after `recheck` regardless, so the caller campaigns again.
async fn wait_for_vacancy(client: &mut Client, key: &str, revision: i64, recheck: Duration) {
    let watched = async {
        let mut stream = client
            .watch(key, Some(WatchOptions::new().with_start_revision(revision)))
            .await
            .ok()?;
        while let Ok(Some(resp)) = stream.message().await {
            if resp
                .events()
                .iter()
                .any(|e| e.event_type() == EventType::Delete)
            {
                return Some(());
            }
        }
        None
    };
    let _ = tokio::time::timeout(recheck, watched).await;
}

/// Renews the lease and verifies the key every third of the TTL until leadership is lost,
/// then announces it.
async fn renew(
    mut client: Client,
    key: String,
    created: i64,
    lease: i64,
    expires: Arc<Mutex<Instant>>,
    role: watch::Sender<Role>,
) {
    let epoch = u64::try_from(created).unwrap_or(0);
    // One keep-alive stream, opened again after an error.
    let mut keeper = None;
    let reason = loop {
        let ttl = {
            let e = *expires.lock().unwrap_or_else(|p| p.into_inner());
            e.saturating_duration_since(Instant::now())
        };
        if ttl.is_zero() {
            break "the lease expired before it could be renewed".to_string();
        }
        tokio::time::sleep(ttl / 3).await;
        let sent = Instant::now();
        let remaining = expires
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_duration_since(sent);
        let renewed = tokio::time::timeout(remaining, async {
            let (k, stream) = match &mut keeper {
                Some(open) => open,
                None => keeper.insert(client.lease_keep_alive(lease).await?),
            };
            k.keep_alive().await?;
            let ttl = stream.message().await?.map_or(0, |r| r.ttl());
            let ours = holds(&mut client, &key, created, lease).await?;
            Ok::<_, etcd_client::Error>((ttl, ours))
        })
        .await;
        if !matches!(renewed, Ok(Ok(_))) {
            keeper = None;
        }
        match renewed {
            Ok(Ok((ttl, true))) if ttl > 0 => {
                let granted = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
                *expires.lock().unwrap_or_else(|p| p.into_inner()) = sent + granted;
            }
            Ok(Ok((_, false))) => break "the leader key is no longer this leader's".to_string(),
            Ok(Ok(_)) => break "the lease expired".to_string(),
            Ok(Err(e)) => warn!("etcd: cannot renew the leader lease yet: {e}"),
            Err(_) => warn!("etcd: renewing the leader lease timed out"),
        }
    };
    warn!(epoch, %reason, "leadership lost");
    role.send_replace(Role::Deposed { epoch, reason });
}

/// Whether the leader key is still the one created at `created` under `lease`.
async fn holds(
    client: &mut Client,
    key: &str,
    created: i64,
    lease: i64,
) -> Result<bool, etcd_client::Error> {
    holds_then(client, key, created, lease, Vec::new()).await
}

/// [`holds`], running `ops` in the same transaction when it does.
async fn holds_then(
    client: &mut Client,
    key: &str,
    created: i64,
    lease: i64,
    ops: Vec<TxnOp>,
) -> Result<bool, etcd_client::Error> {
    let txn = Txn::new()
        .when([
            Compare::create_revision(key, CompareOp::Equal, created),
            Compare::lease(key, CompareOp::Equal, lease),
        ])
        .and_then(ops);
    Ok(client.txn(txn).await?.succeeded())
}

impl Leadership {
    /// Resolves when leadership is lost, with why.
    pub async fn lost(&self) -> String {
        let mut role = self.role.clone();
        match role
            .wait_for(|r| matches!(r, Role::Deposed { .. }))
            .await
            .map(|r| r.clone())
        {
            Ok(Role::Deposed { reason, .. }) => reason,
            _ => "the election ended".into(),
        }
    }

    /// The job journal this leader writes, fenced by its leader key.
    pub fn journal(&self) -> crate::journal::EtcdJournal {
        crate::journal::EtcdJournal::new(
            self.client.clone(),
            &self.cluster,
            self.key.clone(),
            i64::try_from(self.epoch).unwrap_or(i64::MAX),
        )
    }

    /// Gives leadership up (revokes the lease, so the key goes at once).
    pub async fn resign(mut self) {
        self.renewer.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }

    fn refuse(&self, epoch: u64, reason: impl Into<String>) -> Fenced {
        Fenced {
            epoch,
            reason: reason.into(),
        }
    }
}

/// Announces on `role` that this coordinator leads in `epoch` (unless the leadership was
/// lost meanwhile): from then on it serves.
pub fn announce(role: &watch::Sender<Role>, epoch: u64) {
    role.send_if_modified(|r| {
        let standby = matches!(r, Role::Standby { .. });
        if standby {
            *r = Role::Leader { epoch };
        }
        standby
    });
}

/// The fence of a coordinator that campaigns: refuses every commit until it leads, then is
/// its [`Leadership`].
#[derive(Default)]
pub struct ElectedFence(std::sync::OnceLock<Leadership>);

impl ElectedFence {
    /// Installs won leadership; returns it (`None` if leadership was installed before).
    pub fn install(&self, leadership: Leadership) -> Option<&Leadership> {
        self.0.set(leadership).ok()?;
        self.0.get()
    }

    /// The leadership, once won.
    pub fn leadership(&self) -> Option<&Leadership> {
        self.0.get()
    }
}

#[async_trait]
impl LeaderFence for ElectedFence {
    fn epoch(&self) -> u64 {
        self.0.get().map_or(0, |l| l.epoch)
    }

    async fn check(&self, epoch: u64) -> Result<(), Fenced> {
        match self.0.get() {
            Some(l) => l.check(epoch).await,
            None => Err(Fenced {
                epoch,
                reason: "this coordinator has not been elected".into(),
            }),
        }
    }

    async fn check_commit(&self, epoch: u64, job: &str, intent: &str) -> Result<(), Fenced> {
        match self.0.get() {
            Some(l) => l.check_commit(epoch, job, intent).await,
            None => Err(Fenced {
                epoch,
                reason: "this coordinator has not been elected".into(),
            }),
        }
    }
}

#[async_trait]
impl LeaderFence for Leadership {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn check(&self, epoch: u64) -> Result<(), Fenced> {
        self.fenced(epoch, Vec::new()).await
    }

    async fn check_commit(&self, epoch: u64, job: &str, intent: &str) -> Result<(), Fenced> {
        let key = crate::journal::intent_key(&self.cluster, job);
        self.fenced(epoch, vec![TxnOp::put(key, intent, None)])
            .await
    }
}

impl Leadership {
    /// The fence: `ops` run in etcd only while this leader's key and lease stand, and the
    /// local lease has time left.
    async fn fenced(&self, epoch: u64, ops: Vec<TxnOp>) -> Result<(), Fenced> {
        if epoch != self.epoch {
            return Err(self.refuse(
                epoch,
                format!("this coordinator leads epoch {}", self.epoch),
            ));
        }
        if let Role::Deposed { reason, .. } = &*self.role.borrow() {
            return Err(self.refuse(epoch, reason.clone()));
        }
        let expires = *self.expires.lock().unwrap_or_else(|p| p.into_inner());
        let left = expires.saturating_duration_since(Instant::now());
        if left <= self.margin {
            return Err(self.refuse(epoch, "the leader lease may have expired"));
        }
        let created = i64::try_from(self.epoch).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        match tokio::time::timeout(
            left - self.margin,
            holds_then(&mut client, &self.key, created, self.lease, ops),
        )
        .await
        {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(self.refuse(epoch, "the leader key is no longer this leader's"));
            }
            Ok(Err(e)) => return Err(self.refuse(epoch, format!("etcd: {e}"))),
            Err(_) => return Err(self.refuse(epoch, "etcd did not answer within the lease")),
        }
        // The answer is good only while the lease that backs it is.
        if Instant::now() + self.margin >= expires {
            return Err(self.refuse(epoch, "the leader lease may have expired"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real etcd (Debian's `etcd-server`) on free loopback ports, killed when dropped. Its
    /// short heartbeat lets leases be as short as a second.
    pub(crate) struct Etcd {
        pub url: String,
        child: std::process::Child,
        _dir: tempfile::TempDir,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    }

    impl Etcd {
        pub(crate) async fn start() -> Etcd {
            let dir = tempfile::tempdir().expect("temp dir");
            let (client, peer) = (free_port(), free_port());
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = std::process::Command::new("etcd")
                .args(["--name", "t", "--data-dir"])
                .arg(dir.path().join("data"))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("t={peer_url}")])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("etcd (Debian etcd-server; scripts/setup.sh installs it)");
            let etcd = Etcd {
                url,
                child,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(mut c) = Client::connect([&etcd.url], None).await
                    && c.get("probe", None).await.is_ok()
                {
                    return etcd;
                }
                assert!(Instant::now() < deadline, "etcd did not start");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn config(etcd: &Etcd, cluster: &str, me: &str) -> ElectionConfig {
        ElectionConfig {
            endpoints: vec![etcd.url.clone()],
            cluster: cluster.into(),
            lease_ttl: Duration::from_secs(1),
            advertise: me.into(),
        }
    }

    #[tokio::test]
    async fn one_leader_at_a_time_and_a_paused_leader_is_fenced() {
        let etcd = Etcd::start().await;
        let (a_role, _a_rx) = watch::channel(Role::Standby { leader: None });
        let a = campaign(&config(&etcd, "c1", "http://a"), &a_role)
            .await
            .unwrap();
        let ea = a.epoch();
        assert!(ea > 0);
        a.check(ea).await.unwrap();
        assert!(a.check(ea + 1).await.is_err(), "another epoch is refused");

        let (b_role, mut b_rx) = watch::channel(Role::Standby { leader: None });
        let cfg_b = config(&etcd, "c1", "http://b");
        let b = tokio::spawn(async move { campaign(&cfg_b, &b_role).await });
        // B waits as a standby and knows who leads.
        b_rx.wait_for(|r| {
            *r == Role::Standby {
                leader: Some("http://a".into()),
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!b.is_finished(), "B must not lead while A renews its lease");
        a.check(ea).await.unwrap();

        // A stalls (its renewals stop, as under SIGSTOP): the lease lapses, B takes over.
        a.renewer.abort();
        let b = tokio::time::timeout(Duration::from_secs(10), b)
            .await
            .expect("B takes over within the lease and a bounded delay")
            .unwrap()
            .unwrap();
        let eb = b.epoch();
        assert!(eb > ea, "epochs grow: {ea} then {eb}");
        b.check(eb).await.unwrap();
        // A, back, cannot pass the fence; nor can anyone with A's epoch.
        let refused = a.check(ea).await.unwrap_err();
        assert_eq!(refused.epoch, ea);
        assert!(b.check(ea).await.is_err());
    }

    #[tokio::test]
    async fn a_resigning_leader_hands_over_at_once_and_a_lost_key_deposes() {
        let etcd = Etcd::start().await;
        let (a_role, _a_rx) = watch::channel(Role::Standby { leader: None });
        let a = campaign(&config(&etcd, "c2", "http://a"), &a_role)
            .await
            .unwrap();
        let (b_role, mut b_rx) = watch::channel(Role::Standby { leader: None });
        let cfg_b = config(&etcd, "c2", "http://b");
        let b = tokio::spawn(async move { campaign(&cfg_b, &b_role).await });
        b_rx.wait_for(|r| matches!(r, Role::Standby { leader: Some(_) }))
            .await
            .unwrap();
        let started = Instant::now();
        a.resign().await;
        let b = b.await.unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "no wait for the lease"
        );

        // Someone deletes the leader key: B notices within a renewal and steps down.
        let mut c = Client::connect([&etcd.url], None).await.unwrap();
        c.delete(leader_key("c2"), None).await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), b.lost())
            .await
            .expect("the leader notices the lost key");
        assert!(reason.contains("leader key"), "{reason}");
        assert!(b.check(b.epoch()).await.is_err());
        // Another cluster name is another election.
        let (o_role, _o_rx) = watch::channel(Role::Standby { leader: None });
        let other = campaign(&config(&etcd, "other", "http://o"), &o_role)
            .await
            .unwrap();
        other.check(other.epoch()).await.unwrap();
    }

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let (role, _rx) = watch::channel(Role::Standby { leader: None });
        let cfg = ElectionConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            cluster: "a/b".into(),
            lease_ttl: Duration::from_secs(1),
            advertise: "http://me".into(),
        };
        let err = campaign(&cfg, &role).await.err().unwrap();
        assert!(err.to_string().contains("cluster name `a/b`"), "{err}");
    }
}
