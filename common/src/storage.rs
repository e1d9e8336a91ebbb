//! Object store access by URL: local paths, `file://` and `s3://` (credentials and endpoint
//! from the usual `AWS_*` environment variables).

use std::sync::Arc;

use object_store::{ObjectStore, path::Path};
use url::Url;

use crate::{Error, Result};

/// Turns a user-supplied location (local path, relative or absolute, or a URL) into an
/// absolute URL. Local paths need not exist yet. Directories keep no trailing slash.
pub fn parse_location(s: &str) -> Result<Url> {
    if s.is_empty() {
        return Err(Error::invalid("empty location"));
    }
    if let Ok(url) = Url::parse(s)
        && url.scheme().len() > 1
    {
        return match url.scheme() {
            "file" | "s3" | "s3a" | "memory" => Ok(url),
            other => Err(Error::invalid(format!(
                "unsupported URL scheme `{other}` in `{s}` (supported: local paths, file://, s3://)"
            ))),
        };
    }
    let path = std::path::Path::new(s);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::invalid(format!("cannot resolve `{s}`: {e}")))?
            .join(path)
    };
    let abs = normalize_path(&abs);
    Url::from_file_path(&abs).map_err(|_| Error::invalid(format!("not a valid path: `{s}`")))
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize_path(p: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The object store serving `url`, and the path of `url` inside it.
pub fn store_for(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    match url.scheme() {
        "s3" | "s3a" => {
            let bucket = url
                .host_str()
                .ok_or_else(|| Error::invalid(format!("no bucket in `{url}`")))?;
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .build()?;
            let path = Path::from_url_path(url.path())
                .map_err(|e| Error::invalid(format!("bad path in `{url}`: {e}")))?;
            Ok((Arc::new(store), path))
        }
        _ => {
            let (store, path) = object_store::parse_url(url)?;
            Ok((Arc::from(store), path))
        }
    }
}

/// For a `file://` URL, the directory that the store [`store_for`] gives keeps its objects
/// under (object paths are relative to it); `None` for object stores.
pub fn local_root(url: &Url) -> Option<std::path::PathBuf> {
    (url.scheme() == "file").then(|| std::path::PathBuf::from("/"))
}

/// Joins a relative, URL-encoded Delta path (as in an `add` action) onto a table root URL.
pub fn join_url(root: &Url, relative: &str) -> Result<Url> {
    let mut base = root.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(relative)
        .map_err(|e| Error::invalid(format!("cannot join `{relative}` to `{root}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls() {
        let u = parse_location("/tmp/a/../b/./t").unwrap();
        assert_eq!(u.as_str(), "file:///tmp/b/t");
        let rel = parse_location("x/y").unwrap();
        assert_eq!(rel.scheme(), "file");
        assert!(rel.path().ends_with("/x/y"));
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(parse_location("gopher://x/y").is_err());
        assert!(parse_location("").is_err());
    }

    #[test]
    fn joins_encoded_relative_paths() {
        let root = Url::parse("file:///t/tbl").unwrap();
        let u = join_url(&root, "a=b%20c/part-1.parquet").unwrap();
        assert_eq!(u.as_str(), "file:///t/tbl/a=b%20c/part-1.parquet");
        assert_eq!(
            u.to_file_path().unwrap().to_str().unwrap(),
            "/t/tbl/a=b c/part-1.parquet"
        );
    }
}
