//! The recorder's own kernel programs (`ebpf/*.bpf.c`, built by `build.rs`): loading them,
//! attaching them to interfaces, and draining what they aggregated.
//!
//! tc flow aggregation: `tc_ingress`/`tc_egress` add every packet to its flow in one of two
//! kernel per-CPU hash maps; [`TcCapture::drain`] flips the programs to the other map, empties
//! the one they left (so no packet is counted twice or lost between reading and deleting an
//! entry) and merges each flow's per-CPU copies.

pub mod layout;
pub mod rows;

use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Btf, Ebpf, EbpfLoader};

use layout::{FlowKey, FlowStats, LOSS_MAP_FULL};

/// The compiled tc program, embedded (CO-RE: one object for every kernel).
static TC_FLOW: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_flow.bpf.o"));

/// How long programs that read the selector just before a flip may still write to the old map.
/// A tc program runs for well under a microsecond; this is orders of magnitude more.
const FLIP_GRACE: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "cannot load the eBPF programs (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are needed): {0}"
    )]
    Load(#[from] aya::EbpfError),
    #[error("cannot load eBPF program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot attach to interface {interface} ({direction}): {source}")]
    Attach {
        interface: String,
        direction: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0} (build mismatch)")]
    Missing(&'static str),
}

/// The two tc programs, loaded, with their maps.
pub struct TcCapture {
    ebpf: Ebpf,
    flows: [PerCpuHashMap<MapData, FlowKey, FlowStats>; 2],
    selector: Array<MapData, u32>,
    losses: PerCpuArray<MapData, u64>,
    /// Which of `flows` the programs write to.
    active: usize,
}

const PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    ("tc_ingress", TcAttachType::Ingress, "ingress"),
    ("tc_egress", TcAttachType::Egress, "egress"),
];

impl TcCapture {
    /// Loads the programs into the kernel (not attached yet).
    pub fn load() -> Result<Self, CaptureError> {
        let btf = Btf::from_sys_fs().ok();
        let mut ebpf = EbpfLoader::new().btf(btf.as_ref()).load(TC_FLOW)?;
        for (name, _, _) in PROGRAMS {
            program(&mut ebpf, name)?
                .load()
                .map_err(|source| CaptureError::Program {
                    program: name,
                    source,
                })?;
        }
        let flows = [
            PerCpuHashMap::try_from(take_map(&mut ebpf, "flows_0")?)
                .map_err(map_error("flows_0"))?,
            PerCpuHashMap::try_from(take_map(&mut ebpf, "flows_1")?)
                .map_err(map_error("flows_1"))?,
        ];
        let selector =
            Array::try_from(take_map(&mut ebpf, "selector")?).map_err(map_error("selector"))?;
        let losses =
            PerCpuArray::try_from(take_map(&mut ebpf, "losses")?).map_err(map_error("losses"))?;
        Ok(TcCapture {
            ebpf,
            flows,
            selector,
            losses,
            active: 0,
        })
    }

    /// Attaches both programs to `interface` (TCX where the kernel has it). They stay attached
    /// until the capture is dropped.
    pub fn attach(&mut self, interface: &str) -> Result<(), CaptureError> {
        for (name, kind, direction) in PROGRAMS {
            program(&mut self.ebpf, name)?
                .attach(interface, kind)
                .map_err(|source| CaptureError::Attach {
                    interface: interface.to_string(),
                    direction,
                    source,
                })?;
        }
        Ok(())
    }

    /// Every flow seen since the previous drain, with its counters; the kernel map is left
    /// empty.
    pub fn drain(&mut self) -> Result<Vec<(FlowKey, FlowStats)>, CaptureError> {
        let previous = self.active;
        self.active = 1 - previous;
        self.selector
            .set(0, self.active as u32, 0)
            .map_err(map_error("selector"))?;
        std::thread::sleep(FLIP_GRACE);
        let map = &mut self.flows[previous];
        let keys: Vec<FlowKey> = map
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_error("flows"))?;
        let mut flows = Vec::with_capacity(keys.len());
        for key in keys {
            let copies = map.get(&key, 0).map_err(map_error("flows"))?;
            map.remove(&key).map_err(map_error("flows"))?;
            if let Some(stats) = merge(&copies) {
                flows.push((key, stats));
            }
        }
        Ok(flows)
    }

    /// Packets that found the flow map full since the capture started (not in any flow).
    pub fn packets_lost_map_full(&self) -> Result<u64, CaptureError> {
        let per_cpu = self
            .losses
            .get(&LOSS_MAP_FULL, 0)
            .map_err(map_error("losses"))?;
        Ok(per_cpu.iter().sum())
    }
}

/// One flow's counters from the CPUs' copies (a CPU that saw none of its packets has zeros).
fn merge(copies: &[FlowStats]) -> Option<FlowStats> {
    let mut seen = copies.iter().filter(|copy| copy.packets > 0);
    let mut merged = *seen.next()?;
    for copy in seen {
        if copy.first_seen_ns < merged.first_seen_ns {
            merged.first_seen_ns = copy.first_seen_ns;
            merged.if_index = copy.if_index;
            merged.direction = copy.direction;
        }
        merged.last_seen_ns = merged.last_seen_ns.max(copy.last_seen_ns);
        merged.bytes += copy.bytes;
        merged.packets += copy.packets;
        merged.tcp_flags |= copy.tcp_flags;
    }
    Some(merged)
}

fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, CaptureError> {
    ebpf.program_mut(name)
        .ok_or(CaptureError::Missing(name))?
        .try_into()
        .map_err(|source| CaptureError::Program {
            program: name,
            source,
        })
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::Missing(name))
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> CaptureError {
    move |source| CaptureError::Map { map, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_copies_merge_into_one_flow() {
        let copy = |first, last, bytes, packets, flags, direction| FlowStats {
            first_seen_ns: first,
            last_seen_ns: last,
            bytes,
            packets,
            if_index: 3,
            tcp_flags: flags,
            direction,
            _pad: [0; 7],
        };
        let copies = [
            copy(50, 90, 1000, 10, 0x10, 1),
            FlowStats::default(),
            copy(20, 60, 500, 5, 0x02, 0),
        ];
        let merged = merge(&copies).unwrap();
        assert_eq!(merged, copy(20, 90, 1500, 15, 0x12, 0));
        assert_eq!(merge(&[FlowStats::default(), FlowStats::default()]), None);
    }
}
