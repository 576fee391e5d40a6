//! The recorder's own kernel programs (`ebpf/flowrec.bpf.c`, built by `build.rs`): loading
//! them, attaching them, and draining what they recorded.
//!
//! - tc flow aggregation: `tc_ingress`/`tc_egress` add every packet to its flow, in the flow's
//!   per-CPU slot when it holds one ([`slots`]), else in one of two kernel per-CPU hash maps;
//!   [`Capture::drain`] moves the programs to the next epoch (the other map and slots), empties
//!   the map they left and reads its slots (so no packet is counted twice or lost between
//!   reading and deleting an entry) and merges each flow's per-CPU copies.
//! - drops: `on_kfree_skb` adds each packet the kernel drops, with its reason, to the same flow
//!   maps; [`drop_reasons`] names the reasons from the running kernel's BTF.
//! - TCP: `tcp_lifecycle` (sock_ops on a cgroup v2) keeps each connection's RTT, retransmit and
//!   byte counters; the drain returns them for [`rows`] to join to the connection's flows.

mod batch;
pub mod btf;
pub mod clsact;
pub mod drop_reasons;
pub mod kernel;
pub mod layout;
pub mod rows;
mod slots;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, IterableMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::tc::{NlOptions, TcAttachOptions};
use aya::programs::{
    BtfTracePoint, CgroupAttachMode, LinkOrder, SchedClassifier, SockOps, TcAttachType,
};
use aya::{Btf, Ebpf, EbpfLoader};

use clsact::{QdiscError, Qdiscs};
use drop_reasons::DropReasons;
use kernel::{Clock, Plan, TcMode};
use layout::{
    FlowKey, FlowMap, FlowSlot, FlowStats, TcpConn, DIRECTION_UNKNOWN, LOSS_CONN_MAP_FULL,
    LOSS_FLOW_MAP_FULL,
};

/// The compiled programs, embedded (CO-RE: one object for every kernel).
static PROGRAMS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowrec.bpf.o"));

/// The map the loader makes of the programs' `.data.epoch` section: their `flow_epoch`.
const EPOCH_MAP: &str = ".data.epoch";

/// How long programs that read the epoch just before a flip may still write to the old map.
/// A tc program runs for well under a microsecond, with preemption off; this is orders of
/// magnitude more. The drop tracer may be preempted: one held off longer than this writes
/// after the drain (ARCHITECTURE.md, "Kernel programs").
const FLIP_GRACE: Duration = Duration::from_millis(5);

/// The flow maps' capacity when `--flow-map-entries` is not given, on a node with few CPUs.
pub const DEFAULT_FLOW_CAPACITY: u32 = 65_536;
/// Kernel memory the two flow maps may take at the default capacity. They are per-CPU (every
/// entry has a copy of its counters for every CPU, all allocated at load) and the kernel
/// charges them to the recorder's memory cgroup: at 65,536 entries that is ~8 MiB per CPU, more
/// than the recorder's own memory from 13 CPUs on. So on a node with 15 CPUs or more the
/// default capacity is what fits this budget, and the eBPF DaemonSet's memory limit holds it
/// (`deploy/overlays/ebpf/recorder.yaml`).
pub const FLOW_MAPS_BUDGET: u64 = 128 << 20;
/// The default capacity never goes below this: from 255 CPUs on, the maps exceed the budget
/// (the start line says by how much).
const MIN_DEFAULT_FLOW_CAPACITY: u32 = 4096;
/// What the kernel allocates per hash map entry besides the per-CPU copies: the element
/// header, the key and the pointer to the copies (48 + 40 + 8 bytes; Linux 6.18's
/// `htab_map_mem_usage`, which `bpftool map show` prints as memlock).
const HASH_ELEMENT_BYTES: u64 = 96;
/// A hash bucket; a map has the next power of two above its capacity of them.
const HASH_BUCKET_BYTES: u64 = 16;

/// Kernel memory of the two flow maps of `entries` each on `cpus` possible CPUs.
pub fn flow_maps_bytes(entries: u32, cpus: usize) -> u64 {
    let per_cpu_copy = batch::per_cpu_stride::<FlowStats>() as u64;
    let buckets = u64::from(entries).next_power_of_two();
    2 * (buckets * HASH_BUCKET_BYTES
        + u64::from(entries) * (HASH_ELEMENT_BYTES + per_cpu_copy * cpus.max(1) as u64))
}

/// The flow maps' capacity when none is given: [`DEFAULT_FLOW_CAPACITY`], or the most that
/// keeps the two maps within [`FLOW_MAPS_BUDGET`] on `cpus` CPUs. A smaller map is drained
/// sooner (at 3/4 full, checked every 100 ms): a burst of new flows faster than that finds it
/// full sooner, and what does not fit is counted as lost (`flow_map_full`), never silently.
pub fn default_flow_capacity(cpus: usize) -> u32 {
    if flow_maps_bytes(MIN_DEFAULT_FLOW_CAPACITY, cpus) > FLOW_MAPS_BUDGET {
        return MIN_DEFAULT_FLOW_CAPACITY;
    }
    // The bytes grow with the entries: the most that fits, by bisection.
    let (mut fits, mut over) = (MIN_DEFAULT_FLOW_CAPACITY, DEFAULT_FLOW_CAPACITY + 1);
    while over - fits > 1 {
        let middle = fits + (over - fits) / 2;
        if flow_maps_bytes(middle, cpus) <= FLOW_MAPS_BUDGET {
            fits = middle;
        } else {
            over = middle;
        }
    }
    fits
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "cannot load the eBPF programs (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are needed): {0}"
    )]
    Load(#[from] aya::EbpfError),
    #[error("cannot read the BTF {path} for the programs' CO-RE relocations: {source}")]
    Btf {
        path: String,
        #[source]
        source: aya::BtfError,
    },
    #[error(
        "cannot load eBPF program {program} (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are \
         needed): {source}"
    )]
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
    #[error(transparent)]
    Qdisc(#[from] QdiscError),
    #[error("cannot attach the drop tracer (tp_btf/kfree_skb): {0}")]
    AttachDrops(#[source] aya::programs::ProgramError),
    #[error("--cgroup {path}: cannot open it: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--cgroup {path}: cannot attach the TCP tracer (sock_ops; is it a cgroup v2?): {source}"
    )]
    AttachTcp {
        path: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the possible CPUs (/sys/devices/system/cpu/possible): {0}")]
    Cpus(#[source] std::io::Error),
    #[error("eBPF map {map}: reading it in batches failed: {source}")]
    Batch {
        map: &'static str,
        #[source]
        source: std::io::Error,
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

/// The tc programs' links on one interface.
#[derive(Debug)]
pub struct TcLinks {
    interface: String,
    links: Vec<(&'static str, aya::programs::tc::SchedClassifierLinkId)>,
}

/// How the tc programs are attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcAttach {
    /// TCX links where the kernel has them (6.6 and later), else the clsact qdisc.
    Auto,
    Tcx,
    /// tc filters on the clsact qdisc (added if missing, removed at exit if added).
    Clsact,
}

/// The programs, loaded, with their maps.
pub struct Capture {
    ebpf: Ebpf,
    /// Declared after `ebpf`, so dropped after it: the filters go before the qdiscs they hang
    /// off, which are removed only if this capture added them.
    qdiscs: Qdiscs,
    flows: [PerCpuHashMap<MapData, FlowKey, FlowStats>; 2],
    /// Each CPU's flow slots in front of `flows`, generation by generation.
    slots: [PerCpuArray<MapData, FlowSlot>; 2],
    /// The programs' global `flow_epoch` (its section, `.data.epoch`, is a one-entry array
    /// map): the epoch, whose parity names the generation of `flows` and `slots` written to.
    epoch_map: Array<MapData, u32>,
    conns: aya::maps::HashMap<MapData, FlowKey, TcpConn>,
    losses: PerCpuArray<MapData, u64>,
    /// Flows created in each of `flows` since its last drain, per CPU.
    flow_counts: PerCpuArray<MapData, u64>,
    flow_capacity: u32,
    /// The epoch the programs are in: one more at each drain.
    epoch: u32,
    /// The kernel's number for a drop without a reason (see `merge`).
    unspecified_drop: Option<u32>,
    /// The kernel's own BTF as parsed for the relocations, kept for the drop tracer's attach.
    own_btf: Option<Btf>,
}

/// What one drain took from the kernel.
#[derive(Debug, Default)]
pub struct Drained {
    pub flows: Vec<(FlowKey, FlowStats)>,
    /// TCP connections open or closed since the previous drain, keyed local -> remote.
    pub conns: FlowMap<TcpConn>,
}

/// Everything the kernel side could not record, since the capture started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Losses {
    /// Packets (or drops) that found the flow map full: in no flow.
    pub flow_map_full: u64,
    /// TCP connections that found the connection map full: their flows lack TCP data.
    pub conn_map_full: u64,
}

const TC_PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    ("tc_ingress", TcAttachType::Ingress, "ingress"),
    ("tc_egress", TcAttachType::Egress, "egress"),
];
const DROP_PROGRAM: &str = "on_kfree_skb";
const TCP_PROGRAM: &str = "tcp_lifecycle";

impl Capture {
    /// Loads the tc programs into the kernel (not attached yet), with flow maps of
    /// `flow_capacity` entries each, relocated and configured as `plan` says (its BTF, its
    /// clock). The optional programs load when they are attached.
    pub fn load(flow_capacity: u32, plan: &Plan) -> Result<Self, CaptureError> {
        let btf = match &plan.btf {
            Some(path) => Some(Btf::parse_file(path, aya::Endianness::default()).map_err(
                |source| CaptureError::Btf {
                    path: path.display().to_string(),
                    source,
                },
            )?),
            None => None,
        };
        let coarse_clock = u8::from(plan.clock == Clock::Coarse);
        let mut ebpf = EbpfLoader::new()
            .btf(btf.as_ref())
            .override_global("coarse_clock", &coarse_clock, true)
            .map_max_entries("flows_0", flow_capacity)
            .map_max_entries("flows_1", flow_capacity)
            .load(PROGRAMS_OBJECT)?;
        for (name, _, _) in TC_PROGRAMS {
            let tc: &mut SchedClassifier = program(&mut ebpf, name)?;
            tc.load().map_err(program_error(name))?;
        }

        let flows = [
            PerCpuHashMap::try_from(take_map(&mut ebpf, "flows_0")?)
                .map_err(map_error("flows_0"))?,
            PerCpuHashMap::try_from(take_map(&mut ebpf, "flows_1")?)
                .map_err(map_error("flows_1"))?,
        ];
        let slots = [
            PerCpuArray::try_from(take_map(&mut ebpf, "slots_0")?).map_err(map_error("slots_0"))?,
            PerCpuArray::try_from(take_map(&mut ebpf, "slots_1")?).map_err(map_error("slots_1"))?,
        ];
        let epoch_map =
            Array::try_from(take_map(&mut ebpf, EPOCH_MAP)?).map_err(map_error(EPOCH_MAP))?;
        let conns = aya::maps::HashMap::try_from(take_map(&mut ebpf, "tcp_conns")?)
            .map_err(map_error("tcp_conns"))?;
        let losses =
            PerCpuArray::try_from(take_map(&mut ebpf, "losses")?).map_err(map_error("losses"))?;
        let flow_counts = PerCpuArray::try_from(take_map(&mut ebpf, "flow_counts")?)
            .map_err(map_error("flow_counts"))?;
        let own_btf =
            btf.filter(|_| plan.btf.as_deref() == Some(std::path::Path::new(kernel::KERNEL_BTF)));
        Ok(Capture {
            own_btf,
            qdiscs: Qdiscs::default(),
            flow_counts,
            flow_capacity,
            ebpf,
            flows,
            slots,
            epoch_map,
            conns,
            losses,
            epoch: 0,
            unspecified_drop: None,
        })
    }

    /// Attaches the tc programs to `interface`, until [`Capture::detach`] or the capture is
    /// dropped.
    pub fn attach(&mut self, interface: &str, mode: TcMode) -> Result<TcLinks, CaptureError> {
        if mode == TcMode::Clsact {
            self.qdiscs.ensure(interface)?;
        }
        let mut links = TcLinks {
            interface: interface.to_string(),
            links: Vec::new(),
        };
        for (name, kind, direction) in TC_PROGRAMS {
            let tc: &mut SchedClassifier = program(&mut self.ebpf, name)?;
            let options = match mode {
                TcMode::Clsact => TcAttachOptions::Netlink(NlOptions::default()),
                TcMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
            };
            match tc.attach_with_options(interface, kind, options) {
                Ok(link) => links.links.push((name, link)),
                Err(source) => {
                    self.detach(links);
                    return Err(CaptureError::Attach {
                        interface: interface.to_string(),
                        direction,
                        source,
                    });
                }
            }
        }
        Ok(links)
    }

    /// Detaches the tc programs from an interface, usually one that is gone (a deleted pod's
    /// veth): its links went with it, so failures are expected and ignored; what matters is
    /// that the capture stops holding them. A qdisc the capture added is removed if the
    /// interface is still there.
    pub fn detach(&mut self, links: TcLinks) {
        for (name, link) in links.links {
            if let Ok(tc) = program::<SchedClassifier>(&mut self.ebpf, name) {
                let _ = tc.detach(link);
            }
        }
        self.qdiscs.release(&links.interface);
    }

    /// Interfaces on which this capture added a clsact qdisc (removed when it is dropped).
    pub fn qdiscs_added(&self) -> &[String] {
        self.qdiscs.added()
    }

    /// Starts counting the kernel's drops (every network namespace) into the flows. The
    /// tracepoint is found in the kernel's own BTF (parsed once, at load, when the plan's BTF
    /// is that one).
    pub fn watch_drops(&mut self, reasons: &DropReasons) -> Result<(), CaptureError> {
        let btf = match self.own_btf.take() {
            Some(btf) => btf,
            None => Btf::from_sys_fs().map_err(|source| CaptureError::Btf {
                path: kernel::KERNEL_BTF.to_string(),
                source,
            })?,
        };
        let drops: &mut BtfTracePoint = program(&mut self.ebpf, DROP_PROGRAM)?;
        drops
            .load("kfree_skb", &btf)
            .map_err(program_error(DROP_PROGRAM))?;
        drops.attach().map_err(CaptureError::AttachDrops)?;
        self.unspecified_drop = reasons.unspecified();
        Ok(())
    }

    /// Starts following the TCP connections of `cgroup`'s processes (a cgroup v2 directory;
    /// its descendants included).
    pub fn watch_tcp(&mut self, cgroup: &Path) -> Result<(), CaptureError> {
        let path = cgroup.display().to_string();
        let directory = std::fs::File::open(cgroup).map_err(|source| CaptureError::Cgroup {
            path: path.clone(),
            source,
        })?;
        let tcp: &mut SockOps = program(&mut self.ebpf, TCP_PROGRAM)?;
        tcp.load().map_err(program_error(TCP_PROGRAM))?;
        // Attached as a BPF link (kernel >= 5.7), which always coexists with other programs on
        // the cgroup (Cilium's, another recorder's); the link takes no multi flag.
        tcp.attach(&directory, CgroupAttachMode::Single)
            .map_err(|source| CaptureError::AttachTcp { path, source })?;
        Ok(())
    }

    /// Every flow seen since the previous drain, with its counters, and the TCP connections
    /// that were open meanwhile; the kernel's flow map is left empty and closed connections
    /// are forgotten.
    pub fn drain(&mut self) -> Result<Drained, CaptureError> {
        let ended = self.epoch;
        self.epoch = ended.wrapping_add(1);
        self.epoch_map
            .set(0, self.epoch, 0)
            .map_err(map_error(EPOCH_MAP))?;
        std::thread::sleep(FLIP_GRACE);
        let previous = generation(ended);
        let created = self.fill_per_cpu(previous)?;
        let cpus = created.len();
        let mut slotted = slots::claimed(&self.slots[previous], ended)?;
        // Sized once: grown by doubling, a full map's ~8 MiB of rows were copied and faulted
        // in twice (measured: ~7% of the eBPF source's CPU). The hash map's flows are those its
        // programs created (at most its capacity), the slots' are counted.
        let in_map = created
            .iter()
            .sum::<u64>()
            .min(u64::from(self.flow_capacity));
        let mut flows = Vec::with_capacity(in_map as usize + slotted.len());
        let map = &mut self.flows[previous];
        let unspecified = self.unspecified_drop;
        let mut joined = Vec::new();
        // A flow's copies: the hash map's per CPU, and those of the CPUs' slots it held.
        let mut keep = |key: FlowKey, copies: &[FlowStats]| {
            let copies = match slotted.remove(&key) {
                Some(in_slots) => {
                    joined.clear();
                    joined.extend_from_slice(copies);
                    joined.extend(in_slots);
                    &joined[..]
                }
                None => copies,
            };
            if let Some(stats) = merge(copies, unspecified) {
                flows.push((key, stats));
            }
        };
        let batched = batch::read_all(IterableMap::map(map), batch::Reading::Take, &mut keep)
            .map_err(batch_error("flows"))?;
        if !batched {
            // A kernel before 5.6: three calls per flow.
            let keys: Vec<FlowKey> = map
                .keys()
                .collect::<Result<_, _>>()
                .map_err(map_error("flows"))?;
            for key in keys {
                let copies = map.get(&key, 0).map_err(map_error("flows"))?;
                map.remove(&key).map_err(map_error("flows"))?;
                keep(key, &copies);
            }
        }
        // Flows counted only in slots.
        for (key, copies) in slotted {
            if let Some(stats) = merge(&copies, unspecified) {
                flows.push((key, stats));
            }
        }
        let zeros = PerCpuValues::try_from(vec![0u64; cpus]).expect("one value per CPU");
        self.flow_counts
            .set(previous as u32, zeros, 0)
            .map_err(map_error("flow_counts"))?;
        // Read after the flows: a connection that closed with the flows' last packets is
        // seen closed, with its final counters.
        let conns: FlowMap<TcpConn> = self
            .conns
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_error("tcp_conns"))?;
        for (key, conn) in &conns {
            // Nothing updates a connection after its close, so deleting it loses nothing.
            if conn.closed_ns != 0 {
                self.conns.remove(key).map_err(map_error("tcp_conns"))?;
            }
        }
        Ok(Drained { flows, conns })
    }

    /// Flows each kernel flow map holds.
    pub fn flow_capacity(&self) -> u32 {
        self.flow_capacity
    }

    /// Flows created in the active map since its last drain (approximate: a drop counted
    /// from a preemptible context may race with a packet on the same CPU).
    pub fn fill(&self) -> Result<u64, CaptureError> {
        Ok(self.fill_per_cpu(generation(self.epoch))?.iter().sum())
    }

    fn fill_per_cpu(&self, map: usize) -> Result<PerCpuValues<u64>, CaptureError> {
        self.flow_counts
            .get(&(map as u32), 0)
            .map_err(map_error("flow_counts"))
    }

    /// What the kernel side could not record since the capture started.
    pub fn losses(&self) -> Result<Losses, CaptureError> {
        let total = |index: u32| -> Result<u64, CaptureError> {
            let per_cpu = self.losses.get(&index, 0).map_err(map_error("losses"))?;
            Ok(per_cpu.iter().sum())
        };
        Ok(Losses {
            flow_map_full: total(LOSS_FLOW_MAP_FULL)?,
            conn_map_full: total(LOSS_CONN_MAP_FULL)?,
        })
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on most nodes,
/// `/sys/fs/cgroup/unified` on hybrid ones), from /proc/self/mountinfo.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (mount, filesystem) = line.split_once(" - ")?;
        let point = mount.split(' ').nth(4)?;
        (filesystem.split(' ').next()? == "cgroup2").then(|| PathBuf::from(point))
    })
}

/// Whether `path` is the root or a folder of a cgroup v2 hierarchy (statfs: the cgroup2
/// filesystem's magic number).
pub fn is_cgroup2(path: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and a zeroed statfs the call fills in.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } == 0;
    found && stat.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// The cgroup v2 hierarchy at or under a `--cgroup` given: the path itself, or its `unified`
/// folder when the path is a hybrid node's /sys/fs/cgroup (v1 controllers there, v2 under
/// `unified`), e.g. a DaemonSet's hostPath mount of the node's /sys/fs/cgroup. None when
/// neither is cgroup v2.
pub fn cgroup2_at(path: &Path) -> Option<PathBuf> {
    if is_cgroup2(path) {
        return Some(path.to_path_buf());
    }
    let unified = path.join("unified");
    is_cgroup2(&unified).then_some(unified)
}

/// Which of the two flow maps (and their slots) the programs write to in `epoch`.
fn generation(epoch: u32) -> usize {
    (epoch & 1) as usize
}

/// One flow's counters from the CPUs' copies (a CPU that saw none of its packets has zeros).
/// The interface and direction are the earliest copy's that saw the flow on an interface;
/// the drop reason is the latest drop's, a specific reason winning over `unspecified`.
fn merge(copies: &[FlowStats], unspecified: Option<u32>) -> Option<FlowStats> {
    let specific = |reason: u32| reason != 0 && Some(reason) != unspecified;
    let mut seen = copies.iter().filter(|copy| copy.first_seen_ns != 0);
    let mut merged = *seen.next()?;
    for copy in seen {
        let on_interface = copy.direction != DIRECTION_UNKNOWN;
        if on_interface
            && (merged.direction == DIRECTION_UNKNOWN || copy.first_seen_ns < merged.first_seen_ns)
        {
            merged.if_index = copy.if_index;
            merged.direction = copy.direction;
        }
        if copy.drop_packets > 0 {
            let (mine, theirs) = (specific(merged.drop_reason), specific(copy.drop_reason));
            let later = copy.last_seen_ns >= merged.last_seen_ns;
            if merged.drop_packets == 0 || (theirs && !mine) || (theirs == mine && later) {
                merged.drop_reason = copy.drop_reason;
            }
        }
        merged.first_seen_ns = merged.first_seen_ns.min(copy.first_seen_ns);
        merged.last_seen_ns = merged.last_seen_ns.max(copy.last_seen_ns);
        merged.bytes += copy.bytes;
        merged.packets += copy.packets;
        merged.tcp_flags |= copy.tcp_flags;
        merged.drop_packets += copy.drop_packets;
        merged.drop_bytes += copy.drop_bytes;
    }
    Some(merged)
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, CaptureError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(CaptureError::Missing(name))?
        .try_into()
        .map_err(program_error(name))
}

fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> CaptureError {
    move |source| CaptureError::Program { program, source }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::Missing(name))
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> CaptureError {
    move |source| CaptureError::Map { map, source }
}

fn batch_error(map: &'static str) -> impl Fn(std::io::Error) -> CaptureError {
    move |source| CaptureError::Batch { map, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_flow_maps_fit_the_budget_on_any_node() {
        // bpftool reported 15,729,536 bytes for one 65,536-entry map on this project's 2-CPU
        // machines: the entries, and the map's own header (under a page).
        let measured = 2 * 15_729_536;
        let computed = flow_maps_bytes(65_536, 2);
        assert!(
            computed <= measured && measured - computed < 2 * 4096,
            "{computed}"
        );
        assert_eq!(default_flow_capacity(2), DEFAULT_FLOW_CAPACITY);
        assert_eq!(default_flow_capacity(14), DEFAULT_FLOW_CAPACITY);
        assert!(default_flow_capacity(15) < DEFAULT_FLOW_CAPACITY);
        let on_32 = default_flow_capacity(32);
        assert!(flow_maps_bytes(on_32, 32) <= FLOW_MAPS_BUDGET);
        assert!(
            flow_maps_bytes(on_32 + 1, 32) > FLOW_MAPS_BUDGET,
            "{on_32} is the most"
        );
        let mut previous = DEFAULT_FLOW_CAPACITY;
        for cpus in 1..=4096 {
            let capacity = default_flow_capacity(cpus);
            assert!(capacity <= previous, "{cpus} CPUs: {capacity} > {previous}");
            assert!(
                flow_maps_bytes(capacity, cpus) <= FLOW_MAPS_BUDGET
                    || capacity == MIN_DEFAULT_FLOW_CAPACITY,
                "{cpus} CPUs: {capacity} entries take {} bytes",
                flow_maps_bytes(capacity, cpus)
            );
            previous = capacity;
        }
        assert_eq!(default_flow_capacity(4096), MIN_DEFAULT_FLOW_CAPACITY);
    }

    #[test]
    fn a_cgroup_flag_finds_v2_at_the_path_or_under_a_hybrid_unified() {
        let root = cgroup2_root().expect("this machine mounts cgroup v2");
        assert_eq!(cgroup2_at(&root), Some(root.clone()));
        if root.ends_with("unified") {
            // A hybrid node's /sys/fs/cgroup, as a DaemonSet mounts it.
            assert_eq!(cgroup2_at(root.parent().unwrap()), Some(root.clone()));
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup2_at(dir.path()), None);
    }

    fn copy(
        first: u64,
        last: u64,
        bytes: u64,
        packets: u64,
        flags: u32,
        direction: u8,
    ) -> FlowStats {
        FlowStats {
            first_seen_ns: first,
            last_seen_ns: last,
            bytes,
            packets,
            if_index: 3,
            tcp_flags: flags,
            direction,
            ..FlowStats::default()
        }
    }

    #[test]
    fn per_cpu_copies_merge_into_one_flow() {
        let copies = [
            copy(50, 90, 1000, 10, 0x10, 1),
            FlowStats::default(),
            copy(20, 60, 500, 5, 0x02, 0),
        ];
        let merged = merge(&copies, Some(2)).unwrap();
        assert_eq!(merged, copy(20, 90, 1500, 15, 0x12, 0));
        assert_eq!(
            merge(&[FlowStats::default(), FlowStats::default()], Some(2)),
            None
        );
    }

    #[test]
    fn drops_merge_with_the_latest_reason_and_the_interface_s_direction() {
        let dropped = |first, last, reason, packets| FlowStats {
            if_index: 9,
            direction: DIRECTION_UNKNOWN,
            drop_reason: reason,
            drop_packets: packets,
            drop_bytes: packets * 60,
            ..copy(first, last, 0, 0, 0, DIRECTION_UNKNOWN)
        };
        // Dropped first on one CPU (no interface), then seen on an interface by another.
        let copies = [
            dropped(10, 70, 3, 2),
            copy(30, 40, 120, 2, 0x02, 0),
            dropped(15, 50, 5, 1),
        ];
        let merged = merge(&copies, Some(2)).unwrap();
        assert_eq!(merged.first_seen_ns, 10);
        assert_eq!(merged.last_seen_ns, 70);
        assert_eq!((merged.if_index, merged.direction), (3, 0));
        assert_eq!((merged.packets, merged.bytes), (2, 120));
        assert_eq!((merged.drop_packets, merged.drop_bytes), (3, 180));
        assert_eq!(
            merged.drop_reason, 3,
            "the reason of the drop seen last (t=70)"
        );
        // A later drop without a reason does not hide a specific one, in either order.
        let unspecified_later = [dropped(10, 20, 3, 1), dropped(30, 90, 2, 1)];
        assert_eq!(merge(&unspecified_later, Some(2)).unwrap().drop_reason, 3);
        let unspecified_first = [dropped(10, 90, 2, 1), dropped(30, 40, 5, 1)];
        assert_eq!(merge(&unspecified_first, Some(2)).unwrap().drop_reason, 5);
    }
}
