//! Field masks over `Flow` (`GetFlowsRequest.field_mask`), applied as a Hubble server applies
//! them: paths are proto field names (`IP`, `Type`, `source.pod_name`) checked against the
//! `Flow` definition ("invalid fieldmask" otherwise: an unknown name, or a path through a field
//! that is not a single message); a masked flow keeps only the listed fields, and a nested path
//! keeps its parent message with only the listed sub-fields (possibly empty).
//!
//! The mask works on the wire encoding, by field number: it needs no per-message code and
//! follows the `.proto` files as they change.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::{Buf, BufMut};
use pbjson_types::{field_descriptor_proto, DescriptorProto, FileDescriptorSet};
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;

use crate::flow::Flow;

/// The compiled `.proto` files (written by build.rs).
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hubble-descriptors.bin"));

/// The mask `hubble observe` sends for its compact, dict and table output (CLI v1.19
/// `defaults.FieldMask`, `--use-default-field-masks`): the fields its printers read.
pub const CLI_DEFAULT_MASK: [&str; 20] = [
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
];

/// A mask the server refuses, with Hubble's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fieldmask: {path:?} {why}")]
pub struct MaskError {
    pub path: String,
    pub why: &'static str,
}

/// Which fields of a message to keep: by field number, each with the fields to keep inside it
/// (an empty map keeps the whole field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Keep(BTreeMap<u32, Keep>);

/// A validated mask over `Flow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMask {
    keep: Keep,
    /// The paths as given, for [`FlowMask::touches`].
    paths: Vec<String>,
}

impl FlowMask {
    /// The mask of `paths`; `None` when there are none (the whole flow is sent).
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Option<FlowMask>, MaskError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let messages = messages();
        let mut keep = Keep::default();
        for path in paths {
            let path = path.as_ref();
            let error = |why| MaskError {
                path: path.to_owned(),
                why,
            };
            if path.is_empty() {
                return Err(error("is empty"));
            }
            let mut message = messages[".flow.Flow"];
            let mut node = &mut keep;
            let mut parts = path.split('.').peekable();
            while let Some(part) = parts.next() {
                let field = message
                    .field
                    .iter()
                    .find(|f| f.name.as_deref() == Some(part))
                    .ok_or_else(|| error("names no field of flow.Flow"))?;
                let number = field.number.unwrap_or_default() as u32;
                // A field already kept whole stays whole.
                if node.0.get(&number).is_some_and(|n| n.0.is_empty()) && parts.peek().is_some() {
                    break;
                }
                if parts.peek().is_none() {
                    node.0.insert(number, Keep::default());
                    break;
                }
                let single_message = field.r#type
                    == Some(field_descriptor_proto::Type::Message as i32)
                    && field.label != Some(field_descriptor_proto::Label::Repeated as i32);
                if !single_message {
                    return Err(error("goes through a field that is not a single message"));
                }
                message = field
                    .type_name
                    .as_deref()
                    .and_then(|name| messages.get(name))
                    .ok_or_else(|| error("goes into a message that cannot be masked"))?;
                node = node.0.entry(number).or_default();
            }
        }
        Ok(Some(FlowMask {
            keep,
            paths: paths.iter().map(|p| p.as_ref().to_owned()).collect(),
        }))
    }

    /// Whether the masked flow may hold some of field `path` (`IP`, `source.pod_name`): the
    /// mask keeps it, keeps a message it is in, or keeps a part of it. What a reader must
    /// fetch for the mask to give the same flow as from a whole one.
    pub fn touches(&self, path: &str) -> bool {
        let within = |inner: &str, outer: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        self.paths
            .iter()
            .any(|kept| within(path, kept) || within(kept, path))
    }

    /// `flow` with only the masked fields.
    pub fn apply(&self, flow: &Flow) -> Flow {
        let encoded = flow.encode_to_vec();
        let mut kept = Vec::with_capacity(encoded.len());
        self.apply_encoded(&encoded, &mut kept);
        Flow::decode(kept.as_slice()).expect("a subset of a flow's fields is a flow")
    }

    /// Appends the masked fields of the encoded `Flow` `flow` to `out` (still a `Flow`).
    pub fn apply_encoded(&self, flow: &[u8], out: &mut Vec<u8>) {
        filter(&self.keep, flow, out);
    }
}

/// Every message type of the API by full name (`.flow.Flow`), decoded once.
fn messages() -> &'static BTreeMap<String, &'static DescriptorProto> {
    static SET: OnceLock<FileDescriptorSet> = OnceLock::new();
    static MESSAGES: OnceLock<BTreeMap<String, &'static DescriptorProto>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        let set = SET.get_or_init(|| {
            FileDescriptorSet::decode(DESCRIPTORS).expect("build.rs wrote the descriptors")
        });
        set.file
            .iter()
            .flat_map(|file| {
                let package = file.package.clone().unwrap_or_default();
                file.message_type
                    .iter()
                    .flat_map(move |m| nested(format!(".{package}"), m))
            })
            .collect()
    })
}

/// Every message type of `message` (itself and nested ones) by full name.
fn nested(scope: String, message: &DescriptorProto) -> Vec<(String, &DescriptorProto)> {
    let name = format!("{scope}.{}", message.name.as_deref().unwrap_or_default());
    let mut all: Vec<(String, &DescriptorProto)> = message
        .nested_type
        .iter()
        .flat_map(|inner| nested(name.clone(), inner))
        .collect();
    all.push((name, message));
    all
}

/// Copies the fields of the encoded message `input` that `keep` names into `out`.
fn filter(keep: &Keep, mut input: &[u8], out: &mut Vec<u8>) {
    while input.has_remaining() {
        let start = input;
        let Ok((number, wire_type)) = decode_key(&mut input) else {
            return;
        };
        let before_value = input;
        if skip(wire_type, &mut input).is_none() {
            return;
        }
        let Some(inner) = keep.0.get(&number) else {
            continue;
        };
        if inner.0.is_empty() || wire_type != WireType::LengthDelimited {
            out.extend_from_slice(&start[..start.len() - input.len()]);
            continue;
        }
        // A message kept in part: its listed fields, and the message itself even when none
        // of them is set.
        let mut value = before_value;
        let length = decode_varint(&mut value).expect("skipped once") as usize;
        let mut sub = Vec::new();
        filter(inner, &value[..length], &mut sub);
        encode_key(number, WireType::LengthDelimited, out);
        encode_varint(sub.len() as u64, out);
        out.put_slice(&sub);
    }
}

/// Moves past one value of `wire_type`; `None` if the input ends first.
fn skip(wire_type: WireType, input: &mut &[u8]) -> Option<()> {
    let length = match wire_type {
        WireType::Varint => return decode_varint(input).ok().map(|_| ()),
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => decode_varint(input).ok()? as usize,
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    if input.len() < length {
        return None;
    }
    input.advance(length);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Endpoint, Layer4, Verdict};

    fn flow() -> Flow {
        Flow {
            time: Some(pbjson_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 5,
            }),
            uuid: "u".into(),
            verdict: Verdict::Dropped as i32,
            node_name: "kind-worker".into(),
            source: Some(Endpoint {
                namespace: "shop".into(),
                pod_name: "api".into(),
                labels: vec!["k8s:app=api".into()],
                identity: 7,
                ..Default::default()
            }),
            l4: Some(Layer4::default()),
            source_names: vec!["a.example".into(), "b.example".into()],
            summary: "TCP Flags: SYN".into(),
            ..Default::default()
        }
    }

    #[test]
    fn top_level_and_nested_paths_keep_only_what_they_name() {
        let mask = FlowMask::new(&[
            "time",
            "verdict",
            "source.pod_name",
            "source_names",
            "Summary",
        ])
        .unwrap()
        .unwrap();
        let masked = mask.apply(&flow());
        let expected = Flow {
            time: flow().time,
            verdict: Verdict::Dropped as i32,
            source: Some(Endpoint {
                pod_name: "api".into(),
                ..Default::default()
            }),
            source_names: flow().source_names,
            summary: flow().summary,
            ..Default::default()
        };
        assert_eq!(masked, expected);
    }

    #[test]
    fn a_nested_path_keeps_its_parent_even_when_empty_and_absent_stays_absent() {
        let mask = FlowMask::new(&["source.workloads", "destination.pod_name"])
            .unwrap()
            .unwrap();
        let masked = mask.apply(&flow());
        assert_eq!(masked.source, Some(Endpoint::default()));
        assert_eq!(masked.destination, None);
        // A whole field and one of its parts: the whole field.
        let mask = FlowMask::new(&["source", "source.pod_name"])
            .unwrap()
            .unwrap();
        assert_eq!(mask.apply(&flow()).source, flow().source);
    }

    #[test]
    fn a_mask_touches_what_it_keeps_what_holds_it_and_what_it_holds() {
        let mask = FlowMask::new(&["l4.TCP", "source", "IP"]).unwrap().unwrap();
        for path in ["l4", "l4.TCP", "source.pod_name", "source", "IP"] {
            assert!(mask.touches(path), "{path}");
        }
        for path in [
            "l4.UDP",
            "l7",
            "destination.pod_name",
            "IPv6",
            "sourc",
            "source_names",
        ] {
            assert!(!mask.touches(path), "{path}");
        }
    }

    #[test]
    fn invalid_paths_are_refused_as_hubble_does() {
        for paths in [
            vec![""],
            vec!["nope"],
            vec!["source.nope"],
            vec!["uuid.x"],
            vec!["source_names.x"],
        ] {
            let error = FlowMask::new(&paths).unwrap_err();
            assert!(
                error.to_string().starts_with("invalid fieldmask"),
                "{error}"
            );
        }
        assert_eq!(FlowMask::new::<&str>(&[]).unwrap(), None);
        assert!(FlowMask::new(&["IP", "Type", "l4.TCP.flags", "is_reply"]).is_ok());
    }
}
