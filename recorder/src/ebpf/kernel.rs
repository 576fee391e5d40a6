//! What the node's kernel can do, and which of the recorder's programs go where on it.
//!
//! Managed node images still run 5.10 and 5.15 kernels, where some of what the programs use
//! does not exist yet. The recorder reads the kernel's facts at start ([`KernelFacts`]: its
//! release and, above all, its BTF, which is right about backports where a version number is
//! not) and decides per program ([`Plan`]): the tc programs are required (they are the
//! flows); the drop tracer and the TCP tracer are optional, skipped with the reason named,
//! never a failed start. `flowrec kernel` prints the same decisions without loading anything.
//!
//! | program | needs | on an older kernel |
//! |---|---|---|
//! | `tc_ingress`, `tc_egress` | 5.10 (clsact, per-CPU maps); TCX links 6.6; coarse clock 5.11 | clsact qdisc; `bpf_ktime_get_ns` |
//! | `on_kfree_skb` | BTF, `tp_btf` and the drop reason argument of `kfree_skb`: 5.17 | skipped: no drops recorded |
//! | `tcp_lifecycle` | a cgroup v2 hierarchy; sock_ops 4.16, BPF links 5.7 | skipped without cgroup v2: no TCP columns |

use std::fmt;
use std::path::{Path, PathBuf};

use super::btf::Btf;
use super::drop_reasons::DropReasons;
use super::TcAttach;

/// Where the running kernel publishes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A kernel version, from a release string (`5.15.0-1034-gke` -> 5.15.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(release: &str) -> Option<Version> {
        let mut numbers = release.split(['.', '-', '+', '_']).map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = numbers.next()??;
        let minor = numbers.next()??;
        Some(Version(major, minor, numbers.next().flatten().unwrap_or(0)))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What the programs depend on, read from a kernel's BTF.
#[derive(Debug, Clone)]
pub struct BtfFacts {
    pub path: PathBuf,
    /// Argument types of the `kfree_skb` BTF tracepoint; None if there is none.
    pub kfree_skb: Option<Vec<String>>,
    /// `enum skb_drop_reason` (5.17).
    pub drop_reasons: Option<DropReasons>,
    /// `BPF_FUNC_ktime_get_coarse_ns` in `enum bpf_func_id` (5.11).
    pub coarse_clock: bool,
    /// `BPF_TCX_INGRESS` in `enum bpf_attach_type` (6.6).
    pub tcx: bool,
}

impl BtfFacts {
    pub fn from_btf(path: &Path, btf: &Btf) -> BtfFacts {
        BtfFacts {
            path: path.to_path_buf(),
            kfree_skb: btf.tracepoint_args("kfree_skb"),
            drop_reasons: DropReasons::from_btf(btf),
            coarse_clock: btf.has_variant("bpf_func_id", "BPF_FUNC_ktime_get_coarse_ns"),
            tcx: btf.has_variant("bpf_attach_type", "BPF_TCX_INGRESS"),
        }
    }
}

/// The kernel the recorder decides for.
#[derive(Debug, Clone)]
pub struct KernelFacts {
    /// As `uname -r` says it.
    pub release: String,
    pub version: Option<Version>,
    /// Its BTF's facts, or why there is no BTF.
    pub btf: Result<BtfFacts, String>,
    /// Whether the kernel publishes its own BTF ([`KERNEL_BTF`]): BTF tracepoints attach
    /// through it, whatever file the other facts come from.
    pub own_btf: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("--kernel-btf: {0}")]
    Btf(#[from] super::btf::BtfError),
}

impl KernelFacts {
    /// The running kernel's facts; `btf` replaces its BTF (a file from BTFHub for a kernel
    /// built without one, or another kernel's, to see what the recorder would do there) and
    /// `release` its release. A `btf` given that cannot be read is an error; the kernel's own
    /// missing is a fact.
    pub fn read(btf: Option<&Path>, release: Option<&str>) -> Result<KernelFacts, FactsError> {
        let release = release.map_or_else(running_release, str::to_string);
        let own = Path::new(KERNEL_BTF);
        let btf = match btf {
            Some(path) => Ok(BtfFacts::from_btf(path, &Btf::read(path)?)),
            None => Btf::read(own)
                .map(|btf| BtfFacts::from_btf(own, &btf))
                .map_err(|error| format!("{error} (a kernel built without CONFIG_DEBUG_INFO_BTF)")),
        };
        Ok(KernelFacts {
            version: Version::parse(&release),
            release,
            btf,
            own_btf: own.exists(),
        })
    }

    fn at_least(&self, version: Version) -> bool {
        self.version.is_some_and(|v| v >= version)
    }

    /// TCX links (6.6), from the BTF or else the version.
    pub fn tcx(&self) -> bool {
        match &self.btf {
            Ok(btf) => btf.tcx,
            Err(_) => self.at_least(Version(6, 6, 0)),
        }
    }

    /// `bpf_ktime_get_coarse_ns` (5.11), from the BTF or else the version.
    pub fn coarse_clock(&self) -> bool {
        match &self.btf {
            Ok(btf) => btf.coarse_clock,
            Err(_) => self.at_least(Version(5, 11, 0)),
        }
    }
}

fn running_release() -> String {
    // SAFETY: uname fills the struct we own; its fields are NUL-terminated.
    unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut name) != 0 {
            return "unknown".to_string();
        }
        std::ffi::CStr::from_ptr(name.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// How the tc programs attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    Tcx,
    Clsact,
}

/// Which clock the tc and sock_ops programs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `bpf_ktime_get_coarse_ns` (tick resolution, ~28 ns cheaper per packet).
    Coarse,
    /// `bpf_ktime_get_ns`, where the coarse one does not exist (before 5.11).
    Precise,
}

/// An optional program: attached with what it needs, or skipped, and why.
#[derive(Debug, Clone)]
pub enum Decision<T> {
    Attach(T),
    Skip(String),
}

impl<T> Decision<T> {
    pub fn attached(&self) -> bool {
        matches!(self, Decision::Attach(_))
    }
}

/// Which programs the recorder attaches, and how, on one kernel.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the decisions were taken for: `5.15.0-1034-gke (BTF /sys/kernel/btf/vmlinux)`.
    pub kernel: String,
    /// BTF for the CO-RE relocations; None: the programs keep the offsets they were built with
    /// (the tc and sock_ops programs read only stable UAPI layouts).
    pub btf: Option<PathBuf>,
    pub tc: TcMode,
    pub clock: Clock,
    /// The drop tracer, with the kernel's reason names.
    pub drops: Decision<DropReasons>,
    /// The TCP tracer, with the cgroup v2 it attaches to.
    pub tcp: Decision<PathBuf>,
    /// Whether the kernel charges BPF maps to RLIMIT_MEMLOCK (before 5.11) instead of the
    /// memory cgroup: then the limit must fit the maps, or loading fails with EPERM.
    pub memlock_charged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--tc-attach tcx: kernel {0} has no TCX (Linux 6.6); use --tc-attach auto or clsact")]
    NoTcx(String),
}

/// What a skipped drop tracer costs, said once wherever the skip is reported.
pub const NO_DROPS: &str = "flows carry no drops (dropped_packets 0, never DROPPED)";
/// What a kernel before 5.11 asks of the recorder's environment.
pub const MEMLOCK_NOTE: &str = "this kernel charges BPF maps to RLIMIT_MEMLOCK (before Linux \
     5.11): the recorder raises its soft limit to the hard one, which must hold the flow maps \
     (2 x --flow-map-entries x (112 + 64 x CPUs) bytes); give the container an unlimited memlock \
     ulimit or CAP_SYS_RESOURCE";
/// What a skipped TCP tracer costs.
pub const NO_TCP: &str = "TCP flows carry no tcp_* columns (RTT, retransmits, bytes acked)";

impl Plan {
    /// The decisions for `facts`, given `--tc-attach` and the cgroup v2 to follow TCP in (or
    /// why there is none). Only what the user asked for explicitly and the kernel cannot do
    /// is an error.
    pub fn decide(
        facts: &KernelFacts,
        tc_attach: TcAttach,
        cgroup: Result<PathBuf, String>,
    ) -> Result<Plan, PlanError> {
        let tc = match (tc_attach, facts.tcx()) {
            (TcAttach::Tcx, false) => return Err(PlanError::NoTcx(facts.release.clone())),
            (TcAttach::Tcx, true) | (TcAttach::Auto, true) => TcMode::Tcx,
            (TcAttach::Clsact, _) | (TcAttach::Auto, false) => TcMode::Clsact,
        };
        let clock = if facts.coarse_clock() {
            Clock::Coarse
        } else {
            Clock::Precise
        };
        let drops = match &facts.btf {
            Err(why) => Decision::Skip(format!("no BTF: {why}")),
            Ok(_) if !facts.own_btf => Decision::Skip(format!(
                "BTF tracepoints attach through the kernel's own BTF, and {KERNEL_BTF} is \
                 missing"
            )),
            Ok(btf) => match (&btf.kfree_skb, &btf.drop_reasons) {
                (None, _) => Decision::Skip(format!(
                    "{} has no kfree_skb BTF tracepoint (btf_trace_kfree_skb)",
                    btf.path.display()
                )),
                (Some(args), Some(reasons))
                    if args.get(2).is_some_and(|a| a == "enum skb_drop_reason") =>
                {
                    Decision::Attach(reasons.clone())
                }
                (Some(args), _) => Decision::Skip(format!(
                    "kfree_skb({}) has no drop reason (Linux 5.17): every free of a packet \
                     would look like a drop",
                    args.join(", ")
                )),
            },
        };
        let tcp = match cgroup {
            Ok(path) => Decision::Attach(path),
            Err(why) => Decision::Skip(why),
        };
        let kernel = match &facts.btf {
            Ok(btf) => format!("{} (BTF {})", facts.release, btf.path.display()),
            Err(_) => format!("{} (no BTF)", facts.release),
        };
        Ok(Plan {
            kernel,
            memlock_charged: facts
                .version
                .map_or(!facts.coarse_clock(), |v| v < Version(5, 11, 0)),
            btf: facts.btf.as_ref().ok().map(|btf| btf.path.clone()),
            tc,
            clock,
            drops,
            tcp,
        })
    }

    /// One line per program: name, hook, attach or skip, and the detail.
    pub fn programs(&self) -> Vec<ProgramLine> {
        let tc = |program: &'static str, direction: &str| {
            let clock = match self.clock {
                Clock::Coarse => "clock: bpf_ktime_get_coarse_ns",
                Clock::Precise => "clock: bpf_ktime_get_ns (no coarse clock before Linux 5.11)",
            };
            let (hook, detail) = match self.tc {
                TcMode::Tcx => (format!("tc {direction} (TCX link)"), clock.to_string()),
                TcMode::Clsact => (
                    format!("tc {direction} (clsact filter)"),
                    format!("{clock}; the qdisc is added if missing, removed if added"),
                ),
            };
            ProgramLine {
                program,
                hook,
                attached: true,
                detail,
            }
        };
        vec![
            tc("tc_ingress", "ingress"),
            tc("tc_egress", "egress"),
            ProgramLine {
                program: "on_kfree_skb",
                hook: "tp_btf/kfree_skb".to_string(),
                attached: self.drops.attached(),
                detail: match &self.drops {
                    Decision::Attach(reasons) => {
                        format!("{} drop reasons named from BTF", reasons.len())
                    }
                    Decision::Skip(why) => format!("{why}; {NO_DROPS}"),
                },
            },
            match &self.tcp {
                Decision::Attach(cgroup) => ProgramLine {
                    program: "tcp_lifecycle",
                    hook: format!("sock_ops on cgroup {}", cgroup.display()),
                    attached: true,
                    detail: "RTT, retransmits and byte counters per connection".to_string(),
                },
                Decision::Skip(why) => ProgramLine {
                    program: "tcp_lifecycle",
                    hook: "sock_ops".to_string(),
                    attached: false,
                    detail: format!("{why}; {NO_TCP}"),
                },
            },
        ]
    }
}

impl Plan {
    /// Whether every program attaches.
    pub fn complete(&self) -> bool {
        self.drops.attached() && self.tcp.attached()
    }

    /// `flowrec kernel`'s output: the kernel, then a table of the programs.
    pub fn report(&self) -> String {
        let mut out = format!(
            "kernel {}\n{:<14} {:<6} {:<44} DETAIL\n",
            self.kernel, "PROGRAM", "STATE", "HOOK"
        );
        for line in self.programs() {
            out.push_str(&format!("{line}\n"));
        }
        if self.memlock_charged {
            out.push_str(&format!("note: {MEMLOCK_NOTE}\n"));
        }
        out
    }
}

/// A program's line in `flowrec kernel` and in the recorder's start-up log.
#[derive(Debug, Clone)]
pub struct ProgramLine {
    pub program: &'static str,
    pub hook: String,
    pub attached: bool,
    pub detail: String,
}

impl fmt::Display for ProgramLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.attached { "attach" } else { "skip" };
        write!(
            f,
            "{:<14} {:<6} {:<44} {}",
            self.program, state, self.hook, self.detail
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::btf::build::Builder;
    use super::*;

    /// What a kernel's BTF has, by the features the plan looks at.
    #[derive(Clone, Copy)]
    struct Features {
        /// kfree_skb's arguments: 2 before 5.17, 3 from 5.17 (4 from 6.11).
        kfree_skb_args: Option<usize>,
        drop_reasons: bool,
        coarse_clock: bool,
        tcx: bool,
    }

    const LINUX_5_10: Features = Features {
        kfree_skb_args: Some(2),
        drop_reasons: false,
        coarse_clock: false,
        tcx: false,
    };
    const LINUX_5_15: Features = Features {
        coarse_clock: true,
        ..LINUX_5_10
    };
    const LINUX_6_1: Features = Features {
        kfree_skb_args: Some(3),
        drop_reasons: true,
        ..LINUX_5_15
    };
    const LINUX_6_12: Features = Features {
        kfree_skb_args: Some(4),
        tcx: true,
        ..LINUX_6_1
    };

    /// A BTF blob with the types the features name, the way the kernel declares them.
    fn btf_file(dir: &Path, features: Features) -> PathBuf {
        let mut btf = Builder::new();
        btf.int("int");
        let skb = btf.structure("sk_buff");
        let skb = btf.pointer(skb);
        let location = btf.pointer(0);
        let sock = btf.structure("sock");
        let sock = btf.pointer(sock);
        let reason = btf.enumeration(
            if features.drop_reasons {
                "skb_drop_reason"
            } else {
                "something_else"
            },
            &[
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
            ],
        );
        if let Some(count) = features.kfree_skb_args {
            btf.tracepoint("kfree_skb", &[skb, location, reason, sock][..count]);
        }
        let mut helpers = vec![("BPF_FUNC_ktime_get_ns", 5)];
        if features.coarse_clock {
            helpers.push(("BPF_FUNC_ktime_get_coarse_ns", 160));
        }
        btf.enumeration("bpf_func_id", &helpers);
        let mut attach_types = vec![("BPF_CGROUP_SOCK_OPS", 3)];
        if features.tcx {
            attach_types.push(("BPF_TCX_INGRESS", 46));
        }
        btf.enumeration("bpf_attach_type", &attach_types);
        let path = dir.join("vmlinux");
        std::fs::write(&path, btf.finish()).unwrap();
        path
    }

    fn plan(features: Features, release: &str, tc: TcAttach) -> Result<Plan, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        let mut facts =
            KernelFacts::read(Some(&btf_file(dir.path(), features)), Some(release)).unwrap();
        facts.own_btf = true;
        Plan::decide(&facts, tc, Ok(PathBuf::from("/sys/fs/cgroup")))
    }

    fn skipped<T>(decision: &Decision<T>) -> &str {
        match decision {
            Decision::Skip(why) => why,
            Decision::Attach(_) => panic!("attached"),
        }
    }

    #[test]
    fn a_5_10_kernel_gets_flows_through_clsact_with_the_precise_clock_and_no_drops() {
        let plan = plan(LINUX_5_10, "5.10.226-214.880.amzn2.x86_64", TcAttach::Auto).unwrap();
        assert_eq!(plan.tc, TcMode::Clsact);
        assert_eq!(plan.clock, Clock::Precise);
        let why = skipped(&plan.drops);
        assert!(
            why.contains("kfree_skb(struct sk_buff *, void *) has no drop reason (Linux 5.17)"),
            "{why}"
        );
        assert!(plan.tcp.attached());
        assert!(plan
            .kernel
            .starts_with("5.10.226-214.880.amzn2.x86_64 (BTF "));
    }

    #[test]
    fn a_5_15_kernel_has_the_coarse_clock_but_still_no_drop_reasons() {
        let plan = plan(LINUX_5_15, "5.15.0-1034-gke", TcAttach::Auto).unwrap();
        assert_eq!((plan.tc, plan.clock), (TcMode::Clsact, Clock::Coarse));
        assert!(!plan.drops.attached());
    }

    #[test]
    fn drop_reasons_from_5_17_and_tcx_from_6_6() {
        let older = plan(LINUX_6_1, "6.1.0-27-cloud-amd64", TcAttach::Auto).unwrap();
        assert_eq!(older.tc, TcMode::Clsact);
        let Decision::Attach(reasons) = &older.drops else {
            panic!("{:?}", older.drops)
        };
        assert_eq!(reasons.name(3), "NO_SOCKET");
        let newer = plan(LINUX_6_12, "6.12.0", TcAttach::Auto).unwrap();
        assert_eq!((newer.tc, newer.clock), (TcMode::Tcx, Clock::Coarse));
        assert!(newer.drops.attached(), "a fourth argument changes nothing");
        assert_eq!(
            plan(LINUX_6_12, "6.12.0", TcAttach::Clsact).unwrap().tc,
            TcMode::Clsact
        );
    }

    #[test]
    fn facts_come_from_the_btf_not_the_version() {
        // A distribution kernel numbered 5.14 with 6.x features backported (RHEL 9 style).
        let plan = plan(LINUX_6_12, "5.14.0-427.el9.x86_64", TcAttach::Auto).unwrap();
        assert_eq!(plan.tc, TcMode::Tcx);
        assert!(plan.drops.attached());
    }

    #[test]
    fn asking_for_tcx_where_there_is_none_names_the_flag() {
        let error = plan(LINUX_6_1, "6.1.0", TcAttach::Tcx).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--tc-attach tcx: kernel 6.1.0 has no TCX (Linux 6.6); use --tc-attach auto or clsact"
        );
    }

    #[test]
    fn without_btf_the_version_decides_and_the_drop_tracer_is_skipped() {
        let facts = |release: &str| KernelFacts {
            release: release.to_string(),
            version: Version::parse(release),
            btf: Err("cannot read /sys/kernel/btf/vmlinux".to_string()),
            own_btf: false,
        };
        let old =
            Plan::decide(&facts("5.10.0"), TcAttach::Auto, Err("no cgroup v2".into())).unwrap();
        assert_eq!(
            (old.tc, old.clock, old.btf.clone()),
            (TcMode::Clsact, Clock::Precise, None)
        );
        assert!(skipped(&old.drops).starts_with("no BTF: cannot read"));
        assert_eq!(skipped(&old.tcp), "no cgroup v2");
        let new = Plan::decide(&facts("6.6.1"), TcAttach::Auto, Ok("/cg".into())).unwrap();
        assert_eq!((new.tc, new.clock), (TcMode::Tcx, Clock::Coarse));
        assert!(!new.drops.attached());
        assert!(!new.memlock_charged && !new.report().contains("note:"));
        let lines: Vec<String> = old.programs().iter().map(ToString::to_string).collect();
        assert!(
            lines[0].starts_with("tc_ingress     attach tc ingress (clsact filter)"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("tc_egress      attach tc egress (clsact filter)"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("skip") && lines[2].ends_with(NO_DROPS),
            "{lines:?}"
        );
        assert!(
            lines[3].contains("skip") && lines[3].ends_with(NO_TCP),
            "{lines:?}"
        );
    }

    #[test]
    fn another_kernel_s_btf_without_the_kernel_s_own_skips_the_tracepoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut facts =
            KernelFacts::read(Some(&btf_file(dir.path(), LINUX_6_12)), Some("5.4.0")).unwrap();
        facts.own_btf = false;
        let plan = Plan::decide(&facts, TcAttach::Auto, Ok("/cg".into())).unwrap();
        assert!(skipped(&plan.drops).contains("kernel's own BTF"));
        assert_eq!(
            plan.btf.as_deref(),
            Some(dir.path().join("vmlinux").as_path())
        );
    }

    #[test]
    fn a_btf_given_that_cannot_be_read_is_an_error_naming_it() {
        let error = KernelFacts::read(Some(Path::new("/nonexistent/vmlinux")), None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--kernel-btf: cannot read the kernel's BTF /nonexistent/vmlinux"),
            "{error}"
        );
    }

    #[test]
    fn releases_parse_like_uname_prints_them() {
        assert_eq!(Version::parse("5.15.0-1034-gke"), Some(Version(5, 15, 0)));
        assert_eq!(Version::parse("6.18"), Some(Version(6, 18, 0)));
        assert_eq!(
            Version::parse("5.10.226-214.880.amzn2.x86_64"),
            Some(Version(5, 10, 226))
        );
        assert_eq!(Version::parse("garbage"), None);
    }

    #[test]
    fn the_running_kernel_attaches_everything() {
        let facts = KernelFacts::read(None, None).unwrap();
        let plan = Plan::decide(&facts, TcAttach::Auto, Ok("/cg".into())).unwrap();
        assert!(plan.drops.attached(), "{:?}", plan.drops);
        assert_eq!(plan.clock, Clock::Coarse);
        assert_eq!(
            plan.tc == TcMode::Tcx,
            facts.version >= Some(Version(6, 6, 0))
        );
    }
}
