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
