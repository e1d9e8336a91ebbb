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

/// After a failed job on a local location that holds no table (no `_delta_log`): removes the
/// empty directories left there (the table directory a write creates to open the table,
/// partition directories of the deleted files), so that the failed job leaves nothing
/// behind. A directory holding any file stays.
pub fn remove_empty_dirs_without_table(table_url: &Url) {
    fn prune(dir: &std::path::Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut empty = true;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !(is_dir && prune(&path)) {
                empty = false;
            }
        }
        empty && std::fs::remove_dir(dir).is_ok()
    }
    if table_url.scheme() != "file" {
        return;
    }
    let Ok(root) = table_url.to_file_path() else {
        return;
    };
    if root.is_dir() && !root.join("_delta_log").exists() && prune(&root) {
        info!(table = %table_url, "removed the empty directory a failed job left");
    }
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
