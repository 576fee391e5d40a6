//! The Observer service over the history: `GetFlows` streams what [`request::plan`] decided
//! (the history part through `replay::history`, then the follow), `ServerStatus`, `GetNodes`
//! and `GetNamespaces` answer from the cached [`stats`]; the event streams are not recorded
//! (Unimplemented, as hubble-relay answers).
//!
//! Streaming: one task per stream produces responses into a bounded channel, so a slow client
//! holds at most [`CHANNEL`] responses in memory whatever `number` is, and a client that goes
//! away closes the channel, which ends the task and drops its scan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datafusion::prelude::Expr;
use flow_schema::store::Store;
use hubble_api::field_mask::FlowMask;
use hubble_api::flow::{Flow, LostEvent, LostEventSource};
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::observer_server::Observer;
use hubble_api::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, Namespace, Node, ServerStatusRequest, ServerStatusResponse,
};
use hubble_api::relay::{NodeState, NodeStatusEvent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::access::{Access, Visibility};
use super::follow::{self, Recent, Seen};
use super::request::{self, FlowsPlan};
use super::stats::Snapshot;
use crate::replay::format::LostEvents;
use crate::replay::history::{self, Event};
use crate::replay::ReplayError;
use crate::session::{FlowSession, ReadOptions};

/// Responses a stream may hold ahead of its client.
const CHANNEL: usize = 256;

type EventStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The service's shared state.
pub struct History {
    pub store: Store,
    pub options: ReadOptions,
    pub stats: Arc<RwLock<Snapshot>>,
    pub access: Access,
    pub poll: Duration,
    pub started: Instant,
    pub version: String,
}

impl History {
    fn visibility<T>(&self, request: &Request<T>) -> Result<Visibility, Status> {
        self.access.of(request)
    }
}

#[tonic::async_trait]
impl Observer for History {
    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<EventStream<GetFlowsResponse>>, Status> {
        let visibility = self.visibility(&request)?;
        let now = chrono::Utc::now()
            .timestamp_nanos_opt()
            .expect("now fits in nanoseconds");
        let mut plan = request::plan(request.get_ref(), now)?;
        plan.predicate = visibility.restrict(plan.predicate);
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stream = Stream {
            store: self.store.clone(),
            options: self.options,
            poll: self.poll,
            visibility,
            tx,
            peer: request
                .remote_addr()
                .map_or_else(|| "?".to_owned(), |a| a.to_string()),
            sent: AtomicU64::new(0),
        };
        tokio::spawn(stream.run(plan));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<EventStream<GetAgentEventsResponse>>, Status> {
        Err(Status::unimplemented(
            "GetAgentEvents: agent events are not recorded (flowsql serve serves recorded flows)",
        ))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<EventStream<GetDebugEventsResponse>>, Status> {
        Err(Status::unimplemented(
            "GetDebugEvents: debug events are not recorded (flowsql serve serves recorded flows)",
        ))
    }

    async fn get_nodes(
        &self,
        request: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        let visibility = self.visibility(&request)?;
        let stats = self.stats.read().expect("stats lock");
        let nodes = stats
            .nodes(visibility.namespaces())
            .into_iter()
            .map(|node| Node {
                name: node.name,
                version: node.version,
                address: String::new(),
                state: if node.current {
                    NodeState::NodeConnected
                } else {
                    NodeState::NodeGone
                } as i32,
                tls: None,
                uptime_ns: (node.last_ns - node.first_ns).max(0) as u64,
                num_flows: node.flows,
                max_flows: 0,
                seen_flows: node.flows,
            })
            .collect();
        Ok(Response::new(GetNodesResponse { nodes }))
    }

    async fn get_namespaces(
        &self,
        request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let visibility = self.visibility(&request)?;
        let stats = self.stats.read().expect("stats lock");
        let namespaces = stats
            .namespaces(visibility.namespaces())
            .into_iter()
            .map(|(cluster, namespace)| Namespace { cluster, namespace })
            .collect();
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }

    async fn server_status(
        &self,
        request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let visibility = self.visibility(&request)?;
        let stats = self.stats.read().expect("stats lock");
        let flows = stats.flows(visibility.namespaces());
        let nodes = stats.nodes(visibility.namespaces()).len() as u32;
        Ok(Response::new(ServerStatusResponse {
            num_flows: flows,
            // No ring buffer: the CLI then prints `N/0` without a percentage.
            max_flows: 0,
            seen_flows: flows,
            uptime_ns: self.started.elapsed().as_nanos() as u64,
            num_connected_nodes: Some(pbjson_types::UInt32Value { value: nodes }),
            num_unavailable_nodes: Some(pbjson_types::UInt32Value { value: 0 }),
            unavailable_nodes: Vec::new(),
            version: self.version.clone(),
            flows_rate: if visibility.namespaces().is_none() {
                stats.flows_rate
            } else {
                0.0
            },
        }))
    }
}

/// One GetFlows stream being produced.
struct Stream {
    store: Store,
    options: ReadOptions,
    poll: Duration,
    visibility: Visibility,
    tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
    /// The client's address, for the log.
    peer: String,
    /// Flows sent so far.
    sent: AtomicU64,
}

impl Stream {
    /// Produces the stream, then logs one line: who, how many flows, how it ended (an
    /// operator's access log; a cancelled stream shows that its scan stopped).
    async fn run(self, plan: FlowsPlan) {
        let started = Instant::now();
        let ending = match self.produce(plan).await {
            Err(status) => {
                let ending = format!("failed: {}", status.message());
                let _ = self.tx.send(Err(status)).await;
                ending
            }
            Ok(()) if self.tx.is_closed() => "the client went away; scan stopped".to_owned(),
            Ok(()) => "done".to_owned(),
        };
        eprintln!(
            "flowsql serve: GetFlows from {}: {} flows in {:.1} s, {ending}",
            self.peer,
            self.sent.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
    }

    async fn produce(&self, plan: FlowsPlan) -> Result<(), Status> {
        let mut seen = Seen::default();
        let mut recent = Recent::default();
        if plan.follow {
            // The files the history part may read are not read again by the follow.
            let now = now_ns();
            seen.poll(&self.store, now).await.map_err(unavailable)?;
        }
        if let Some(selection) = plan.history {
            let session = FlowSession::with_store(self.store.clone(), plan.range, self.options)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let go_on = self
                .send(
                    &session,
                    plan.predicate.clone(),
                    selection,
                    plan.mask.as_ref(),
                    &mut recent,
                    plan.follow,
                )
                .await?;
            if !go_on {
                return Ok(());
            }
        }
        if !plan.follow {
            return Ok(());
        }
        let mut recent = Some(recent);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(follow::poll_interval(self.poll)) => {}
                _ = self.tx.closed() => return Ok(()),
            }
            let now = now_ns();
            if plan.until.is_some_and(|until| now >= until) {
                return Ok(());
            }
            let new = match seen.poll(&self.store, now).await {
                Ok(new) => new,
                Err(error) => {
                    // An outage: the follower tries again at the next poll.
                    eprintln!("flowsql serve: follow: {error}; trying again");
                    continue;
                }
            };
            if new.is_empty() {
                continue;
            }
            let session = follow::session_of(&self.store, self.options, new, plan.until)
                .await
                .map_err(unavailable)?;
            let mut dedup = recent.take().unwrap_or_default();
            let go_on = self
                .send(
                    &session,
                    plan.predicate.clone(),
                    history::Selection::All,
                    plan.mask.as_ref(),
                    &mut dedup,
                    false,
                )
                .await?;
            if !go_on {
                return Ok(());
            }
        }
    }

    /// Sends the events of `session`; false when the client went away.
    async fn send(
        &self,
        session: &FlowSession,
        predicate: Option<Expr>,
        selection: history::Selection,
        mask: Option<&FlowMask>,
        recent: &mut Recent,
        remember: bool,
    ) -> Result<bool, Status> {
        let mut sink = Responses {
            tx: &self.tx,
            sent: &self.sent,
            visibility: &self.visibility,
            mask,
            recent,
            remember,
            open: true,
        };
        history::events(session, predicate, selection, &mut sink)
            .await
            .map_err(status_of)?;
        let mut open = sink.open;
        if open && session.damaged() {
            // A partial answer says so: the CLI prints a node error even without --debug.
            let notice = GetFlowsResponse {
                response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
                    state_change: NodeState::NodeError as i32,
                    node_names: Vec::new(),
                    message: "flowsql serve: damaged store objects were left out of this answer \
                              (named in the server's log)"
                        .into(),
                })),
                node_name: String::new(),
                time: None,
            };
            open = self.tx.send(Ok(notice)).await.is_ok();
        }
        Ok(open)
    }
}

/// The history's events as responses on a stream's channel.
struct Responses<'a> {
    tx: &'a mpsc::Sender<Result<GetFlowsResponse, Status>>,
    sent: &'a AtomicU64,
    visibility: &'a Visibility,
    mask: Option<&'a FlowMask>,
    recent: &'a mut Recent,
    /// Remember the flows sent (the history part of a follow), or skip those remembered.
    remember: bool,
    open: bool,
}

impl history::Sink for Responses<'_> {
    async fn deliver(&mut self, event: Event) -> Result<bool, ReplayError> {
        let response = match event {
            Event::Flow(mut flow) => {
                let time = flow
                    .time
                    .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
                if self.remember {
                    self.recent.remember(time, &flow.uuid);
                } else if self.recent.contains(&flow.uuid) {
                    return Ok(true);
                }
                self.visibility.mask_other_end(&mut flow);
                flow_response(match self.mask {
                    Some(mask) => mask.apply(&flow),
                    None => flow,
                })
            }
            Event::Lost(lost) => lost_response(lost),
        };
        let flow = matches!(response.response_types, Some(ResponseTypes::Flow(_)));
        self.open = self.tx.send(Ok(response)).await.is_ok();
        if self.open && flow {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(self.open)
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .expect("now fits in nanoseconds")
}

/// A flow as an agent sends it: the response's time and node are the (masked) flow's.
fn flow_response(flow: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

/// A lost-event record; sources Hubble has no name for (the recorder's own) are UNKNOWN.
fn lost_response(lost: LostEvents) -> GetFlowsResponse {
    let source = LostEventSource::from_str_name(&lost.source)
        .unwrap_or(LostEventSource::UnknownLostEventSource);
    GetFlowsResponse {
        node_name: lost.node_name,
        time: lost.time,
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: source as i32,
            num_events_lost: lost.num_events_lost,
            cpu: lost.cpu.map(|value| pbjson_types::Int32Value { value }),
            first: lost.first,
            last: lost.last,
        })),
    }
}

fn unavailable(message: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("the store cannot be read: {message}"))
}

/// A failed scan: the store's fault (Unavailable: clients reconnect) or ours (Internal).
fn status_of(error: ReplayError) -> Status {
    let message = crate::error_chain(&error);
    let store = [
        "cannot list",
        "cannot read",
        "connection",
        "Generic S3 error",
        "error sending request",
    ];
    if store.iter().any(|s| message.contains(s)) {
        unavailable(message)
    } else {
        Status::internal(message)
    }
}
