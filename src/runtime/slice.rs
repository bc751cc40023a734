//! Cooperative time slices: a task that can run long without suspending (a reader whose socket
//! always has data, the commit loop) gives the core to other task queues once the executor has
//! run for `SLICE` without yielding.
//!
//! Why not glommio's own preemption: its preemption timer must stay long. glommio 0.9 re-arms
//! that timer on every reactor turn; when a short timer (we used 500 µs) expires while the
//! executor is descheduled, the executor can take the expiry for "preempt now" before running
//! any task queue and then park with its timers cancelled, or spin re-arming and cancelling it
//! without running a task (both seen in kernel traces of start-up hangs). With a long timer
//! (`PREEMPT_TIMER`) that window is rarely reached, and `kick` bounds what is left.
//!
//! Owns the per-executor slice clock. Never sleeps and never decides what runs next.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long an executor runs tasks of one queue before a cooperative yield.
pub const SLICE: Duration = Duration::from_micros(500);
/// glommio's preemption timer: long, a safety net only (see the module doc).
pub const PREEMPT_TIMER: Duration = Duration::from_millis(100);

thread_local! {
    static SLICE_START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Yields the task queue when this executor's slice is used up; otherwise returns at once.
pub async fn yield_if_slice_over() {
    let now = Instant::now();
    let start = SLICE_START.with(|s| *s.get().get_or_insert(now));
    if now.duration_since(start) < SLICE {
        return;
    }
    SLICE_START.with(|s| s.set(Some(now)));
    glommio::executor().yield_task_queue_now().await;
}
