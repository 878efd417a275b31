//! The in-process wake-up of the subscriptions that want what was appended.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::watch;

/// Which aggregate types a subscriber wants (its [`crate::Handler::wants`]).
pub type Interest = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Forgets the rows of a subscription that a process keeps in memory
/// ([`FeedSignal::on_rewrite`]).
pub type Forget = Arc<dyn Fn() + Send + Sync>;

/// An in-process "events were appended" signal, addressed by aggregate type.
///
/// Commits bump it with their aggregate's type after they return, and only the subscribers
/// that want that type wake: a restock wakes the stock projection, not the order saga. That
/// keeps the cost of a command independent of how many subscriptions do not care about it
/// (each of those still polls at its own interval, whatever the rate of commands).
///
/// Every receiver is a `watch`, so the signal is level-triggered: a reader busy with a batch
/// when a commit lands still sees the change when it next waits, so no wake-up is lost, and
/// bursts coalesce into one.
///
/// Wake-ups relayed from other processes ([`FeedSignal::bump_remote`]) are never relayed back
/// out (which would ping-pong between instances forever): `local` counts this process's own
/// appends only, and `appended` collects their types for the next announcement.
#[derive(Clone, Default)]
pub struct FeedSignal {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    local: watch::Sender<u64>,
    settled: watch::Sender<u64>,
    /// Types this process appended since the relay last announced.
    appended: Mutex<BTreeSet<String>>,
    subscribers: RwLock<Vec<Subscriber>>,
    /// What to call when a subscription's rows were rewritten behind its runner.
    forgetters: RwLock<Vec<(String, Forget)>>,
}

struct Subscriber {
    name: String,
    interest: Interest,
    wake: watch::Sender<u64>,
}

impl std::fmt::Debug for FeedSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subscribers = self.read_subscribers().len();
        f.debug_struct("FeedSignal")
            .field("subscribers", &subscribers)
            .finish_non_exhaustive()
    }
}

fn bump(sender: &watch::Sender<u64>) {
    sender.send_modify(|n| *n = n.wrapping_add(1));
}

impl FeedSignal {
    /// This process appended events of `aggregate_type`.
    pub fn bump(&self, aggregate_type: &str) {
        {
            let mut appended = self
                .inner
                .appended
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !appended.contains(aggregate_type) {
                appended.insert(aggregate_type.to_owned());
            }
        }
        bump(&self.inner.local);
        self.wake(|s| (s.interest)(aggregate_type));
    }

    /// Another process announced appended events of `aggregate_types` (`None`: of types it
    /// did not say, so every subscriber wakes).
    pub fn bump_remote(&self, aggregate_types: Option<&[&str]>) {
        match aggregate_types {
            Some(types) => self.wake(|s| types.iter().any(|t| (s.interest)(t))),
            None => self.wake(|_| true),
        }
    }

    /// Wakes the subscribers named `name` whatever was appended: a reader waiting for them to
    /// pass a position of a type they do not want asks them to look now rather than at their
    /// next poll.
    pub fn nudge(&self, name: &str) {
        self.wake(|s| s.name == name);
    }

    fn wake(&self, mut wanted: impl FnMut(&Subscriber) -> bool) {
        for subscriber in self.read_subscribers().iter() {
            if wanted(subscriber) {
                bump(&subscriber.wake);
            }
        }
    }

    fn read_subscribers(&self) -> std::sync::RwLockReadGuard<'_, Vec<Subscriber>> {
        self.inner
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver of the wake-ups, local or relayed, of the types `interest` wants, and of
    /// nudges for `name`; it has seen everything so far.
    pub fn subscribe(&self, name: &str, interest: Interest) -> watch::Receiver<u64> {
        let (wake, receiver) = watch::channel(0);
        let mut subscribers = self
            .inner
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Runners that ended dropped their receivers: forget them.
        subscribers.retain(|s| s.wake.receiver_count() > 0);
        subscribers.push(Subscriber {
            name: name.to_owned(),
            interest,
            wake,
        });
        receiver
    }

    /// A subscription of this process committed a batch. Its transaction may have been what
    /// held events back from the others, and its commit appends nothing that would wake them.
    pub fn bump_settled(&self) {
        bump(&self.inner.settled);
    }

    /// A receiver of [`FeedSignal::bump_settled`].
    pub fn subscribe_settled(&self) -> watch::Receiver<u64> {
        self.inner.settled.subscribe()
    }

    /// A receiver of this process's own appends only.
    pub fn subscribe_local(&self) -> watch::Receiver<u64> {
        self.inner.local.subscribe()
    }

    /// Calls `forget` whenever the rows of subscription `name` were rewritten by someone other
    /// than its runner (a rebuild's swap, a repair), in this process or, through the relay, in
    /// another.
    pub fn on_rewrite(&self, name: &str, forget: Forget) {
        self.inner
            .forgetters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.to_owned(), forget));
    }

    /// The rows of subscription `name` (`None`: of any, as when notices may have been missed)
    /// were rewritten behind its runner.
    pub fn rewritten(&self, name: Option<&str>) {
        let forgetters = self
            .inner
            .forgetters
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for (subscription, forget) in forgetters.iter() {
            if name.is_none_or(|n| n == subscription) {
                forget();
            }
        }
    }

    /// The types this process appended since the last call (for the relay's announcement).
    pub fn take_appended(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .inner
                .appended
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(wanted: &'static str) -> Interest {
        Arc::new(move |t: &str| t == wanted)
    }

    #[test]
    fn an_append_wakes_only_the_subscribers_that_want_its_type() {
        let signal = FeedSignal::default();
        let stock = signal.subscribe("stock", only("stock_item"));
        let orders = signal.subscribe("orders", only("order"));
        signal.bump("stock_item");
        assert!(stock.has_changed().unwrap());
        assert!(!orders.has_changed().unwrap());
        assert_eq!(
            signal.take_appended().into_iter().collect::<Vec<_>>(),
            ["stock_item"]
        );
        assert!(signal.take_appended().is_empty());
    }

    #[test]
    fn remote_wakes_follow_their_types_and_unknown_types_wake_everyone() {
        let signal = FeedSignal::default();
        let stock = signal.subscribe("stock", only("stock_item"));
        let mut orders = signal.subscribe("orders", only("order"));
        signal.bump_remote(Some(&["order"]));
        assert!(!stock.has_changed().unwrap());
        assert!(orders.has_changed().unwrap());
        orders.mark_unchanged();
        signal.bump_remote(None);
        assert!(stock.has_changed().unwrap());
        assert!(orders.has_changed().unwrap());
        assert!(
            signal.take_appended().is_empty(),
            "relayed wake-ups are not announced again"
        );
    }

    #[test]
    fn a_nudge_wakes_the_named_subscriber_whatever_it_wants() {
        let signal = FeedSignal::default();
        let payments = signal.subscribe("payments", only("payment"));
        let stock = signal.subscribe("stock", only("stock_item"));
        signal.nudge("payments");
        assert!(payments.has_changed().unwrap());
        assert!(!stock.has_changed().unwrap());
    }

    #[test]
    fn dropped_receivers_are_forgotten() {
        let signal = FeedSignal::default();
        drop(signal.subscribe("gone", only("order")));
        let _kept = signal.subscribe("kept", only("order"));
        assert_eq!(signal.read_subscribers().len(), 1);
    }
}
