//! The queue from the I/O thread to the workers: a mutex-guarded deque and a condition
//! variable. An idle worker sleeps on the condition variable at once; a channel whose
//! receivers spin and `sched_yield` before they park (crossbeam's backoff) cost the
//! engine ~7 % of its CPU in a handshake storm, with four workers waking for each
//! request.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    queue: VecDeque<T>,
    /// The sender is gone: receivers drain the queue, then stop.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No critical section can panic (push, pop, a flag), so a poisoned lock still
        // holds a consistent queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half (one, the I/O thread's); dropping it closes the queue.
pub(super) struct JobTx<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half (one per worker).
pub(super) struct JobRx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for JobRx<T> {
    fn clone(&self) -> Self {
        JobRx {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A new open queue.
pub(super) fn queue<T>() -> (JobTx<T>, JobRx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (
        JobTx {
            shared: Arc::clone(&shared),
        },
        JobRx { shared },
    )
}

impl<T> JobTx<T> {
    /// Queues `job` and wakes one sleeping receiver. `Err(job)` when no receiver is left.
    pub(super) fn send(&self, job: T) -> Result<(), T> {
        // The sender's own reference is the only one left: every receiver is gone.
        if Arc::strong_count(&self.shared) == 1 {
            return Err(job);
        }
        self.shared.lock().queue.push_back(job);
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for JobTx<T> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl<T> JobRx<T> {
    /// The next job, sleeping until one comes; `None` once the sender is gone and the
    /// queue is empty.
    pub(super) fn recv(&self) -> Option<T> {
        let mut st = self.shared.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st = self
                .shared
                .ready
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::queue;

    #[test]
    fn every_job_reaches_one_worker_and_workers_stop_when_the_sender_goes() {
        let (tx, rx) = queue::<u32>();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(j) = rx.recv() {
                        got.push(j);
                    }
                    got
                })
            })
            .collect();
        drop(rx);
        for j in 0..10_000 {
            assert!(tx.send(j).is_ok());
        }
        drop(tx);
        let mut all: Vec<u32> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_queue_without_receivers_refuses_jobs() {
        let (tx, rx) = queue::<u32>();
        assert!(tx.send(1).is_ok());
        drop(rx);
        assert_eq!(tx.send(2), Err(2));
    }
}
