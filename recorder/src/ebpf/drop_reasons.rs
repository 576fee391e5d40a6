//! Names of the kernel's skb drop reasons, read from the running kernel's BTF.
//!
//! The numbers of `enum skb_drop_reason` change between kernel versions (reasons are added in
//! the middle), so a hard-coded table would name drops wrongly on the next kernel. The BTF at
//! `/sys/kernel/btf/vmlinux` describes the running kernel's enum; this module names the
//! reasons from it.

use std::collections::HashMap;

use super::btf::Btf;

const ENUM_NAME: &str = "skb_drop_reason";
/// What the kernel puts before every reason name; Hubble and `perf` show names without it.
const PREFIX: &str = "SKB_DROP_REASON_";

/// Drop reason number -> name (`NO_SOCKET`, `NETFILTER_DROP`, ...).
#[derive(Debug, Clone, Default)]
pub struct DropReasons {
    names: HashMap<u32, String>,
    unspecified: Option<u32>,
}

impl DropReasons {
    /// The reasons of the kernel `btf` describes; None if it has none (before 5.17).
    pub fn from_btf(btf: &Btf) -> Option<DropReasons> {
        let names = btf
            .enum_variants(ENUM_NAME)?
            .into_iter()
            .map(|(name, value)| {
                let name = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
                (value, name)
            })
            .collect::<HashMap<u32, String>>();
        let unspecified = names
            .iter()
            .find_map(|(&value, name)| (name == "NOT_SPECIFIED").then_some(value));
        Some(DropReasons { names, unspecified })
    }

    /// How many reasons the kernel names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The running kernel's reasons (CI kernels have BTF and drop reasons).
    pub(crate) fn running_kernel() -> DropReasons {
        let btf = Btf::read(std::path::Path::new(super::super::kernel::KERNEL_BTF))
            .expect("CI kernels have BTF");
        DropReasons::from_btf(&btf).expect("CI kernels have drop reasons")
    }

    #[test]
    fn reasons_are_named_without_their_prefix_and_unknown_ones_by_subsystem() {
        let mut btf = super::super::btf::build::Builder::new();
        btf.enumeration(
            ENUM_NAME,
            &[
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
            ],
        );
        let reasons = DropReasons::from_btf(&Btf::parse(btf.finish()).unwrap()).unwrap();
        assert_eq!(reasons.name(3), "NO_SOCKET");
        assert_eq!(reasons.unspecified(), Some(2));
        assert_eq!(reasons.name(0x0003_0007), "SUBSYS_3_7");
        let mut older = super::super::btf::build::Builder::new();
        older.int("int");
        assert!(DropReasons::from_btf(&Btf::parse(older.finish()).unwrap()).is_none());
    }

    #[test]
    fn the_running_kernel_names_its_reasons() {
        let reasons = running_kernel();
        assert_eq!(reasons.name(3), "NO_SOCKET");
        assert!(
            reasons.names.values().any(|name| name == "NETFILTER_DROP"),
            "NETFILTER_DROP is a reason of this kernel"
        );
        assert_eq!(reasons.unspecified(), Some(2));
    }
}
