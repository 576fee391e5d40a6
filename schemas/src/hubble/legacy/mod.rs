//! The arrow-json decoder this crate used before `flow`/`json`; kept for one differential test.
#![allow(dead_code)]
use super::enums;
mod flatten;
mod input;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, Scalar, StringArray, StructArray,
};
use arrow::compute::kernels::{boolean, zip::zip};
use arrow::compute::{filter, filter_record_batch, is_not_null};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::reader::ReaderBuilder;

use crate::schema::{flow_schema, lost_events_schema, CaptureSource};
use flatten::View;

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
    line_schema: SchemaRef,
    envelope_schema: SchemaRef,
    default_node_name: Option<String>,
    source: CaptureSource,
}

impl HubbleDecoder {
    /// `default_node_name` fills `node_name` for flows that carry none (neither in the flow nor
    /// in the envelope).
    pub fn new(source: CaptureSource, default_node_name: Option<String>) -> Self {
        HubbleDecoder {
            line_schema: input::line_schema(),
            envelope_schema: input::envelope_schema(),
            default_node_name,
            source,
        }
    }

    /// Decodes a buffer of newline-separated JSON values. `first_line` is the 1-based line
    /// number of the buffer's first line (for error messages). Blank lines are skipped silently.
    pub fn decode(&self, buffer: &[u8], first_line: u64) -> Decoded {
        let lines = split_lines(buffer, first_line);
        let all_envelopes = lines.iter().all(|line| {
            let bytes = &buffer[line.start..line.end];
            input::ENVELOPE_OPENINGS
                .iter()
                .any(|opening| bytes.starts_with(opening))
        });
        let schema = if all_envelopes {
            &self.envelope_schema
        } else {
            &self.line_schema
        };
        let mut errors = Vec::new();
        let (batch, line_numbers) = match self.decode_all(schema, buffer, lines.len()) {
            Ok(batch) => (batch, lines.iter().map(|l| l.number).collect()),
            Err(_) => self.decode_line_by_line(schema, buffer, &lines, &mut errors),
        };
        let mut decoded = self.flatten(&batch, &line_numbers, &mut errors);
        errors.sort_by_key(|e| e.line);
        decoded.errors = errors;
        decoded
    }

    fn reader(&self, schema: &SchemaRef, rows: usize) -> arrow::json::reader::Decoder {
        ReaderBuilder::new(schema.clone())
            .with_coerce_primitive(true)
            .with_batch_size(rows.max(1))
            .build_decoder()
            .expect("the line schema is supported by arrow-json")
    }

    /// Decodes `buffer` in one go; fails unless it holds exactly `expected_rows` JSON objects.
    fn decode_all(
        &self,
        schema: &SchemaRef,
        buffer: &[u8],
        expected_rows: usize,
    ) -> Result<RecordBatch, String> {
        let mut reader = self.reader(schema, expected_rows + 1);
        let consumed = reader.decode(buffer).map_err(clean_error)?;
        if reader.has_partial_record() {
            return Err("truncated JSON: the line ends inside an object".into());
        }
        let batch = reader.flush().map_err(clean_error)?;
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
        if consumed != buffer.len() || batch.num_rows() != expected_rows {
            return Err(format!(
                "expected one JSON object on the line, found {}",
                batch.num_rows()
            ));
        }
        Ok(batch)
    }

    fn decode_line_by_line(
        &self,
        schema: &SchemaRef,
        buffer: &[u8],
        lines: &[Line],
        errors: &mut Vec<LineError>,
    ) -> (RecordBatch, Vec<u64>) {
        let mut good = Vec::with_capacity(buffer.len());
        let mut numbers = Vec::new();
        for line in lines {
            let bytes = &buffer[line.start..line.end];
            match self.decode_all(schema, bytes, 1) {
                Ok(_) => {
                    good.extend_from_slice(bytes);
                    good.push(b'\n');
                    numbers.push(line.number);
                }
                Err(reason) => errors.push(LineError {
                    line: line.number,
                    reason,
                }),
            }
        }
        let batch = self
            .decode_all(schema, &good, numbers.len())
            .expect("lines that decode alone decode together");
        (batch, numbers)
    }

    fn flatten(&self, batch: &RecordBatch, lines: &[u64], errors: &mut Vec<LineError>) -> Decoded {
        let top = View::root(StructArray::from(batch.clone()));
        let envelope_flow = top.child("flow").present();
        let lost = boolean::and_not(&top.child("lost_events").present(), &envelope_flow)
            .expect("same length");
        let bare_flow = boolean::and_not(
            &boolean::and_not(&flatten::looks_like_flow(&top), &envelope_flow)
                .expect("same length"),
            &lost,
        )
        .expect("same length");
        let is_flow = boolean::or(&envelope_flow, &bare_flow).expect("same length");
        let other_events = batch.num_rows() - is_flow.true_count() - lost.true_count();

        let flows = self.flows(
            batch,
            &top,
            &envelope_flow,
            &bare_flow,
            &is_flow,
            lines,
            errors,
        );
        let lost_events = self.lost_events(batch, &lost, lines, errors);
        Decoded {
            flows,
            lost_events,
            errors: Vec::new(),
            other_events,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn flows(
        &self,
        batch: &RecordBatch,
        top: &View,
        envelope_flow: &BooleanArray,
        bare_flow: &BooleanArray,
        is_flow: &BooleanArray,
        lines: &[u64],
        errors: &mut Vec<LineError>,
    ) -> RecordBatch {
        if is_flow.true_count() == 0 {
            return RecordBatch::new_empty(flow_schema());
        }
        let enveloped = batch.column_by_name("flow").expect("declared").clone();
        // A bare Flow's fields sit at the top level, with the same names and types (only in the
        // full line schema: the envelope schema has no bare flows).
        let bare = || -> ArrayRef {
            let fields = enveloped.as_struct().fields().clone();
            let columns = fields
                .iter()
                .map(|f| batch.column_by_name(f.name()).expect("same fields").clone())
                .collect();
            Arc::new(StructArray::new(fields, columns, None))
        };
        let merged = if bare_flow.true_count() == 0 {
            enveloped.clone()
        } else if envelope_flow.true_count() == 0 {
            bare()
        } else {
            zip(envelope_flow, &enveloped, &bare()).expect("same types")
        };
        let keep = |array: &ArrayRef| filter(array, is_flow).expect("same length");
        let merged = keep(&merged);
        let flow_lines = select_lines(lines, is_flow);
        let flow = View::root(merged.as_struct().clone());
        let time = flatten::coalesce(&flow.leaf("time"), &keep(&top.leaf("time")));
        let mut node = flatten::coalesce(&flow.leaf("node_name"), &keep(&top.leaf("node_name")));
        if let Some(default) = &self.default_node_name {
            node = fill_nulls(&node, default);
        }

        // A flow without any time cannot be placed in the store: report and drop it.
        let has_time = is_not_null(time.as_ref()).expect("is_not_null never fails");
        let (flow, time, node) = if has_time.false_count() == 0 {
            (flow, time, node)
        } else {
            report_missing(
                &has_time,
                &flow_lines,
                "flow has no time (neither flow.time nor the envelope's time)",
                errors,
            );
            let keep = |array: &ArrayRef| filter(array, &has_time).expect("same length");
            (
                View::root(keep(&merged).as_struct().clone()),
                keep(&time),
                keep(&node),
            )
        };
        flatten::flows(&flow, time, node, self.source)
            .expect("flattened columns match the flow schema")
    }

    fn lost_events(
        &self,
        batch: &RecordBatch,
        lost: &BooleanArray,
        lines: &[u64],
        errors: &mut Vec<LineError>,
    ) -> RecordBatch {
        if lost.true_count() == 0 {
            return RecordBatch::new_empty(lost_events_schema());
        }
        let rows = filter_record_batch(batch, lost).expect("same length");
        let time_of = |top: &View| {
            flatten::coalesce(&top.leaf("time"), &top.child("lost_events").leaf("first"))
        };
        let mut top = View::root(StructArray::from(rows.clone()));
        let mut time = time_of(&top);
        let has_time = is_not_null(time.as_ref()).expect("is_not_null never fails");
        if has_time.false_count() > 0 {
            report_missing(
                &has_time,
                &select_lines(lines, lost),
                "lost_events has no time",
                errors,
            );
            let rows = filter_record_batch(&rows, &has_time).expect("same length");
            top = View::root(StructArray::from(rows));
            time = time_of(&top);
        }
        let mut node = top.leaf("node_name");
        if let Some(default) = &self.default_node_name {
            node = fill_nulls(&node, default);
        }
        flatten::lost_events(&top.child("lost_events"), time, node, self.source)
            .expect("flattened columns match the lost-events schema")
    }
}

/// A `LineError` for every row where `present` is false.
fn report_missing(
    present: &BooleanArray,
    lines: &[u64],
    reason: &str,
    errors: &mut Vec<LineError>,
) {
    for (row, number) in lines.iter().enumerate() {
        if !present.value(row) {
            errors.push(LineError {
                line: *number,
                reason: reason.into(),
            });
        }
    }
}

fn fill_nulls(array: &ArrayRef, value: &str) -> ArrayRef {
    let present = is_not_null(array.as_ref()).expect("is_not_null never fails");
    let fallback = Scalar::new(StringArray::from(vec![value]));
    zip(&present, array, &fallback).expect("utf8 on both sides")
}

fn select_lines(lines: &[u64], mask: &BooleanArray) -> Vec<u64> {
    lines
        .iter()
        .enumerate()
        .filter(|(row, _)| mask.is_valid(*row) && mask.value(*row))
        .map(|(_, n)| *n)
        .collect()
}

/// arrow-json prefixes its messages with "Json error: "; the user needs only the cause.
fn clean_error(error: ArrowError) -> String {
    let message = error.to_string();
    let message = message.strip_prefix("Json error: ").unwrap_or(&message);
    message.to_string()
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
