//! Thread counts for tract: one (the device's default) or every core.

use tract_linalg::multithread::{Executor, multithread_tract_scope};

/// Runs `f` with tract's matrix products on `threads` threads (1: the calling thread only).
pub fn with_tract_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    if threads <= 1 {
        multithread_tract_scope(Executor::SingleThread, f)
    } else {
        multithread_tract_scope(Executor::multithread(threads), f)
    }
}
