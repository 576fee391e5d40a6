//! `flowsql scheduler` and `flowsql executor`: Ballista's scheduler and executor processes,
//! built from its library crates with flowsql's functions, store tables ([`FlowCodec`]) and
//! object stores ([`FlowObjectStores`]) registered in each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use clap::Args;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;

use super::stores::FlowObjectStores;
use super::{functions, FlowCodec, DEFAULT_SCHEDULER_PORT};

const SCHEDULER_EXAMPLES: &str = "\
Examples:
  flowsql scheduler                                   # 127.0.0.1:50050
  flowsql scheduler --bind 0.0.0.0:50050              # in a pod
  flowsql executor --scheduler localhost:50050        # then one or more executors
  flowsql --cluster df://localhost:50050 \"select verdict, count(*) from flows group by 1\"

The scheduler lists the store and reads footers when it plans a scan: give it the same
AWS_* environment (or service account) as flowsql. FLOWSQL_LOG=debug says more.";

const EXECUTOR_EXAMPLES: &str = "\
Examples:
  flowsql executor --scheduler localhost:50050
  flowsql executor --scheduler flowsql-scheduler:50050 --bind 0.0.0.0 --external-host $POD_IP
  flowsql executor --scheduler localhost:50050 --flight-port 50061 --grpc-port 50062   # a second one

Executors read the store's files (AWS_* environment, as flowsql) and keep shuffle data in
--work-dir. FLOWSQL_LOG=debug says more.";

/// `flowsql scheduler`
#[derive(Debug, Args)]
#[command(after_help = SCHEDULER_EXAMPLES)]
pub struct SchedulerArgs {
    /// Address to listen on (gRPC: clients and executors)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,

    /// Host name clients and executors reach this scheduler by [default: the --bind address]
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,

    /// Seconds without a heartbeat after which an executor is taken as lost and its tasks
    /// are run again elsewhere
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub executor_timeout: u64,
}

/// `flowsql executor`
#[derive(Debug, Args)]
#[command(after_help = EXECUTOR_EXAMPLES)]
pub struct ExecutorArgs {
    /// The scheduler to register with: HOST:PORT or df://HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "localhost:50050")]
    pub scheduler: String,

    /// Address to listen on
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub bind: String,

    /// Host name the scheduler and clients reach this executor by [default: the --bind host]
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,

    /// Port of the Arrow Flight service (results and shuffle data)
    #[arg(long, value_name = "PORT", default_value_t = 50051)]
    pub flight_port: u16,

    /// Port of the executor's gRPC service
    #[arg(long, value_name = "PORT", default_value_t = 50052)]
    pub grpc_port: u16,

    /// Tasks run at once [default: the number of cores]
    #[arg(long, value_name = "N")]
    pub concurrent_tasks: Option<usize>,

    /// Folder for shuffle data [default: a temporary folder, removed at exit]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Seconds between heartbeats to the scheduler
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub heartbeat: u64,

    /// Leave this function out (tests: an executor of an older flowsql, in a rolling upgrade)
    #[arg(long, value_name = "NAME", hide = true)]
    pub without_function: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("--scheduler {0:?}: expected HOST:PORT or df://HOST:PORT")]
    SchedulerAddress(String),
    #[error("{flag}: {value:?} must be at least 1")]
    Zero { flag: &'static str, value: u64 },
    #[error("cannot make the work folder: {0}")]
    WorkDir(std::io::Error),
    #[error("{0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    #[error("cannot set up the session: {0}")]
    Session(datafusion::error::DataFusionError),
}

/// The session every process of a cluster plans or runs with: Ballista's defaults (DataFusion's
/// functions, nested ones included), flowsql's functions, object stores opened on demand.
fn cluster_session(config: SessionConfig) -> datafusion::error::Result<SessionState> {
    let state = default_session_builder(config)?;
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime(None)?)
        .build();
    for function in functions() {
        state.register_udf(function)?;
    }
    Ok(state)
}

fn runtime(temp: Option<&str>) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let builder =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(FlowObjectStores::default()));
    match temp {
        Some(dir) => builder.with_temp_file_path(dir).build_arc(),
        None => builder.build_arc(),
    }
}

/// Runs a scheduler until SIGINT or SIGTERM.
pub async fn run_scheduler(args: &SchedulerArgs) -> Result<(), NodeError> {
    if args.executor_timeout == 0 {
        return Err(NodeError::Zero {
            flag: "--executor-timeout",
            value: 0,
        });
    }
    let mut config = SchedulerConfig {
        bind_host: args.bind.ip().to_string(),
        bind_port: args.bind.port(),
        external_host: args
            .external_host
            .clone()
            .unwrap_or_else(|| args.bind.ip().to_string()),
        executor_timeout_seconds: args.executor_timeout,
        no_executors_grace_period_seconds: args.executor_timeout,
        // Checked often enough that a lost executor is noticed within the timeout.
        expire_dead_executor_interval_seconds: (args.executor_timeout / 3).max(1),
        ..SchedulerConfig::default()
    };
    config.override_session_builder = Some(Arc::new(cluster_session));
    config.override_logical_codec = Some(Arc::new(FlowCodec::default()));
    let cluster = BallistaCluster::new_from_config(&config).await?;
    log::info!("flowsql scheduler listening on {}", args.bind);
    tokio::select! {
        served = start_server(cluster, args.bind, Arc::new(config)) => Ok(served?),
        () = stopped() => Ok(()),
    }
}

/// Runs an executor until SIGINT or SIGTERM (Ballista's executor watches them itself).
pub async fn run_executor(args: &ExecutorArgs) -> Result<(), NodeError> {
    let (scheduler_host, scheduler_port) = scheduler_address(&args.scheduler)?;
    if args.heartbeat == 0 {
        return Err(NodeError::Zero {
            flag: "--heartbeat",
            value: 0,
        });
    }
    if args.concurrent_tasks == Some(0) {
        return Err(NodeError::Zero {
            flag: "--concurrent-tasks",
            value: 0,
        });
    }
    // Kept until the executor stops: a folder given is the operator's, a temporary one ours.
    let temporary;
    let work_dir = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(NodeError::WorkDir)?;
            dir.display().to_string()
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("flowsql-executor.")
                .tempdir()
                .map_err(NodeError::WorkDir)?;
            temporary.path().display().to_string()
        }
    };
    // The scheduler's functions: Ballista's default registry leaves out the nested ones
    // (`array_to_string`, which the hourly summary uses, failed to decode on an executor).
    let mut registry = BallistaFunctionRegistry::from(
        &cluster_session(SessionConfig::new_with_ballista()).map_err(NodeError::Session)?,
    );
    for name in &args.without_function {
        registry.scalar_functions.remove(name);
    }
    let temp = work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: args.bind.clone(),
        external_host: args
            .external_host
            .clone()
            .or_else(|| Some(args.bind.clone())),
        port: args.flight_port,
        grpc_port: args.grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: args.concurrent_tasks.unwrap_or(0),
        work_dir: Some(work_dir),
        executor_heartbeat_interval_seconds: args.heartbeat,
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_| runtime(Some(&temp)))),
        override_logical_codec: Some(Arc::new(FlowCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// `HOST:PORT`, `HOST` or `df://HOST:PORT`.
fn scheduler_address(value: &str) -> Result<(String, u16), NodeError> {
    let bad = || NodeError::SchedulerAddress(value.into());
    let rest = value.strip_prefix("df://").unwrap_or(value);
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
        None => (rest, DEFAULT_SCHEDULER_PORT),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    log::info!("stopping");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses() {
        assert_eq!(
            scheduler_address("sched:6000").unwrap(),
            ("sched".to_string(), 6000)
        );
        assert_eq!(
            scheduler_address("df://sched:6000/").unwrap(),
            ("sched".to_string(), 6000)
        );
        assert_eq!(
            scheduler_address("sched").unwrap(),
            ("sched".to_string(), DEFAULT_SCHEDULER_PORT)
        );
        for bad in ["", ":1", "sched:port", "http://x:1"] {
            let error = scheduler_address(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
