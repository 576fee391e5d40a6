//! `flowrec run --source ebpf` on a real kernel with real traffic, checked through flowsql.
//!
//! Two network namespaces joined by a veth pair (names prefixed `frt`, removed afterwards); the
//! recorder runs in one of them (`nsenter --net`), attached to its end of the pair. Needs root,
//! as CI runs; anywhere else this test fails and says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, *};

/// Network namespaces (names prefixed `frt`), removed on drop: deleting a namespace deletes the
/// veth ends inside it, and so the pairs.
struct Namespaces {
    names: Vec<String>,
    /// Unique per test in this process and across concurrent processes; names veths too.
    id: u32,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 is installed");
    assert!(status.success(), "ip {}", args.join(" "));
}

impl Namespaces {
    fn new(roles: &[&str]) -> Namespaces {
        // SAFETY: no arguments, no memory.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "the capture test needs root (CI runs the suite as root)"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() % 10_000 * 10 + serial % 10;
        let names: Vec<String> = roles
            .iter()
            .map(|role| format!("frt-{role}-{id}"))
            .collect();
        for name in &names {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        Namespaces { names, id }
    }

    /// A veth pair between namespaces `x` and `y` (indexes), each end up with its address
    /// (CIDR); returns the names of the two ends.
    fn link(&self, x: usize, x_address: &str, y: usize, y_address: &str) -> (String, String) {
        let end = |ns: usize| format!("frt{}{}{}", self.id, x * 3 + y, b"abc"[ns] as char);
        let (end_x, end_y) = (end(x), end(y));
        ip(&[
            "link", "add", &end_x, "type", "veth", "peer", "name", &end_y,
        ]);
        for (ns, end, address) in [(x, &end_x, x_address), (y, &end_y, y_address)] {
            ip(&["link", "set", end, "netns", &self.names[ns]]);
            ip(&["-n", &self.names[ns], "addr", "add", address, "dev", end]);
            ip(&["-n", &self.names[ns], "link", "set", end, "up"]);
        }
        (end_x, end_y)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Namespaces `a` (10.199.0.1) and `b` (10.199.0.2) and the veth pair between them.
pub(crate) struct Veth {
    /// Kept for its Drop.
    _namespaces: Namespaces,
    pub(crate) a: String,
    pub(crate) b: String,
    /// The pair's end inside `a`.
    pub(crate) end_a: String,
}

impl Veth {
    pub(crate) fn new() -> Veth {
        let namespaces = Namespaces::new(&["a", "b"]);
        let (end_a, end_b) = namespaces.link(0, "10.199.0.1/24", 1, "10.199.0.2/24");
        // IPv6 too, usable at once (no duplicate address detection).
        for (ns, end, address) in [(0, &end_a, "fd00:199::1/64"), (1, &end_b, "fd00:199::2/64")] {
            ip(&[
                "-n",
                &namespaces.names[ns],
                "addr",
                "add",
                address,
                "dev",
                end,
                "nodad",
            ]);
        }
        Veth {
            a: namespaces.names[0].clone(),
            b: namespaces.names[1].clone(),
            end_a,
            _namespaces: namespaces,
        }
    }
}

/// Runs `f` on a thread that lives in network namespace `ns`.
pub(crate) fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns exists");
                // SAFETY: setns for this thread only, with a valid namespace fd.
                let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    entered,
                    0,
                    "setns {ns}: {}",
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .expect("no panic in the namespace thread")
    })
}

/// What `flowrec run --source ebpf` needs (README, "Least privilege").
const RECORDER_CAPABILITIES: &str = "+bpf,+net_admin,+perfmon";

/// A `setpriv` prefix that runs a command as nobody with only `capabilities` (ambient, so they
/// survive the exec of a non-root program).
fn least_privilege(capabilities: &str) -> Vec<String> {
    vec![
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{capabilities}"),
        format!("--ambient-caps=-all,{capabilities}"),
    ]
}

/// The recorder process, killed if the test fails before it stops it.
struct Recorder {
    child: std::process::Child,
    stderr: BufReader<std::process::ChildStderr>,
    /// What it printed up to "recording flows on", that line included.
    startup: String,
}

impl Recorder {
    /// `flowrec run --source ebpf` in namespace `ns` on `interfaces`, draining every second
    /// unless `extra` says otherwise, spooling in `{store}-spool`, as nobody with only the
    /// capabilities the README documents; returns once it records.
    fn start(ns: &str, interfaces: &str, store: &str, extra: &[&str]) -> Recorder {
        let store_dir = Path::new(store).parent().unwrap();
        std::fs::set_permissions(store_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(least_privilege(RECORDER_CAPABILITIES))
            .arg(flowrec_bin())
            .args(["run", "--source", "ebpf", "--interfaces", interfaces])
            .args(["--node-name", "capture-node"])
            .args(["--store", store])
            .args(if extra.contains(&"--spool") {
                vec![]
            } else {
                vec!["--spool".to_string(), format!("{store}-spool")]
            })
            .args(extra)
            .args(if extra.contains(&"--active-timeout") {
                &[][..]
            } else {
                &["--active-timeout", "1s"][..]
            })
            .env_remove("FLOW_STORE")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut startup = String::new();
        while !startup.contains("recording flows on") {
            let read = stderr.read_line(&mut startup).unwrap();
            assert!(read > 0, "the recorder exited: {startup}");
        }
        Recorder {
            child,
            stderr,
            startup,
        }
    }

    /// SIGTERM, then checks it exited cleanly having lost nothing in the kernel; returns its
    /// summary line.
    fn stop(mut self) -> String {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "{rest}");
        assert!(
            rest.contains("lost: 0 packets (flow map full), 0 TCP connections"),
            "{rest}"
        );
        rest
    }

    /// SIGKILL: no last drain, no shipping, nothing flushed.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TCP_BYTES: usize = 1_000_000;
const TCP_PORT: u16 = 5201;
const UDP_PORT: u16 = 5353;
const UDP_PAYLOAD: usize = 100;
/// Nothing listens there: the SYN is dropped with NO_SOCKET.
const CLOSED_PORT: u16 = 5999;
/// An nftables rule in `b` drops UDP to this port: NETFILTER_DROP.
const FILTERED_PORT: u16 = 5354;
/// Dropped the same way; sent over IPv4 with options (a 24-byte IP header), which the drop
/// tracer reads apart from the common case (see key_from_skb in ebpf/flowrec.bpf.c).
const FILTERED_OPTIONS_PORT: u16 = 5355;

/// Runs `nft -f -` with `rules` in network namespace `ns`.
fn nft(ns: &str, rules: &str) {
    let mut nft = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nftables is installed by .ci/setup.sh");
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft -f - <<{rules}");
}

/// Sets the IP options (`IP_OPTIONS`) of the datagrams `socket` sends.
fn set_ip_options(socket: &UdpSocket, options: &[u8]) {
    // SAFETY: setsockopt reads `options.len()` bytes from a live slice; the fd is open.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            options.as_ptr().cast(),
            options.len() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "IP_OPTIONS: {}", std::io::Error::last_os_error());
}

/// Retransmitted segments on either side of a connection, from the kernel's TCP_INFO.
fn retransmits(stream: &TcpStream) -> u32 {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let done = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(done, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_total_retrans
    }
}

const SCTP_PORTS: (u16, u16) = (3868, 2905);
const SCTP_PACKETS: u64 = 2;
/// SCTP common header (ports, verification tag, checksum) + one 4-byte chunk header.
const SCTP_BYTES: usize = 16;

/// Two SCTP packets from `a` to `b` through a raw socket (no SCTP stack needed: the
/// kernel only adds the IP header; `b` drops them, which the test does not look at).
fn sctp_packets() {
    // SAFETY: a raw socket we close below; sendto reads `packet` and `to`, both ours.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_SCTP);
        assert!(
            socket >= 0,
            "raw SCTP socket: {}",
            std::io::Error::last_os_error()
        );
        let mut packet = [0u8; SCTP_BYTES];
        packet[0..2].copy_from_slice(&SCTP_PORTS.0.to_be_bytes());
        packet[2..4].copy_from_slice(&SCTP_PORTS.1.to_be_bytes());
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([10, 199, 0, 2]),
            },
            sin_zero: [0; 8],
        };
        for _ in 0..SCTP_PACKETS {
            let sent = libc::sendto(
                socket,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(
                sent,
                SCTP_BYTES as isize,
                "{}",
                std::io::Error::last_os_error()
            );
        }
        libc::close(socket);
    }
}

/// Keeps the calling thread on CPU 0.
fn pin_to_cpu_0() {
    pin_to_cpu(0);
}

/// Keeps the calling thread on CPU `cpu`.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a cpu_set_t we own, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let pinned = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            pinned,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// One TCP transfer of `TCP_BYTES` from `a` to `b`; returns the client's port and whether
/// either side retransmitted (a retransmission, or the SACK blocks around it, changes what the
/// wire carried, so only a clean connection can be checked byte for byte; both ends run on one
/// CPU so that the veth does not reorder segments, which would add SACK blocks too).
fn tcp_transfer(veth: &Veth, port: u16) -> (u16, bool) {
    let listener = in_netns(&veth.b, || TcpListener::bind(("10.199.0.2", port)).unwrap());
    let server = std::thread::spawn(move || {
        pin_to_cpu_0();
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), TCP_BYTES);
        retransmits(&stream)
    });
    let (client_port, client_retransmits) = in_netns(&veth.a, || {
        // A veth delivers on the sending CPU: segments sent from two CPUs (the client's
        // thread, and the softirq answering the server's window updates where the server
        // runs) can arrive reordered, and the receiver's SACK blocks then change the ACKs'
        // size. Both ends on one CPU keep the wire in order.
        pin_to_cpu_0();
        let mut stream = TcpStream::connect(("10.199.0.2", port)).unwrap();
        stream.write_all(&vec![7u8; TCP_BYTES]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        stream.read_to_end(&mut Vec::new()).unwrap();
        (stream.local_addr().unwrap().port(), retransmits(&stream))
    });
    let server_retransmits = server.join().unwrap();
    (client_port, client_retransmits + server_retransmits > 0)
}

/// TCP transfers until one runs without retransmissions (returns its client port), three UDP
/// datagrams and two pings, all from `a` to `b`.
fn traffic(veth: &Veth) -> u16 {
    let mut clean = None;
    for attempt in 0..5 {
        let (client_port, retransmitted) = tcp_transfer(veth, TCP_PORT + attempt);
        if !retransmitted {
            clean = Some(client_port);
            break;
        }
    }
    let client_port = clean.expect("five TCP transfers in a row retransmitted on a local veth");
    let udp = in_netns(&veth.b, || {
        UdpSocket::bind(("10.199.0.2", UDP_PORT)).unwrap()
    });
    in_netns(&veth.a, || {
        let socket = UdpSocket::bind(("10.199.0.1", 0)).unwrap();
        for _ in 0..3 {
            socket
                .send_to(&[1u8; UDP_PAYLOAD], ("10.199.0.2", UDP_PORT))
                .unwrap();
        }
    });
    let mut datagram = [0u8; 2048];
    for _ in 0..3 {
        udp.recv(&mut datagram).unwrap();
    }
    let udp6 = in_netns(&veth.b, || {
        UdpSocket::bind(("fd00:199::2", UDP_PORT)).unwrap()
    });
    in_netns(&veth.a, || {
        let socket = UdpSocket::bind(("fd00:199::1", 0)).unwrap();
        for _ in 0..3 {
            socket
                .send_to(&[1u8; UDP_PAYLOAD], ("fd00:199::2", UDP_PORT))
                .unwrap();
        }
    });
    for _ in 0..3 {
        udp6.recv(&mut datagram).unwrap();
    }
    // Dropped in `b`'s stack (the recorder's drop tracer sees every namespace).
    let refused = in_netns(&veth.a, || TcpStream::connect(("10.199.0.2", CLOSED_PORT)));
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    nft(
        &veth.b,
        &format!(
            "table inet frt_test {{\n chain input {{\n  type filter hook input priority 0;\n  \
             udp dport {{ {FILTERED_PORT}, {FILTERED_OPTIONS_PORT} }} drop\n }}\n}}\n"
        ),
    );
    in_netns(&veth.a, || {
        let socket = UdpSocket::bind(("10.199.0.1", 0)).unwrap();
        let socket6 = UdpSocket::bind(("fd00:199::1", 0)).unwrap();
        let optioned = UdpSocket::bind(("10.199.0.1", 0)).unwrap();
        // Three no-operation options and the end of the list: 4 bytes.
        set_ip_options(&optioned, &[1, 1, 1, 0]);
        for _ in 0..2 {
            socket
                .send_to(&[1u8; UDP_PAYLOAD], ("10.199.0.2", FILTERED_PORT))
                .unwrap();
            socket6
                .send_to(&[1u8; UDP_PAYLOAD], ("fd00:199::2", FILTERED_PORT))
                .unwrap();
            optioned
                .send_to(&[1u8; UDP_PAYLOAD], ("10.199.0.2", FILTERED_OPTIONS_PORT))
                .unwrap();
        }
    });
    in_netns(&veth.a, sctp_packets);
    let ping = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", veth.a))
        .args(["ping", "-c", "2", "-i", "0.2", "-q", "10.199.0.2"])
        .output()
        .expect("iputils-ping is installed");
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    client_port
}

/// Every segment of the TCP connection carries a 20-byte IP header and a 32-byte TCP header
/// (timestamps option); SYN and SYN-ACK carry 8 more option bytes (MSS, SACK-permitted, window
/// scale). So the client's flow is exactly `N + 52 * packets + 8` IP bytes and the server's
/// `52 * packets + 8`, whatever the segmentation. UDP: 20 + 8 + payload per datagram; ping:
/// 20 + 8 + 56 per echo; UDP over IPv6: 40 + 8 + payload; SCTP (raw): 20 + 16. A SYN to a closed port and UDP hit by an nftables DROP rule are
/// DROPPED with the kernel's reasons; the TCP rows carry the connection's sock_ops counters.
#[test]
fn ebpf_capture_records_flows_drops_and_tcp_state_with_exact_counts() {
    let veth = Veth::new();
    let (_dir, store) = temp_store();
    // A fixture inventory (hand-written, in the shape of `kubectl get pods -A -o json`) puts
    // pod client-7d4b9c-x2x9k on 10.199.0.1 and server-0 on 10.199.0.2.
    // Copied beside the store: the recorder runs as nobody, and the clone may sit in a folder
    // only root can enter (`git clone . "$(mktemp -d)/x"`).
    let pods = Path::new(&store).with_file_name("pods.json");
    std::fs::copy(repo_root().join("recorder/tests-data/pods.json"), &pods).unwrap();
    let pods = pods.to_str().unwrap();
    let interfaces = format!("{},nosuch*", veth.end_a);
    let metrics = "127.0.0.1:9467";
    let started = std::time::SystemTime::now();
    let recorder = Recorder::start(
        &veth.a,
        &interfaces,
        &store,
        &["--pods", pods, "--metrics-addr", metrics],
    );
    let client_port = traffic(&veth);
    // Let the last ACKs pass and at least one drain happen mid-run.
    std::thread::sleep(Duration::from_millis(1500));
    // The drops, as hubble_drop_total would count them: packets, by reason, protocol and the
    // namespaces of both ends. (At least: recorders see drops node-wide, and tests running
    // alongside use the same addresses.)
    let (_, exposition) = http_get(&veth.a, metrics, "/metrics");
    let drops = |labels: &str| {
        exposition
            .lines()
            .find_map(|l| l.strip_prefix(&format!("flowrec_drops_total{{{labels}}} ")))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let shop = "source=\"shop\",destination=\"shop\"";
    assert!(
        drops(&format!(
            "reason=\"NETFILTER_DROP\",protocol=\"UDP\",{shop}"
        )) >= 4,
        "{exposition}"
    );
    assert!(
        drops(&format!("reason=\"NO_SOCKET\",protocol=\"TCP\",{shop}")) >= 1,
        "{exposition}"
    );
    recorder.stop();
    let stopped = std::time::SystemTime::now();
    drop(veth);

    // Times come from the coarse clock as each CPU keeps it per tick (now_ns): wall time, and
    // they move within a flow. The two echoes of `ping -i 0.2` are 200 ms apart.
    let echoes = query(
        &store,
        "select min(date_part('epoch', flow_start)) as first,
                max(date_part('epoch', flow_end)) as last
         from flows
         where capture_source = 'ebpf' and node_name = 'capture-node'
           and ip_source = '10.199.0.1' and icmp_type = 8",
        &[],
    );
    let (first, last) = (
        echoes[0]["first"].as_f64().unwrap(),
        echoes[0]["last"].as_f64().unwrap(),
    );
    assert!(
        (0.15..0.6).contains(&(last - first)),
        "the echoes' flow spans {:.3} s: {echoes:?}",
        last - first
    );
    assert!(
        epoch_seconds(started) - 1.0 <= first && last <= epoch_seconds(stopped) + 1.0,
        "{echoes:?}: between {started:?} and {stopped:?}"
    );

    let flows = query(
        &store,
        "select ip_source as src, ip_destination as dst, cast(l4_protocol as varchar) as l4,
                source_port as sport, destination_port as dport, icmp_type,
                cast(traffic_direction as varchar) as direction,
                cast(interface_name as varchar) as interface,
                sum(bytes) as bytes, sum(packets) as packets,
                bool_or(array_has(tcp_flags, 'SYN')) as syn,
                bool_or(array_has(tcp_flags, 'FIN')) as fin,
                bool_or(array_has(tcp_flags, 'ACK')) as ack,
                string_agg(distinct cast(verdict as varchar), ',') as verdicts,
                string_agg(distinct cast(drop_reason_desc as varchar), ',') as reasons,
                sum(dropped_packets) as dropped,
                max(tcp_srtt_us) as srtt, max(tcp_retransmits) as retransmits,
                max(tcp_bytes_acked) as acked, max(tcp_bytes_received) as received,
                string_agg(distinct cast(tcp_opened as varchar), ',') as opened,
                string_agg(distinct cast(source_namespace as varchar) || '/' || source_pod_name
                    || ' ' || cast(source_workload_kind as varchar) || '/'
                    || cast(source_workload as varchar) || ' '
                    || array_to_string(source_labels, ';'), ',') as src_pod,
                string_agg(distinct cast(destination_namespace as varchar) || '/'
                    || destination_pod_name || ' '
                    || cast(destination_workload_kind as varchar) || '/'
                    || cast(destination_workload as varchar), ',') as dst_pod,
                min(flow_start) <= max(flow_end) as ordered,
                min(date_part('epoch', flow_start)) as first,
                max(date_part('epoch', flow_end)) as last,
                count(distinct cast(capture_source as varchar)) as sources
         from flows
         where capture_source = 'ebpf' and node_name = 'capture-node'
         group by 1, 2, 3, 4, 5, 6, 7, 8",
        &[],
    );
    let find = |l4: &str, src: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        flows
            .iter()
            .find(|f| f["l4"] == l4 && f["src"] == src && pred(f))
            .unwrap_or_else(|| panic!("no {l4} flow from {src} in {flows:#?}"))
            .clone()
    };
    let port = |key: &'static str, port: u16| move |f: &serde_json::Value| f[key] == port;
    let n = |f: &serde_json::Value, key: &str| f[key].as_u64().unwrap();

    let out = find("TCP", "10.199.0.1", &port("sport", client_port));
    let back = find("TCP", "10.199.0.2", &port("dport", client_port));
    assert_eq!(
        n(&out, "bytes"),
        TCP_BYTES as u64 + 52 * n(&out, "packets") + 8,
        "{out}"
    );
    assert_eq!(n(&back, "bytes"), 52 * n(&back, "packets") + 8, "{back}");
    for flow in [&out, &back] {
        assert_eq!(
            (&flow["syn"], &flow["fin"], &flow["ack"]),
            (&true.into(), &true.into(), &true.into()),
            "{flow}"
        );
        assert_eq!(flow["ordered"], true);
        assert!(
            flow["interface"].as_str().unwrap().starts_with("frt"),
            "{flow}"
        );
    }
    assert_eq!(out["direction"], "EGRESS");
    assert_eq!(back["direction"], "INGRESS");
    // Both directions carry the client's socket (in `a`, the recorded side): it opened the
    // connection; the kernel's bytes_acked counts the sequence space acknowledged (SYN,
    // TCP_BYTES, FIN), bytes_received what followed the SYN-ACK (the server's FIN only); it did
    // not retransmit (the transfer was picked for that).
    for flow in [&out, &back] {
        assert!(n(flow, "srtt") > 0, "sock_ops RTT on {flow}");
        assert_eq!(n(flow, "retransmits"), 0, "{flow}");
        assert_eq!(flow["opened"], "ACTIVE", "{flow}");
        assert_eq!(n(flow, "acked"), 1 + TCP_BYTES as u64 + 1, "{flow}");
        assert_eq!(n(flow, "received"), 1, "{flow}");
        assert_eq!(flow["verdicts"], "FORWARDED", "{flow}");
    }

    // --pods: both ends named from the inventory, on every row (each drain's).
    let client = "shop/client-7d4b9c-x2x9k Deployment/client \
                  k8s:app=client;k8s:io.kubernetes.pod.namespace=shop;k8s:pod-template-hash=7d4b9c";
    assert_eq!(out["src_pod"], client, "{out}");
    assert_eq!(out["dst_pod"], "shop/server-0 StatefulSet/server", "{out}");
    assert!(
        back["src_pod"]
            .as_str()
            .unwrap()
            .starts_with("shop/server-0 StatefulSet/server"),
        "{back}"
    );
    assert_eq!(
        back["dst_pod"], "shop/client-7d4b9c-x2x9k Deployment/client",
        "{back}"
    );

    let syn = find("TCP", "10.199.0.1", &port("dport", CLOSED_PORT));
    assert_eq!(
        (&syn["verdicts"], &syn["reasons"]),
        (&"DROPPED".into(), &"NO_SOCKET".into()),
        "{syn}"
    );
    assert_eq!((n(&syn, "packets"), n(&syn, "dropped")), (1, 1), "{syn}");
    // Each IP header the drop tracer reads (IPv4, IPv6, IPv4 with options): its drops must
    // land on the flow tc counted, by 5-tuple. (`bytes` is what tc counted; the drops' own
    // bytes are not a column.)
    for (src, dport, ip_header) in [
        ("10.199.0.1", FILTERED_PORT, 20),
        ("fd00:199::1", FILTERED_PORT, 40),
        ("10.199.0.1", FILTERED_OPTIONS_PORT, 24),
    ] {
        let filtered = find("UDP", src, &port("dport", dport));
        assert_eq!(
            (&filtered["verdicts"], &filtered["reasons"]),
            (&"DROPPED".into(), &"NETFILTER_DROP".into()),
            "{filtered}"
        );
        assert_eq!(
            (n(&filtered, "packets"), n(&filtered, "dropped")),
            (2, 2),
            "{filtered}"
        );
        assert_eq!(
            n(&filtered, "bytes"),
            2 * (ip_header + 8 + UDP_PAYLOAD as u64),
            "{filtered}"
        );
        // Times within the run: catches a drop time that is garbage or zero, not which clock
        // the drop tracer read (tc's kept tick, or the precise one).
        let (first, last) = (filtered["first"].as_f64(), filtered["last"].as_f64());
        assert!(
            first.zip(last).is_some_and(|(first, last)| {
                epoch_seconds(started) - 1.0 <= first
                    && first <= last
                    && last <= epoch_seconds(stopped) + 1.0
            }),
            "{filtered}: between {started:?} and {stopped:?}"
        );
    }

    let udp = find("UDP", "10.199.0.1", &port("dport", UDP_PORT));
    assert_eq!(udp["verdicts"], "FORWARDED", "{udp}");
    assert_eq!(n(&udp, "packets"), 3, "{udp}");
    assert_eq!(n(&udp, "bytes"), 3 * (20 + 8 + UDP_PAYLOAD as u64), "{udp}");

    let udp6 = find("UDP", "fd00:199::1", &port("dport", UDP_PORT));
    assert_eq!(n(&udp6, "packets"), 3, "{udp6}");
    assert_eq!(
        n(&udp6, "bytes"),
        3 * (40 + 8 + UDP_PAYLOAD as u64),
        "{udp6}"
    );

    let echo = find("ICMPv4", "10.199.0.1", &|f| f["icmp_type"] == 8);
    let reply = find("ICMPv4", "10.199.0.2", &|f| f["icmp_type"] == 0);
    for flow in [&echo, &reply] {
        assert_eq!(n(flow, "packets"), 2, "{flow}");
        assert_eq!(n(flow, "bytes"), 2 * (20 + 8 + 56), "{flow}");
    }
    let sctp = find("SCTP", "10.199.0.1", &port("dport", SCTP_PORTS.1));
    assert_eq!(sctp["sport"], SCTP_PORTS.0, "{sctp}");
    assert_eq!(n(&sctp, "packets"), SCTP_PACKETS, "{sctp}");
    assert_eq!(
        n(&sctp, "bytes"),
        SCTP_PACKETS * (20 + SCTP_BYTES as u64),
        "{sctp}"
    );

    assert!(flows.iter().all(|f| f["sources"] == 1));
}

/// Without CAP_PERFMON the kernel refuses the programs: the recorder says which capabilities it
/// needs instead of failing obscurely, and leaves nothing attached.
#[test]
fn ebpf_capture_without_a_needed_capability_names_the_capabilities() {
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", veth.a))
        .args(least_privilege("+bpf,+net_admin"))
        .arg(flowrec_bin())
        .args(["run", "--source", "ebpf", "--interfaces", &veth.end_a])
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"),
        "{first}"
    );
}

/// A packet forwarded through the recorder's namespace crosses two attached interfaces (in on
/// the link from `b`, out on the link to `c`): it is counted once, on the first.
#[test]
fn ebpf_capture_counts_a_forwarded_packet_once() {
    let namespaces = Namespaces::new(&["r", "b", "c"]);
    let (r_b, _) = namespaces.link(0, "10.198.1.1/24", 1, "10.198.1.2/24");
    let (r_c, _) = namespaces.link(0, "10.198.2.1/24", 2, "10.198.2.2/24");
    let [router, b, c] = [0, 1, 2].map(|i| namespaces.names[i].clone());
    ip(&["-n", &b, "route", "add", "default", "via", "10.198.1.1"]);
    ip(&["-n", &c, "route", "add", "default", "via", "10.198.2.1"]);
    let forwarding = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{router}"))
        .args(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .status()
        .unwrap();
    assert!(forwarding.success());
    let (_dir, store) = temp_store();
    let recorder = Recorder::start(&router, &format!("{r_b},{r_c}"), &store, &[]);

    udp_between((&b, "10.198.1.2"), (&c, "10.198.2.2"), UDP_PORT, 5);
    std::thread::sleep(Duration::from_millis(300));
    recorder.stop();
    drop(namespaces);

    let flows = query(
        &store,
        "select cast(interface_name as varchar) as interface,
                cast(traffic_direction as varchar) as direction,
                sum(packets) as packets, sum(bytes) as bytes
         from flows
         where ip_source = '10.198.1.2' and ip_destination = '10.198.2.2'
         group by 1, 2",
        &[],
    );
    assert_eq!(flows.len(), 1, "one flow, on one interface: {flows:#?}");
    assert_eq!(flows[0]["interface"], r_b.as_str(), "{flows:#?}");
    assert_eq!(flows[0]["direction"], "INGRESS");
    assert_eq!(flows[0]["packets"], 5);
    assert_eq!(flows[0]["bytes"], 5 * (20 + 8 + UDP_PAYLOAD as u64));
}

/// More flows than a CPU has slots (1,024), interleaved: round after round, one datagram to
/// each of 3,000 ports, each round from the next CPU. Some flows hold a slot on a CPU, the
/// others find theirs taken and are counted in the hash map, and the peer's firewall drops
/// every datagram (the drop tracer counts drops in the hash map too). With one drain at the
/// end, every flow must be one row with every packet, byte and drop: the copies of the slots
/// and of the hash map are one flow.
#[test]
fn ebpf_capture_counts_thousands_of_interleaved_flows_exactly() {
    const FLOWS: u16 = 3000;
    const ROUNDS: u64 = 4;
    let veth = Veth::new();
    let (_dir, store) = temp_store();
    nft(
        &veth.b,
        "table inet frt_test {\n chain input {\n  type filter hook input priority 0;\n  \
         udp dport 30000-32999 drop\n }\n}\n",
    );
    let recorder = Recorder::start(&veth.a, &veth.end_a, &store, &["--active-timeout", "1h"]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            in_netns(&veth.a, || {
                let socket = UdpSocket::bind(("10.199.0.1", 0)).unwrap();
                for round in 0..ROUNDS as usize {
                    pin_to_cpu(round % cpus);
                    for port in 0..FLOWS {
                        socket
                            .send_to(&[1u8; UDP_PAYLOAD], ("10.199.0.2", 30_000 + port))
                            .unwrap();
                    }
                }
            })
        });
    });
    std::thread::sleep(Duration::from_millis(300));
    // Stopping checks that nothing was lost for a full map.
    recorder.stop();
    drop(veth);
    let flows = query(
        &store,
        "select count(*) as rows, count(distinct destination_port) as ports,
                min(packets) as fewest, max(packets) as most, sum(bytes) as bytes,
                min(dropped_packets) as fewest_dropped,
                string_agg(distinct cast(traffic_direction as varchar), ',') as directions
         from flows
         where ip_source = '10.199.0.1' and destination_port between 30000 and 32999",
        &[],
    );
    let row = &flows[0];
    assert_eq!(
        (&row["rows"], &row["ports"]),
        (&FLOWS.into(), &FLOWS.into()),
        "one row per flow: {row}"
    );
    assert_eq!(
        (&row["fewest"], &row["most"], &row["fewest_dropped"]),
        (&ROUNDS.into(), &ROUNDS.into(), &ROUNDS.into()),
        "{row}"
    );
    let bytes = u64::from(FLOWS) * ROUNDS * (20 + 8 + UDP_PAYLOAD as u64);
    assert_eq!(row["bytes"], bytes, "{row}");
    assert_eq!(row["directions"], "EGRESS", "{row}");
}

/// More new flows between two drains than the kernel map holds: the recorder drains early
/// when the map is 3/4 full, so every flow is recorded and nothing is lost.
#[test]
fn ebpf_capture_drains_early_when_the_flow_map_fills() {
    const FLOWS: u16 = 300;
    let veth = Veth::new();
    let (_dir, store) = temp_store();
    let options = ["--flow-map-entries", "128", "--active-timeout", "1h"];
    let recorder = Recorder::start(&veth.a, &veth.end_a, &store, &options);
    in_netns(&veth.a, || {
        let socket = UdpSocket::bind(("10.199.0.1", 0)).unwrap();
        // 5 new flows per 50 ms (and one ICMP port-unreachable flow back): well under the 32
        // left when an early drain is due, at the recorder's 100 ms polling.
        for port in 0..FLOWS {
            socket
                .send_to(&[1u8; 8], ("10.199.0.2", 20_000 + port))
                .unwrap();
            if port % 5 == 4 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let summary = recorder.stop();
    drop(veth);
    let early: u64 = summary
        .trim_end()
        .split("; ")
        .find_map(|part| part.strip_suffix(" early drains (flow map nearly full)"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no early drain count in {summary}"));
    assert!(
        early >= 2,
        "{FLOWS} flows through a 128-flow map: {summary}"
    );
    let flows = query(
        &store,
        "select count(distinct destination_port) as ports, sum(packets) as packets
         from flows
         where ip_source = '10.199.0.1' and destination_port between 20000 and 20299",
        &[],
    );
    assert_eq!(flows[0]["ports"], FLOWS, "{flows:?}");
    assert_eq!(flows[0]["packets"], FLOWS, "{flows:?}");
}

/// Seconds since the Unix epoch, as flowsql's `date_part('epoch', ...)` gives them.
fn epoch_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `tc qdisc show dev <end>` in namespace `ns`: whether a clsact qdisc is there.
fn has_clsact(ns: &str, end: &str) -> bool {
    let qdiscs = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["tc", "qdisc", "show", "dev", end])
        .output()
        .expect("iproute2's tc is installed");
    String::from_utf8_lossy(&qdiscs.stdout).contains("qdisc clsact")
}

/// The clsact path (kernels without TCX): flows are recorded the same way; the recorder adds a
/// clsact qdisc only where there is none and removes only the one it added.
#[test]
fn ebpf_capture_through_clsact_removes_only_the_qdisc_it_added() {
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let receiver = in_netns(&veth.b, || {
        UdpSocket::bind(("10.199.0.2", UDP_PORT)).unwrap()
    });
    let send = |count: usize| {
        in_netns(&veth.a, || {
            let socket = UdpSocket::bind(("10.199.0.1", 0)).unwrap();
            for _ in 0..count {
                socket
                    .send_to(&[1u8; UDP_PAYLOAD], ("10.199.0.2", UDP_PORT))
                    .unwrap();
            }
        });
        let mut datagram = [0u8; 2048];
        for _ in 0..count {
            receiver.recv(&mut datagram).unwrap();
        }
    };
    let clsact = ["--tc-attach", "clsact"];

    // No qdisc before: the recorder adds one and removes it.
    assert!(!has_clsact(&veth.a, &veth.end_a));
    let first = dir.path().join("first").display().to_string();
    let recorder = Recorder::start(&veth.a, &veth.end_a, &first, &clsact);
    assert!(has_clsact(&veth.a, &veth.end_a), "added while recording");
    send(3);
    recorder.stop();
    assert!(!has_clsact(&veth.a, &veth.end_a), "removed at exit");

    // Someone else's qdisc: used, and left in place.
    let added = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", veth.a))
        .args(["tc", "qdisc", "add", "dev", &veth.end_a, "clsact"])
        .status()
        .unwrap();
    assert!(added.success());
    let second = dir.path().join("second").display().to_string();
    let recorder = Recorder::start(&veth.a, &veth.end_a, &second, &clsact);
    send(4);
    recorder.stop();
    assert!(
        has_clsact(&veth.a, &veth.end_a),
        "a qdisc it did not add stays"
    );
    drop(veth);

    for (store, datagrams) in [(&first, 3), (&second, 4)] {
        let flows = query(
            store,
            &format!(
                "select sum(packets) as packets from flows
                 where ip_source = '10.199.0.1' and destination_port = {UDP_PORT}"
            ),
            &[],
        );
        assert_eq!(flows[0]["packets"], datagrams, "{store}: {flows:?}");
    }
}

/// Sends `count` UDP datagrams from `a` to `b`'s port `port` (received, so none is dropped).
fn udp_datagrams(veth: &Veth, port: u16, count: usize) {
    udp_between(
        (&veth.a, "10.199.0.1"),
        (&veth.b, "10.199.0.2"),
        port,
        count,
    );
}

/// Sends `count` UDP datagrams from `(namespace, address)` to the other's port `port`, and
/// receives them all (so none is dropped).
fn udp_between(from: (&str, &str), to: (&str, &str), port: u16, count: usize) {
    let receiver = in_netns(to.0, || UdpSocket::bind((to.1, port)).unwrap());
    in_netns(from.0, || {
        let socket = UdpSocket::bind((from.1, 0)).unwrap();
        for _ in 0..count {
            socket.send_to(&[1u8; UDP_PAYLOAD], (to.1, port)).unwrap();
        }
    });
    let mut datagram = [0u8; 2048];
    for _ in 0..count {
        receiver.recv(&mut datagram).unwrap();
    }
}

/// A sample's value in a Prometheus exposition.
/// The address a recorder serves its metrics on, from its startup lines.
fn metrics_address(recorder: &Recorder) -> String {
    recorder
        .startup
        .split("serving metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in {}", recorder.startup))
        .to_string()
}

/// GET `path` from `address` inside namespace `ns`: the status line and the body.
fn http_get(ns: &str, address: &str, path: &str) -> (String, String) {
    in_netns(ns, || support::http_get(address, path))
}

/// Packets recorded per destination port of UDP from `a`, on the recorded interface (drops
/// are recorded node-wide: tests running alongside with the same addresses add drop-only
/// flows, whose direction is unknown).
fn udp_packets(store: &str) -> std::collections::BTreeMap<u64, u64> {
    query(
        store,
        "select destination_port as port, sum(packets) as packets from flows
         where ip_source = '10.199.0.1' and l4_protocol = 'UDP'
           and traffic_direction <> 'TRAFFIC_DIRECTION_UNKNOWN' group by 1",
        &[],
    )
    .iter()
    .map(|row| {
        (
            row["port"].as_u64().unwrap(),
            row["packets"].as_u64().unwrap(),
        )
    })
    .collect()
}

/// A recorder killed with SIGKILL after a drain loses nothing that drain spooled: the next
/// start (same --spool) ships it, once, and its metrics say so; a second recorder on that spool
/// is refused; a restart with nothing new ships nothing again.
#[test]
fn ebpf_capture_killed_then_restarted_ships_the_spooled_flows_once() {
    let veth = Veth::new();
    let (_dir, store) = temp_store();
    let spool = format!("{store}-spool");
    // Segments are sealed only at a stop: the killed run's flows exist only in the spool.
    let keep_open = ["--max-file-age", "1h"];

    let recorder = Recorder::start(&veth.a, &veth.end_a, &store, &keep_open);
    udp_datagrams(&veth, 6001, 4);
    std::thread::sleep(Duration::from_millis(2500)); // two drains: recorded
    recorder.kill();
    assert!(
        parquet_files(Path::new(&store)).is_empty(),
        "nothing shipped before the kill"
    );
    let segments = std::fs::read_dir(format!("{spool}/segments"))
        .unwrap()
        .count();
    assert_eq!(segments, 1, "the killed run's segment is in the spool");

    let with_metrics = [&keep_open[..], &["--metrics-addr", "127.0.0.1:0"]].concat();
    let recorder = Recorder::start(&veth.a, &veth.end_a, &store, &with_metrics);
    assert!(
        recorder
            .startup
            .contains("1 segment(s) from a previous run, shipped first"),
        "{}",
        recorder.startup
    );
    let metrics_addr = metrics_address(&recorder);
    let refused = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", veth.a))
        .args(least_privilege(RECORDER_CAPABILITIES))
        .arg(flowrec_bin())
        .args(["run", "--source", "ebpf", "--interfaces", &veth.end_a])
        .args(["--store", &store, "--spool", &spool])
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{refusal}");
    assert!(
        refusal.contains("is in use by another flowrec (pid"),
        "{refusal}"
    );
    udp_datagrams(&veth, 6002, 3);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, metrics) = http_get(&veth.a, &metrics_addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let value = |name: &str| metric(&metrics, name);
    // The leftover segment was shipped (one file: one table, one hour); this run recorded
    // flows; nothing was lost; the active segment is in the spool.
    assert!(value("flowrec_flows_shipped_total") >= 1, "{metrics}");
    assert_eq!(value("flowrec_files_uploaded_total"), 1, "{metrics}");
    assert!(value("flowrec_flows_recorded_total") >= 1, "{metrics}");
    assert_eq!(value("flowrec_lost_total{cause=\"flow_map_full\"}"), 0);
    assert_eq!(value("flowrec_upload_errors_total"), 0);
    assert!(value("flowrec_spool_bytes") > 0, "{metrics}");
    let (health, body) = http_get(&veth.a, &metrics_addr, "/health");
    assert!(health.contains("200"), "{health} {body}");
    recorder.stop();
    let expected = std::collections::BTreeMap::from([(6001, 4), (6002, 3)]);
    assert_eq!(udp_packets(&store), expected);

    // Nothing new: a restart finds no leftover segment and ships nothing again. (It may record
    // the link's own IPv6 neighbour/MLD chatter while it runs, so the store may gain a file of
    // its own; the files already there stay as they are, and the test's flows are not repeated.)
    let files = parquet_files(Path::new(&store));
    let restarted = Recorder::start(&veth.a, &veth.end_a, &store, &keep_open);
    assert!(
        !restarted.startup.contains("from a previous run"),
        "{}",
        restarted.startup
    );
    restarted.stop();
    drop(veth);
    assert_eq!(udp_packets(&store), expected);
    let after = parquet_files(Path::new(&store));
    assert!(
        files.iter().all(|file| after.contains(file)),
        "{files:?} kept in {after:?}"
    );
    let left = std::fs::read_dir(format!("{spool}/segments"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "shipped segments are deleted");
}

/// Sends a datagram to each of 8 new ports of `b` every 100 ms until the recorder's metrics
/// count flows lost for `cause`; fails after `patience`. (The spool stores little for a flow of
/// the eBPF source, whose Hubble-only columns are left out: one new flow per tick took longer
/// than the patience to fill a budget.)
fn new_flows_until_lost(
    veth: &Veth,
    scrape: &dyn Fn() -> String,
    cause: &str,
    first_port: u16,
    patience: Duration,
) {
    let sample = format!("flowrec_lost_total{{cause=\"{cause}\"}}");
    let deadline = std::time::Instant::now() + patience;
    let mut port = first_port;
    while metric(&scrape(), &sample) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no flow lost for {cause}: {}",
            scrape()
        );
        for _ in 0..8 {
            udp_datagrams(veth, port, 1);
            port += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to 60 s: retries back off up to 30 s) until every recorded flow was shipped.
fn wait_until_everything_recorded_is_shipped(scrape: &dyn Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = scrape();
        let shipped = metric(&metrics, "flowrec_flows_shipped_total");
        if shipped > 0 && shipped == metric(&metrics, "flowrec_flows_recorded_total") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never caught up: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The store refuses writes (as when S3 is down): the recorder keeps recording into its spool
/// up to --spool-max-bytes, then counts new flows as lost (what is spooled is kept); once the
/// store takes writes again, everything spooled lands. Lost = received - stored, exactly.
#[test]
fn ebpf_capture_with_the_store_down_keeps_its_spool_within_budget() {
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    // Owned by root, 0755: the recorder (nobody) cannot write there yet.
    std::fs::create_dir(&store_dir).unwrap();
    let store = store_dir.display().to_string();
    let options = [
        "--max-file-age",
        "1s",
        "--spool-max-bytes",
        "150KiB",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    let recorder = Recorder::start(&veth.a, &veth.end_a, &store, &options);
    let address = metrics_address(&recorder);
    let scrape = || http_get(&veth.a, &address, "/metrics").1;
    // A new flow every 100 ms until the budget is reached and flows are being lost.
    new_flows_until_lost(&veth, &scrape, "spool_full", 7000, Duration::from_secs(60));
    let metrics = scrape();
    assert!(
        metric(&metrics, "flowrec_upload_errors_total") > 0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "flowrec_flows_shipped_total"),
        0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "flowrec_spool_bytes") <= 150 * 1024,
        "{metrics}"
    );

    // The store is back: the spool empties (retries back off up to 30 s).
    std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    wait_until_everything_recorded_is_shipped(&scrape);
    let summary = recorder.stop();
    drop(veth);
    let number = |pattern: &str| summary_number(&summary, pattern);
    let (received, stored) = (number(" flows, shipped"), number(" flows into "));
    let lost = number(" flows (spool full)");
    assert!(lost > 0, "{summary}");
    assert_eq!(stored + lost, received, "{summary}");
    let rows = query(&store, "select count(*) as n from flows", &[]);
    assert_eq!(rows[0]["n"], stored, "{summary}");
}

/// A small tmpfs mounted for a test (root can), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0777"),
                "frt-tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The spool's disk fills up (the store refuses writes meanwhile, so nothing can be shipped):
/// the recorder counts the flows it cannot write, keeps running, and records again once
/// shipping frees space. Lost + stored = received, exactly.
#[test]
fn ebpf_capture_on_a_full_disk_counts_what_it_cannot_record_and_goes_on() {
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap(); // root's, 0755: refuses the recorder's writes
    let store = store_dir.display().to_string();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "256k");
    let spool = disk.0.join("spool").display().to_string();
    let options = [
        "--spool",
        &spool,
        "--max-file-age",
        "1s",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    let recorder = Recorder::start(&veth.a, &veth.end_a, &store, &options);
    let address = metrics_address(&recorder);
    let scrape = || http_get(&veth.a, &address, "/metrics").1;
    new_flows_until_lost(&veth, &scrape, "spool_error", 8000, Duration::from_secs(90));
    let (health, _) = http_get(&veth.a, &address, "/health");
    assert!(
        health.contains("200"),
        "still running on a full disk: {health}"
    );

    // The store is back: shipping frees the disk, and recording resumes.
    std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    wait_until_everything_recorded_is_shipped(&scrape);
    udp_datagrams(&veth, 30999, 3);
    std::thread::sleep(Duration::from_millis(1500));
    let summary = recorder.stop();
    drop(veth);
    let number = |pattern: &str| summary_number(&summary, pattern);
    let (received, stored) = (number(" flows, shipped"), number(" flows into "));
    let lost = number(" flows (spool write failed)");
    assert!(lost > 0, "{summary}");
    assert_eq!(number(" flows (spool full)"), 0, "{summary}");
    assert_eq!(stored + lost, received, "{summary}");
    let rows = query(&store, "select count(*) as n from flows", &[]);
    assert_eq!(rows[0]["n"], stored, "{summary}");
    assert_eq!(
        udp_packets(&store).get(&30999),
        Some(&3),
        "recording resumed"
    );
    drop(disk);
}

/// The eBPF recorder's memory bound (README, "flowrec run --source ebpf"): with the default
/// flags (a 65,536-entry flow map drained every 10 s or when 3/4 full, segments sealed at the
/// stop here; the capacity is given, as it is the default on up to 14 CPUs only), rounds of
/// 64,512 new flows each fill the map; the peak resident memory, the shipping of the whole
/// segment at the stop included, stays within the bound, and with the kernel memory of the
/// recorder's maps within the DaemonSet's limit. Read from /proc (VmHWM, sampled until the
/// process exits; the maps' memlock), not timed.
///
/// The flows are datagrams from every source port to one port where `b` reads them all: a
/// datagram the kernel drops (a closed port, a firewall, a full socket buffer) is seen by every
/// recorder on the machine, and would fill the small maps of the tests running alongside.
#[test]
fn ebpf_capture_keeps_its_memory_within_the_documented_bound() {
    const ROUNDS: u64 = 12;
    const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 1024..=65_535;
    const PORT: u16 = 7000;
    /// Issue 19's target itself. README: 101-108 MiB measured with the release build over 12
    /// such rounds, 130 MiB with the debug build this test runs (184-196 before a drain's
    /// rows came in time order: shipping sorted a copy of each batch); the margin covers the
    /// machine.
    const BOUND_MIB: u64 = 200;
    let per_round = SOURCE_PORTS.len() as u64;
    let veth = Veth::new();
    let (_dir, store) = temp_store();
    let receiver = in_netns(&veth.b, || UdpSocket::bind(("10.199.0.2", PORT)).unwrap());
    let recorder = Recorder::start(
        &veth.a,
        &veth.end_a,
        &store,
        &["--active-timeout", "10s", "--flow-map-entries", "65536"],
    );
    let pid = recorder.child.id();
    let maps_mib = support::bpf_maps_kib(pid) / 1024;
    assert!(maps_mib > 0, "the recorder holds its maps");
    // VmHWM until the process has exited.
    let sampler = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Some(kib) = support::vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kib / 1024
    });
    let mut datagram = [0u8; 64];
    for _ in 0..ROUNDS {
        in_netns(&veth.a, || {
            for source_port in SOURCE_PORTS {
                let socket = UdpSocket::bind(("10.199.0.1", source_port)).unwrap();
                socket.send_to(b"x", ("10.199.0.2", PORT)).unwrap();
                // Received before the next is sent: a full socket buffer would drop.
                receiver.recv(&mut datagram).unwrap();
            }
        });
        std::thread::sleep(Duration::from_secs(3));
    }
    recorder.stop();
    let peak_mib = sampler.join().unwrap();
    drop(veth);
    eprintln!("eBPF recorder peak RSS: {peak_mib} MiB, kernel maps {maps_mib} MiB");
    let recorded = query(
        &store,
        &format!(
            "select count(distinct source_port) as ports, count(*) as flows from flows
             where ip_source = '10.199.0.1' and destination_port = {PORT}"
        ),
        &[],
    );
    assert_eq!(recorded[0]["ports"], per_round, "{recorded:?}");
    assert!(
        recorded[0]["flows"].as_u64().unwrap() >= ROUNDS * per_round,
        "{recorded:?}"
    );
    assert!(
        peak_mib <= BOUND_MIB,
        "peak RSS {peak_mib} MiB over the documented {BOUND_MIB} MiB"
    );
    // The DaemonSet's limit leaves room above the measured peak and the kernel's maps, which
    // the kernel charges to the same memory cgroup.
    let limit = crate::deploy::recorder_memory_limit_mib("overlays/ebpf");
    assert!(
        peak_mib + maps_mib < limit,
        "peak RSS {peak_mib} MiB + maps {maps_mib} MiB over the manifest's limit {limit} MiB"
    );
}

/// A copy of this kernel's BTF without `names` (each renamed, same length, so the rest of the
/// file stays valid): the facts of a kernel that lacks what they name.
fn btf_without(names: &[&str]) -> Vec<u8> {
    let mut btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("CI kernels publish BTF");
    for name in names {
        let whole = [b"\0", name.as_bytes(), b"\0"].concat();
        let at = btf
            .windows(whole.len())
            .position(|w| w == whole)
            .unwrap_or_else(|| panic!("{name} is in this kernel's BTF"));
        *btf.get_mut(at + name.len()).unwrap() = b'X';
    }
    btf
}

/// A 5.15 kernel's facts (kfree_skb without a drop reason, no TCX, no coarse clock), from
/// this kernel's BTF with those three names changed: `flowrec kernel` says what would be
/// skipped, and `run` starts, attaches the tc programs through clsact with the precise clock
/// and the TCP tracer, skips the drop tracer naming why, and records exact flows with their
/// TCP columns and real times, and no drops (which the drop tracer would have seen).
#[test]
fn ebpf_capture_on_a_kernel_without_drop_reasons_skips_the_drop_tracer_and_records_the_rest() {
    let veth = Veth::new();
    let (_dir, store) = temp_store();
    let btf = Path::new(&store).with_file_name("vmlinux-5.15");
    std::fs::write(
        &btf,
        btf_without(&[
            "skb_drop_reason",
            "BPF_TCX_INGRESS",
            "BPF_FUNC_ktime_get_coarse_ns",
        ]),
    )
    .unwrap();
    let btf = btf.to_str().unwrap();

    let report = Command::new(flowrec_bin())
        .args([
            "kernel",
            "--kernel-btf",
            btf,
            "--kernel-release",
            "5.15.0-1034-gke",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&report.stdout);
    assert_eq!(report.status.code(), Some(1), "{shown}");
    let line = |program: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{program} ")))
            .unwrap_or_else(|| panic!("no {program} in {shown}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("tc_ingress")
            .starts_with("tc_ingress attach tc ingress (clsact filter) clock: bpf_ktime_get_ns"),
        "{shown}"
    );
    assert!(
        line("on_kfree_skb")
            .starts_with("on_kfree_skb skip tp_btf/kfree_skb kfree_skb(struct sk_buff *, void *"),
        "{shown}"
    );
    assert!(
        line("tcp_lifecycle").starts_with("tcp_lifecycle attach sock_ops on cgroup"),
        "{shown}"
    );
    assert!(
        shown.starts_with(&format!("kernel 5.15.0-1034-gke (BTF {btf})")),
        "{shown}"
    );

    let started = std::time::SystemTime::now();
    let recorder = Recorder::start(
        &veth.a,
        &veth.end_a,
        &store,
        &["--kernel-btf", btf, "--metrics-addr", "127.0.0.1:0"],
    );
    assert!(
        recorder.startup.contains(
            "on_kfree_skb (tp_btf/kfree_skb) not attached: kfree_skb(struct sk_buff *, void *"
        ),
        "{}",
        recorder.startup
    );
    assert!(
        recorder
            .startup
            .contains("(tc via clsact; drops: not recorded; TCP: cgroup "),
        "{}",
        recorder.startup
    );
    assert!(has_clsact(&veth.a, &veth.end_a), "clsact, not TCX");
    let (client_port, _) = tcp_transfer(&veth, TCP_PORT);
    // A SYN to a closed port: NO_SOCKET for a drop tracer, none here.
    let refused = in_netns(&veth.a, || TcpStream::connect(("10.199.0.2", CLOSED_PORT)));
    assert!(refused.is_err());
    udp_datagrams(&veth, UDP_PORT, 3);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, exposition) = http_get(&veth.a, &metrics_address(&recorder), "/metrics");
    for (program, attached) in [
        ("tc_ingress", 1),
        ("tc_egress", 1),
        ("on_kfree_skb", 0),
        ("tcp_lifecycle", 1),
    ] {
        let sample = format!("flowrec_ebpf_program_attached{{program=\"{program}\"}} {attached}\n");
        assert!(exposition.contains(&sample), "{sample} in {exposition}");
    }
    recorder.stop();
    let stopped = std::time::SystemTime::now();
    assert!(
        !has_clsact(&veth.a, &veth.end_a),
        "the qdisc it added is removed"
    );
    drop(veth);

    let totals = query(
        &store,
        "select count(*) as rows, coalesce(sum(dropped_packets), 0) as dropped,
                sum(case when verdict = 'DROPPED' then 1 else 0 end) as dropped_rows,
                min(date_part('epoch', flow_start)) as first,
                max(date_part('epoch', flow_end)) as last
         from flows",
        &[],
    );
    let totals = &totals[0];
    assert_eq!(
        (&totals["dropped"], &totals["dropped_rows"]),
        (&0.into(), &0.into()),
        "{totals}"
    );
    let (first, last) = (
        totals["first"].as_f64().unwrap(),
        totals["last"].as_f64().unwrap(),
    );
    // The precise clock, turned into wall time like the coarse one.
    assert!(
        epoch_seconds(started) - 1.0 <= first
            && first <= last
            && last <= epoch_seconds(stopped) + 1.0,
        "{totals}: between {started:?} and {stopped:?}"
    );
    let tcp = query(
        &store,
        &format!(
            "select sum(bytes) as bytes, max(tcp_bytes_acked) as acked,
                    max(tcp_srtt_us) as srtt, bool_or(array_has(tcp_flags, 'FIN')) as fin
             from flows where ip_source = '10.199.0.1' and source_port = {client_port}"
        ),
        &[],
    );
    assert!(
        tcp[0]["bytes"].as_u64().unwrap() > TCP_BYTES as u64,
        "{tcp:?}"
    );
    assert!(
        tcp[0]["acked"].as_u64().unwrap() >= TCP_BYTES as u64,
        "the TCP tracer ran: {tcp:?}"
    );
    assert!(tcp[0]["srtt"].as_u64().unwrap() > 0, "{tcp:?}");
    assert_eq!(tcp[0]["fin"], true, "{tcp:?}");
    assert_eq!(udp_packets(&store).get(&u64::from(UDP_PORT)), Some(&3));
}

/// A pod started after the recorder gets a veth: the recorder attaches to it within a second
/// (it matches `--interfaces`) and records its flows; when it is deleted the recorder lets go
/// of it and goes on. Through TCX and through clsact (whose qdisc goes with the interface).
#[test]
fn ebpf_capture_attaches_to_interfaces_that_appear_after_it_started() {
    for mode in ["tcx", "clsact"] {
        let namespaces = Namespaces::new(&["a", "b", "c"]);
        let (end_a, _) = namespaces.link(0, "10.199.0.1/24", 1, "10.199.0.2/24");
        let (a, c) = (namespaces.names[0].clone(), namespaces.names[2].clone());
        let (_dir, store) = temp_store();
        let pattern = format!("frt{}*", namespaces.id);
        let recorder = Recorder::start(
            &a,
            &pattern,
            &store,
            &["--tc-attach", mode, "--metrics-addr", "127.0.0.1:0"],
        );
        assert!(
            recorder
                .startup
                .contains(&format!("on {end_a} and matching interfaces to come")),
            "{}",
            recorder.startup
        );
        let metrics = metrics_address(&recorder);
        let interfaces = || {
            let (_, exposition) = http_get(&a, &metrics, "/metrics");
            exposition
                .lines()
                .find_map(|l| l.strip_prefix("flowrec_ebpf_interfaces "))
                .map(|v| v.parse::<u64>().unwrap())
                .unwrap_or_else(|| panic!("no flowrec_ebpf_interfaces in {exposition}"))
        };
        let wait_for = |count: u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while interfaces() != count {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{mode}: never {count} interfaces"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        assert_eq!(interfaces(), 1);

        // The new pod: a veth from `a` to `c`.
        let (new_end, _) = namespaces.link(0, "10.198.0.1/24", 2, "10.198.0.2/24");
        wait_for(2);
        udp_between((&a, "10.198.0.1"), (&c, "10.198.0.2"), UDP_PORT, 3);

        // The pod goes: its namespace, and so both ends of the pair.
        let deleted = Command::new("ip")
            .args(["netns", "del", &c])
            .status()
            .unwrap();
        assert!(deleted.success());
        wait_for(1);
        if mode == "clsact" {
            assert!(
                has_clsact(&a, &end_a),
                "the first interface keeps its qdisc"
            );
        }
        let rest = recorder.stop();
        assert!(!rest.contains("cannot remove"), "{mode}: {rest}");
        if mode == "clsact" {
            assert!(!has_clsact(&a, &end_a), "removed at exit");
        }
        let flows = query(
            &store,
            &format!(
                "select cast(interface_name as varchar) as interface, sum(packets) as packets
                 from flows where ip_destination = '10.198.0.2' and destination_port = {UDP_PORT}
                 group by 1"
            ),
            &[],
        );
        assert_eq!(flows.len(), 1, "{mode}: {flows:?}");
        assert_eq!(flows[0]["interface"], new_end.as_str(), "{mode}: {flows:?}");
        assert_eq!(flows[0]["packets"], 3, "{mode}: {flows:?}");
    }
}
