//! The flows of a window as Hubble serves them, shared by `flowsql replay` and `flowsql
//! serve`: the matching flows selected (all, the first N or the last N), in time order, with
//! the lost-event records of the same stretch of time interleaved (they are not filtered and
//! not counted, as Hubble does).

use std::collections::VecDeque;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{col, DataFrame, Expr};
use flow_schema::hubble::FlowRows;
use futures::StreamExt;
use hubble_api::flow::Flow;
use prost::Message;
use tokio::sync::mpsc;

use super::format::LostEvents;
use super::{rows, ReplayError};
use crate::session::FlowSession;

/// Which of the matching flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every one, oldest first, streamed.
    All,
    /// The oldest N.
    First(usize),
    /// The newest N, delivered oldest first (held in memory: N of them).
    Last(usize),
}

/// One item of the history, in time order.
#[derive(Debug)]
pub enum Event<'a> {
    /// A flow, as Hubble's `Flow` message on the wire ([`FlowRows`]).
    Flow(EncodedFlow<'a>),
    Lost(LostEvents),
}

/// A flow's `Flow` message, with what the sinks need without decoding it.
#[derive(Debug, Clone, Copy)]
pub struct EncodedFlow<'a> {
    pub bytes: &'a [u8],
    /// ns since the epoch.
    pub time: Option<i64>,
    pub uuid: Option<&'a str>,
}

impl EncodedFlow<'_> {
    /// The message tree, for a sink that prints or rewrites it.
    pub fn decode(&self) -> Result<Flow, ReplayError> {
        Flow::decode(self.bytes).map_err(|e| ReplayError::Encoding(e.to_string()))
    }
}

/// Where the events go: a printer (`replay`), a gRPC stream (`serve`).
pub trait Sink: Send {
    /// Takes one event; `Ok(false)` when no more are wanted (a client that went away).
    fn deliver(
        &mut self,
        event: Event<'_>,
    ) -> impl std::future::Future<Output = Result<bool, ReplayError>> + Send;

    /// The end of a batch of the scan: what the sink holds should go out now (a selective
    /// filter may take a while to find the next flow). `Ok(false)` as for `deliver`.
    fn flush(&mut self) -> impl std::future::Future<Output = Result<bool, ReplayError>> + Send {
        async { Ok(true) }
    }
}

/// Delivers the events to `sink` until it returns `Ok(false)` (a client that went away: the
/// scan stops) or the selection is done; returns the number of flows delivered. `columns`:
/// the only ones read (the flows' other fields are left out, see [`FlowRows::columns_for`]),
/// or `None` for all.
pub async fn events(
    session: &FlowSession,
    predicate: Option<Expr>,
    columns: Option<&[&str]>,
    selection: Selection,
    sink: &mut impl Sink,
) -> Result<usize, ReplayError> {
    let mut frame = session.ctx.table("flows").await?;
    let filtered = predicate.is_some();
    if let Some(predicate) = predicate {
        frame = frame.filter(predicate)?;
    }
    frame = match selection {
        Selection::First(n) => frame
            .sort(vec![col("time").sort(true, false)])?
            .limit(0, Some(n))?,
        Selection::Last(n) => frame
            .sort(vec![col("time").sort(false, false)])?
            .limit(0, Some(n))?,
        Selection::All => frame.sort(vec![col("time").sort(true, false)])?,
    };
    if let Some(columns) = columns {
        frame = frame.select_columns(columns)?;
    }
    // Without a filter, one ordered stream: a round-robin repartition would deal its batches
    // out to the cores only for a merge to put them back in time order, copying every row (a
    // sixth of `serve`'s CPU for a day of one node); the scan decodes in a task of its own
    // instead (`in_its_own_task`). A filter keeps it: the cores share the filtering, and the
    // merge copies only what passed.
    let (mut state, plan) = session.frame(frame.into_unoptimized_plan()).into_parts();
    if !filtered {
        state
            .config_mut()
            .options_mut()
            .optimizer
            .enable_round_robin_repartition = false;
    }
    let frame = DataFrame::new(state, plan);
    let mut lost = lost_events(session).await?;
    let mut delivered = 0;
    let mut encoded = Vec::with_capacity(4096);
    if let Selection::Last(_) = selection {
        // Newest first from the scan: delivered backwards.
        let batches = frame.collect().await?;
        let batches = batches
            .iter()
            .rev()
            .map(FlowRows::new)
            .collect::<Result<Vec<_>, _>>()?;
        // Lost events from the oldest flow delivered on, as hubble reads forward from there.
        let oldest = batches
            .iter()
            .find(|rows| !rows.is_empty())
            .and_then(|rows| rows.time(rows.len() - 1));
        if let Some(oldest) = oldest {
            lost.retain(|l| key(l.time) >= Some(oldest));
        }
        for rows in &batches {
            for row in (0..rows.len()).rev() {
                if !deliver(sink, &mut lost, rows, row, &mut encoded).await? {
                    return Ok(delivered);
                }
                delivered += 1;
            }
        }
    } else {
        let mut stream = in_its_own_task(frame.execute_stream().await?);
        while let Some(batch) = stream.recv().await {
            let rows = FlowRows::new(&batch?)?;
            for row in 0..rows.len() {
                if !deliver(sink, &mut lost, &rows, row, &mut encoded).await? {
                    return Ok(delivered);
                }
                delivered += 1;
            }
            if !sink.flush().await? {
                return Ok(delivered);
            }
        }
        if let Selection::First(_) = selection {
            // Reading stopped at the Nth flow.
            lost.clear();
        }
    }
    lost_until(sink, &mut lost, Some(i64::MAX)).await?;
    sink.flush().await?;
    Ok(delivered)
}

/// Batches read ahead of the sink.
const READ_AHEAD: usize = 2;

/// The scan, polled by a task of its own: it decodes the next batches while the sink turns
/// the last one into output (an ordered scan is otherwise one thread: the merge of sorted
/// files polls its inputs in turn). Dropping the receiver ends the task and its scan.
fn in_its_own_task(
    mut stream: SendableRecordBatchStream,
) -> mpsc::Receiver<Result<RecordBatch, DataFusionError>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        while let Some(batch) = stream.next().await {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Delivers the lost events up to row `row`'s time, then the row; false when the sink wants
/// no more.
async fn deliver(
    sink: &mut impl Sink,
    lost: &mut VecDeque<LostEvents>,
    rows: &FlowRows,
    row: usize,
    encoded: &mut Vec<u8>,
) -> Result<bool, ReplayError> {
    let time = rows.time(row);
    if !lost_until(sink, lost, time).await? {
        return Ok(false);
    }
    encoded.clear();
    rows.flow(row, encoded);
    let flow = EncodedFlow {
        bytes: encoded,
        time,
        uuid: rows.uuid(row),
    };
    sink.deliver(Event::Flow(flow)).await
}

/// A time as ns since the epoch.
fn key(time: Option<pbjson_types::Timestamp>) -> Option<i64> {
    time.map(|t| {
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos))
    })
}

/// Delivers the lost-event records at or before `until` (ns); false when the sink wants no
/// more.
async fn lost_until(
    sink: &mut impl Sink,
    lost: &mut VecDeque<LostEvents>,
    until: Option<i64>,
) -> Result<bool, ReplayError> {
    while let Some(next) = lost.front() {
        if key(next.time) > until {
            break;
        }
        let next = lost.pop_front().expect("front exists");
        if !sink.deliver(Event::Lost(next)).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The lost-event records of the window, oldest first.
async fn lost_events(session: &FlowSession) -> Result<VecDeque<LostEvents>, ReplayError> {
    let frame = session
        .ctx
        .table("lost_events")
        .await?
        .sort(vec![col("time").sort(true, false)])?;
    let batches = session
        .frame(frame.into_unoptimized_plan())
        .collect()
        .await?;
    let mut lost = VecDeque::new();
    for batch in &batches {
        let rows = rows::Rows::new(batch)?;
        lost.extend((0..rows.len()).map(|r| rows.lost_events(r)));
    }
    Ok(lost)
}
