//! Store URLs: a local folder (`./flowstore`, `/data/flows`, `file:///data/flows`) or
//! `s3://bucket/prefix` configured the AWS way from the environment (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` for a local server).
//!
//! Both binaries open the store here, so `--store` means the same thing to both and the default
//! (`$FLOW_STORE`, else `./flowstore`) is defined once.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

/// Environment variable naming the default store.
pub const STORE_ENV: &str = "FLOW_STORE";
/// The store used when neither `--store` nor `$FLOW_STORE` is given.
pub const DEFAULT_STORE: &str = "./flowstore";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot configure S3 store {url}: {source}")]
    S3Config {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot use local store {path}: {source}")]
    Local {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A store that did not answer a listing.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ProbeError {
    /// The store and its endpoint.
    pub store: String,
    /// What an operator must fix, when the answer says (as opposed to an outage).
    pub misconfigured: Option<Misconfiguration>,
    /// The whole error chain.
    pub cause: String,
}

impl ProbeError {
    fn describe(&self) -> String {
        match &self.misconfigured {
            Some(m) => format!("{}: {} ({})", self.store, m.advice, m.code),
            None => format!("cannot reach store {}: {}", self.store, self.cause),
        }
    }
}

/// An S3 answer that no retry will change: the store URL or the credentials are wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misconfiguration {
    /// The S3 error code (`NoSuchBucket`, ...).
    pub code: &'static str,
    pub advice: &'static str,
}

impl Misconfiguration {
    const KNOWN: [Misconfiguration; 6] = [
        Misconfiguration {
            code: "NoSuchBucket",
            advice: "the bucket does not exist: check the bucket name in the store URL",
        },
        Misconfiguration {
            code: "InvalidAccessKeyId",
            advice: "the access key is not known to the endpoint: check AWS_ACCESS_KEY_ID",
        },
        Misconfiguration {
            code: "SignatureDoesNotMatch",
            advice: "the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY",
        },
        Misconfiguration {
            code: "ExpiredToken",
            advice: "the credentials have expired: renew them (AWS_SESSION_TOKEN, or the role)",
        },
        Misconfiguration {
            code: "InvalidToken",
            advice: "the session token is invalid: check AWS_SESSION_TOKEN",
        },
        Misconfiguration {
            code: "AccessDenied",
            advice: "access denied: these credentials may not list this bucket and prefix",
        },
    ];

    /// The misconfiguration an S3 error answer names (object_store keeps the answer's XML
    /// in its message), if any.
    pub fn of(error: &object_store::Error) -> Option<Misconfiguration> {
        let text = crate::error_chain(error);
        Self::KNOWN
            .into_iter()
            .find(|m| text.contains(&format!("<Code>{}</Code>", m.code)))
    }
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An absolute local folder.
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl Location {
    /// Parses `--store`. Relative local paths are made absolute against the working directory.
    pub fn parse(url: &str) -> Result<Location, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.into(),
            reason: reason.into(),
        };
        if url.trim().is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name after s3://"));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "..") {
                return Err(invalid("the prefix must not contain '..'"));
            }
            return Ok(Location::S3 {
                bucket: bucket.into(),
                prefix: prefix.into(),
            });
        }
        let path = match url.strip_prefix("file://") {
            Some(path) => path,
            None if url.contains("://") => {
                return Err(invalid(
                    "supported schemes are s3:// and file:// (or a plain path)",
                ))
            }
            None => url,
        };
        let path = FsPath::new(path);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| StoreError::Local {
                    path: url.into(),
                    source,
                })?
                .join(path)
        };
        Ok(Location::Local(normalize(&absolute)))
    }
}

/// Removes `.` and resolves `..` lexically (the folder may not exist yet).
fn normalize(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How patient requests to the store are. A CLI must fail within seconds on an unreachable
/// endpoint, not retry for minutes; a long-running recorder may choose more patience.
#[derive(Debug, Clone)]
pub struct Patience {
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Patience {
    pub const INTERACTIVE: Patience = Patience {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(120),
    };

    /// A maintenance job (a CronJob nobody watches): rides out a store's hiccup rather than
    /// leaving work for the next run.
    pub const MAINTENANCE: Patience = Patience {
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(300),
    };
}

/// An opened store: the object store client and where the store's root is inside it.
#[derive(Debug, Clone)]
pub struct Store {
    pub location: Location,
    pub object_store: Arc<dyn ObjectStore>,
    root: Path,
}

impl Store {
    pub fn open(url: &str, patience: &Patience) -> Result<Store, StoreError> {
        let location = Location::parse(url)?;
        let (object_store, root): (Arc<dyn ObjectStore>, Path) = match &location {
            Location::Local(path) => {
                let root = Path::from_absolute_path(path).map_err(|e| StoreError::InvalidUrl {
                    url: url.into(),
                    reason: e.to_string(),
                })?;
                (Arc::new(crate::direct_write::DirectWrites::new()), root)
            }
            Location::S3 { bucket, prefix } => {
                let retry = RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: patience.max_retries,
                    retry_timeout: patience.retry_timeout,
                };
                // Set the timeouts key by key: `with_client_options` would replace what the
                // environment configured (AWS_ALLOW_HTTP among others).
                let timeout = |key, value: Duration| {
                    (
                        AmazonS3ConfigKey::Client(key),
                        format!("{}ms", value.as_millis()),
                    )
                };
                let (connect_key, connect) =
                    timeout(ClientConfigKey::ConnectTimeout, patience.connect_timeout);
                let (request_key, request) =
                    timeout(ClientConfigKey::Timeout, patience.request_timeout);
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_config(connect_key, connect)
                    .with_config(request_key, request)
                    .build()
                    .map_err(|source| StoreError::S3Config {
                        url: location.to_string(),
                        source,
                    })?;
                (Arc::new(s3), Path::from(prefix.as_str()))
            }
        };
        Ok(Store {
            location,
            object_store,
            root,
        })
    }

    /// The object path of `key` (a key relative to the store root, as `layout` produces).
    pub fn path(&self, key: &str) -> Path {
        let mut path = self.root.clone();
        for part in key.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// The full URL of an object (for messages: `s3://bucket/key`, `file:///path`).
    pub fn url_of(&self, path: &Path) -> String {
        match &self.location {
            Location::Local(_) => format!("file:///{}", path.as_ref()),
            Location::S3 { bucket, .. } => format!("s3://{bucket}/{}", path.as_ref()),
        }
    }

    /// An object's key relative to the store root (what `layout` produces).
    pub fn key_of<'a>(&self, path: &'a Path) -> &'a str {
        let full = path.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            return full;
        }
        full.strip_prefix(root)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(full)
    }

    /// The URL of the object store itself (`s3://bucket` or `file:///`), for registering it with
    /// a query engine.
    pub fn object_store_url(&self) -> String {
        match &self.location {
            Location::Local(_) => "file:///".into(),
            Location::S3 { bucket, .. } => format!("s3://{bucket}"),
        }
    }

    /// The full URL of the folder `key_prefix` (relative to the store root), ending in `/`.
    pub fn folder_url(&self, key_prefix: &str) -> String {
        let path = self.path(key_prefix);
        let base = match &self.location {
            Location::Local(_) => "file://".to_string(),
            Location::S3 { bucket, .. } => format!("s3://{bucket}"),
        };
        if path.as_ref().is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/{}/", path.as_ref())
        }
    }

    /// Lists the store's root once (S3; a local folder is not touched): what a command that
    /// reads or writes should learn at start rather than at its first upload.
    pub async fn probe(&self) -> Result<(), ProbeError> {
        let Location::S3 { .. } = &self.location else {
            return Ok(());
        };
        let root = self.path("");
        let root = (!root.as_ref().is_empty()).then_some(root);
        match self.object_store.list_with_delimiter(root.as_ref()).await {
            Ok(_) => Ok(()),
            Err(error) => Err(ProbeError {
                store: self.describe(),
                misconfigured: Misconfiguration::of(&error),
                cause: crate::error_chain(&error),
            }),
        }
    }

    /// A short description of the endpoint, for error messages about an unreachable store.
    pub fn describe(&self) -> String {
        match &self.location {
            Location::Local(path) => path.display().to_string(),
            Location::S3 { .. } => {
                match std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")) {
                    Ok(endpoint) => format!("{} (endpoint {endpoint})", self.location),
                    Err(_) => self.location.to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            Location::parse("s3://flows/prod/").unwrap(),
            Location::S3 {
                bucket: "flows".into(),
                prefix: "prod".into()
            }
        );
        assert_eq!(
            Location::parse("s3://flows").unwrap(),
            Location::S3 {
                bucket: "flows".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Location::parse("file:///data/x/../y").unwrap(),
            Location::Local("/data/y".into())
        );
        assert_eq!(
            Location::parse("/data/flows").unwrap(),
            Location::Local("/data/flows".into())
        );
        assert!(matches!(
            Location::parse("gs://x"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Location::parse("s3:///p"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Location::parse("s3://b/../x"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn keys_resolve_under_the_root() {
        let store = Store::open("/data/flows", &Patience::INTERACTIVE).unwrap();
        assert_eq!(
            store.path("flows/v1/a.parquet").as_ref(),
            "data/flows/flows/v1/a.parquet"
        );
        assert_eq!(
            store.folder_url("flows/v1/"),
            "file:///data/flows/flows/v1/"
        );
    }
}
