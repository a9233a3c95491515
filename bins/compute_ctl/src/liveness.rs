//! The liveness of compute_ctl's supervision, for `GET /healthz`: the task that waits on the
//! postmaster beats a [`Heartbeat`] while it waits; a heartbeat older than [`STALE_AFTER`]
//! means that task is wedged (the runtime no longer polls it). Before the postmaster exists
//! (`empty`, `init`) and after it is reaped nothing is watched, and the process counts as
//! alive as long as it answers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the supervision beats while it waits on the postmaster.
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(1);

/// How old the last beat may be before the supervision counts as wedged: ten missed beats,
/// generous on a loaded host.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(10);

/// The last beat of the postmaster's supervision, if it is being supervised.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    last: Mutex<Option<Instant>>,
}

impl Heartbeat {
    /// Records that the supervision is alive now (and watching a postmaster).
    pub(crate) fn beat(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// Records that no postmaster is supervised any more (it exited and was reaped).
    pub(crate) fn stop(&self) {
        *self.lock() = None;
    }

    /// `Err` with the reason when the supervision is wedged.
    pub(crate) fn check(&self) -> Result<(), String> {
        let last = *self.lock();
        judge(last.map(|at| at.elapsed()), STALE_AFTER)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The verdict on a heartbeat `age` (`None`: nothing supervised).
fn judge(age: Option<Duration>, stale_after: Duration) -> Result<(), String> {
    match age {
        Some(age) if age > stale_after => Err(format!(
            "the postmaster's supervision last ran {} s ago (limit {} s)",
            age.as_secs(),
            stale_after.as_secs()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_heartbeat_is_wedged() {
        let limit = Duration::from_secs(10);
        assert_eq!(judge(None, limit), Ok(()));
        assert_eq!(judge(Some(Duration::from_secs(3)), limit), Ok(()));
        assert_eq!(judge(Some(limit), limit), Ok(()));
        let wedged = judge(Some(Duration::from_secs(12)), limit).unwrap_err();
        assert!(wedged.contains("12 s ago"), "{wedged}");
        let beat = Heartbeat::default();
        assert_eq!(beat.check(), Ok(()));
        beat.beat();
        assert_eq!(beat.check(), Ok(()));
        *beat.lock() = Instant::now().checked_sub(Duration::from_secs(30));
        assert!(beat.check().is_err());
        beat.stop();
        assert_eq!(beat.check(), Ok(()));
    }
}
