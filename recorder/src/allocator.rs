//! How the process's allocator (mimalloc, the binaries' `#[global_allocator]`) returns memory:
//! set once at start by `main`, and by the benchmarks that measure the recorder's stages, so
//! that they pay what the recorder pays.

/// When freed memory goes back to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Kept for good: `import` decodes and frees large Arrow buffers for every chunk, and
    /// returning them made the kernel zero fresh pages for the next chunk (a third of an
    /// import's CPU in `clear_page`, perf on 200k flows).
    Never,
    /// Returned once unused for this long. `run` is a DaemonSet beside the workloads, where
    /// memory is what a platform team budgets: every thread (stream, decode, ship) keeping the
    /// peak of what it once freed added up to 300-340 MiB at 130k flows/s; purging what stays
    /// unused for 1 s brings the peak to ~160 MiB for ~5% more CPU (after 10 ms: 181 MiB,
    /// +40%). `make bench-hubble` measures both.
    AfterMs(i64),
}

/// Sets mimalloc's purge delay. Call before any thread is started.
pub fn purge_delay(purge: Purge) {
    // `mi_option_purge_delay` in include/mimalloc.h (15 in both v2 and v3, the version
    // libmimalloc-sys builds by default); in ms, -1 = never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    let delay = match purge {
        Purge::Never => -1,
        Purge::AfterMs(ms) => ms as std::os::raw::c_long,
    };
    // SAFETY: sets a global option before any thread is started; no pointers involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
}

/// No transparent huge pages for this process. mimalloc asks for them (MADV_HUGEPAGE), and then
/// every first touch of a fresh 2 MiB region zeroes all of it, used or not: measured on 1M flows,
/// 4.3 s of system time with them, 1.2 s without, the same user time (perf: `clear_page_erms`
/// under `do_huge_pmd_anonymous_page`). A process flag, so no environment variable is needed.
pub fn no_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments only; failure (an old kernel) just keeps the default.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Returns the memory this thread has freed to the kernel now, rather than after the purge
/// delay. For work that frees a large peak at once and then idles: shipping a segment.
pub fn release_freed() {
    // SAFETY: a flag as the only argument; collects the calling thread's heap and purges
    // mimalloc's free pages. A no-op in effect when mimalloc is not the global allocator.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
