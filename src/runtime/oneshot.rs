//! A one-shot reply from a plain thread to a task on a glommio executor.
//!
//! Owns handing one value across threads and waking the waiting task (glommio wakers may be
//! woken from any thread: the wake is queued to the task's executor and its sleep eventfd is
//! written). Never blocks the receiving executor and never carries more than one value.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The sender was dropped without sending.
    abandoned: bool,
}

/// The sending half: `send` consumes it.
pub struct Sender<T> {
    slot: Arc<Mutex<Slot<T>>>,
    sent: bool,
}

/// The receiving half: a future that yields the value, or `None` if the sender was dropped.
pub struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// A connected pair.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None, abandoned: false }));
    (Sender { slot: slot.clone(), sent: false }, Receiver { slot })
}

impl<T> Sender<T> {
    pub fn send(mut self, value: T) {
        self.sent = true;
        let waker = {
            let mut s = self.slot.lock().unwrap();
            assert!(s.value.is_none(), "a one-shot sends once");
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        let waker = {
            let mut s = self.slot.lock().unwrap();
            s.abandoned = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.slot.lock().unwrap();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.abandoned {
            return Poll::Ready(None);
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_crosses_threads_and_wakes_the_task() {
        let got = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let (tx, rx) = channel::<u32>();
                let t = std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    tx.send(7);
                });
                let v = rx.await;
                t.join().unwrap();
                let (tx, rx) = channel::<u32>();
                drop(tx);
                (v, rx.await)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, (Some(7), None));
    }
}
