//! Leader fencing. Every commit is attempted only after the fence confirms that this
//! coordinator still leads in the epoch its tasks were planned in.

use async_trait::async_trait;

/// A fence refused the commit: this coordinator is no longer the leader of that epoch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fenced: coordinator is no longer leader for epoch {epoch}: {reason}")]
pub struct Fenced {
    pub epoch: u64,
    pub reason: String,
}

/// Confirms leadership before a commit.
///
/// Contract: `check(epoch)` returns `Ok` only if, at the time of the call, this process holds
/// leadership for exactly `epoch`. Implementations must not cache a positive answer past
/// the lease that backs it.
#[async_trait]
pub trait LeaderFence: Send + Sync {
    /// Current epoch (to stamp new tasks with).
    fn epoch(&self) -> u64;
    async fn check(&self, epoch: u64) -> Result<(), Fenced>;

    /// [`LeaderFence::check`] before a commit attempt, recording in the same step, where a
    /// next leader finds it, that job `job` is about to commit (`intent`: its run and
    /// version). A job with no recorded intent has not committed. By default only the check.
    async fn check_commit(&self, epoch: u64, job: &str, intent: &str) -> Result<(), Fenced> {
        let _ = (job, intent);
        self.check(epoch).await
    }
}

/// The embedded local cluster has one coordinator: it always leads, in epoch 1.
pub struct SoleLeader;

#[async_trait]
impl LeaderFence for SoleLeader {
    fn epoch(&self) -> u64 {
        1
    }
    async fn check(&self, epoch: u64) -> Result<(), Fenced> {
        if epoch == 1 {
            Ok(())
        } else {
            Err(Fenced {
                epoch,
                reason: "the local coordinator only has epoch 1".into(),
            })
        }
    }
}
