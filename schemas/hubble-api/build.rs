//! Generates the Hubble API from this project's own `.proto` files (`schemas/proto`): prost
//! messages and tonic stubs (tonic-prost-build), and protojson serde impls with proto field
//! names, as Hubble marshals them (pbjson-build). The `.proto` files are compiled by protox, a
//! protobuf compiler in Rust: no `protoc` to install.

use std::path::PathBuf;

use prost::Message;

const PROTOS: [&str; 3] = [
    "flow/flow.proto",
    "relay/relay.proto",
    "observer/observer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../proto";
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={root}/{proto}");
    }
    let descriptors = protox::compile(PROTOS, [root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = descriptors.encode_to_vec();
    std::fs::write(out.join("hubble-descriptors.bin"), &encoded)?;
    // Well-known types from pbjson-types: they serialize as protojson does (a Timestamp as
    // RFC 3339, a BoolValue as a bare bool).
    // Default stubs: a server implements what it serves, the rest answers Unimplemented (the
    // recorder's test server needs two RPCs, `flowsql serve` all but the event streams).
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".flow", ".relay", ".observer"])?;
    Ok(())
}
