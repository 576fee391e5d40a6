//! A panic in any thread of a long-running recorder ends the process.
//!
//! Without this, a panicking thread dies alone: a source thread that panics leaves a process
//! that still serves `/health` but records nothing, and a panicking writer thread leaves a
//! stream that is never read again. Kubernetes restarts a process that exits, and the spool
//! makes a restart lose nothing (everything recorded is in it; ARCHITECTURE.md, "what
//! recorded means"). So the first panic is logged, in the run's log format, with the thread
//! and the place, counted in the spool folder (the next run exports the count as
//! `flowrec_panics_total`), and the process exits with [`PANIC_EXIT`]. This does not depend on
//! the profile's `panic` strategy: with `panic = "abort"` the hook runs first as well.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The spool's panic counter file, once the run knows its spool.
static COUNTER: OnceLock<PathBuf> = OnceLock::new();

const COUNTER_FILE: &str = "panics";

/// Panics counted in `spool` so far (by earlier runs on it).
pub fn counted(spool: &Path) -> u64 {
    std::fs::read_to_string(spool.join(COUNTER_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// From now on a panic is counted in `spool`.
pub fn count_in(spool: &Path) {
    let _ = COUNTER.set(spool.to_path_buf());
}

/// Best effort: the process is ending, and a full disk must not hide the panic.
fn count() {
    if let Some(spool) = COUNTER.get() {
        let _ = std::fs::write(
            spool.join(COUNTER_FILE),
            format!("{}\n", counted(spool) + 1),
        );
    }
}

/// EX_SOFTWARE (sysexits.h): an internal error, distinct from 1 (partial) and 2 (usage).
pub const PANIC_EXIT: i32 = 70;

/// Installs the hook (once, before any thread starts).
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        if flow_schema::guard::in_quiet_zone() {
            // A decoder of untrusted bytes run under `guard::quietly`: its caller reports
            // the bytes as damaged.
            return;
        }
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        crate::error!(
            "internal error: thread {name} panicked{place}: {message}; exiting (status {PANIC_EXIT}) so that the recorder is restarted and resumes from its spool"
        );
        count();
        std::process::exit(PANIC_EXIT);
    }));
}

/// Test-only fault injection: panics when `FLOWREC_PANIC_AT` names this point. Lets the tests
/// show that a panic in a running recorder's thread ends it (nothing else reads the variable).
/// The variable is read once: fault points sit on hot paths (every chunk a follower reads).
#[track_caller]
pub fn fault_point(name: &str) {
    static AT: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();
    if AT
        .get_or_init(|| std::env::var_os("FLOWREC_PANIC_AT"))
        .as_deref()
        .is_some_and(|at| at == name)
    {
        panic!("fault injected at {name} (FLOWREC_PANIC_AT)");
    }
}
