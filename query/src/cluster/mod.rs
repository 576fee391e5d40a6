//! Distributed flowsql on Apache DataFusion Ballista: `flowsql --cluster df://HOST:PORT …`
//! plans every statement on a cluster of flowsql's own scheduler and executors
//! (`flowsql scheduler`, `flowsql executor`). Ballista's stock binaries cannot serve it: they
//! know neither the store tables nor the forensics functions.
//!
//! Where each part runs:
//! - the client (any flowsql command) parses and optimizes the SQL against its own catalog, then
//!   sends the logical plan; a store table in it travels as what it reads ([`codec`]);
//! - the scheduler rebuilds the tables and plans the scans: the time window's hours are listed
//!   and their footers read there, once, as a local query would;
//! - the executors run the stages, reading the chosen files through object stores they open
//!   with their own environment ([`stores`]), and the client fetches the results from them.
//!
//! Every process registers the same functions ([`functions`]); a function or table missing on
//! one of them fails the query with its name, never with another answer.

pub mod codec;
pub mod logging;
pub mod node;
pub mod stores;

use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use codec::FlowCodec;
pub use node::{ExecutorArgs, SchedulerArgs};

/// The environment variable `--cluster` defaults to.
pub const CLUSTER_ENV: &str = "FLOWSQL_CLUSTER";
/// Ballista's scheduler port, when a URL names none.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;
/// How long a client waits for the scheduler to answer before it gives up at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--cluster {url:?}: {reason} (expected df://HOST:PORT)")]
    BadUrl { url: String, reason: String },
    #[error("cluster {url} is unreachable: {cause} (is `flowsql scheduler` running there?)")]
    Unreachable { url: String, cause: String },
    #[error("cluster {url}: cannot set up the session: {cause}")]
    Session { url: String, cause: String },
    #[error(
        "cluster {url} gave no complete answer within {seconds} s (--cluster-timeout): an executor \
         may have been lost; see the scheduler's log, and run the command again"
    )]
    Timeout { url: String, seconds: u64 },
}

/// Where and how long a client's commands run on a cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// `df://HOST:PORT`.
    pub url: &'static str,
    /// `--cluster-timeout`: how long one command (or one statement of the shell) may take.
    /// Ballista 55 does not always finish a job whose executor was lost mid-stage: its
    /// scheduler rolls the stage back, then cannot update it ("Can't find active stage to
    /// update stage outputs") and the job never ends. This bounds the wait.
    pub timeout: Duration,
}

impl ClusterOptions {
    /// `work`, or an error naming the cluster once it took longer than the timeout.
    pub async fn within<T>(
        self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, ClusterError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClusterError::Timeout {
                url: self.url.into(),
                seconds: self.timeout.as_secs(),
            })
    }
}

/// The scheduler's gRPC endpoint (`http://HOST:PORT`) of `df://HOST[:PORT]`.
pub fn scheduler_endpoint(cluster: &str) -> Result<String, ClusterError> {
    let bad = |reason: &str| ClusterError::BadUrl {
        url: cluster.into(),
        reason: reason.into(),
    };
    let url = url::Url::parse(cluster).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "df" {
        return Err(bad(&format!("scheme {}:// is not df://", url.scheme())));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
        return Err(bad("a scheduler URL has no path or query"));
    }
    let port = url.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
    Ok(format!("http://{host}:{port}"))
}

/// The functions every process of a cluster knows: DataFusion's and flowsql's.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    crate::udf::all().into_iter().map(Arc::new).collect()
}

/// A session whose statements run on `cluster`, configured by `config` (flowsql's own
/// settings). Fails, naming the cluster, when its scheduler does not answer.
pub async fn context(config: SessionConfig, cluster: &str) -> Result<SessionContext, ClusterError> {
    let endpoint = scheduler_endpoint(cluster)?;
    let probe = tokio::time::timeout(
        CONNECT_TIMEOUT,
        SchedulerGrpcClient::connect(endpoint.clone()),
    );
    match probe.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(ClusterError::Unreachable {
                url: cluster.into(),
                cause: crate::error_chain(&e),
            })
        }
        Err(_) => {
            return Err(ClusterError::Unreachable {
                url: cluster.into(),
                cause: format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
            })
        }
    }
    let config = config.with_ballista_logical_extension_codec(Arc::new(FlowCodec::default()));
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build()
        .upgrade_for_ballista(endpoint)
        .map_err(|e| ClusterError::Session {
            url: cluster.into(),
            cause: e.to_string(),
        })?;
    Ok(SessionContext::new_with_state(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_a_scheduler() {
        assert_eq!(
            scheduler_endpoint("df://sched.flows:6000").unwrap(),
            "http://sched.flows:6000"
        );
        assert_eq!(
            scheduler_endpoint("df://localhost").unwrap(),
            "http://localhost:50050"
        );
        for bad in [
            "localhost:50050",
            "http://h:1",
            "df://",
            "df://h:1/x",
            "df://h?x=1",
        ] {
            let error = scheduler_endpoint(bad).unwrap_err().to_string();
            assert!(
                error.contains(bad) && error.contains("df://HOST:PORT"),
                "{error}"
            );
        }
    }
}
