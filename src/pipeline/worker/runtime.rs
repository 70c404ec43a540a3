//! The workers' own Tokio runtime: processing runs on threads of its own, at a lower priority
//! than the HTTP receiver's, so a backlog never makes Meta wait for a webhook's 200.

use std::time::Duration;

use tokio::runtime::{EnterGuard, Handle};
use tokio_util::sync::{CancellationToken, DropGuard};

/// What the workers' threads are called (`top -H`, `/proc/<pid>/task/*/comm`).
pub const THREAD_NAME: &str = "wabot-worker";

/// A running runtime. Dropping it shuts the runtime down on a thread of its own: a Tokio runtime
/// cannot be dropped from inside another one's tasks, which is where the service stops.
pub struct WorkerRuntime {
    handle: Handle,
    _stop: DropGuard,
}

impl WorkerRuntime {
    /// `threads` 0 means one per core; `nice` is how much lower than this process's priority
    /// the threads run (0 leaves it).
    pub fn start(threads: usize, nice: i32) -> std::io::Result<WorkerRuntime> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(THREAD_NAME)
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("wabot-worker-rt".into())
            .spawn(move || {
                runtime.block_on(stopped.cancelled());
                // Tasks still running (a killed replica's) are dropped, not waited for.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(WorkerRuntime {
            handle,
            _stop: stop.drop_guard(),
        })
    }

    /// Makes this runtime the current one, so what is built meanwhile (Redis connections,
    /// spawned tasks) runs on it.
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Raises the calling thread's nice value by `nice` (up to 19). On Linux a thread id is a valid
/// `PRIO_PROCESS` target and affects that thread alone. Failing only costs the priority, so it is
/// logged, not fatal.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    if nice == 0 {
        return;
    }
    let thread = Some(rustix::thread::gettid());
    let result = getpriority_process(thread)
        .and_then(|current| setpriority_process(thread, (current + nice).min(19)));
    if let Err(error) = result {
        tracing::warn!(%error, nice, "could not lower the workers' thread priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_current_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(i32::MIN)
    }

    #[test]
    fn tasks_run_on_named_threads_that_are_nicer_than_the_caller() {
        let base = nice_of_current_thread();
        let runtime = WorkerRuntime::start(1, 5).expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let _entered = runtime.enter();
            tokio::spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((name, nice_of_current_thread()));
            });
        }
        let (name, nice) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the task ran");
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        assert_eq!(nice, (base + 5).min(19));
        assert_eq!(
            nice_of_current_thread(),
            base,
            "the caller's priority is left alone"
        );
        drop(runtime);
    }
}
