//! The clsact qdisc, for attaching tc programs on kernels without TCX (before 6.6) or when
//! asked (`--tc-attach clsact`).
//!
//! A clsact qdisc is shared: Cilium, Calico or an operator's own filters may hang off it. So
//! the recorder adds one only where none exists, and at exit removes only the ones it added
//! ([`Qdiscs`] drops after the programs are detached). aya adds the qdisc but has no call to
//! remove it; removing is one rtnetlink request, sent here.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Linux's handle of the clsact qdisc (`TC_H_CLSACT`, "ffff:fff1").
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
/// Its own handle: major ffff, minor 0.
const CLSACT_HANDLE: u32 = 0xFFFF_0000;

#[derive(Debug, thiserror::Error)]
#[error("interface {interface}: cannot {action} the clsact qdisc: {source}")]
pub struct QdiscError {
    interface: String,
    action: &'static str,
    #[source]
    source: io::Error,
}

/// The clsact qdiscs this recorder added; removed when dropped.
#[derive(Debug, Default)]
pub struct Qdiscs {
    added: Vec<String>,
}

impl Qdiscs {
    /// Makes sure `interface` has a clsact qdisc; remembers it if this call added it.
    pub fn ensure(&mut self, interface: &str) -> Result<(), QdiscError> {
        match aya::programs::tc::qdisc_add_clsact(interface) {
            Ok(()) => {
                self.added.push(interface.to_string());
                Ok(())
            }
            Err(aya::programs::tc::TcError::NetlinkError(error))
                if error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            Err(error) => Err(QdiscError {
                interface: interface.to_string(),
                action: "add",
                source: io::Error::other(error),
            }),
        }
    }

    /// Interfaces whose clsact qdisc this recorder added.
    pub fn added(&self) -> &[String] {
        &self.added
    }

    /// The capture is done with `interface`: the qdisc it added there is removed, unless the
    /// interface is gone (and the qdisc with it).
    pub fn release(&mut self, interface: &str) {
        let before = self.added.len();
        self.added.retain(|added| added != interface);
        let exists = std::ffi::CString::new(interface)
            // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
            .is_ok_and(|name| unsafe { libc::if_nametoindex(name.as_ptr()) } != 0);
        if self.added.len() < before && exists {
            if let Err(error) = remove(interface) {
                crate::warn!("{error}");
            }
        }
    }
}

impl Drop for Qdiscs {
    fn drop(&mut self) {
        for interface in self.added.drain(..) {
            if let Err(error) = remove(&interface) {
                crate::warn!("{error}");
            }
        }
    }
}

/// Deletes the clsact qdisc of `interface` (and with it every filter attached to it).
pub fn remove(interface: &str) -> Result<(), QdiscError> {
    let failed = |source| QdiscError {
        interface: interface.to_string(),
        action: "remove",
        source,
    };
    let name = std::ffi::CString::new(interface)
        .map_err(|_| failed(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    rtnetlink_request(&delete_qdisc_message(index)).map_err(failed)
}

/// RTM_DELQDISC for the clsact qdisc of interface `index`: nlmsghdr, tcmsg, TCA_KIND "clsact".
fn delete_qdisc_message(index: u32) -> Vec<u8> {
    const NLMSG_HEADER: usize = 16;
    const TCMSG: usize = 20;
    const TCA_KIND: u16 = 1;
    let kind = b"clsact\0";
    let attribute_len = 4 + kind.len();
    let padded = (attribute_len + 3) & !3;
    let total = NLMSG_HEADER + TCMSG + padded;
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_ne_bytes());
    message.extend_from_slice(&libc::RTM_DELQDISC.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
                                                    // struct tcmsg: family, 3 bytes padding, ifindex, handle, parent, info.
    message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    message.extend_from_slice(&(index as i32).to_ne_bytes());
    message.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    message.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&(attribute_len as u16).to_ne_bytes());
    message.extend_from_slice(&TCA_KIND.to_ne_bytes());
    message.extend_from_slice(kind);
    message.resize(total, 0);
    message
}

/// Sends one rtnetlink request and waits for its acknowledgement.
fn rtnetlink_request(message: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket calls on a descriptor owned below; buffers outlive the calls.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Closed on every return below.
        let _socket = OwnedFd::from_raw_fd(fd);
        if libc::send(fd, message.as_ptr().cast(), message.len(), 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 1024];
        let received = libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0);
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        acknowledgement(&reply[..received as usize])
    }
}

/// The result carried by an NLMSG_ERROR reply (error 0 is the acknowledgement).
fn acknowledgement(reply: &[u8]) -> io::Result<()> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink reply");
    let kind = u16::from_ne_bytes(reply.get(4..6).ok_or_else(malformed)?.try_into().unwrap());
    if kind != libc::NLMSG_ERROR as u16 {
        return Err(malformed());
    }
    let code = i32::from_ne_bytes(reply.get(16..20).ok_or_else(malformed)?.try_into().unwrap());
    match code {
        0 => Ok(()),
        negative => Err(io::Error::from_raw_os_error(-negative)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delete_request_is_laid_out_as_rtnetlink_expects() {
        let message = delete_qdisc_message(7);
        assert_eq!(message.len(), 16 + 20 + 12);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 48);
        assert_eq!(u16::from_ne_bytes(message[4..6].try_into().unwrap()), 37); // RTM_DELQDISC
        assert_eq!(i32::from_ne_bytes(message[20..24].try_into().unwrap()), 7);
        assert_eq!(&message[40..47], b"clsact\0");
    }

    #[test]
    fn a_netlink_error_reply_becomes_the_os_error() {
        let mut reply = vec![0u8; 36];
        reply[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        reply[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(
            acknowledgement(&reply).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        reply[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert!(acknowledgement(&reply).is_ok());
        assert!(acknowledgement(&reply[..10]).is_err());
    }
}
