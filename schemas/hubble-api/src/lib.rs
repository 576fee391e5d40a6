//! The Hubble Observer API as flowrec speaks it: generated from the project's own definitions
//! in `schemas/proto` (field numbers as in cilium v1.19, so the wire format is Cilium's).
//!
//! - [`observer`]: the `Observer` service (client and server stubs: `GetFlows`, `ServerStatus`)
//!   and its request/response messages;
//! - [`flow`]: `Flow`, `FlowFilter`, `LostEvent` and everything they hold;
//! - [`relay`]: `NodeStatusEvent`.
//!
//! Every message also (de)serializes as protojson with proto field names (`IP`, `Type`,
//! `source_port`): the JSON `hubble observe -o jsonpb` prints and the exporter writes. That is
//! how a flow received over gRPC becomes the same row as the same flow imported from JSON.

#![allow(clippy::all, missing_docs)]

pub mod flow {
    include!(concat!(env!("OUT_DIR"), "/flow.rs"));
    include!(concat!(env!("OUT_DIR"), "/flow.serde.rs"));
}

pub mod relay {
    include!(concat!(env!("OUT_DIR"), "/relay.rs"));
    include!(concat!(env!("OUT_DIR"), "/relay.serde.rs"));
}

pub mod observer {
    include!(concat!(env!("OUT_DIR"), "/observer.rs"));
    include!(concat!(env!("OUT_DIR"), "/observer.serde.rs"));
}

/// Why FlowFilter JSON was refused.
#[derive(Debug)]
pub enum FilterJsonError {
    /// Not JSON, or a field of the wrong type.
    Json(serde_json::Error),
    /// Keys that are not FlowFilter fields, or no field at all (`"no field"`).
    Fields(String),
}

impl std::fmt::Display for FilterJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterJsonError::Json(error) => write!(f, "not a Hubble FlowFilter ({error})"),
            FilterJsonError::Fields(fields) => write!(
                f,
                "{fields} not Hubble FlowFilter field(s) (or empty): such a filter would match \
                 every flow"
            ),
        }
    }
}

impl std::error::Error for FilterJsonError {}

/// `hubble observe` filter flags -> FlowFilter allow and deny lists, as the hubble CLI builds them.
pub mod observe_flags;

/// `GetFlowsRequest.field_mask` over `Flow`, checked and applied as the Hubble server does.
pub mod field_mask;

/// A FlowFilter from JSON (`hubble observe --allowlist` syntax), refusing keys it does not
/// know: the generated parser ignores them, and `{"verdicts":["DROPPED"]}` would become the
/// empty filter, which matches every flow.
pub fn strict_flow_filter(json: &str) -> Result<flow::FlowFilter, FilterJsonError> {
    let given: serde_json::Value = serde_json::from_str(json).map_err(FilterJsonError::Json)?;
    let filter: flow::FlowFilter =
        serde_json::from_value(given.clone()).map_err(FilterJsonError::Json)?;
    let kept = serde_json::to_value(&filter).map_err(FilterJsonError::Json)?;
    let unknown: Vec<&str> = given
        .as_object()
        .into_iter()
        .flat_map(|fields| fields.keys())
        .filter(|key| kept.get(key.as_str()).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() || filter == flow::FlowFilter::default() {
        return Err(FilterJsonError::Fields(if unknown.is_empty() {
            "no field".to_string()
        } else {
            unknown.join(", ")
        }));
    }
    Ok(filter)
}

/// `GetFlows` with its responses left encoded, for a reader that decodes the protobuf bytes
/// itself (flowrec's live source reads them straight into columns: no message tree, no
/// protojson in between).
pub mod encoded;
