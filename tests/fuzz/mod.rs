//! The fuzzing harness of `tests/fuzz_parsers.rs`: a deterministic proptest runner per parser,
//! seed-corpus mutation, and the checks every case must pass: the parser returns (Ok or Err)
//! instead of panicking, finishes in time, and never makes one allocation larger than a cap.
//!
//! Environment (all optional):
//! - `SONOFLOW_FUZZ_CASES`: cases per property (default [`DEFAULT_CASES`], sized for CI).
//! - `SONOFLOW_FUZZ_SEED`: a u64 mixed into every property's seed (default 0); CI keeps the
//!   default so a run is reproducible, a long run may pick another to explore further.
//! - `SONOFLOW_FUZZ_SECONDS`: run rounds of `SONOFLOW_FUZZ_CASES` cases, each round with its own
//!   seed, until this many seconds have passed (per property; the long run).
//! - `SONOFLOW_FUZZ_ROUND`: the first round (to reproduce a failure a long run reports).
//! - `SONOFLOW_FUZZ_CASE_MS`: slowest case allowed, in CPU time of its thread (default 2000 ms).
//! - `SONOFLOW_FUZZ_HANG_S`: a case still running after this much CPU time (or ten times as
//!   much wall time) aborts the run with its input printed (default 60 s).
//! - `SONOFLOW_FUZZ_MAX_ALLOC_MB`: largest single allocation a case may make (default 256 MiB;
//!   a parser may allow more); a request over 4 × that and over 4 GiB is refused at once,
//!   input printed, which aborts the run.
//! - `SONOFLOW_FUZZ_REPLAY`: a file (raw bytes, or hex if it ends in `.hex`): the selected
//!   properties run their parser on it once, outside the harness, and print the result.
//! - `SONOFLOW_FUZZ_TRACE`: a folder; each case's input is written to `<folder>/<parser>.last`
//!   before it runs, so an abort the harness cannot catch (stack overflow) leaves its input.

mod cap;
pub mod formats;
mod mutate;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use cap::{CURRENT, HARD_CAP, IN_CASE, LARGEST, OVER_CAP_AT, SOFT_CAP};
pub use mutate::{NUMBERS, mutated, seeds};

/// Cases per property when `SONOFLOW_FUZZ_CASES` is unset: the whole file stays well under a
/// minute in release on two cores.
pub const DEFAULT_CASES: u32 = 2000;
const DEFAULT_CASE_MS: u64 = 2000;
const DEFAULT_HANG_S: u64 = 60;
const DEFAULT_MAX_ALLOC_MB: usize = 256;

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok()?.trim().parse().ok()
}

pub fn cases() -> u32 {
    env_u64("SONOFLOW_FUZZ_CASES").map_or(DEFAULT_CASES, |c| c.clamp(1, u64::from(u32::MAX)) as u32)
}

// ---------------------------------------------------------------------------------------------
// Panics: recorded with their location instead of printed while a case runs.

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(Cell::get) {
                let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(non-text panic payload)");
                let text = format!("{message} (at {})", at.as_deref().unwrap_or("unknown location"));
                PANIC_AT.with(|p| *p.borrow_mut() = Some(text));
            } else {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Hang watchdog: a case that runs far too long aborts the whole run with its input printed
// (the harness cannot interrupt it). Time is the case thread's CPU time, so a machine busy with
// other work does not make a slow case out of a fast one; wall time ten times over counts too
// (a case blocked on a lock).

/// The CPU clock of the calling thread, readable from any thread of the process.
fn this_thread_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is the calling thread; `clock` is a valid place for the result.
    unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    clock
}

fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid place for the result; a bad clock leaves it zero.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// When a case started: wall clock, and its thread's CPU clock and reading.
#[derive(Clone, Copy)]
struct CaseStart {
    wall: Instant,
    clock: libc::clockid_t,
    cpu: Duration,
}

impl CaseStart {
    fn now() -> CaseStart {
        let clock = this_thread_clock();
        CaseStart { wall: Instant::now(), clock, cpu: cpu_time(clock) }
    }

    fn cpu_elapsed(&self) -> Duration {
        cpu_time(self.clock).saturating_sub(self.cpu)
    }
}

struct Watchdog {
    slot: Arc<Mutex<(Option<CaseStart>, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(name: &str, limit: Duration) -> Watchdog {
        let slot = Arc::new(Mutex::new((None::<CaseStart>, Vec::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, name) = (slot.clone(), stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(200));
                let guard = s.lock().unwrap_or_else(|e| e.into_inner());
                if let (Some(start), input) = &*guard
                    && (start.cpu_elapsed() > limit || start.wall.elapsed() > limit * 10)
                {
                    eprintln!(
                        "\nfuzz {name}: one case has run for over {limit:?} of CPU time (hang); aborting. Input ({} bytes, hex):\n{}",
                        input.len(),
                        hex(input)
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog { slot, stop, thread: Some(thread) }
    }

    fn begin(&self, input: &[u8], start: CaseStart) {
        let mut guard = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.clear();
        guard.1.extend_from_slice(input);
        guard.0 = Some(start);
    }

    fn end(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).0 = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// What one parser may do per case.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single allocation for any input...
    pub max_alloc_bytes: usize,
    /// ...plus this many bytes per input byte (for formats that decompress).
    pub alloc_per_input_byte: usize,
    pub case_time: Duration,
}

impl Limits {
    pub fn from_env() -> Limits {
        let mb = env_u64("SONOFLOW_FUZZ_MAX_ALLOC_MB").map_or(DEFAULT_MAX_ALLOC_MB, |v| v as usize);
        Limits {
            max_alloc_bytes: mb << 20,
            alloc_per_input_byte: 0,
            case_time: Duration::from_millis(env_u64("SONOFLOW_FUZZ_CASE_MS").unwrap_or(DEFAULT_CASE_MS)),
        }
    }
}

/// Lower-case hex, 64 bytes a line.
pub fn hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2 + data.len() / 64 + 1);
    for (i, b) in data.iter().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Bytes from hex text (whitespace ignored), as the failure reports print them.
pub fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks_exact(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

/// The input as hex, and as text when it mostly is.
fn show(data: &[u8]) -> String {
    let text = data.iter().filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()).count();
    let mut out = format!("input ({} bytes, hex):\n{}", data.len(), hex(data));
    if !data.is_empty() && text * 10 >= data.len() * 9 {
        let _ = write!(out, "\ninput as text:\n{}", String::from_utf8_lossy(data));
    }
    out
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One deterministic runner per property and round: the seed depends on the property's name,
/// `SONOFLOW_FUZZ_SEED` and the round only.
fn runner(name: &str, cases: u32, user_seed: u64, round: u64) -> TestRunner {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&fnv1a(name).to_le_bytes());
    seed[8..16].copy_from_slice(&user_seed.to_le_bytes());
    seed[16..24].copy_from_slice(&0x736f_6e6f_666c_6f77u64.to_le_bytes());
    seed[24..].copy_from_slice(&round.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        max_shrink_time: 120_000,
        max_global_rejects: u32::MAX,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

#[derive(Default)]
struct Stats {
    cases: u64,
    ok: u64,
    slowest: Duration,
    largest_alloc: usize,
    /// Error messages with digits folded, and how often each came back.
    errors: HashMap<String, u64>,
    /// Cases where a panic happened and the parser caught it (a dependency's bug it contains).
    contained_panics: u64,
    first_contained_panic: Option<String>,
}

impl Stats {
    fn note_error(&mut self, message: &str) {
        let folded: String = message.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(110).collect();
        if self.errors.len() < 20_000 || self.errors.contains_key(&folded) {
            *self.errors.entry(folded).or_default() += 1;
        }
    }
}

/// Runs one case: the checks that make a property of "returns, in time, within memory".
fn run_case(
    name: &str,
    input: &[u8],
    target: &dyn Fn(&[u8]) -> Result<(), String>,
    limits: &Limits,
    watchdog: &Watchdog,
    stats: &RefCell<Stats>,
) -> Result<(), TestCaseError> {
    if let Some(dir) = std::env::var_os("SONOFLOW_FUZZ_TRACE") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(format!("{name}.last")), input);
    }
    let start = CaseStart::now();
    watchdog.begin(input, start);
    CURRENT.with(|c| c.set((name.as_ptr(), name.len(), input.as_ptr(), input.len())));
    let cap = limits.max_alloc_bytes.saturating_add(limits.alloc_per_input_byte.saturating_mul(input.len()));
    LARGEST.with(|l| l.set(0));
    SOFT_CAP.with(|c| c.set(cap));
    // Past 4 GiB (beyond any 32-bit length field) a request is refused rather than risked.
    HARD_CAP.with(|h| h.set(cap.saturating_mul(4).max(4 << 30)));
    OVER_CAP_AT.with(|a| a.borrow_mut().take());
    PANIC_AT.with(|p| p.borrow_mut().take());
    IN_CASE.with(|c| c.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
    IN_CASE.with(|c| c.set(false));
    let elapsed = start.cpu_elapsed();
    watchdog.end();
    let largest = LARGEST.with(Cell::get);

    let mut s = stats.borrow_mut();
    s.cases += 1;
    s.slowest = s.slowest.max(elapsed);
    s.largest_alloc = s.largest_alloc.max(largest);
    match &outcome {
        Ok(Ok(())) => s.ok += 1,
        Ok(Err(message)) => s.note_error(message),
        Err(_) => {}
    }
    if outcome.is_ok()
        && let Some(contained) = PANIC_AT.with(|p| p.borrow_mut().take())
    {
        s.contained_panics += 1;
        s.first_contained_panic.get_or_insert(contained);
    }
    drop(s);

    match outcome {
        Err(payload) => {
            let recorded = PANIC_AT.with(|p| p.borrow_mut().take());
            let message = recorded.unwrap_or_else(|| {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-text panic payload)".into())
            });
            return Err(TestCaseError::fail(format!("{name} panicked: {message}\n{}", show(input))));
        }
        Ok(Err(message)) if message.trim().is_empty() => {
            return Err(TestCaseError::fail(format!("{name} returned an empty error\n{}", show(input))));
        }
        Ok(_) => {}
    }
    if largest > cap {
        let at = OVER_CAP_AT.with(|a| a.borrow_mut().take()).unwrap_or_default();
        return Err(TestCaseError::fail(format!(
            "{name} made one allocation of {largest} bytes (cap {cap} bytes) for a {}-byte input\n{}\nallocated at:\n{at}",
            input.len(),
            show(input)
        )));
    }
    if elapsed > limits.case_time {
        return Err(TestCaseError::fail(format!(
            "{name} took {elapsed:?} of CPU time on one case (limit {:?})\n{}",
            limits.case_time,
            show(input)
        )));
    }
    Ok(())
}

/// Runs `target` on [`cases`] inputs drawn from `strategy`, with the default limits.
pub fn fuzz<S>(name: &str, strategy: S, target: impl Fn(&[u8]) -> Result<(), String>)
where
    S: Strategy<Value = Vec<u8>>,
{
    fuzz_with(name, Limits::from_env(), strategy, target)
}

/// As [`fuzz`], with this parser's own limits. On failure, panics with the shrunk input (hex).
pub fn fuzz_with<S>(name: &str, limits: Limits, strategy: S, target: impl Fn(&[u8]) -> Result<(), String>)
where
    S: Strategy<Value = Vec<u8>>,
{
    if let Some(file) = std::env::var_os("SONOFLOW_FUZZ_REPLAY") {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.to_string_lossy()));
        let bytes = match std::str::from_utf8(&bytes) {
            Ok(text) if file.to_string_lossy().ends_with(".hex") => unhex(text),
            _ => bytes,
        };
        eprintln!("fuzz {name}: replaying {} ({} bytes): {:?}", file.to_string_lossy(), bytes.len(), target(&bytes));
        return;
    }
    install_panic_hook();
    let cases = cases();
    let user_seed = env_u64("SONOFLOW_FUZZ_SEED").unwrap_or(0);
    // A long run repeats rounds of `cases` cases, each with its own seed, until the time is up.
    let budget = env_u64("SONOFLOW_FUZZ_SECONDS").map(Duration::from_secs);
    let first_round = env_u64("SONOFLOW_FUZZ_ROUND").unwrap_or(0);
    let hang = Duration::from_secs(env_u64("SONOFLOW_FUZZ_HANG_S").unwrap_or(DEFAULT_HANG_S));
    let watchdog = Watchdog::start(name, hang);
    let stats = RefCell::new(Stats::default());
    let started = Instant::now();
    let mut round = first_round;
    let result = loop {
        let mut runner = runner(name, cases, user_seed, round);
        let result = runner.run(&strategy, |input| run_case(name, &input, &target, &limits, &watchdog, &stats));
        if result.is_err() || budget.is_none_or(|b| started.elapsed() >= b) {
            break result;
        }
        round += 1;
    };
    let elapsed = started.elapsed();
    drop(watchdog);

    let s = stats.into_inner();
    let mut errors: Vec<_> = s.errors.iter().collect();
    errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut report = format!(
        "fuzz {name}: {} cases ({} Ok, {} Err) in {:.1} s ({:.0} cases/s); slowest case {:.1} ms CPU; \
         largest allocation {} KiB; {} distinct errors; seed {user_seed}, rounds {first_round}..={round}",
        s.cases,
        s.ok,
        s.cases - s.ok,
        elapsed.as_secs_f64(),
        s.cases as f64 / elapsed.as_secs_f64().max(1e-9),
        s.slowest.as_secs_f64() * 1e3,
        s.largest_alloc >> 10,
        s.errors.len(),
    );
    if let Some(first) = &s.first_contained_panic {
        let _ = write!(report, "\n    {} panics caught inside the parser, first: {first}", s.contained_panics);
    }
    for (message, count) in errors.iter().take(if std::env::var_os("SONOFLOW_FUZZ_VERBOSE").is_some() { 40 } else { 6 })
    {
        let _ = write!(report, "\n    {count:>8} × {message}");
    }
    eprintln!("{report}");

    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, _)) => panic!(
            "fuzz {name} (reproduce with SONOFLOW_FUZZ_SEED={user_seed} SONOFLOW_FUZZ_ROUND={round} SONOFLOW_FUZZ_CASES={cases}): {}",
            reason.message()
        ),
        Err(TestError::Abort(reason)) => panic!("fuzz {name}: aborted: {}", reason.message()),
    }
}

/// Runs one input under the checks of a fuzz case (no panic, time, allocation cap) and returns
/// the parser's result; panics with the report when a check fails. For regression tests.
pub fn check_one(
    name: &str,
    limits: Limits,
    input: &[u8],
    target: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    install_panic_hook();
    let hang = Duration::from_secs(env_u64("SONOFLOW_FUZZ_HANG_S").unwrap_or(DEFAULT_HANG_S));
    let watchdog = Watchdog::start(name, hang);
    let stats = RefCell::new(Stats::default());
    let result = RefCell::new(None);
    let recording = |bytes: &[u8]| {
        let r = target(bytes);
        *result.borrow_mut() = Some(r.clone());
        r
    };
    if let Err(e) = run_case(name, input, &recording, &limits, &watchdog, &stats) {
        panic!("{e}");
    }
    result.into_inner().expect("the target ran")
}
