//! The allocation cap: a counting global allocator for the fuzz test binary. While a case runs
//! on a thread, it notes the largest single request, keeps the call stack of the first one over
//! the case's cap, and refuses (after printing the input) one so large it would exhaust memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

struct CapAlloc;

#[global_allocator]
static ALLOCATOR: CapAlloc = CapAlloc;

thread_local! {
    /// Set while a case runs on this thread.
    pub(super) static IN_CASE: Cell<bool> = const { Cell::new(false) };
    /// Largest single request of the running case.
    pub(super) static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Requests above this fail the case; the first one's call stack is kept.
    pub(super) static SOFT_CAP: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Requests above this are refused outright (after printing the input): the run aborts.
    pub(super) static HARD_CAP: Cell<usize> = const { Cell::new(usize::MAX) };
    pub(super) static OVER_CAP_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The running case's parser name and input, for the abort message.
    pub(super) static CURRENT: Cell<(*const u8, usize, *const u8, usize)> =
        const { Cell::new((std::ptr::null(), 0, std::ptr::null(), 0)) };
}

/// Notes a request; false when it is over the hard cap (the caller then fails it, which aborts).
fn note_request(size: usize) -> bool {
    IN_CASE
        .try_with(|in_case| {
            if !in_case.get() {
                return true;
            }
            LARGEST.with(|l| l.set(l.get().max(size)));
            if size > HARD_CAP.with(Cell::get) {
                report_hard_cap(size);
                return false;
            }
            if size > SOFT_CAP.with(Cell::get) && OVER_CAP_AT.with(|a| a.borrow().is_none()) {
                // Where the allocation came from; the capture allocates, so stop watching.
                in_case.set(false);
                let trace = format!("{}", std::backtrace::Backtrace::force_capture());
                OVER_CAP_AT.with(|a| *a.borrow_mut() = Some(trace));
                in_case.set(true);
            }
            true
        })
        .unwrap_or(true)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; refusing a
// request (null) is allowed by the `GlobalAlloc` contract.
unsafe impl GlobalAlloc for CapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note_request(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note_request(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note_request(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Writes to stderr without allocating (we are inside the allocator).
fn raw_stderr(bytes: &[u8]) {
    // SAFETY: writes `bytes.len()` bytes from a live slice to fd 2.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
}

fn raw_stderr_usize(mut n: usize) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    raw_stderr(&buf[at..]);
}

fn raw_stderr_hex(data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in data.chunks(64) {
        let mut line = [0u8; 129];
        for (i, b) in chunk.iter().enumerate() {
            line[2 * i] = HEX[usize::from(b >> 4)];
            line[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        line[2 * chunk.len()] = b'\n';
        raw_stderr(&line[..2 * chunk.len() + 1]);
    }
}

fn report_hard_cap(size: usize) {
    let (name, name_len, input, input_len) = CURRENT.with(Cell::get);
    // SAFETY: `CURRENT` points at the name and input of the case running on this thread; both
    // outlive the case (see `run_case`).
    let (name, input) =
        unsafe { (std::slice::from_raw_parts(name, name_len), std::slice::from_raw_parts(input, input_len)) };
    raw_stderr(b"\nfuzz ");
    raw_stderr(name);
    raw_stderr(b": one allocation of ");
    raw_stderr_usize(size);
    raw_stderr(b" bytes, far over the cap: refused (the run aborts unless the parser handles it). Input (");
    raw_stderr_usize(input.len());
    raw_stderr(b" bytes, hex):\n");
    raw_stderr_hex(input);
}
