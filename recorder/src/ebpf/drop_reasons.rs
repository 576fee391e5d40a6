//! Names of the kernel's skb drop reasons, read from the running kernel's BTF.
//!
//! The numbers of `enum skb_drop_reason` change between kernel versions (reasons are added in
//! the middle), so a hard-coded table would name drops wrongly on the next kernel. The BTF at
//! `/sys/kernel/btf/vmlinux` describes the running kernel's enum; this module reads just that
//! enum from it. (aya parses BTF too, but does not expose its types.)

use std::collections::HashMap;
use std::path::Path;

/// Where the running kernel publishes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";
const ENUM_NAME: &str = "skb_drop_reason";
/// What the kernel puts before every reason name; Hubble and `perf` show names without it.
const PREFIX: &str = "SKB_DROP_REASON_";

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
    #[error("{path} has no enum {ENUM_NAME} (kernel older than 5.17?)")]
    NoEnum { path: String },
}

/// Drop reason number -> name (`NO_SOCKET`, `NETFILTER_DROP`, ...).
#[derive(Debug, Clone, Default)]
pub struct DropReasons {
    names: HashMap<u32, String>,
    unspecified: Option<u32>,
}

impl DropReasons {
    /// The running kernel's reasons.
    pub fn from_kernel() -> Result<DropReasons, BtfError> {
        DropReasons::from_file(Path::new(KERNEL_BTF))
    }

    pub fn from_file(path: &Path) -> Result<DropReasons, BtfError> {
        let shown = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: shown.clone(),
            source,
        })?;
        let variants = find_enum(&data, ENUM_NAME).map_err(|what| BtfError::Malformed {
            path: shown.clone(),
            what,
        })?;
        let variants = variants.ok_or(BtfError::NoEnum { path: shown })?;
        let names = variants
            .into_iter()
            .map(|(name, value)| {
                let name = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
                (value, name)
            })
            .collect::<HashMap<u32, String>>();
        let unspecified = names
            .iter()
            .find_map(|(&value, name)| (name == "NOT_SPECIFIED").then_some(value));
        Ok(DropReasons { names, unspecified })
    }

    /// The number of `NOT_SPECIFIED`: what the kernel passes when a path frees a packet
    /// without a reason, often in normal operation.
    pub fn unspecified(&self) -> Option<u32> {
        self.unspecified
    }

    /// The reason's name; a number the enum does not list (a subsystem's reason, with the
    /// subsystem in the upper 16 bits) is shown as `SUBSYS_<n>_<code>`, never guessed.
    pub fn name(&self, reason: u32) -> String {
        match self.names.get(&reason) {
            Some(name) => name.clone(),
            None => format!("SUBSYS_{}_{}", reason >> 16, reason & 0xffff),
        }
    }
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_ENUM: u32 = 6;
const KIND_ENUM64: u32 = 19;

/// The variants of the enum called `wanted` in a BTF blob (native endian, as the kernel
/// publishes it), or None if there is none. Err names what is malformed.
fn find_enum(data: &[u8], wanted: &str) -> Result<Option<Vec<(String, u32)>>, &'static str> {
    let u16_at = |at: usize| -> Result<u16, &'static str> {
        data.get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or("header cut short")
    };
    let u32_at = |at: usize| -> Result<u32, &'static str> {
        data.get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("cut short")
    };
    if u16_at(0)? != BTF_MAGIC {
        return Err("bad magic");
    }
    // struct btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len,
    // str_off, str_len (u32 each); offsets count from the end of the header.
    let header_len = u32_at(4)? as usize;
    let types = header_len + u32_at(8)? as usize;
    let types_end = types + u32_at(12)? as usize;
    let strings = header_len + u32_at(16)? as usize;
    let strings_end = strings + u32_at(20)? as usize;
    if types_end > data.len() || strings_end > data.len() {
        return Err("sections beyond the end");
    }
    let string = |offset: u32| -> Result<&str, &'static str> {
        let start = strings + offset as usize;
        let bytes = data
            .get(start..strings_end)
            .ok_or("string offset out of range")?;
        let end = bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or("unterminated string")?;
        std::str::from_utf8(&bytes[..end]).map_err(|_| "string not UTF-8")
    };

    let mut at = types;
    while at < types_end {
        // struct btf_type: name_off, info (vlen bits 0-15, kind bits 24-28), size/type.
        let name = u32_at(at)?;
        let info = u32_at(at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let members = at + 12;
        let extra = match kind {
            1 | 14 | 17 => 4,                      // INT, VAR, DECL_TAG
            3 => 12,                               // ARRAY
            4 | 5 | 15 | KIND_ENUM64 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            KIND_ENUM | 13 => 8 * vlen,            // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
            _ => return Err("unknown type kind"),
        };
        if (kind == KIND_ENUM || kind == KIND_ENUM64) && name != 0 && string(name)? == wanted {
            let stride = if kind == KIND_ENUM { 8 } else { 12 };
            let mut variants = Vec::with_capacity(vlen);
            for index in 0..vlen {
                let variant = members + index * stride;
                // ENUM64 keeps the low 32 bits first; drop reasons fit in them.
                variants.push((string(u32_at(variant)?)?.to_string(), u32_at(variant + 4)?));
            }
            return Ok(Some(variants));
        }
        at = members + extra;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with an INT, a STRUCT of one member and the enum, built by hand.
    fn blob(enum_name: &str) -> Vec<u8> {
        let mut strings = b"\0int\0pair\0a\0".to_vec();
        let mut name = |s: &str| {
            let offset = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            offset
        };
        let enum_name = name(enum_name);
        let first = name("SKB_DROP_REASON_NO_SOCKET");
        let second = name("SKB_CONSUMED");
        let mut types: Vec<u32> = vec![
            1,
            1 << 24,
            4,
            32, // INT "int", 4 bytes, 32 bits
            5,
            (4 << 24) | 1,
            4,
            10,
            1,
            0, // STRUCT "pair" { int a; }
            enum_name,
            (6 << 24) | 2,
            4,
            first,
            3,
            second,
            1,
        ];
        let mut data = Vec::new();
        data.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        data.extend_from_slice(&[1, 0]);
        let type_len = (types.len() * 4) as u32;
        for word in [24, 0, type_len, type_len, strings.len() as u32] {
            data.extend_from_slice(&u32::to_ne_bytes(word));
        }
        for word in types.drain(..) {
            data.extend_from_slice(&word.to_ne_bytes());
        }
        data.extend_from_slice(&strings);
        data
    }

    #[test]
    fn the_enum_is_found_past_other_types() {
        let variants = find_enum(&blob("skb_drop_reason"), "skb_drop_reason").unwrap();
        assert_eq!(
            variants.unwrap(),
            [
                ("SKB_DROP_REASON_NO_SOCKET".to_string(), 3),
                ("SKB_CONSUMED".to_string(), 1)
            ]
        );
        assert_eq!(find_enum(&blob("other"), "skb_drop_reason").unwrap(), None);
    }

    #[test]
    fn a_truncated_blob_is_an_error_not_a_panic() {
        let data = blob("skb_drop_reason");
        for cut in [0, 3, 20, data.len() - 5] {
            assert!(
                find_enum(&data[..cut], "skb_drop_reason").is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_running_kernel_names_its_reasons() {
        let reasons = DropReasons::from_kernel().expect("CI kernels have BTF");
        assert_eq!(reasons.name(3), "NO_SOCKET");
        let netfilter = reasons
            .names
            .iter()
            .find(|(_, name)| *name == "NETFILTER_DROP")
            .map(|(value, _)| *value);
        assert!(
            netfilter.is_some(),
            "NETFILTER_DROP is a reason of this kernel"
        );
        assert_eq!(reasons.name(0x0003_0007), "SUBSYS_3_7");
        assert_eq!(reasons.unspecified(), Some(2));
    }
}
