//! Reading the few things the recorder asks of a kernel's BTF: an enum's variants (drop
//! reasons, which helpers and attach types exist) and a tracepoint's arguments.
//!
//! BTF is the kernel's own description of its types (`/sys/kernel/btf/vmlinux`), so facts
//! read from it hold for backported distribution kernels, where a version number would lie.
//! aya parses BTF too, but does not expose its types; this reads the raw format (a header, a
//! type section of variable-length records, a string section) into a small index.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read the kernel's BTF {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not BTF or truncated ({what})")]
    Malformed { path: String, what: &'static str },
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_FWD: u8 = 7;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

/// Pointers and qualifiers followed to name a type (C types need a handful).
const MAX_TYPE_DEPTH: u32 = 16;

/// One type record: where its trailing data starts, and what its fixed part says.
#[derive(Debug, Clone, Copy)]
struct Type {
    kind: u8,
    name: u32,
    vlen: u16,
    /// `size` or `type`, by kind.
    size_or_type: u32,
    /// Offset of the record's trailing data (members, variants, parameters).
    trailing: usize,
}

/// A parsed BTF blob: the types in id order (id 0 is `void`, not stored).
#[derive(Debug)]
pub struct Btf {
    data: Vec<u8>,
    strings: std::ops::Range<usize>,
    types: Vec<Type>,
}

impl Btf {
    pub fn read(path: &Path) -> Result<Btf, BtfError> {
        let shown = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: shown.clone(),
            source,
        })?;
        Btf::parse(data).map_err(|what| BtfError::Malformed { path: shown, what })
    }

    /// The blob in the kernel's (native) byte order; Err names what is malformed.
    pub fn parse(data: Vec<u8>) -> Result<Btf, &'static str> {
        let u16_at = |at: usize| -> Result<u16, &'static str> {
            data.get(at..at + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .ok_or("header cut short")
        };
        if u16_at(0)? != BTF_MAGIC {
            return Err("bad magic");
        }
        // struct btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len,
        // str_off, str_len (u32 each); offsets count from the end of the header.
        let header_len = u32_at(&data, 4)? as usize;
        let types_start = header_len + u32_at(&data, 8)? as usize;
        let types_end = types_start + u32_at(&data, 12)? as usize;
        let strings_start = header_len + u32_at(&data, 16)? as usize;
        let strings_end = strings_start + u32_at(&data, 20)? as usize;
        if types_end > data.len() || strings_end > data.len() {
            return Err("sections beyond the end");
        }
        let mut types = Vec::new();
        let mut at = types_start;
        while at < types_end {
            // struct btf_type: name_off, info (vlen bits 0-15, kind bits 24-28), size/type.
            let name = u32_at(&data, at)?;
            let info = u32_at(&data, at + 4)?;
            let size_or_type = u32_at(&data, at + 8)?;
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as usize;
            let trailing = at + 12;
            let extra = match kind {
                KIND_INT | 14 | 17 => 4, // INT, VAR, DECL_TAG
                3 => 12,                 // ARRAY
                KIND_STRUCT | KIND_UNION | 15 | KIND_ENUM64 => 12 * vlen, // + DATASEC
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_PTR | KIND_FWD..=12 | 16 | KIND_TYPE_TAG => 0, // qualifiers, FUNC, FLOAT
                _ => return Err("unknown type kind"),
            };
            if trailing + extra > types_end {
                return Err("type cut short");
            }
            types.push(Type {
                kind,
                name,
                vlen: vlen as u16,
                size_or_type,
                trailing,
            });
            at = trailing + extra;
        }
        Ok(Btf {
            data,
            strings: strings_start..strings_end,
            types,
        })
    }

    fn string(&self, offset: u32) -> &str {
        let start = self.strings.start + offset as usize;
        let Some(bytes) = self.data.get(start..self.strings.end) else {
            return "";
        };
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).unwrap_or("")
    }

    fn word(&self, at: usize) -> u32 {
        u32_at(&self.data, at).expect("checked by parse")
    }

    fn by_id(&self, id: u32) -> Option<&Type> {
        id.checked_sub(1)
            .and_then(|index| self.types.get(index as usize))
    }

    fn named(&self, kinds: &[u8], name: &str) -> Option<&Type> {
        self.types
            .iter()
            .find(|t| kinds.contains(&t.kind) && t.name != 0 && self.string(t.name) == name)
    }

    /// The variants of the enum called `name` (ENUM or ENUM64; the low 32 bits of a value),
    /// or None if there is none.
    pub fn enum_variants(&self, name: &str) -> Option<Vec<(String, u32)>> {
        let found = self.named(&[KIND_ENUM, KIND_ENUM64], name)?;
        let stride = if found.kind == KIND_ENUM { 8 } else { 12 };
        Some(
            (0..found.vlen as usize)
                .map(|index| {
                    let at = found.trailing + index * stride;
                    (self.string(self.word(at)).to_string(), self.word(at + 4))
                })
                .collect(),
        )
    }

    /// Whether enum `name` has a variant called `variant`.
    pub fn has_variant(&self, name: &str, variant: &str) -> bool {
        self.enum_variants(name)
            .is_some_and(|variants| variants.iter().any(|(v, _)| v == variant))
    }

    /// The argument types of tracepoint `name`, as C spells them (`struct sk_buff *`), from
    /// its `btf_trace_<name>` typedef (a pointer to a function whose first parameter is the
    /// program's context, left out); None if the kernel has no such BTF tracepoint.
    pub fn tracepoint_args(&self, name: &str) -> Option<Vec<String>> {
        let typedef = self.named(&[KIND_TYPEDEF], &format!("btf_trace_{name}"))?;
        let pointer = self.by_id(typedef.size_or_type)?;
        let proto = self.by_id(pointer.size_or_type)?;
        if pointer.kind != KIND_PTR || proto.kind != KIND_FUNC_PROTO {
            return None;
        }
        // struct btf_param: name_off, type.
        Some(
            (1..proto.vlen as usize)
                .map(|index| self.type_name(self.word(proto.trailing + index * 8 + 4)))
                .collect(),
        )
    }

    /// A type as C spells it, enough to name an argument (`enum skb_drop_reason`,
    /// `void *`, `struct sock *`).
    pub fn type_name(&self, id: u32) -> String {
        self.type_name_within(id, MAX_TYPE_DEPTH)
    }

    /// `type_name`, following at most `depth` pointers and qualifiers: a malformed file may
    /// make them a cycle.
    fn type_name_within(&self, id: u32, depth: u32) -> String {
        let Some(t) = self.by_id(id) else {
            return "void".to_string();
        };
        let Some(depth) = depth.checked_sub(1) else {
            return "?".to_string();
        };
        let name = self.string(t.name);
        match t.kind {
            KIND_PTR => format!("{} *", self.type_name_within(t.size_or_type, depth)),
            KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                self.type_name_within(t.size_or_type, depth)
            }
            KIND_STRUCT => format!("struct {name}"),
            KIND_UNION => format!("union {name}"),
            KIND_ENUM | KIND_ENUM64 => format!("enum {name}"),
            KIND_FUNC_PROTO => "function".to_string(),
            _ => name.to_string(),
        }
    }
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, &'static str> {
    data.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("cut short")
}

/// Building BTF blobs by hand, for tests that need a kernel lacking a feature.
#[cfg(test)]
pub mod build {
    use super::*;

    /// A BTF blob under construction: `add` returns each type's id.
    pub struct Builder {
        words: Vec<u32>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Default for Builder {
        fn default() -> Builder {
            Builder {
                words: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }
    }

    impl Builder {
        pub fn new() -> Builder {
            Builder::default()
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let offset = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            offset
        }

        fn add(&mut self, name: &str, kind: u8, vlen: usize, size_or_type: u32) -> u32 {
            let name = self.name(name);
            self.words
                .extend([name, (u32::from(kind) << 24) | vlen as u32, size_or_type]);
            self.next_id += 1;
            self.next_id - 1
        }

        pub fn int(&mut self, name: &str) -> u32 {
            let id = self.add(name, KIND_INT, 0, 4);
            self.words.push(32);
            id
        }

        pub fn structure(&mut self, name: &str) -> u32 {
            self.add(name, KIND_STRUCT, 0, 0)
        }

        pub fn pointer(&mut self, to: u32) -> u32 {
            self.add("", KIND_PTR, 0, to)
        }

        pub fn enumeration(&mut self, name: &str, variants: &[(&str, u32)]) -> u32 {
            let id = self.add(name, KIND_ENUM, variants.len(), 4);
            for (variant, value) in variants {
                let variant = self.name(variant);
                self.words.extend([variant, *value]);
            }
            id
        }

        /// `typedef void (*btf_trace_<name>)(void *, args...)`, as the kernel declares
        /// every BTF tracepoint.
        pub fn tracepoint(&mut self, name: &str, args: &[u32]) -> u32 {
            let context = self.pointer(0);
            let proto = self.add("", KIND_FUNC_PROTO, args.len() + 1, 0);
            for arg in std::iter::once(&context).chain(args) {
                self.words.extend([0, *arg]);
            }
            let pointer = self.pointer(proto);
            self.add(&format!("btf_trace_{name}"), KIND_TYPEDEF, 0, pointer)
        }

        pub fn finish(self) -> Vec<u8> {
            let mut data = Vec::new();
            data.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
            data.extend_from_slice(&[1, 0]);
            let type_len = (self.words.len() * 4) as u32;
            for word in [24, 0, type_len, type_len, self.strings.len() as u32] {
                data.extend_from_slice(&word.to_ne_bytes());
            }
            for word in self.words {
                data.extend_from_slice(&word.to_ne_bytes());
            }
            data.extend_from_slice(&self.strings);
            data
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::Builder;
    use super::*;

    fn blob() -> Vec<u8> {
        let mut btf = Builder::new();
        btf.int("int");
        btf.structure("pair");
        let skb = btf.structure("sk_buff");
        let skb_pointer = btf.pointer(skb);
        let void_pointer = btf.pointer(0);
        let reason = btf.enumeration(
            "skb_drop_reason",
            &[("SKB_DROP_REASON_NO_SOCKET", 3), ("SKB_CONSUMED", 1)],
        );
        btf.tracepoint("kfree_skb", &[skb_pointer, void_pointer, reason]);
        btf.finish()
    }

    #[test]
    fn enums_and_tracepoints_are_found_past_other_types() {
        let btf = Btf::parse(blob()).unwrap();
        assert_eq!(
            btf.enum_variants("skb_drop_reason").unwrap(),
            [
                ("SKB_DROP_REASON_NO_SOCKET".to_string(), 3),
                ("SKB_CONSUMED".to_string(), 1)
            ]
        );
        assert!(btf.has_variant("skb_drop_reason", "SKB_CONSUMED"));
        assert!(!btf.has_variant("skb_drop_reason", "SKB_NOT_DROPPED_YET"));
        assert_eq!(btf.enum_variants("other"), None);
        assert_eq!(
            btf.tracepoint_args("kfree_skb").unwrap(),
            ["struct sk_buff *", "void *", "enum skb_drop_reason"]
        );
        assert_eq!(btf.tracepoint_args("consume_skb"), None);
    }

    #[test]
    fn a_pointer_cycle_is_named_not_followed_forever() {
        let mut btf = Builder::new();
        // Type 1 points to type 2, which points back to 1.
        btf.pointer(2);
        btf.pointer(1);
        let btf = Btf::parse(btf.finish()).unwrap();
        assert!(btf.type_name(1).starts_with("? *"));
    }

    #[test]
    fn a_truncated_blob_is_an_error_not_a_panic() {
        let data = blob();
        for cut in [0, 3, 20, data.len() - 5] {
            assert!(Btf::parse(data[..cut].to_vec()).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn the_running_kernel_s_btf_reads() {
        let btf = Btf::read(Path::new("/sys/kernel/btf/vmlinux")).expect("CI kernels have BTF");
        let args = btf.tracepoint_args("kfree_skb").expect("a BTF tracepoint");
        assert_eq!(
            args[..3],
            ["struct sk_buff *", "void *", "enum skb_drop_reason"]
        );
        assert!(btf.has_variant("bpf_func_id", "BPF_FUNC_ktime_get_coarse_ns"));
        assert!(btf.has_variant("bpf_attach_type", "BPF_TCX_INGRESS"));
    }
}
