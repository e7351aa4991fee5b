//! One registration's delivery queue: bounded by back-pressure, never by dropping. Vipps retries
//! a delivery for days rather than lose it, so the simulator keeps every event too: an event is
//! always queued, in order, and a producer that left a queue over [`QUEUE_CAPACITY`] waits for
//! room before it carries on ([`producing`]). Like a bounded channel whose blocked senders each
//! hold one item, a queue holds at most its capacity plus what the producers waiting on it added.
//!
//! Producers are the simulator's request handlers and its ticker; a request that filled a queue
//! is answered once there is room again, so a receiver that cannot keep up slows the merchant's
//! calls down instead of losing their webhooks. The queue's own mutex is a leaf, never held
//! across an `.await`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::delivery::Delivery;

/// Deliveries a registration holds before its producers wait for room.
pub const QUEUE_CAPACITY: usize = 1024;

tokio::task_local! {
    /// The queues the running producer left over capacity.
    static FILLED: RefCell<Vec<Arc<Queue>>>;
}

/// Deliveries waiting for one registration's delivery task, oldest first.
#[derive(Debug, Default)]
pub struct Queue {
    deliveries: Mutex<VecDeque<Delivery>>,
    /// Wakes the delivery task (its only consumer).
    ready: Notify,
    /// Wakes the producers waiting for room.
    room: Notify,
    closed: AtomicBool,
    /// Times a producer waited for room.
    waits: AtomicU64,
    /// The most deliveries queued at once.
    peak: AtomicUsize,
}

/// What `GET /sim/v1/webhooks` shows of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueView {
    pub queued: usize,
    pub peak: usize,
    pub waits: u64,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        // Every change is one push or pop under the lock, so the data survives a panic.
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `d` after everything queued before it; never refuses (a closed queue, whose
    /// registration is gone, takes nothing). A producer running under [`producing`] that left
    /// the queue over capacity waits for room when it is done.
    pub fn push(self: &Arc<Self>, d: Delivery) {
        let depth = {
            let mut deliveries = self.lock();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            deliveries.push_back(d);
            deliveries.len()
        };
        self.peak.fetch_max(depth, Ordering::Relaxed);
        self.ready.notify_one();
        if depth > QUEUE_CAPACITY {
            // Outside `producing` (a test publishing directly) nobody waits; nothing is lost.
            let _ = FILLED.try_with(|filled| {
                let mut filled = filled.borrow_mut();
                if !filled.iter().any(|q| Arc::ptr_eq(q, self)) {
                    filled.push(self.clone());
                }
            });
        }
    }

    /// The oldest delivery, if any.
    pub fn try_recv(&self) -> Option<Delivery> {
        let (d, depth) = {
            let mut deliveries = self.lock();
            let d = deliveries.pop_front();
            (d, deliveries.len())
        };
        if d.is_some() && depth <= QUEUE_CAPACITY {
            self.room.notify_waiters();
        }
        d
    }

    /// The oldest delivery, waiting for one; `None` once the queue is closed.
    pub async fn recv(&self) -> Option<Delivery> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            // Registered before the queue is read, so a push in between is not missed.
            ready.as_mut().enable();
            if let Some(d) = self.try_recv() {
                return Some(d);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            ready.await;
        }
    }

    /// The registration is gone: its delivery task stops and no producer waits for it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.lock().clear();
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    pub fn view(&self) -> QueueView {
        QueueView {
            queued: self.lock().len(),
            peak: self.peak.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
        }
    }

    /// Returns once the queue is back within its capacity (or closed).
    async fn room(&self) {
        let mut counted = false;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.lock().len() <= QUEUE_CAPACITY || self.closed.load(Ordering::SeqCst) {
                return;
            }
            if !counted {
                counted = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            room.await;
        }
    }
}

/// Runs `produce`, a producer of webhook events, then waits until every queue it left over
/// capacity has room again.
pub async fn producing<F: Future>(produce: F) -> F::Output {
    let (output, filled) = FILLED
        .scope(RefCell::default(), async {
            let output = produce.await;
            (output, FILLED.with(RefCell::take))
        })
        .await;
    for queue in filled {
        queue.room().await;
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn delivery(id: u64) -> Delivery {
        Delivery {
            id,
            event: "epayments.payment.authorized.v1".into(),
            payload: serde_json::json!({ "n": id }),
        }
    }

    /// Takes deliveries one per millisecond until the queue closes.
    fn slow_consumer(queue: Arc<Queue>) -> tokio::task::JoinHandle<Vec<u64>> {
        tokio::spawn(async move {
            let mut got = vec![];
            while let Some(d) = queue.recv().await {
                got.push(d.id);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            got
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_larger_than_the_queue_waits_for_room_and_loses_nothing() {
        let queue = Arc::new(Queue::default());
        let consumer = slow_consumer(queue.clone());
        let burst = 3 * QUEUE_CAPACITY as u64;
        for id in 1..=burst {
            producing(async { queue.push(delivery(id)) }).await;
            assert!(queue.view().queued <= QUEUE_CAPACITY, "the producer waited");
        }
        let waits = queue.view().waits;
        assert!(waits > 0, "the producer waited for room");
        while queue.view().queued > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        queue.close();
        let got = consumer.await.unwrap();
        assert_eq!(
            got,
            (1..=burst).collect::<Vec<_>>(),
            "all of them, in order"
        );
        assert_eq!(queue.view().peak, QUEUE_CAPACITY + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_producers_each_wait_and_keep_their_order() {
        let queue = Arc::new(Queue::default());
        let consumer = slow_consumer(queue.clone());
        let per_producer = QUEUE_CAPACITY as u64;
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for i in 0..per_producer {
                        producing(async { queue.push(delivery(p * 1_000_000 + i)) }).await;
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        assert!(
            queue.view().peak <= QUEUE_CAPACITY + 4,
            "{:?}",
            queue.view()
        );
        while queue.view().queued > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        queue.close();
        let got = consumer.await.unwrap();
        assert_eq!(got.len() as u64, 4 * per_producer, "nothing dropped");
        for p in 0..4u64 {
            let mine: Vec<u64> = got
                .iter()
                .copied()
                .filter(|id| id / 1_000_000 == p)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "producer {p} in order"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closing_releases_waiting_producers() {
        let queue = Arc::new(Queue::default());
        let filler = {
            let queue = queue.clone();
            tokio::spawn(producing(async move {
                for id in 0..=QUEUE_CAPACITY as u64 {
                    queue.push(delivery(id));
                }
            }))
        };
        while queue.view().queued <= QUEUE_CAPACITY {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(!filler.is_finished(), "no consumer: the producer waits");
        queue.close();
        filler.await.unwrap();
        assert_eq!(queue.view().queued, 0);
        assert_eq!(queue.recv().await.map(|d| d.id), None);
    }
}
