//! Reads of the journal that a request asks for (history pages, audits) run here: one at a
//! time, on one thread of their own at a lowered priority, in the order they were asked.
//!
//! Such a read costs milliseconds of CPU (a page of 10,000 entries follows 10,000 lines),
//! while a charge costs microseconds. Run side by side on the blocking pool, a flood of
//! history requests took both cores and hundreds of megabytes, and charges and top-ups waited
//! seconds behind it. Here the reads take turns on one thread that yields the CPU to request
//! handling and the journal writer (SCHED_BATCH, nice 10), and at most one page is in memory.
//!
//! A waiting read holds only its request, and each client has at most one read waiting
//! (a connection waits for its read before it reads its next request), so the queue is as
//! long as the connection cap allows. Refusing reads as soon as a few wait would make each
//! flooding client retry at once, in a loop that costs more than the reads; waiting their
//! turn slows exactly the clients that flood. Beyond [`QUEUE`] a read is refused `busy`.

use crate::store::StoreError;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Reads waiting for their turn, at most (the default connection cap); more are refused
/// with `busy`.
pub const QUEUE: usize = 4096;

type Job = Box<dyn FnOnce() + Send>;

/// The queue of journal reads and the thread that runs them.
pub struct JournalReader {
    jobs: SyncSender<Job>,
}

impl JournalReader {
    /// Starts the reader thread; it ends when the reader is dropped.
    pub fn start() -> std::io::Result<(JournalReader, JoinHandle<()>)> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("memes-reader".into())
            .spawn(move || {
                yield_to_requests();
                while let Ok(job) = queue.recv() {
                    job();
                }
            })?;
        Ok((JournalReader { jobs }, thread))
    }

    /// Runs `read` in its turn and hands back its result; `busy` if too many reads wait.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The requester may have gone (a dropped connection): then nobody waits.
            let _ = done.send(read());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Busy(format!(
                    "{QUEUE} reads of the ledger are already waiting"
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Unavailable("the store is closed".into()));
            }
        }
        result
            .await
            .map_err(|_| StoreError::Internal("a journal read was lost".into()))?
    }
}

/// Lowers this thread's priority below the threads that serve requests and write the
/// journal, so that long reads only use what they leave.
fn yield_to_requests() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    // Crossplatform(10) is mapped to a nice value between 0 and 19 for normal policies.
    let lower = ThreadPriority::Crossplatform(10u8.try_into().expect("in range"));
    if let Err(error) = set_thread_priority_and_policy(thread_native_id(), lower, batch) {
        tracing::debug!("journal reads run at normal priority: {error:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn reads_take_turns_and_a_full_queue_is_refused_with_busy() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (reader, _thread) = JournalReader::start().unwrap();
        // Hold the reader thread, fill the queue, then one more.
        let gate = Arc::new(Barrier::new(2));
        let held = gate.clone();
        runtime.block_on(async {
            let first = reader.run(move || {
                held.wait();
                Ok(0)
            });
            let mut waiting = Vec::new();
            tokio::pin!(first);
            // Poll the first read once so that it is queued (and taken by the thread).
            assert!(futures_util::poll!(&mut first).is_pending());
            std::thread::sleep(std::time::Duration::from_millis(50));
            for i in 0..QUEUE {
                let mut read = Box::pin(reader.run(move || Ok(i + 1)));
                assert!(futures_util::poll!(&mut read).is_pending());
                waiting.push(read);
            }
            let refused = reader.run(|| Ok(usize::MAX)).await;
            assert!(matches!(refused, Err(StoreError::Busy(_))), "{refused:?}");
            gate.wait();
            assert_eq!(first.await.unwrap(), 0);
            for (i, read) in waiting.into_iter().enumerate() {
                assert_eq!(read.await.unwrap(), i + 1, "in turn");
            }
        });
    }
}
