//! The tc programs on a real kernel: two network namespaces joined by a veth pair (names
//! prefixed `frt`, removed afterwards), the programs attached on one end, real traffic. Needs
//! root, as CI runs; anywhere else these tests fail and say so.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;

use super::layout::{FlowKey, FlowStats, DIRECTION_EGRESS, DIRECTION_INGRESS};
use super::TcCapture;

const FIN: u32 = 0x01;
const SYN: u32 = 0x02;
const ACK: u32 = 0x10;

/// Two namespaces `a` and `b`, and a veth pair between them: 10.199.0.1 in `a`, 10.199.0.2 in
/// `b`. Removed on drop (deleting a namespace deletes its end of the veth, and so the pair).
struct Veth {
    a: String,
    b: String,
    /// The veth end inside `a`.
    end_a: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 is installed");
    assert!(status.success(), "ip {}", args.join(" "));
}

impl Veth {
    fn new(tag: &str) -> Veth {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the eBPF tests need root (CI runs them as root)"
        );
        let id = std::process::id() % 100_000;
        let veth = Veth {
            a: format!("frt-{tag}-a-{id}"),
            b: format!("frt-{tag}-b-{id}"),
            end_a: format!("frt{id}{tag}a"),
        };
        let end_b = format!("frt{id}{tag}b");
        ip(&["netns", "add", &veth.a]);
        ip(&["netns", "add", &veth.b]);
        ip(&[
            "link",
            "add",
            &veth.end_a,
            "type",
            "veth",
            "peer",
            "name",
            &end_b,
        ]);
        ip(&["link", "set", &veth.end_a, "netns", &veth.a]);
        ip(&["link", "set", &end_b, "netns", &veth.b]);
        for (ns, end, address) in [
            (&veth.a, &veth.end_a, "10.199.0.1/24"),
            (&veth.b, &end_b, "10.199.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", address, "dev", end]);
            ip(&["-n", ns, "link", "set", end, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread that lives in network namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns exists");
                // SAFETY: setns on this thread only, with a valid namespace fd.
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

fn v4(key_addr: &[u8; 16]) -> Option<Ipv4Addr> {
    (key_addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
        .then(|| Ipv4Addr::new(key_addr[12], key_addr[13], key_addr[14], key_addr[15]))
}

fn find(
    flows: &[(FlowKey, FlowStats)],
    src: [u8; 4],
    dst: [u8; 4],
    port: u16,
    from_port: bool,
) -> (FlowKey, FlowStats) {
    *flows
        .iter()
        .find(|(key, _)| {
            v4(&key.src_addr) == Some(Ipv4Addr::from(src))
                && v4(&key.dst_addr) == Some(Ipv4Addr::from(dst))
                && key.protocol == libc::IPPROTO_TCP as u8
                && if from_port {
                    key.src_port == port
                } else {
                    key.dst_port == port
                }
        })
        .unwrap_or_else(|| panic!("no flow {src:?} -> {dst:?} port {port} in {flows:#?}"))
}

/// A TCP transfer of a known size: one flow per direction, counted exactly. Every segment of
/// this connection carries a 20-byte IP header and a 32-byte TCP header (timestamps option);
/// the SYN and SYN-ACK carry 8 more option bytes (MSS, SACK-permitted, window scale). So the
/// client's flow is `N + 52 * packets + 8` IP bytes and the server's `52 * packets + 8`.
#[test]
fn a_tcp_transfer_is_one_flow_per_direction_with_exact_bytes_and_packets() {
    const N: usize = 1_000_000;
    const PORT: u16 = 5201;
    let veth = Veth::new("t");
    let listener = in_netns(&veth.b, || {
        TcpListener::bind(("10.199.0.2", PORT)).expect("bind in namespace b")
    });
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut received = Vec::new();
        stream.read_to_end(&mut received).expect("read");
        received.len()
    });
    let (flows, lost, if_index) = in_netns(&veth.a, || {
        let mut capture = TcCapture::load().expect("load the tc programs");
        capture.attach(&veth.end_a).expect("attach");
        let mut stream = TcpStream::connect(("10.199.0.2", PORT)).expect("connect");
        stream.write_all(&vec![7u8; N]).expect("send");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("wait for the server to close");
        drop(stream);
        // The last ACK of the close.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let flows = capture.drain().expect("drain");
        let lost = capture.packets_lost_map_full().expect("loss counter");
        let name = std::ffi::CString::new(veth.end_a.clone()).unwrap();
        // SAFETY: a valid C string.
        let if_index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        (flows, lost, if_index)
    });
    assert_eq!(server.join().unwrap(), N);
    assert_eq!(lost, 0);

    let (_, out) = find(&flows, [10, 199, 0, 1], [10, 199, 0, 2], PORT, false);
    let (_, back) = find(&flows, [10, 199, 0, 2], [10, 199, 0, 1], PORT, true);
    assert_eq!(
        out.bytes,
        N as u64 + 52 * out.packets + 8,
        "client -> server: {out:?}"
    );
    assert_eq!(
        back.bytes,
        52 * back.packets + 8,
        "server -> client: {back:?}"
    );
    // At least one full-size segment per 64 KiB GSO batch, and never fewer than the data needs.
    assert!(out.packets as usize >= N / 65_483, "{out:?}");
    for stats in [out, back] {
        assert_eq!(
            stats.tcp_flags & (SYN | ACK | FIN),
            SYN | ACK | FIN,
            "{stats:?}"
        );
        assert_eq!(stats.if_index, if_index);
        assert!(stats.first_seen_ns <= stats.last_seen_ns);
    }
    assert_eq!(out.direction, DIRECTION_EGRESS);
    assert_eq!(back.direction, DIRECTION_INGRESS);

    // Drained: the next drain starts from nothing.
    drop(veth);
}
