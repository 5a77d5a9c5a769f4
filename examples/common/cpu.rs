//! This thread's CPU time, shared by the reports (each includes this file
//! with `#[path]`). The machines are shared, so rates count the time this
//! thread had a core, not wall time.
//!
//! The clock is Linux's `/proc/thread-self/schedstat` (the scheduler's
//! runtime, in ns). It lags by up to one scheduler tick (a few ms), so a
//! short sample can read zero: sum it over rounds, never take the least of
//! short samples.

// Each report uses part of this file.
#![allow(dead_code)]

use std::cell::OnceCell;
use std::fs::File;
use std::time::{Duration, Instant};

/// This thread's CPU time so far; `None` where there is no such file.
pub fn thread_cpu() -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        // /proc/thread-self names the thread that opens it: one file per thread.
        static SCHEDSTAT: OnceCell<Option<File>> = const { OnceCell::new() };
    }
    SCHEDSTAT.with(|cell| {
        let file = cell.get_or_init(|| File::open("/proc/thread-self/schedstat").ok()).as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        let ns: u64 = std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    })
}

/// Wall and CPU time of one run.
#[derive(Clone, Copy)]
pub struct Took {
    /// Wall-clock time.
    pub wall: Duration,
    /// This thread's CPU time (wall time where the CPU clock is missing).
    pub cpu: Duration,
}

impl Took {
    /// Nothing yet: `add` keeps the least wall time and sums CPU time.
    pub const START: Took = Took { wall: Duration::MAX, cpu: Duration::ZERO };

    /// The best wall time (the round least disturbed) and the total CPU time:
    /// the CPU clock ticks in steps of a few ms, so its errors average out
    /// over rounds, where a minimum would pick them.
    pub fn add(self, other: Took) -> Took {
        Took { wall: self.wall.min(other.wall), cpu: self.cpu + other.cpu }
    }
}

/// Started at `start`, read with `stop`.
pub struct Stopwatch {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Stopwatch {
    /// Starts both clocks.
    pub fn start() -> Self {
        Stopwatch { cpu: thread_cpu(), wall: Instant::now() }
    }

    /// The time since `start`.
    pub fn stop(&self) -> Took {
        let wall = self.wall.elapsed();
        let cpu = self.cpu.zip(thread_cpu()).map_or(wall, |(a, b)| b.saturating_sub(a));
        Took { wall, cpu }
    }
}
