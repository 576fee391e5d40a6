//! Reading a per-CPU map a few thousand entries per system call (`BPF_MAP_LOOKUP_BATCH` and
//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH`, Linux 5.6): emptying the flow hash map instead of three
//! calls per entry (next key, lookup, delete), which were most of a drain's CPU; reading the
//! flow slots instead of a call per slot, which were most of an idle drain's. aya 0.14 has no
//! batch API, so this module makes the one raw bpf(2) call of the recorder; on a kernel without
//! the commands the caller falls back to aya's per-key calls.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::MapData;
use aya::Pod;

/// How a batch reads a map's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Each entry is deleted as it is read (`BPF_MAP_LOOKUP_AND_DELETE_BATCH`): hash maps.
    Take,
    /// Entries stay (`BPF_MAP_LOOKUP_BATCH`): arrays, whose entries cannot be deleted.
    Look,
}

impl Reading {
    /// `enum bpf_cmd`'s number.
    fn command(self) -> libc::c_long {
        match self {
            Reading::Look => 24,
            Reading::Take => 25,
        }
    }
}
/// The kernel's ENOTSUPP (not in libc: kernel-internal, but bpf(2) returns it).
const ENOTSUPP: i32 = 524;
/// Bytes of keys and values one call fills at most: bounded whatever the CPU count (a value
/// is one copy per possible CPU).
const BUFFER_BYTES: usize = 4 << 20;
const MAX_BATCH: usize = 8192;

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h), field for field: in_batch,
/// out_batch, keys, values (`__aligned_u64`), count, map_fd (`__u32`), elem_flags, flags.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const _: () = assert!(size_of::<BatchAttr>() == 56);

/// The bytes the kernel gives each CPU's copy of a per-CPU value of type `V`, in a map and in
/// what it copies out: round_up(value_size, 8).
pub fn per_cpu_stride<V>() -> usize {
    size_of::<V>().next_multiple_of(8)
}

/// Reads every entry of the per-CPU map `map` (key type `K`, value type `V` per CPU), taking it
/// out or not as `reading` says, and gives each to `each` with its per-CPU copies (one per
/// possible CPU). Entries added meanwhile may or may not be read. `Ok(false)`: the kernel does
/// not know the command for this map, nothing was read.
pub fn read_all<K: Pod, V: Pod>(
    map: &MapData,
    reading: Reading,
    mut each: impl FnMut(K, &[V]),
) -> io::Result<bool> {
    // The kernel writes keys and values of the map's sizes, a value per possible CPU: the
    // buffers below are sized from `K`, `V` and the CPUs, so those are checked, not assumed.
    let info = map.info().map_err(io::Error::other)?;
    if (info.key_size() as usize, info.value_size() as usize) != (size_of::<K>(), size_of::<V>()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the map's keys and values are {} and {} bytes, not {} and {}",
                info.key_size(),
                info.value_size(),
                size_of::<K>(),
                size_of::<V>()
            ),
        ));
    }
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
    let map = map.fd().as_fd();
    let stride = per_cpu_stride::<V>();
    let value_bytes = stride * cpus.max(1);
    let mut batch = (BUFFER_BYTES / (value_bytes + size_of::<K>())).clamp(64, MAX_BATCH);
    let mut keys = vec![0u8; batch * size_of::<K>()];
    let mut values = vec![0u8; batch * value_bytes];
    let mut copies: Vec<V> = Vec::with_capacity(cpus);
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::addr_of!(token_in) as u64
            },
            out_batch: std::ptr::addr_of_mut!(token_out) as u64,
            map_fd: map.as_raw_fd() as u32,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: batch as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix of the size given; the kernel writes at
        // most `count` keys of the map's key size (`K`, checked when aya opened the map) and
        // `count` values of `value_bytes` into buffers of that size, and a batch token of at
        // most 8 bytes into `token_out`.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                reading.command(),
                std::ptr::addr_of_mut!(attr),
                size_of::<BatchAttr>(),
            )
        };
        let error = (result < 0).then(io::Error::last_os_error);
        // Entries are returned even with ENOENT (the last, partial batch).
        let taken = (attr.count as usize).min(batch);
        for index in 0..taken {
            // SAFETY: in bounds (index < batch); `K` and `V` are plain data (`Pod`), read
            // unaligned from the byte buffers.
            let key: K = unsafe {
                std::ptr::read_unaligned(keys.as_ptr().add(index * size_of::<K>()).cast())
            };
            copies.clear();
            for cpu in 0..cpus {
                let at = index * value_bytes + cpu * stride;
                copies.push(unsafe { std::ptr::read_unaligned(values.as_ptr().add(at).cast()) });
            }
            each(key, &copies);
        }
        match error.map(|e| (e.raw_os_error(), e)) {
            // Never seen (the end is ENOENT), but a call that took nothing must not loop.
            None if taken == 0 => return Ok(true),
            None => {}
            Some((Some(libc::ENOENT), _)) => return Ok(true),
            // A bucket holds more entries than a batch: a bigger batch, same position.
            Some((Some(libc::ENOSPC), _)) if taken == 0 && batch < (1 << 20) => {
                batch *= 2;
                keys.resize(batch * size_of::<K>(), 0);
                values.resize(batch * value_bytes, 0);
                continue;
            }
            Some((Some(libc::EINVAL | ENOTSUPP | libc::ENOSYS), _)) if first && taken == 0 => {
                return Ok(false)
            }
            Some((_, error)) => return Err(error),
        }
        first = false;
        token_in = token_out;
    }
}
