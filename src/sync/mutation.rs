//! Deliberate bugs, for the model checker to find ([`crate::sync::model`]).
//!
//! Each [`Mutation`] breaks the protocol or the driver in one place, behind
//! one `if mutation::on(Mutation::X)` line. A mutation is switched on for the
//! current thread only ([`with`]), so tests running in parallel never see
//! it; without the `testing` feature [`on`] is a constant `false` and the
//! hooks compile away.

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The driver never restarts a session after a loss: timeouts never fire.
    NeverResend,
    /// The receiver drops every block it did not ask for, silently.
    DropUnasked,
    /// Every Bloom filter says it holds every event.
    FilterHoldsAll,
    /// Once the sender has sent the peer everything it lacks, it takes its
    /// own heads as the peer's (and as the shared heads), before any
    /// acknowledgement.
    HeadsOnSend,
    /// The behaviour fixed in 0073e4f: a peer that acknowledged our latest
    /// message is taken to hold what we predicted, though an earlier message
    /// (the one with the blocks) may have been lost.
    AckedPredictionSettles,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 5] = [
        Mutation::NeverResend,
        Mutation::DropUnasked,
        Mutation::FilterHoldsAll,
        Mutation::HeadsOnSend,
        Mutation::AckedPredictionSettles,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::NeverResend => "never-resend",
            Mutation::DropUnasked => "drop-unasked-block",
            Mutation::FilterHoldsAll => "filter-holds-all",
            Mutation::HeadsOnSend => "heads-advance-unacked",
            Mutation::AckedPredictionSettles => "acked-prediction-settles",
        }
    }
}

#[cfg(feature = "testing")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutation>> = const { std::cell::Cell::new(None) };
}

/// Whether `m` is switched on in this thread.
#[cfg(feature = "testing")]
#[inline]
pub fn on(m: Mutation) -> bool {
    ACTIVE.with(|a| a.get() == Some(m))
}

/// Whether `m` is switched on: never, without the `testing` feature.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub fn on(_: Mutation) -> bool {
    false
}

/// Runs `f` with `m` switched on in this thread (`None`: none), then
/// switches back to what was on before.
#[cfg(feature = "testing")]
pub fn with<T>(m: Option<Mutation>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Mutation>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ACTIVE.with(|a| a.replace(m)));
    f()
}
