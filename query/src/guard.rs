//! Running third-party decoders on bytes from the store: a panic inside (an arithmetic
//! overflow on a garbage footer, say) becomes `None` and its message is not printed; the
//! caller reports the object as damaged instead. Panics anywhere else still print.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

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
