//! Keeps every executor from sleeping with work to do: a plain thread wakes one task on each
//! executor every `KICK_INTERVAL`.
//!
//! Why: glommio 0.9's executor loop arms its preemption timer, then runs task queues; when that
//! timer has already expired by the time it first checks (the thread was descheduled for longer
//! than the preemption period, common on a loaded machine with a 500 µs period), it runs no
//! queue, takes the expiry for "nothing to do" and parks with no timer armed although tasks are
//! runnable. The executor then sleeps until some unrelated completion or remote wake arrives:
//! at start-up (nothing else pending) that was forever. A wake from another thread writes the
//! sleeping executor's eventfd, so with this thread such a sleep lasts at most one interval.
//!
//! Owns the kicker thread and one wake slot per executor. Never carries data and never decides
//! anything; a kick only makes the executor run its loop again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long an executor wrongly asleep with runnable tasks can stay asleep.
pub const KICK_INTERVAL: Duration = Duration::from_millis(5);

/// One executor's wake slot.
#[derive(Default)]
pub struct Slot {
    waker: Mutex<Option<Waker>>,
    kicks: AtomicU64,
}

/// The slots of every executor and the thread that wakes them.
pub struct Kicker {
    slots: Vec<Arc<Slot>>,
}

impl Kicker {
    /// Starts the kicker thread for `executors` slots.
    pub fn start(executors: usize) -> std::io::Result<Kicker> {
        assert!(executors > 0);
        let slots: Vec<Arc<Slot>> = (0..executors).map(|_| Arc::new(Slot::default())).collect();
        let theirs = slots.clone();
        std::thread::Builder::new().name("kicker".into()).spawn(move || loop {
            std::thread::sleep(KICK_INTERVAL);
            for s in &theirs {
                s.kicks.fetch_add(1, Ordering::Release);
                let w = s.waker.lock().unwrap().take();
                if let Some(w) = w {
                    w.wake();
                }
            }
        })?;
        Ok(Kicker { slots })
    }

    pub fn slot(&self, executor: usize) -> Arc<Slot> {
        self.slots[executor].clone()
    }
}

/// Runs on an executor for ever: each kick wakes it, and it waits for the next one.
pub async fn keep_awake(slot: Arc<Slot>) {
    loop {
        let seen = slot.kicks.load(Ordering::Acquire);
        Kicked { slot: &slot, seen }.await;
    }
}

struct Kicked<'a> {
    slot: &'a Slot,
    seen: u64,
}

impl Future for Kicked<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut w = self.slot.waker.lock().unwrap();
        if self.slot.kicks.load(Ordering::Acquire) != self.seen {
            return Poll::Ready(());
        }
        if !w.as_ref().is_some_and(|x| x.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_wakes_the_waiting_task() {
        let k = Kicker::start(1).unwrap();
        let slot = k.slot(0);
        let woke = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let seen = slot.kicks.load(Ordering::Acquire);
                Kicked { slot: &slot, seen }.await;
                slot.kicks.load(Ordering::Acquire) > seen
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(woke);
    }
}
