//! Hubble JSON -> the flow schema.
//!
//! Accepts what Hubble writes: the jsonpb envelope of `hubble observe -o jsonpb` and the exporter
//! (`{"flow":…,"node_name":…,"time":…}`, also `{"lost_events":…}` and other event kinds), and bare
//! `Flow` objects (`-o json` of older CLIs). protojson facts handled: enums as names or numbers,
//! 64-bit integers as strings, omitted zero values, `is_reply` absent = NULL, unknown fields
//! ignored (every Cilium release adds some).
//!
//! Each line is parsed once, straight into a row of the flat schema ([`json`] reads what
//! [`flow`] asks for; nothing is materialised in between), and the row is appended only if the
//! whole line was understood: one bad line costs only itself and is reported with its line
//! number and the path of the field at fault.

mod enums;
mod flow;
mod json;

use std::borrow::Cow;

use arrow::array::RecordBatch;

pub use flow::TCP_FLAG_NAMES;

use crate::row::{Cell, Row, TableBuilder};
use crate::schema::{flow_schema, lost_events_schema, CaptureSource};
use flow::{Out, F, L};
use json::{Cursor, JsonError};

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

/// Decodes Hubble JSON lines into record batches of the flow and lost-event schemas.
#[derive(Debug, Clone)]
pub struct HubbleDecoder {
    /// Schema position of each [`F`] / [`L`] column.
    flow_columns: Vec<usize>,
    lost_columns: Vec<usize>,
    default_node_name: Option<String>,
    source: CaptureSource,
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

/// What a line held.
enum Event {
    Flow,
    Lost,
    Other,
}

/// The rows one line is read into, reused from line to line.
struct Scratch<'a> {
    flow: Row<'a>,
    lost: Row<'a>,
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
        }
    }

    /// Decodes a buffer of newline-separated JSON values. `first_line` is the 1-based line
    /// number of the buffer's first line (for error messages). Blank lines are skipped silently.
    pub fn decode(&self, buffer: &[u8], first_line: u64) -> Decoded {
        let mut flows = TableBuilder::new(flow_schema());
        let mut lost_events = TableBuilder::new(lost_events_schema());
        let mut scratch = Scratch {
            flow: Row::new(flows.width()),
            lost: Row::new(lost_events.width()),
        };
        let mut errors = Vec::new();
        let mut other_events = 0;
        for line in split_lines(buffer, first_line) {
            let bytes = &buffer[line.start..line.end];
            let event = std::str::from_utf8(bytes)
                .map_err(|e| {
                    JsonError::new(format!("invalid UTF-8 at column {}", e.valid_up_to() + 1))
                })
                .and_then(|text| self.decode_line(text, &mut scratch));
            match event {
                Ok(Event::Flow) => flows.append(&scratch.flow),
                Ok(Event::Lost) => lost_events.append(&scratch.lost),
                Ok(Event::Other) => other_events += 1,
                Err(error) => errors.push(LineError {
                    line: line.number,
                    reason: error.to_string(),
                }),
            }
        }
        Decoded {
            flows: flows.finish().expect("rows match the flow schema"),
            lost_events: lost_events
                .finish()
                .expect("rows match the lost-events schema"),
            errors,
            other_events,
        }
    }

    /// Reads one line into `scratch`; the returned event says which row holds it.
    fn decode_line<'a>(
        &'a self,
        text: &'a str,
        scratch: &mut Scratch<'a>,
    ) -> Result<Event, JsonError> {
        scratch.flow.clear();
        scratch.lost.clear();
        let mut out = Out {
            row: &mut scratch.flow,
            at: &self.flow_columns,
        };
        let lost_row = &mut scratch.lost;
        let (mut envelope_flow, mut lost, mut bare_fields, mut bare_flow) =
            (false, false, false, false);
        let mut top_time: Option<i64> = None;
        let mut top_node: Option<Cow<'a, str>> = None;
        let mut cursor = Cursor::new(text);
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
                "lost_events" => lost = flow::lost_event(cursor, lost_row, &self.lost_columns)?,
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
        let source = Cell::Str(Cow::Borrowed(self.source.as_str()));
        let default_node = self.default_node_name.as_deref().map(Cow::Borrowed);
        if envelope_flow || (bare_flow && !lost) {
            if let Some(ns) = top_time {
                out.set_default(F::Time, Cell::Time(ns));
            }
            if out.is_null(F::Time) {
                return Err(JsonError::new(
                    "flow has no time (neither flow.time nor the envelope's time)",
                ));
            }
            for node in [top_node, default_node].into_iter().flatten() {
                out.set_default(F::NodeName, Cell::Str(node));
            }
            out.set(F::CaptureSource, source);
            return Ok(Event::Flow);
        }
        if lost {
            let at = |column: L| self.lost_columns[column as usize];
            match top_time {
                Some(ns) => lost_row.set(at(L::Time), Cell::Time(ns)),
                None if !lost_row.is_null(at(L::First)) => {
                    let first = lost_row.get(at(L::First)).clone();
                    lost_row.set(at(L::Time), first);
                }
                None => {}
            }
            if lost_row.is_null(at(L::Time)) {
                return Err(JsonError::new("lost_events has no time"));
            }
            for node in [top_node, default_node].into_iter().flatten() {
                lost_row.set_default(at(L::NodeName), Cell::Str(node));
            }
            lost_row.set(at(L::CaptureSource), source);
            return Ok(Event::Lost);
        }
        Ok(Event::Other)
    }
}

struct Line {
    number: u64,
    start: usize,
    end: usize,
}

/// Non-blank lines of the buffer with their 1-based numbers.
fn split_lines(buffer: &[u8], first_line: u64) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut number = first_line;
    while start < buffer.len() {
        let end = memchr::memchr(b'\n', &buffer[start..]).map_or(buffer.len(), |i| start + i);
        if buffer[start..end].iter().any(|b| !b.is_ascii_whitespace()) {
            lines.push(Line { number, start, end });
        }
        number += 1;
        start = end + 1;
    }
    lines
}

#[cfg(test)]
mod legacy;
#[cfg(test)]
mod tests;
