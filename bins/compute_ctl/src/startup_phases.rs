//! The start's wall clock, cut into contiguous phases: each phase ends where the next one
//! begins, from compute_ctl's launch (the first line of `main`, [`note_launch`]) to
//! `running`, so they add up to the whole wall time with nothing left out. Served in
//! `/metrics.json` (`startup_phases`) and logged once at `running`. The per-step metrics
//! (`basebackup_ms`, …) stay as upstream defines them; this is the accounting beside them.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use compute_spec::api::StartupPhase;

static LAUNCHED: OnceLock<Instant> = OnceLock::new();

/// Records the moment compute_ctl was launched; call it first thing in `main`. Later calls
/// change nothing.
pub fn note_launch() {
    let _ = LAUNCHED.set(Instant::now());
}

/// When compute_ctl was launched: [`note_launch`]'s moment, else the first call of this.
pub(crate) fn launched() -> Instant {
    *LAUNCHED.get_or_init(Instant::now)
}

/// The end of the last phase, and the phases so far.
#[derive(Debug, Clone)]
pub(crate) struct PhaseClock {
    origin: Instant,
    last: Instant,
    phases: Vec<StartupPhase>,
}

impl PhaseClock {
    /// A clock whose first phase starts at `origin`.
    pub(crate) fn new(origin: Instant) -> PhaseClock {
        PhaseClock {
            origin,
            last: origin,
            phases: Vec::new(),
        }
    }

    /// Ends the phase `phase` at `now` (it began where the previous one ended) and returns
    /// its length. A `now` before the previous end gives an empty phase.
    pub(crate) fn mark(&mut self, phase: &str, now: Instant) -> Duration {
        let now = now.max(self.last);
        let length = now - self.last;
        // Both ends in whole microseconds since the origin, so that the integers add up too.
        let (start_us, end_us) = (micros(self.last - self.origin), micros(now - self.origin));
        self.phases.push(StartupPhase {
            phase: phase.to_owned(),
            start_us,
            duration_us: end_us - start_us,
        });
        self.last = now;
        length
    }

    /// The phases so far, in order.
    pub(crate) fn phases(&self) -> &[StartupPhase] {
        &self.phases
    }

    /// One line for the log: `launch 2.1 ms, spec 0.4 ms, …, total 512.0 ms`.
    pub(crate) fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{} {:.1} ms", p.phase, p.duration_us as f64 / 1000.0))
            .collect();
        parts.push(format!(
            "total {:.1} ms",
            micros(self.last - self.origin) as f64 / 1000.0
        ));
        parts.join(", ")
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_contiguous_and_add_up_to_the_wall_time() {
        let origin = Instant::now();
        let mut clock = PhaseClock::new(origin);
        let at = |ms| origin + Duration::from_millis(ms);
        assert_eq!(clock.mark("launch", at(3)), Duration::from_millis(3));
        assert_eq!(clock.mark("spec", at(5)), Duration::from_millis(2));
        // A moment before the previous end is an empty phase, never a negative one.
        assert_eq!(clock.mark("http", at(4)), Duration::ZERO);
        assert_eq!(clock.mark("running", at(12)), Duration::from_millis(7));
        let phases = clock.phases();
        let names: Vec<&str> = phases.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(names, ["launch", "spec", "http", "running"]);
        for pair in phases.windows(2) {
            assert_eq!(pair[0].start_us + pair[0].duration_us, pair[1].start_us);
        }
        let total: u64 = phases.iter().map(|p| p.duration_us).sum();
        assert_eq!(total, 12_000);
        assert_eq!(
            clock.summary(),
            "launch 3.0 ms, spec 2.0 ms, http 0.0 ms, running 7.0 ms, total 12.0 ms"
        );
    }
}
