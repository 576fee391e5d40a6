//! Running third-party decoders on untrusted bytes (a store's Parquet footers, a spool
//! record's Arrow IPC): a panic inside (an arithmetic overflow on a garbage footer, an
//! `unwrap` in the IPC schema reader) becomes `None` and its message is not printed; the
//! caller reports the bytes as damaged instead. Panics anywhere else still print, and a
//! process-wide panic hook (flowrec's, which ends the process) asks [`in_quiet_zone`] first.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Whether the current thread runs inside [`quietly`]: a panic here is expected and handled.
pub fn in_quiet_zone() -> bool {
    QUIET.with(Cell::get)
}

/// `f()`, or `None` if it panicked.
pub fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(outer));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_none() {
        assert_eq!(quietly(|| 7), Some(7));
        let zero = std::hint::black_box(0u32);
        assert_eq!(quietly(|| 1u32 / zero), None);
        assert_eq!(
            quietly(|| quietly(|| -> u8 { panic!("inner") })),
            Some(None)
        );
    }
}
