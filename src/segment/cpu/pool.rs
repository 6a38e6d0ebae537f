//! A fixed team of worker threads for data-parallel loops, without allocation per call.
//!
//! `for_each(tasks, f)` runs `f(0..tasks)` spread over the caller and the workers and returns when
//! all are done. Work is handed out by an atomic counter (tasks are chunks of rows, so a slow
//! thread simply takes fewer). Workers wait on a generation counter: they spin briefly (during
//! inference one loop follows another within microseconds) and then park.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// How many times an idle worker checks for new work before parking.
const SPINS_BEFORE_PARK: u32 = 50_000;

/// A task body: (task index, thread index in 0..threads).
type TaskFn<'a> = dyn Fn(usize, usize) + Sync + 'a;

struct Shared {
    generation: AtomicUsize,
    next_task: AtomicUsize,
    tasks: AtomicUsize,
    /// The two words of the current job's `*const TaskFn`.
    job: [AtomicUsize; 2],
    /// Workers still inside the current job.
    busy: AtomicUsize,
    shutdown: AtomicBool,
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

fn to_words(f: *const TaskFn<'_>) -> [usize; 2] {
    // SAFETY: a pointer to a trait object is two pointer-sized words (data, vtable).
    unsafe { std::mem::transmute::<*const TaskFn<'_>, [usize; 2]>(f) }
}

/// The job as workers see it; its true lifetime is that of the `for_each` call (see `worker`).
fn from_words(words: [usize; 2]) -> *const TaskFn<'static> {
    // SAFETY: the inverse of `to_words`, applied only to words it produced.
    unsafe { std::mem::transmute::<[usize; 2], *const TaskFn<'static>>(words) }
}

impl ThreadPool {
    /// A pool where `threads` threads work on each loop (the caller counts as one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            next_task: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            job: [AtomicUsize::new(0), AtomicUsize::new(0)],
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
        let [data, vtable] = to_words(f as *const TaskFn<'_>);
        s.job[0].store(data, Ordering::Relaxed);
        s.job[1].store(vtable, Ordering::Relaxed);
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
        let f = from_words([s.job[0].load(Ordering::Relaxed), s.job[1].load(Ordering::Relaxed)]);
        // SAFETY: the caller of `for_each` keeps `f` alive until `busy` drops to 0, which this
        // worker signals only after its last call; `f` is `Sync`, so shared calls are fine.
        run_tasks(s, unsafe { &*f }, s.tasks.load(Ordering::Relaxed), thread);
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
