//! Removal of what was written but not committed: data files of failed, cancelled or
//! superseded attempts, found by their name prefix (e.g. `part-<job id>-`). Used by the
//! coordinator after a job and by executors after a cancelled attempt.

use std::collections::HashSet;

use crate::storage::store_for;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::{info, warn};
use url::Url;

/// Deletes the data files under the table root whose names start with `name_prefix` (e.g.
/// `part-<job id>-`), or that lie in a directory whose name does (an attempt's deletion
/// vector files), except those in `keep` (file names), never touching `_delta_log`.
/// Returns how many were deleted.
pub async fn remove_files_named(
    table_url: &Url,
    name_prefix: &str,
    keep: &HashSet<String>,
) -> usize {
    let Ok((store, root)) = store_for(table_url) else {
        return 0;
    };
    let marker = name_prefix;
    // File names are unique per job/stage/task/attempt, so matching on the name alone is
    // exact and avoids comparing differently-escaped directory names.
    let listed: Vec<Path> = match store
        .list(Some(&root))
        .try_filter_map(|m| {
            let delete = m.location.filename().is_some_and(|f| !keep.contains(f))
                && is_named(m.location.as_ref(), marker)
                && !m.location.as_ref().contains("_delta_log");
            futures::future::ready(Ok(delete.then_some(m.location)))
        })
        .try_collect()
        .await
    {
        Ok(v) => v,
        Err(e) => {
            warn!(table = %table_url, "cannot list for cleanup: {e}");
            return 0;
        }
    };
    let n = listed.len();
    delete_all(&store, listed).await;
    if n > 0 {
        info!(
            prefix = name_prefix,
            files = n,
            "deleted uncommitted data files"
        );
    }
    n
}

/// Whether the file at `path` (`/`-separated) is named with `prefix`: its name or its
/// directory's starts with it.
pub fn is_named(path: &str, prefix: &str) -> bool {
    let mut parts = path.rsplit('/');
    let name = parts.next().unwrap_or(path);
    name.starts_with(prefix) || parts.next().is_some_and(|dir| dir.starts_with(prefix))
}

async fn delete_all(store: &std::sync::Arc<dyn object_store::ObjectStore>, paths: Vec<Path>) {
    let results: Vec<_> = futures::stream::iter(paths)
        .map(|p| {
            let store = store.clone();
            async move { (store.delete(&p).await, p) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (r, p) in results {
        if let Err(e) = r
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            warn!(path = %p, "cleanup delete failed: {e}");
        }
    }
}
