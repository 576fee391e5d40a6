//! The flows of a window as Hubble serves them, shared by `flowsql replay` and `flowsql
//! serve`: the matching flows selected (all, the first N or the last N), in time order, with
//! the lost-event records of the same stretch of time interleaved (they are not filtered and
//! not counted, as Hubble does).

use std::collections::VecDeque;

use datafusion::prelude::{col, Expr};
use futures::StreamExt;
use hubble_api::flow::Flow;

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

/// One item of the history, in time order. (Moved once from the scan to the sink, never
/// stored in bulk: boxing the flow would only add an allocation per flow.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Flow(Flow),
    Lost(LostEvents),
}

/// Where the events go: a printer (`replay`), a gRPC stream (`serve`).
pub trait Sink: Send {
    /// Takes one event; `Ok(false)` when no more are wanted (a client that went away).
    fn deliver(
        &mut self,
        event: Event,
    ) -> impl std::future::Future<Output = Result<bool, ReplayError>> + Send;
}

/// Delivers the events to `sink` until it returns `Ok(false)` (a client that went away: the
/// scan stops) or the selection is done; returns the number of flows delivered.
pub async fn events(
    session: &FlowSession,
    predicate: Option<Expr>,
    selection: Selection,
    sink: &mut impl Sink,
) -> Result<usize, ReplayError> {
    let mut frame = session.ctx.table("flows").await?;
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
    let frame = session.frame(frame.into_unoptimized_plan());
    let mut lost = lost_events(session).await?;
    let mut delivered = 0;
    if let Selection::Last(_) = selection {
        let batches = frame.collect().await?;
        let mut flows = Vec::new();
        for batch in &batches {
            let rows = rows::Rows::new(batch)?;
            flows.extend((0..rows.len()).map(|r| rows.flow(r)));
        }
        flows.reverse();
        // Lost events from the oldest flow delivered on, as hubble reads forward from there.
        if let Some(oldest) = flows.first() {
            lost.retain(|l| key(l.time) >= key(oldest.time));
        }
        for flow in flows {
            if !lost_until(sink, &mut lost, key(flow.time)).await?
                || !sink.deliver(Event::Flow(flow)).await?
            {
                return Ok(delivered);
            }
            delivered += 1;
        }
    } else {
        let mut stream = frame.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let rows = rows::Rows::new(&batch?)?;
            for r in 0..rows.len() {
                let flow = rows.flow(r);
                if !lost_until(sink, &mut lost, key(flow.time)).await?
                    || !sink.deliver(Event::Flow(flow)).await?
                {
                    return Ok(delivered);
                }
                delivered += 1;
            }
        }
        if let Selection::First(_) = selection {
            // Reading stopped at the Nth flow.
            lost.clear();
        }
    }
    lost_until(sink, &mut lost, Some((i64::MAX, i32::MAX))).await?;
    Ok(delivered)
}

fn key(time: Option<pbjson_types::Timestamp>) -> Option<(i64, i32)> {
    time.map(|t| (t.seconds, t.nanos))
}

/// Delivers the lost-event records at or before `until` (seconds, nanos); false when the
/// sink wants no more.
async fn lost_until(
    sink: &mut impl Sink,
    lost: &mut VecDeque<LostEvents>,
    until: Option<(i64, i32)>,
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
