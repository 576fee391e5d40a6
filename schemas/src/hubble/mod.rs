//! Hubble JSON -> the flow schema.
//!
//! Accepts what Hubble writes: the jsonpb envelope of `hubble observe -o jsonpb` and the exporter
//! (`{"flow":…,"node_name":…,"time":…}`, also `{"lost_events":…}` and other event kinds), and bare
//! `Flow` objects (`-o json` of older CLIs). protojson facts handled: enums as names or numbers,
//! 64-bit integers as strings, omitted zero values, `is_reply` absent = NULL, unknown fields
//! ignored (every Cilium release adds some).
//!
//! Each line is parsed once, straight into the columns of the flat schema ([`json`] reads what
//! [`flow`] asks for; nothing is materialised in between), and kept only if the whole line was
//! understood (`table` cuts a failed line back out of every column): one bad line costs only
//! itself and is reported with its line number and the path of the field at fault.

mod encode;
mod enums;
mod flow;
mod json;
mod protobuf;
pub mod redact;
mod wire;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

pub use encode::{response_of_flow, FlowRows};
pub use flow::TCP_FLAG_NAMES;
pub use protobuf::ResponseKind;
pub use wire::WireError;

use crate::schema::{flow_schema, lost_events_schema, CaptureSource};
use crate::table::{Sizes, TableBuilder};
use flow::{Out, F, L};
use json::{Cursor, JsonError};
pub use redact::Redaction;

/// A line that could not be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    pub reason: String,
}

/// What one chunk of lines decoded into.
#[derive(Debug)]
pub struct Decoded {
    pub flows: RecordBatch,
    pub lost_events: RecordBatch,
    /// Lines skipped, with the reason.
    pub errors: Vec<LineError>,
    /// Valid events that are neither flows nor lost events (`agent_event`, `debug_event`,
    /// `node_status`): not recorded, counted.
    pub other_events: usize,
}

/// What a received event was ([`HubbleDecoder::decode_responses`]).
#[derive(Debug, Clone)]
pub struct Received<'a> {
    pub kind: ResponseKind,
    /// The envelope's time, else the flow's own: what a `GetFlows` `since` is compared with.
    pub time: Option<i64>,
    /// A flow's uuid, when it has one.
    pub uuid: Option<&'a str>,
}

/// Decodes Hubble JSON lines into record batches of the flow and lost-event schemas.
#[derive(Debug, Clone)]
pub struct HubbleDecoder {
    /// Schema position of each [`F`] / [`L`] column.
    flow_columns: Vec<usize>,
    lost_columns: Vec<usize>,
    default_node_name: Option<String>,
    source: CaptureSource,
    /// What the last chunk's flows looked like: the next one reserves that much up front.
    last_shape: Arc<Mutex<Option<Sizes>>>,
    /// Secrets removed from every chunk before it leaves the decoder.
    redaction: Arc<Redaction>,
}

/// Flow fields whose presence at the top level makes a line a bare `Flow` (as opposed to an
/// `agent_event`/`debug_event`/`node_status` envelope, which shares `time` and `node_name`).
const BARE_FLOW_INDICATORS: [&str; 10] = [
    "verdict",
    "IP",
    "l4",
    "Type",
    "event_type",
    "source",
    "destination",
    "l7",
    "uuid",
    "ethernet",
];

/// Commits the row of the table `kind` names and drops what the event wrote in the other (an
/// event writes into both as it goes); `None` or `Other` drops both.
fn keep_only(flows: &mut TableBuilder, lost_events: &mut TableBuilder, kind: Option<ResponseKind>) {
    match kind {
        Some(ResponseKind::Flow) => {
            flows.commit();
            lost_events.discard();
        }
        Some(ResponseKind::LostEvents) => {
            lost_events.commit();
            flows.discard();
        }
        Some(ResponseKind::Other) | None => {
            flows.discard();
            lost_events.discard();
        }
    }
}

impl HubbleDecoder {
    /// `default_node_name` fills `node_name` for flows that carry none (neither in the flow nor
    /// in the envelope).
    pub fn new(source: CaptureSource, default_node_name: Option<String>) -> Self {
        let flows = flow_schema();
        flow::check_flow_schema(&flows);
        HubbleDecoder {
            flow_columns: F::resolve(&flows),
            lost_columns: L::resolve(&lost_events_schema()),
            default_node_name,
            source,
            last_shape: Arc::default(),
            redaction: Arc::new(Redaction::default()),
        }
    }

    /// Redacts with `redaction` instead of Hubble's default (URL passwords only).
    pub fn with_redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = Arc::new(redaction);
        self
    }

    /// Decodes a buffer of newline-separated JSON values. `first_line` is the 1-based line
    /// number of the buffer's first line (for error messages). Blank lines are skipped silently.
    pub fn decode(&self, buffer: &[u8], first_line: u64) -> Decoded {
        self.decode_lines(buffer, first_line, &newlines(buffer))
    }

    /// [`HubbleDecoder::decode`] for a reader that already found the buffer's newlines
    /// (`newlines`: their offsets, ascending), so the buffer is not scanned for them twice.
    pub fn decode_lines(&self, buffer: &[u8], first_line: u64, newlines: &[usize]) -> Decoded {
        let (mut flows, mut lost_events) = self.tables(newlines.len() + 1);
        let mut errors = Vec::new();
        let mut other_events = 0;
        for line in lines(buffer, first_line, newlines) {
            let bytes = &buffer[line.start..line.end];
            let event = self.decode_line(bytes, &mut flows, &mut lost_events);
            // A line writes into both tables as it goes; only what it turned out to be is kept.
            keep_only(&mut flows, &mut lost_events, event.as_ref().ok().copied());
            match event {
                Ok(ResponseKind::Other) => other_events += 1,
                Err(error) => errors.push(LineError {
                    line: line.number,
                    reason: error.to_string(),
                }),
                Ok(_) => {}
            }
        }
        self.finish(flows, lost_events, errors, other_events)
    }

    /// Decodes `GetFlowsResponse` messages as the Observer API sends them (protobuf), each
    /// event into the same row its protojson line would give ([`protobuf`]). `keep` sees what
    /// each event is, with its bytes, and says whether to record it (the live source drops
    /// what it recorded before a reconnection). An event that does not decode is reported
    /// with its 1-based position among `events`, and skipped.
    pub fn decode_responses<'e>(
        &self,
        events: impl ExactSizeIterator<Item = &'e [u8]>,
        mut keep: impl FnMut(&Received, &[u8]) -> bool,
    ) -> Decoded {
        let (mut flows, mut lost_events) = self.tables(events.len());
        let mut errors = Vec::new();
        let mut other_events = 0;
        for (number, bytes) in (1..).zip(events) {
            let mut out = Out {
                table: &mut flows,
                at: &self.flow_columns,
            };
            let read = protobuf::response(bytes, &mut out, &mut lost_events, &self.lost_columns)
                .map_err(|error| error.to_string())
                .and_then(|envelope| {
                    let kind = match envelope.kind {
                        ResponseKind::Flow => {
                            self.finish_flow(&mut out, envelope.time, envelope.node_name)?
                        }
                        ResponseKind::LostEvents => self.finish_lost(
                            &mut lost_events,
                            envelope.time.or(envelope.lost_first),
                            envelope.node_name,
                        )?,
                        ResponseKind::Other => ResponseKind::Other,
                    };
                    Ok(Received {
                        kind,
                        time: envelope.time.or(envelope.flow_time),
                        uuid: envelope.uuid,
                    })
                });
            let kept = match &read {
                Ok(received) => keep(received, bytes).then_some(received.kind),
                Err(_) => None,
            };
            keep_only(&mut flows, &mut lost_events, kept);
            match read {
                Ok(received) if received.kind == ResponseKind::Other => other_events += 1,
                Err(reason) => errors.push(LineError {
                    line: number,
                    reason,
                }),
                Ok(_) => {}
            }
        }
        self.finish(flows, lost_events, errors, other_events)
    }

    /// Empty tables for about `rows` events, flows reserved like the last chunk's.
    fn tables(&self, rows: usize) -> (TableBuilder, TableBuilder) {
        let mut flows = TableBuilder::new(flow_schema());
        if let Some(shape) = self.last_shape.lock().expect("never poisoned").as_ref() {
            flows.reserve_like(shape, rows);
        }
        (flows, TableBuilder::new(lost_events_schema()))
    }

    fn finish(
        &self,
        flows: TableBuilder,
        lost_events: TableBuilder,
        errors: Vec<LineError>,
        other_events: usize,
    ) -> Decoded {
        if !flows.is_empty() {
            *self.last_shape.lock().expect("never poisoned") = Some(flows.sizes());
        }
        let flows = flows.finish().expect("rows match the flow schema");
        Decoded {
            flows: self.redaction.apply(flows),
            lost_events: lost_events
                .finish()
                .expect("rows match the lost-events schema"),
            errors,
            other_events,
        }
    }

    /// What every flow row gets whatever it was read from: the envelope's time when the flow
    /// has none, the envelope's node name (else the default) when it has none, the source.
    fn finish_flow(
        &self,
        out: &mut Out,
        envelope_time: Option<i64>,
        envelope_node: Option<&str>,
    ) -> Result<ResponseKind, String> {
        if !out.is_set(F::Time) {
            let ns = envelope_time.ok_or(
                "flow has no time (neither flow.time nor the envelope's time)".to_string(),
            )?;
            out.time(F::Time, ns);
        }
        if let (false, Some(node)) = (
            out.is_set(F::NodeName),
            envelope_node.or(self.default_node_name.as_deref()),
        ) {
            out.str(F::NodeName, node);
        }
        out.str(F::CaptureSource, self.source.as_str());
        Ok(ResponseKind::Flow)
    }

    /// [`Self::finish_flow`] for a lost event (`time`: the envelope's, else its `first`).
    fn finish_lost(
        &self,
        lost_events: &mut TableBuilder,
        time: Option<i64>,
        envelope_node: Option<&str>,
    ) -> Result<ResponseKind, String> {
        let at = |column: L| self.lost_columns[column as usize];
        let ns = time.ok_or("lost_events has no time".to_string())?;
        lost_events.time(at(L::Time), ns);
        if let Some(node) = envelope_node.or(self.default_node_name.as_deref()) {
            lost_events.str(at(L::NodeName), node);
        }
        lost_events.str(at(L::CaptureSource), self.source.as_str());
        Ok(ResponseKind::LostEvents)
    }

    /// Writes one line into the tables (uncommitted); the returned event says which to keep.
    fn decode_line(
        &self,
        line: &[u8],
        flows: &mut TableBuilder,
        lost_events: &mut TableBuilder,
    ) -> Result<ResponseKind, JsonError> {
        let mut out = Out {
            table: flows,
            at: &self.flow_columns,
        };
        let (mut envelope_flow, mut lost, mut bare_fields, mut bare_flow) =
            (false, false, false, false);
        let mut lost_first: Option<i64> = None;
        let mut top_time: Option<i64> = None;
        let mut top_node: Option<Cow<str>> = None;
        let mut cursor = Cursor::new(line);
        let object = cursor.object(|cursor, key| {
            match key {
                "flow" => {
                    envelope_flow = cursor.object(|cursor, key| {
                        if !flow::flow_field(cursor, &mut out, key)? {
                            cursor.skip()?;
                        }
                        Ok(())
                    })?
                }
                "lost_events" => {
                    (lost, lost_first) = flow::lost_event(cursor, lost_events, &self.lost_columns)?
                }
                // In an envelope these are the envelope's; in a bare Flow, the flow's own.
                // Either way the flow's own value (inside "flow") takes precedence.
                "time" => top_time = flow::timestamp(cursor)?,
                "node_name" => top_node = cursor.text()?,
                _ => {
                    if cursor.null()? {
                        return Ok(());
                    }
                    if flow::flow_field(cursor, &mut out, key)? {
                        bare_fields = true;
                        bare_flow |= BARE_FLOW_INDICATORS.contains(&key);
                    } else {
                        // agent_event, debug_event, node_status, or a field we do not know.
                        cursor.skip()?;
                    }
                }
            }
            Ok(())
        })?;
        cursor.finish()?;
        if !object {
            return Err(JsonError::new("expected a JSON object, found null"));
        }
        if envelope_flow && bare_fields {
            return Err(JsonError::new(
                "the line holds both an envelope \"flow\" and Flow fields at the top level",
            ));
        }
        if envelope_flow || (bare_flow && !lost) {
            return self
                .finish_flow(&mut out, top_time, top_node.as_deref())
                .map_err(JsonError::new);
        }
        if lost {
            return self
                .finish_lost(lost_events, top_time.or(lost_first), top_node.as_deref())
                .map_err(JsonError::new);
        }
        Ok(ResponseKind::Other)
    }
}

struct Line {
    number: u64,
    start: usize,
    end: usize,
}

/// Offsets of the `\n` bytes of a buffer.
pub fn newlines(buffer: &[u8]) -> Vec<usize> {
    memchr::memchr_iter(b'\n', buffer).collect()
}

/// Non-blank lines of the buffer with their 1-based numbers; a last line may lack its `\n`.
fn lines<'b>(
    buffer: &'b [u8],
    first_line: u64,
    newlines: &'b [usize],
) -> impl Iterator<Item = Line> + 'b {
    let ends = newlines
        .iter()
        .copied()
        .chain((newlines.last().map_or(0, |&n| n + 1) < buffer.len()).then_some(buffer.len()));
    let mut start = 0;
    ends.zip(first_line..).filter_map(move |(end, number)| {
        let line = Line { number, start, end };
        start = end + 1;
        buffer[line.start..line.end]
            .iter()
            .any(|b| !b.is_ascii_whitespace())
            .then_some(line)
    })
}

#[cfg(test)]
mod tests;
