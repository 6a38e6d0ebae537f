//! A fixed team of worker threads for data-parallel loops, without allocation per call.
//!
//! `for_each(tasks, f)` runs `f(0..tasks)` spread over the caller and the workers and returns when
//! all are done. Work is handed out by an atomic counter (tasks are chunks of rows, so a slow
//! thread simply takes fewer). Workers wait on a generation counter: they spin briefly (during
//! inference one loop follows another within microseconds) and then park.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// How many times an idle worker checks for new work before parking.
const SPINS_BEFORE_PARK: u32 = 50_000;

/// A task body: (task index, thread index in 0..threads).
type TaskFn<'a> = dyn Fn(usize, usize) + Sync + 'a;

struct Shared {
    generation: AtomicUsize,
    next_task: AtomicUsize,
    tasks: AtomicUsize,
    /// The current job: a thin pointer to the caller's `&TaskFn`, which lives on the caller's
    /// stack for the whole `for_each` call (type-erased so a thin atomic pointer can hold it).
    job: AtomicPtr<()>,
    /// Workers still inside the current job.
    busy: AtomicUsize,
    shutdown: AtomicBool,
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool where `threads` threads work on each loop (the caller counts as one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            next_task: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            busy: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let s = shared.clone();
            workers.push(std::thread::Builder::new().name(format!("segment-cpu-{i}")).spawn(move || worker(&s, i))?);
        }
        Ok(ThreadPool { shared, workers })
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(task)` for every task in `0..tasks` on all threads; returns when all are done.
    pub fn for_each(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        self.for_each_on_thread(tasks, &|task, _| f(task));
    }

    /// Like [`for_each`](Self::for_each), also telling each call which thread runs it (0 is the
    /// caller), so tasks can use per-thread scratch space.
    pub fn for_each_on_thread(&self, tasks: usize, f: &TaskFn<'_>) {
        if self.workers.is_empty() || tasks <= 1 {
            (0..tasks).for_each(|t| f(t, 0));
            return;
        }
        let s = &*self.shared;
        let job: &TaskFn<'_> = f;
        s.job.store(&job as *const &TaskFn<'_> as *mut (), Ordering::Relaxed);
        s.tasks.store(tasks, Ordering::Relaxed);
        s.next_task.store(0, Ordering::Relaxed);
        s.busy.store(self.workers.len(), Ordering::Relaxed);
        // Release: everything above is visible to a worker that sees the new generation.
        s.generation.fetch_add(1, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
        run_tasks(s, f, tasks, 0);
        // `f` lives on the caller's stack: wait until no worker can still call it.
        while s.busy.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
    }
}

fn run_tasks(s: &Shared, f: &TaskFn<'_>, tasks: usize, thread: usize) {
    loop {
        let t = s.next_task.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            return;
        }
        f(t, thread);
    }
}

fn worker(s: &Shared, thread: usize) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            spins += 1;
            if spins < SPINS_BEFORE_PARK {
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
        let job = s.job.load(Ordering::Relaxed) as *const &TaskFn<'_>;
        // SAFETY: `job` points at the `&TaskFn` on the stack of the `for_each` call that published
        // it (the generation's Release/Acquire pair orders the store before this load); that call
        // keeps it and the closure alive until `busy` drops to 0, which this worker signals only
        // after its last call. `TaskFn` is `Sync`, so calls from several threads are fine.
        let f: &TaskFn<'_> = unsafe { *job };
        run_tasks(s, f, s.tasks.load(Ordering::Relaxed), thread);
        s.busy.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = ThreadPool::new(3).unwrap();
        for tasks in [0, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.for_each(tasks, &|t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
        }
    }
}
