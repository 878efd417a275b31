//! The in-process wake-up of every subscription.

use tokio::sync::watch;

/// An in-process "events were appended" signal.
///
/// Commits bump it after they return; every subscription holds a receiver. A `watch` keeps
/// the signal level-triggered: a reader busy with a batch when a commit lands still sees the
/// change when it next waits, so no wake-up is lost, and bursts coalesce into one.
///
/// Two channels, so that wake-ups relayed from other processes are never relayed back out
/// (which would ping-pong between instances forever): `local` counts this process's own
/// appends, `wake` counts those plus the ones other processes announced.
#[derive(Clone, Debug)]
pub struct FeedSignal {
    local: watch::Sender<u64>,
    wake: watch::Sender<u64>,
    settled: watch::Sender<u64>,
}

impl Default for FeedSignal {
    fn default() -> Self {
        Self {
            local: watch::Sender::new(0),
            wake: watch::Sender::new(0),
            settled: watch::Sender::new(0),
        }
    }
}

impl FeedSignal {
    /// This process appended events.
    pub fn bump(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
        self.bump_remote();
    }

    /// Another process announced appended events.
    pub fn bump_remote(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of every wake-up, local or relayed, that has seen everything so far.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// A subscription of this process committed a batch. Its transaction may have been what
    /// held events back from the others, and its commit appends nothing that would wake them.
    pub fn bump_settled(&self) {
        self.settled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of [`FeedSignal::bump_settled`].
    pub fn subscribe_settled(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// A receiver of this process's own appends only.
    pub fn subscribe_local(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }
}
