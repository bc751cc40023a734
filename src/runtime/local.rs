//! Single-executor async primitives: a notifier and a bounded queue for tasks on one core.
//!
//! Owns waking between tasks of the same glommio executor. Never crosses threads (no Send);
//! cross-core traffic goes through glommio's shared channels.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it. A waiter created before `notify` completes.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn new() -> Notify {
        Notify::default()
    }

    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// A future that completes at the next `notify` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self, generation: self.generation.get() }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut w = self.notify.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A bounded FIFO between tasks of one executor: `push` waits while full.
pub struct LocalQueue<T> {
    items: RefCell<VecDeque<T>>,
    cap: usize,
    readable: Notify,
    writable: Notify,
}

impl<T> LocalQueue<T> {
    pub fn new(cap: usize) -> LocalQueue<T> {
        assert!(cap > 0);
        LocalQueue { items: RefCell::new(VecDeque::new()), cap, readable: Notify::new(), writable: Notify::new() }
    }

    pub async fn push(&self, item: T) {
        loop {
            let wait = self.writable.notified();
            if self.items.borrow().len() < self.cap {
                break;
            }
            wait.await;
        }
        self.items.borrow_mut().push_back(item);
        self.readable.notify();
    }

    /// Pushes even when full (for a producer that must not wait, e.g. a timer); the bound is
    /// still enforced for waiting producers.
    pub fn push_now(&self, item: T) {
        self.items.borrow_mut().push_back(item);
        self.readable.notify();
    }

    /// Waits until at least one item is queued, then takes up to `max`.
    pub async fn pop_batch(&self, max: usize, out: &mut Vec<T>) {
        loop {
            let wait = self.readable.notified();
            if !self.items.borrow().is_empty() {
                break;
            }
            wait.await;
        }
        let mut q = self.items.borrow_mut();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        drop(q);
        self.writable.notify();
    }

    pub fn len(&self) -> usize {
        self.items.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }
}
