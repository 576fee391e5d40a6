//! `--source ebpf`: setting up the recorder's own capture (interfaces, cgroup, drop reasons,
//! pod inventory checked first; then the programs loaded and attached) and handing it to the
//! drainer (`drain`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::drain::Drainer;
use super::SpoolOutput;
use crate::ebpf::drop_reasons::DropReasons;
use crate::ebpf::kernel::{
    Decision, FactsError, KernelFacts, Plan, PlanError, TcMode, MEMLOCK_NOTE,
};
use crate::ebpf::rows::FlowRows;
use crate::ebpf::{cgroup2_at, cgroup2_root, Capture, CaptureError, TcAttach, TcLinks};
use crate::metrics::Metrics;
use crate::pods::kube::KubeError;
use crate::pods::{PodInventory, PodsError};

/// `--source ebpf` settings.
#[derive(Debug, Clone)]
pub struct EbpfConfig {
    /// Interface names or globs (`lxc*`), as given.
    pub interfaces: Vec<String>,
    pub active_timeout: Duration,
    /// cgroup v2 whose TCP connections are followed; None: the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    /// `kubectl get pods -A -o json` output to enrich flows with.
    pub pods: Option<PathBuf>,
    /// Enrich flows with the pods watched from the Kubernetes API instead.
    pub kube: bool,
    /// Capacity of each kernel flow map; None: the default for this node's CPUs
    /// ([`crate::ebpf::default_flow_capacity`]).
    pub flow_map_entries: Option<u32>,
    pub tc_attach: TcAttach,
    /// The kernel's BTF, where it does not publish it at /sys/kernel/btf/vmlinux.
    pub kernel_btf: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("--interfaces {patterns}: no interface matches (interfaces here: {available})")]
    NoInterface { patterns: String, available: String },
    #[error(transparent)]
    Facts(#[from] FactsError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--pods {0}")]
    Pods(#[from] PodsError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(
        "--cgroup {0}: not a cgroup v2 hierarchy, nor a hybrid one with v2 under unified/ \
         (sock_ops attaches to cgroup v2 only)"
    )]
    NotCgroup2(PathBuf),
}

/// The programs' plan for this kernel (`flowrec kernel` prints it; `run` follows it): the
/// kernel's facts (from `kernel_btf` and `release` where given), the cgroup v2 the TCP tracer
/// would attach to, and `--tc-attach`.
pub fn plan(
    kernel_btf: Option<&Path>,
    release: Option<&str>,
    cgroup: Option<&Path>,
    tc_attach: TcAttach,
) -> Result<Plan, EbpfError> {
    let facts = KernelFacts::read(kernel_btf, release)?;
    let cgroup = match cgroup {
        Some(path) => Ok(cgroup2_at(path).ok_or_else(|| EbpfError::NotCgroup2(path.into()))?),
        None => cgroup2_root().ok_or_else(|| {
            "no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo; --cgroup PATH names \
             one)"
                .to_string()
        }),
    };
    Ok(Plan::decide(&facts, tc_attach, cgroup)?)
}

/// Everything the capture needs, checked before the spool is opened: a usage error stops the
/// run before anything is attached.
pub struct Checked {
    config: EbpfConfig,
    /// The interfaces matching at the check: (index, name).
    interfaces: Vec<(u32, String)>,
    plan: Plan,
    pods: Option<PodInventory>,
}

pub async fn check(config: &EbpfConfig) -> Result<Checked, EbpfError> {
    let interfaces = matching_interfaces(&config.interfaces)?;
    let plan = plan(
        config.kernel_btf.as_deref(),
        None,
        config.cgroup.as_deref(),
        config.tc_attach,
    )?;
    let pods = match &config.pods {
        Some(path) => Some(PodInventory::load(path)?),
        None if config.kube => Some(PodInventory::watching(crate::pods::kube::watch().await?)),
        None => None,
    };
    if let Some(pods) = &pods {
        if pods.skipped() > 0 {
            crate::warn!(
                "{}: {} pods without the fields needed were skipped",
                pods.origin(),
                pods.skipped()
            );
        }
    }
    Ok(Checked {
        config: config.clone(),
        interfaces,
        plan,
        pods,
    })
}

impl Checked {
    /// Loads and attaches the programs; returns the drainer that empties them and what is
    /// recorded (for the "recording" announcement). An optional program the kernel refuses
    /// is skipped, with the kernel's words, like one the plan skipped: it never stops a start.
    pub fn start(
        self,
        node_name: String,
        output: SpoolOutput,
        metrics: Arc<Metrics>,
    ) -> Result<(Drainer, String), EbpfError> {
        let mut plan = self.plan;
        if plan.memlock_charged {
            match raise_memlock() {
                Some(limit) if limit != libc::RLIM_INFINITY => crate::warn!(
                    "kernel {}: RLIMIT_MEMLOCK is {limit} bytes; {MEMLOCK_NOTE}",
                    plan.kernel
                ),
                _ => {}
            }
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| CaptureError::Cpus(source))?;
        let capacity = self
            .config
            .flow_map_entries
            .unwrap_or_else(|| crate::ebpf::default_flow_capacity(cpus));
        let mut capture = Capture::load(capacity, &plan)?;
        let mut interfaces = Interfaces {
            patterns: self.config.interfaces.clone(),
            mode: plan.tc,
            attached: BTreeMap::new(),
            refused: BTreeSet::new(),
            metrics: Arc::clone(&metrics),
        };
        for (index, name) in &self.interfaces {
            interfaces.attach(&mut capture, *index, name)?;
        }
        let refused = |error: CaptureError| {
            format!(
                "the kernel refused it: {}",
                flow_schema::error_chain(&error)
            )
        };
        if let Decision::Attach(reasons) = &plan.drops {
            if let Err(error) = capture.watch_drops(reasons) {
                plan.drops = Decision::Skip(refused(error));
            }
        }
        if let Decision::Attach(cgroup) = &plan.tcp {
            if let Err(error) = capture.watch_tcp(cgroup) {
                plan.tcp = Decision::Skip(refused(error));
            }
        }
        let programs = plan.programs();
        for line in programs.iter().filter(|line| !line.attached) {
            crate::warn!(
                "kernel {}: {} ({}) not attached: {}",
                plan.kernel,
                line.program,
                line.hook,
                line.detail
            );
        }
        let attached: Vec<(&str, bool)> = programs
            .iter()
            .map(|line| (line.program, line.attached))
            .collect();
        metrics.set_ebpf_programs(&attached);
        let what = format!(
            "on {} and matching interfaces to come (tc via {}; drops: {}; TCP: {}), drained \
             every {:?} or when a flow map is 3/4 full (2 flow maps of {capacity} flows: {} MiB \
             of kernel memory on {cpus} possible CPUs)",
            interfaces
                .attached()
                .map(|(_, name)| name)
                .collect::<Vec<_>>()
                .join(","),
            match plan.tc {
                TcMode::Tcx => "TCX",
                TcMode::Clsact => "clsact",
            },
            if plan.drops.attached() {
                "node-wide"
            } else {
                "not recorded"
            },
            match &plan.tcp {
                Decision::Attach(cgroup) => format!("cgroup {}", cgroup.display()),
                Decision::Skip(_) => "not recorded".to_string(),
            },
            self.config.active_timeout,
            crate::ebpf::flow_maps_bytes(capacity, cpus).div_ceil(1 << 20),
        );
        let reasons = match plan.drops {
            Decision::Attach(reasons) => reasons,
            Decision::Skip(_) => DropReasons::default(),
        };
        let mut rows = FlowRows::new(node_name, reasons);
        for (index, name) in interfaces.attached() {
            rows.name_interface(index, name);
        }
        let drainer = Drainer {
            capture,
            interfaces,
            gone: Vec::new(),
            rows,
            pods: self.pods,
            output,
            active_timeout: self.config.active_timeout,
            metrics,
        };
        Ok((drainer, what))
    }
}

/// Raises RLIMIT_MEMLOCK's soft limit to its hard one (allowed without privileges); returns
/// the limit now in force, None if it cannot be read.
fn raise_memlock() -> Option<libc::rlim_t> {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return None;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
        Some(limit.rlim_cur)
    }
}

/// The interfaces the tc programs are attached to, kept in step with the network namespace's:
/// a pod started after the recorder gets a veth that matches `--interfaces` (`lxc*`), and a
/// deleted pod's veth takes its links with it. Interfaces are told apart by index, so a name
/// reused by a new interface is a new interface.
pub struct Interfaces {
    patterns: Vec<String>,
    mode: TcMode,
    attached: BTreeMap<u32, (String, TcLinks)>,
    /// Interfaces the kernel refused once (logged once, not retried while they exist).
    refused: BTreeSet<u32>,
    metrics: Arc<Metrics>,
}

impl Interfaces {
    fn attach(
        &mut self,
        capture: &mut Capture,
        index: u32,
        name: &str,
    ) -> Result<(), CaptureError> {
        let links = capture.attach(name, self.mode)?;
        self.attached.insert(index, (name.to_string(), links));
        self.publish();
        Ok(())
    }

    /// `flowrec_ebpf_interfaces`: how many are attached now.
    fn publish(&self) {
        self.metrics
            .interfaces_attached
            .store(self.attached.len() as u64, Ordering::Relaxed);
    }

    /// The interfaces attached now: (index, name).
    pub fn attached(&self) -> impl Iterator<Item = (u32, &str)> {
        self.attached
            .iter()
            .map(|(index, (name, _))| (*index, name.as_str()))
    }

    /// Attaches to the matching interfaces that appeared since the last look and lets go of
    /// those that are gone. Never fails: an interface may vanish between the listing and the
    /// attach (a pod deleted at once), and the others must go on being recorded.
    pub fn refresh(&mut self, capture: &mut Capture) -> InterfaceChanges {
        let mut changes = InterfaceChanges::default();
        let now = matching(&self.patterns);
        let present: BTreeSet<u32> = now.iter().map(|(index, _)| *index).collect();
        let gone: Vec<u32> = self
            .attached
            .keys()
            .filter(|index| !present.contains(index))
            .copied()
            .collect();
        for index in gone {
            if let Some((_, links)) = self.attached.remove(&index) {
                capture.detach(links);
                changes.gone.push(index);
            }
        }
        self.refused.retain(|index| present.contains(index));
        for (index, name) in now {
            if self.attached.contains_key(&index) || self.refused.contains(&index) {
                continue;
            }
            match self.attach(capture, index, &name) {
                Ok(()) => {
                    crate::info!("attached to interface {name} (new, matches --interfaces)");
                    changes.attached.push((index, name));
                }
                Err(error) => {
                    self.refused.insert(index);
                    crate::warn!(
                        "interface {name}: not recorded: {}",
                        flow_schema::error_chain(&error)
                    );
                }
            }
        }
        self.publish();
        changes
    }
}

/// What one [`Interfaces::refresh`] changed: (index, name) of the interfaces attached, indexes
/// of those gone.
#[derive(Debug, Default)]
pub struct InterfaceChanges {
    pub attached: Vec<(u32, String)>,
    pub gone: Vec<u32>,
}

/// The interfaces of this network namespace that match `patterns` (names or globs), at least
/// one.
fn matching_interfaces(patterns: &[String]) -> Result<Vec<(u32, String)>, EbpfError> {
    let found = matching(patterns);
    if found.is_empty() {
        return Err(EbpfError::NoInterface {
            patterns: patterns.join(","),
            available: interfaces()
                .into_iter()
                .map(|(_, name)| name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(found)
}

fn matching(patterns: &[String]) -> Vec<(u32, String)> {
    interfaces()
        .into_iter()
        .filter(|(_, name)| patterns.iter().any(|p| glob_match(p, name)))
        .collect()
}

/// Interfaces (index, name) of the calling thread's network namespace (netlink, not
/// /sys/class/net, which shows the namespace /sys was mounted in), by name.
fn interfaces() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return found;
        }
        let mut entry = list;
        while (*entry).if_index != 0 {
            found.push((
                (*entry).if_index,
                std::ffi::CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            ));
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found
}

/// Shell-style glob: `*` any run of characters, `?` one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], n) || (!n.is_empty() && matches(p, &n[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_shell() {
        assert!(glob_match("lxc*", "lxc12ab"));
        assert!(glob_match("eth0", "eth0"));
        assert!(!glob_match("eth0", "eth01"));
        assert!(glob_match("veth?", "veth1"));
        assert!(!glob_match("veth?", "veth12"));
        assert!(glob_match("*", "lo"));
        assert!(glob_match("a*b*c", "aXXbYc"));
        assert!(!glob_match("a*b*c", "aXXbY"));
    }

    #[test]
    fn no_matching_interface_names_the_patterns_and_what_exists() {
        let error = matching_interfaces(&["nosuch*".into()]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("--interfaces nosuch*"), "{text}");
        assert!(text.contains("lo"), "{text}");
    }
}
