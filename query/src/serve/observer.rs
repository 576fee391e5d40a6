//! The Observer service over the history: `GetFlows` streams what [`request::plan`] decided
//! (the history part through `replay::history`, then the follow), `ServerStatus`, `GetNodes`
//! and `GetNamespaces` answer from the cached [`stats`]; the event streams are not recorded
//! (Unimplemented, as hubble-relay answers).
//!
//! Streaming: one task per stream writes the flows from the scan's columns straight into
//! encoded responses (`flow_schema::hubble::FlowRows`; no message tree per flow), gathered in
//! chunks of ~[`CHUNK_BYTES`] that go through a bounded channel: a slow client holds at most
//! [`CHANNEL`] chunks in memory whatever `number` is, and a client that goes away closes the
//! channel, which ends the task and drops its scan. A chunk goes out when it is full and at
//! the end of each batch of the scan, so a selective filter does not hold back what it found.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::prelude::Expr;
use flow_schema::hubble::{response_of_flow, FlowRows};
use flow_schema::store::Store;
use futures::StreamExt;
use hubble_api::encoded::EncodedFlows;
use hubble_api::field_mask::FlowMask;
use hubble_api::flow::{LostEvent, LostEventSource};
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::observer_server::Observer;
use hubble_api::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, Namespace, Node, ServerStatusRequest, ServerStatusResponse,
};
use hubble_api::relay::{NodeState, NodeStatusEvent};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::access::{Access, Visibility};
use super::follow::{self, Recent, Seen};
use super::request::{self, FlowsPlan};
use super::stats::Snapshot;
use crate::replay::format::LostEvents;
use crate::replay::history::{self, EncodedFlow, Event};
use crate::replay::ReplayError;
use crate::session::{FlowSession, ReadOptions};

/// Chunks of responses a stream may hold ahead of its client.
const CHANNEL: usize = 8;
/// A chunk goes out once it holds this many bytes of responses.
const CHUNK_BYTES: usize = 64 << 10;

type EventStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// Encoded `GetFlowsResponse`s, in order.
type Chunk = Result<Vec<Bytes>, Status>;

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
impl EncodedFlows for History {
    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<BoxStream<Bytes>>, Status> {
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
        let responses = ReceiverStream::new(rx).flat_map(|chunk: Chunk| {
            futures::stream::iter(match chunk {
                Ok(responses) => responses.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(status) => vec![Err(status)],
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

#[tonic::async_trait]
impl Observer for History {
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
    tx: mpsc::Sender<Chunk>,
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
            chunk: Vec::with_capacity(CHUNK_BYTES + (16 << 10)),
            ends: Vec::new(),
            flows: 0,
            masked: Vec::new(),
        };
        // With a field mask (the CLI's compact output always sends one), only the columns
        // it keeps are decoded.
        let columns = mask.map(|mask| {
            FlowRows::columns_for(|field| {
                mask.touches(field) || self.visibility.fields_read().contains(&field)
            })
        });
        history::events(session, predicate, columns.as_deref(), selection, &mut sink)
            .await
            .map_err(status_of)?;
        if session.damaged() {
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
            sink.push_message(&notice);
        }
        Ok(sink.send().await)
    }
}

/// The history's events as responses on a stream's channel, in chunks.
struct Responses<'a> {
    tx: &'a mpsc::Sender<Chunk>,
    sent: &'a AtomicU64,
    visibility: &'a Visibility,
    mask: Option<&'a FlowMask>,
    recent: &'a mut Recent,
    /// Remember the flows sent (the history part of a follow), or skip those remembered.
    remember: bool,
    /// Encoded responses not sent yet, and where each ends.
    chunk: Vec<u8>,
    ends: Vec<usize>,
    /// Flows among them.
    flows: u64,
    /// A flow rewritten for this client (masks), reused.
    masked: Vec<u8>,
}

impl Responses<'_> {
    fn push_message(&mut self, response: &GetFlowsResponse) {
        response
            .encode(&mut self.chunk)
            .expect("a Vec grows as needed");
        self.ends.push(self.chunk.len());
    }

    /// The flow as this client may see it: the other end masked ([`Visibility`]), then the
    /// field mask.
    fn push_flow(&mut self, flow: &EncodedFlow<'_>) -> Result<(), ReplayError> {
        let mut bytes = flow.bytes;
        let rewritten;
        if self.visibility.namespaces().is_some() {
            let mut tree = flow.decode()?;
            self.visibility.mask_other_end(&mut tree);
            rewritten = tree.encode_to_vec();
            bytes = &rewritten;
        }
        if let Some(mask) = self.mask {
            self.masked.clear();
            mask.apply_encoded(bytes, &mut self.masked);
            response_of_flow(&self.masked, &mut self.chunk);
        } else {
            response_of_flow(bytes, &mut self.chunk);
        }
        self.ends.push(self.chunk.len());
        self.flows += 1;
        Ok(())
    }

    /// Sends what is gathered; false when the client went away.
    async fn send(&mut self) -> bool {
        if self.ends.is_empty() {
            return !self.tx.is_closed();
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.chunk,
            Vec::with_capacity(CHUNK_BYTES + (16 << 10)),
        ));
        let mut start = 0;
        let responses = self
            .ends
            .drain(..)
            .map(|end| {
                let response = chunk.slice(start..end);
                start = end;
                response
            })
            .collect();
        let open = self.tx.send(Ok(responses)).await.is_ok();
        if open {
            self.sent.fetch_add(self.flows, Ordering::Relaxed);
        }
        self.flows = 0;
        open
    }
}

impl history::Sink for Responses<'_> {
    async fn deliver(&mut self, event: Event<'_>) -> Result<bool, ReplayError> {
        match event {
            Event::Flow(flow) => {
                let uuid = flow.uuid.unwrap_or_default();
                if self.remember {
                    self.recent.remember(flow.time.unwrap_or_default(), uuid);
                } else if self.recent.contains(uuid) {
                    return Ok(true);
                }
                self.push_flow(&flow)?;
            }
            Event::Lost(lost) => self.push_message(&lost_response(lost)),
        }
        if self.chunk.len() < CHUNK_BYTES {
            return Ok(true);
        }
        Ok(self.send().await)
    }

    async fn flush(&mut self) -> Result<bool, ReplayError> {
        Ok(self.send().await)
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .expect("now fits in nanoseconds")
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
