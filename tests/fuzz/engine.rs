//! A small mutation fuzzer of our own, for the stable toolchain: no compiler instrumentation.
//!
//! * Inputs start from seeds (made from the fixtures) and are changed by byte-level mutations
//!   (bit flips, interesting integers, deletions, duplications, splices with other inputs,
//!   dictionary tokens) and, per target, structure-aware ones (a zip re-packed around a mutated
//!   record, PNG chunk CRCs fixed, text edited line by line).
//! * Feedback without coverage instrumentation: every run ends in a *signature* (the error's
//!   message with numbers and quoted names masked, or a summary of what was decoded). An input
//!   that gives a signature not seen before joins the corpus, so inputs that reach deeper checks
//!   (each check has its own message) are kept and mutated further.
//! * Every run is checked for a panic (caught and recorded), for memory (a counting global
//!   allocator: the largest single allocation and the peak of live bytes of the run, against the
//!   target's bound for an input of that length; and the process's peak RSS, which also sees C
//!   libraries' allocations), and for time.
//!
//! Findings are written to `$FUZZ_OUT` (default `target/fuzz-findings`) as `<target>/<kind>-<hash>.bin`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Counting allocator

/// The system allocator, counting the current thread's allocations while a run is tracked.
pub struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<u64> = const { Cell::new(0) };
    static PEAK: Cell<u64> = const { Cell::new(0) };
    static LARGEST: Cell<u64> = const { Cell::new(0) };
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

thread_local! {
    /// `replay` prints where an allocation over this size is made.
    static TRAP: Cell<u64> = const { Cell::new(u64::MAX) };
    static IN_TRAP: Cell<bool> = const { Cell::new(false) };
}

fn on_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let size = size as u64;
            if size > TRAP.with(Cell::get) && !IN_TRAP.with(Cell::get) {
                IN_TRAP.with(|f| f.set(true));
                eprintln!(
                    "allocation of {size} bytes at:\n{}",
                    std::backtrace::Backtrace::force_capture()
                );
                IN_TRAP.with(|f| f.set(false));
            }
            let live = LIVE.with(|l| {
                let v = l.get().saturating_add(size);
                l.set(v);
                v
            });
            PEAK.with(|p| p.set(p.get().max(live)));
            LARGEST.with(|m| m.set(m.get().max(size)));
        }
    });
}

fn on_free(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LIVE.with(|l| l.set(l.get().saturating_sub(size as u64)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Memory a tracked run used: its largest single allocation and its peak of live bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryUse {
    pub largest: u64,
    pub peak: u64,
}

/// Runs `f` with this thread's allocations counted.
pub fn tracked<R>(f: impl FnOnce() -> R) -> (R, MemoryUse) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|m| m.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    let m = MemoryUse {
        largest: LARGEST.with(Cell::get),
        peak: PEAK.with(Cell::get),
    };
    (r, m)
}

/// The process's peak resident set so far, in bytes.
fn max_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0 {
            (u.ru_maxrss.max(0) as u64) * 1024
        } else {
            0
        }
    }
}

/// Panics on a fuzzing thread are recorded, not printed; other threads keep the usual output.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let fuzzing = TRACKING.try_with(Cell::get).unwrap_or(false);
            if fuzzing {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let _ = PANIC_MESSAGE.try_with(|m| *m.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Random numbers

/// splitmix64: fast, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

const INTERESTING_U64: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    31,
    32,
    63,
    64,
    100,
    127,
    128,
    255,
    256,
    512,
    1000,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    100_000,
    1 << 20,
    (1 << 24) - 1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

/// Numbers written as text by the text mutations.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "0.5",
    "1e-300",
    "1e309",
    "-1e309",
    "nan",
    "NaN",
    ".nan",
    "inf",
    "-inf",
    ".inf",
    "-.inf",
    "255",
    "256",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "0x7fffffff",
    "0o777",
    "0b1",
    "1_000",
    "1/0",
    "0/0",
    "30000/1001",
    "-2147483648",
    "\"\"",
    "''",
    "true",
    "false",
    "null",
    "~",
    "[]",
    "{}",
];

/// One random byte-level change of `data` (which may grow or shrink).
pub fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(16) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng
                .pick(&[0u8, 1, 0x7f, 0x80, 0xff, b'\n', b'0', b' '])
                .unwrap_or(&0);
        }
        3 | 4 if len > 0 => {
            // An interesting integer of 1, 2, 4 or 8 bytes, little or big endian.
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let v = *rng.pick(INTERESTING_U64).unwrap_or(&0);
            let v = if rng.chance(4) { v.wrapping_neg() } else { v };
            let mut bytes = v.to_le_bytes()[..width].to_vec();
            if rng.chance(2) {
                bytes.reverse();
            }
            let i = rng.below(len);
            for (k, b) in bytes.into_iter().enumerate() {
                if let Some(d) = data.get_mut(i + k) {
                    *d = b;
                }
            }
        }
        5 if len >= 4 => {
            // Add or subtract a little to a little-endian u32.
            let i = rng.below(len - 3);
            let mut b = [0u8; 4];
            b.copy_from_slice(&data[i..i + 4]);
            let delta = rng.below(33) as u32;
            let v = if rng.chance(2) {
                u32::from_le_bytes(b).wrapping_add(delta)
            } else {
                u32::from_le_bytes(b).wrapping_sub(delta)
            };
            data[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        6 if len > 0 => {
            // Delete a range.
            let i = rng.below(len);
            let most = if rng.chance(4) { 4096 } else { 16 };
            let n = 1 + rng.below((len - i).min(most));
            data.drain(i..i + n);
        }
        7 if len > 0 => {
            // Duplicate a range.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            let chunk = data[i..i + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, chunk);
        }
        8 => {
            // Insert random bytes.
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let chunk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, chunk);
        }
        9 if !other.is_empty() => {
            // Splice: our head, the other input's tail.
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        10 | 11 if !dict.is_empty() => {
            let token = rng.pick(dict).cloned().unwrap_or_default();
            let at = rng.below(len + 1);
            if rng.chance(2) || at + token.len() > len {
                data.splice(at..at, token);
            } else {
                data[at..at + token.len()].copy_from_slice(&token);
            }
        }
        12 if len > 1 => {
            data.truncate(rng.below(len));
        }
        13 if len > 1 => {
            // Copy a range over another place.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(32));
            let chunk = data[i..i + n].to_vec();
            let at = rng.below(len);
            for (k, b) in chunk.into_iter().enumerate() {
                if let Some(d) = data.get_mut(at + k) {
                    *d = b;
                }
            }
        }
        14 if !other.is_empty() && len > 0 => {
            // Overwrite with a piece of another input.
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(64));
            let at = rng.below(len);
            for (k, &b) in other[from..from + n].iter().enumerate() {
                if let Some(d) = data.get_mut(at + k) {
                    *d = b;
                }
            }
        }
        _ => {
            if len > 0 {
                let i = rng.below(len);
                data[i] = data[i].wrapping_add(1 + rng.below(3) as u8);
            } else {
                data.push(rng.next() as u8);
            }
        }
    }
}

/// One random line-level or token-level change of text (bytes that are mostly UTF-8).
pub fn mutate_text(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[Vec<u8>]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    match rng.below(10) {
        0 if n > 1 => {
            lines.remove(rng.below(n));
        }
        1 => {
            let i = rng.below(n);
            let l = lines[i].clone();
            lines.insert(rng.below(n + 1), l);
        }
        2 if n > 1 => {
            let (a, b) = (rng.below(n), rng.below(n));
            lines.swap(a, b);
        }
        3 | 4 => {
            // Replace a number (or a value after ':' / '=') with an interesting one.
            let i = rng.below(n);
            let line = &lines[i];
            let new = *rng.pick(INTERESTING_TEXT).unwrap_or(&"0");
            let bytes = line.as_bytes();
            let starts: Vec<usize> = (0..bytes.len())
                .filter(|&k| {
                    (bytes[k].is_ascii_digit() || bytes[k] == b'-')
                        && (k == 0 || !bytes[k - 1].is_ascii_alphanumeric())
                })
                .collect();
            if let Some(&s) = rng.pick(&starts) {
                let e = s
                    + bytes[s..]
                        .iter()
                        .skip(1)
                        .take_while(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/' | b'_')
                        })
                        .count()
                    + 1;
                lines[i] = format!("{}{new}{}", &line[..s], &line[e.min(line.len())..]);
            } else if let Some(p) = line.find([':', '=']) {
                lines[i] = format!("{} {new}", &line[..=p]);
            }
        }
        5 if !dict.is_empty() => {
            // A token (a key of the format) as a line of its own or inside one.
            let token = String::from_utf8_lossy(rng.pick(dict).map(Vec::as_slice).unwrap_or(b""))
                .into_owned();
            let i = rng.below(n);
            if rng.chance(2) {
                let indent = " ".repeat(rng.below(3) * 2);
                lines.insert(i, format!("{indent}{token}"));
            } else {
                let l = &lines[i];
                let mut at = rng.below(l.len() + 1);
                while !l.is_char_boundary(at) {
                    at -= 1;
                }
                lines[i] = format!("{}{token}{}", &l[..at], &l[at..]);
            }
        }
        6 => {
            // Change the indentation of a line.
            let i = rng.below(n);
            let trimmed = lines[i].trim_start().to_string();
            lines[i] = format!("{}{trimmed}", " ".repeat(rng.below(9)));
        }
        7 if !other.is_empty() => {
            // Lines from another input.
            let o = String::from_utf8_lossy(other).into_owned();
            let ol: Vec<&str> = o.split('\n').collect();
            let from = rng.below(ol.len());
            let k = 1 + rng.below(4);
            let at = rng.below(n + 1);
            for (j, l) in ol.iter().skip(from).take(k).enumerate() {
                lines.insert(at + j, l.to_string());
            }
        }
        _ => {
            mutate_bytes(rng, data, other, dict);
            return;
        }
    }
    *data = lines.join("\n").into_bytes();
}

/// Printable runs of 3 to 40 bytes in the seeds: names, keys and tokens of the format.
pub fn dictionary_from(seeds: &[Vec<u8>], extra: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut words: HashSet<Vec<u8>> = extra.iter().map(|e| e.to_vec()).collect();
    for s in seeds {
        let mut start = None;
        for (i, &b) in s.iter().chain(std::iter::once(&0u8)).enumerate() {
            let printable = b.is_ascii_graphic() || b == b' ' || b == b'_';
            match (printable, start) {
                (true, None) => start = Some(i),
                (false, Some(st)) => {
                    if (3..=40).contains(&(i - st)) {
                        words.insert(s[st..i].to_vec());
                    }
                    start = None;
                }
                _ => {}
            }
            if words.len() > 4000 {
                break;
            }
        }
    }
    let mut v: Vec<Vec<u8>> = words.into_iter().collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Targets and runs

/// Changes an input in place; the other arguments are another corpus input and the dictionary.
pub type Mutator = fn(&mut Rng, &mut Vec<u8>, &[u8], &[Vec<u8>]);

/// What a target does with an input.
pub struct Target {
    pub name: &'static str,
    /// Valid inputs made from the fixtures.
    pub seeds: Vec<Vec<u8>>,
    /// How many of the seeds are valid files that the code must refuse (an audio-only file given
    /// as a video); every other seed must decode.
    pub refused_seeds: u64,
    pub dict: Vec<Vec<u8>>,
    /// Longer mutants are cut to this length.
    pub max_len: usize,
    /// Mutates an input (one or more changes); `other` is another corpus input.
    pub mutate: Mutator,
    /// Runs the code under test; returns the outcome: `ok ...` or the error message (the engine
    /// turns it into a signature, see [`signature`]).
    pub exec: fn(&[u8]) -> String,
    /// The most memory one run on an input of this length may use, in one allocation; the peak of
    /// live bytes may be twice that.
    pub alloc_bound: fn(usize) -> u64,
    /// How the bound is stated, for the report.
    pub bound_text: &'static str,
}

/// How long a fuzzing run lasts: whichever ends first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub execs: u64,
    pub time: Duration,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: &'static str,
    pub detail: String,
    pub saved: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub signatures: usize,
    pub ok_runs: u64,
    /// How many of the seeds decoded ("ok" outcomes): a broken seed builder would leave only
    /// error paths to fuzz.
    pub seeds_ok: u64,
    pub findings: Vec<Finding>,
    /// Largest single allocation of any run, and that run's input length.
    pub largest_alloc: (u64, usize),
    /// Highest peak of live bytes of any run.
    pub largest_peak: u64,
    pub slowest: Duration,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "{:<11} {:>10} execs in {:>7.1} s ({:>7.0}/s), corpus {:>5}, signatures {:>5}, \
             decoded {:>7}, largest allocation {} (input {} B), peak live {}, slowest {:.1} ms, \
             findings {}",
            self.target,
            self.execs,
            self.elapsed.as_secs_f64(),
            self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.corpus,
            self.signatures,
            self.ok_runs,
            human(self.largest_alloc.0),
            self.largest_alloc.1,
            human(self.largest_peak),
            self.slowest.as_secs_f64() * 1e3,
            self.findings.len()
        )
    }
}

pub fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// A run that takes more processor time than this is a finding (processor time, not wall time,
/// so that a machine busy with other work does not make findings).
const SLOW: Duration = Duration::from_secs(5);

/// The processor time this thread has used (the targets decode on the calling thread).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
/// Growth of the process's peak RSS beyond its level after the seeds that counts as a finding.
const RSS_GROWTH_BOUND: u64 = 1536 << 20;
/// Inputs kept per target.
const CORPUS_CAP: usize = 4096;

fn findings_dir() -> PathBuf {
    std::env::var_os("FUZZ_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings"))
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn save(target: &str, kind: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = findings_dir().join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{kind}-{:016x}.bin", fnv(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// How often a word must have appeared in this target's messages before it counts in a signature.
const WORD_RECURRENCE: u32 = 3;
/// A word seen in this many messages counts even when the input holds it.
const COMMON_WORD: u32 = 1000;
/// Words remembered per target.
const WORDS_CAP: usize = 200_000;

/// Turns outcomes into signatures: the message's words only (ASCII words of three letters or
/// more, lower-case or capitalised, not hexadecimal, outside quotes, not found in the input, and
/// seen in at least [`WORD_RECURRENCE`] messages and in one of 20000 words so far; as a set), so that messages differing only in numbers, bytes or pieces of
/// the input they quote count as one, while each distinct check's wording counts on its own.
#[derive(Default)]
pub struct Signatures {
    words: std::collections::HashMap<String, u32>,
    total: u64,
}

impl Signatures {
    pub fn of(&mut self, message: &str, input: &[u8]) -> String {
        let mut echoed: HashSet<String> = HashSet::new();
        if input.len() <= 64 * 1024 {
            for w in input.split(|b| !b.is_ascii_alphabetic()) {
                if w.len() >= 3 && w.len() <= 40 {
                    echoed.insert(String::from_utf8_lossy(w).to_ascii_lowercase());
                }
            }
        }
        let message = unquoted(message);
        let mut words: Vec<&str> = Vec::new();
        for w in message.split(|c: char| !c.is_ascii_alphanumeric()) {
            let mut chars = w.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
            let rest_lower = chars.all(|c| c.is_ascii_lowercase());
            let hex = w.chars().all(|c| c.is_ascii_hexdigit());
            if w.len() < 3 || !first_ok || !rest_lower || hex || words.last() == Some(&w) {
                continue;
            }
            // A word the input holds is left out (it may be quoted from it), unless it is one of
            // the target's common words.
            let common = self.words.get(w).is_some_and(|&c| c >= COMMON_WORD);
            if !common && echoed.contains(&w.to_ascii_lowercase()) {
                continue;
            }
            self.total += 1;
            let full = self.words.len() >= WORDS_CAP;
            let count = if let Some(c) = self.words.get_mut(w) {
                *c = c.saturating_add(1);
                *c
            } else if full {
                0
            } else {
                self.words.insert(w.to_string(), 1);
                1
            };
            // Pieces of inputs that messages quote recur too, rarely: a word counts once it is
            // a sizeable share of all words seen.
            if count >= WORD_RECURRENCE.max((self.total / 20_000) as u32) {
                words.push(w);
            }
            if words.len() >= 30 {
                break;
            }
        }
        words.sort_unstable();
        words.dedup();
        words.join(" ")
    }
}

/// `message` without its quoted parts ('...', "...", `...`: pieces of the input, names), an
/// apostrophe inside a word (file's) not counting as a quote.
fn unquoted(message: &str) -> String {
    let chars: Vec<char> = message.chars().collect();
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| chars.get(j));
        let after = chars.get(i + 1);
        let wordy = |x: Option<&char>| x.is_some_and(|x| x.is_alphanumeric());
        match quote {
            Some(q) if c == q && !wordy(after) => {
                quote = None;
                out.push(' ');
            }
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') && !wordy(before) => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// One run on `input`: the signature and the memory used, or a finding.
fn run_one(
    target: &Target,
    input: &[u8],
    report: &mut Report,
    rss_limit: Option<u64>,
    signatures: &mut Signatures,
) -> Option<String> {
    let t = thread_cpu_time();
    let (result, mem) = tracked(|| catch_unwind(AssertUnwindSafe(|| (target.exec)(input))));
    let took = thread_cpu_time().saturating_sub(t);
    report.execs += 1;
    report.slowest = report.slowest.max(took);
    if mem.largest > report.largest_alloc.0 {
        report.largest_alloc = (mem.largest, input.len());
    }
    report.largest_peak = report.largest_peak.max(mem.peak);
    let mut finding = |kind: &'static str, detail: String| {
        let saved = save(target.name, kind, input);
        report.findings.push(Finding {
            kind,
            detail,
            saved,
        });
    };
    let bound = (target.alloc_bound)(input.len());
    if mem.largest > bound || mem.peak > bound.saturating_mul(2) {
        finding(
            "alloc",
            format!(
                "an input of {} bytes made one allocation of {} and a peak of {} (bound {}, peak {})",
                input.len(),
                human(mem.largest),
                human(mem.peak),
                human(bound),
                human(bound.saturating_mul(2))
            ),
        );
    }
    if let Some(limit) = rss_limit {
        let rss = max_rss();
        if rss > limit {
            finding(
                "rss",
                format!(
                    "the process's peak RSS grew to {} (limit {}) on an input of {} bytes",
                    human(rss),
                    human(limit),
                    input.len()
                ),
            );
        }
    }
    if took > SLOW {
        finding(
            "slow",
            format!(
                "an input of {} bytes took {:.1} s of processor time",
                input.len(),
                took.as_secs_f64()
            ),
        );
    }
    match result {
        Ok(outcome) => {
            if outcome.starts_with("ok") {
                report.ok_runs += 1;
            }
            Some(signatures.of(&outcome, input))
        }
        Err(_) => {
            let msg = PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_else(|| "panic".into());
            finding("panic", msg);
            None
        }
    }
}

/// Runs one input (a saved finding) and says what happened; allocations over `trap` bytes print
/// where they were made.
pub fn replay(target: &Target, input: &[u8], trap: u64) -> String {
    install_panic_hook();
    TRAP.with(|t| t.set(trap));
    let mut report = Report::default();
    let sig = run_one(target, input, &mut report, None, &mut Signatures::default());
    TRAP.with(|t| t.set(u64::MAX));
    format!(
        "signature {sig:?}; largest allocation {}, peak {}; findings {:?}",
        human(report.largest_alloc.0),
        human(report.largest_peak),
        report.findings
    )
}

/// Fuzzes one target within `budget`; `seed` makes the run reproducible.
pub fn fuzz(target: &Target, budget: Budget, seed: u64) -> Report {
    install_panic_hook();
    let start = Instant::now();
    let mut rng = Rng::new(seed ^ fnv(target.name.as_bytes()));
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut signatures = Signatures::default();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for s in &target.seeds {
        if let Some(sig) = run_one(target, s, &mut report, None, &mut signatures) {
            seen.insert(sig);
        }
        corpus.push(s.clone());
    }
    report.seeds_ok = report.ok_runs;
    assert!(!corpus.is_empty(), "{}: no seeds", target.name);
    let rss_limit = max_rss().saturating_add(RSS_GROWTH_BOUND);
    let mut input = Vec::new();
    while report.execs < budget.execs && start.elapsed() < budget.time {
        let base = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        input.clear();
        input.extend_from_slice(base);
        // Stacked changes: mostly one or two, sometimes many.
        let rounds = 1 + if rng.chance(4) {
            rng.below(16)
        } else {
            rng.below(2)
        };
        for _ in 0..rounds {
            (target.mutate)(&mut rng, &mut input, other, &target.dict);
        }
        input.truncate(target.max_len);
        let Some(sig) = run_one(
            target,
            &input,
            &mut report,
            Some(rss_limit),
            &mut signatures,
        ) else {
            continue;
        };
        if std::env::var_os("FUZZ_VERBOSE").is_some()
            && seen.len().is_multiple_of(500)
            && !seen.contains(&sig)
        {
            eprintln!("{}: new signature {sig:?}", target.name);
        }
        if seen.insert(sig) {
            if corpus.len() < CORPUS_CAP {
                corpus.push(input.clone());
            } else {
                let i = target.seeds.len() + rng.below(CORPUS_CAP - target.seeds.len());
                corpus[i] = input.clone();
            }
        }
    }
    if let Some(dir) = std::env::var_os("FUZZ_DUMP_SIGNATURES") {
        let mut all: Vec<&String> = seen.iter().collect();
        all.sort();
        let text: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let _ = std::fs::write(
            PathBuf::from(dir).join(format!("{}.signatures", target.name)),
            text.join("\n"),
        );
    }
    report.elapsed = start.elapsed();
    report.corpus = corpus.len();
    report.signatures = seen.len();
    report
}
