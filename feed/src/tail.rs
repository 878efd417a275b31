//! A process's own follower of the feed, without a checkpoint: hands each new event to the
//! live views (server-sent events) that follow its aggregate in this process.
//!
//! Every instance runs one, so a client connected to any instance sees every change (commits
//! of other instances wake it through the relay like they wake subscriptions). It stores
//! nothing: a view loads its history from the store when it starts and takes over from the
//! tail, and a client that reconnects says where it was (`Last-Event-ID`).
//!
//! - **Idle costs nothing**: with no follower the tail reads nothing; the first follower sets
//!   it to the feed's head before it is registered, so whatever committed before is in the
//!   follower's own history read and whatever commits after comes through the tail.
//! - **A slow follower never slows the feed**: each has a bounded queue; one whose queue is
//!   full is dropped on the spot (its stream ends and the client reconnects with
//!   `Last-Event-ID`), and the tail moves on.

use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{Checkpoint, FeedEvent, FeedSignal, read};

/// Events read per look.
const BATCH: i64 = 512;
/// Longest wait before looking again at events held back by an open transaction.
const HELD_BACK_MAX_WAIT: Duration = Duration::from_millis(20);
/// Longest the tail sleeps without a wake-up while it has followers (commits of another
/// process whose notice was lost).
const POLL: Duration = Duration::from_millis(500);
/// Wait after a failed read.
const RETRY: Duration = Duration::from_millis(500);

type Key = (String, String);

/// A registered follower: its id (to unregister it) and its queue.
type Entry = (u64, mpsc::Sender<Arc<FeedEvent>>);

/// The handle of a process's tail, cheap to clone.
#[derive(Clone)]
pub struct Tail {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    buffer: usize,
    state: Mutex<State>,
    /// A follower arrived (the task may be idle).
    arrived: Notify,
}

#[derive(Default)]
struct State {
    /// Where the tail has read to; `None` while idle.
    known: Option<Checkpoint>,
    followers: HashMap<Key, Vec<Entry>>,
    next_id: u64,
    /// Followers dropped because their queue was full, in total.
    dropped: u64,
}

/// The events of one aggregate, from the moment [`Tail::follow`] returned, in feed order.
/// Dropping it unregisters it.
pub struct Follower {
    receiver: mpsc::Receiver<Arc<FeedEvent>>,
    key: Key,
    id: u64,
    tail: Tail,
}

impl Follower {
    /// The next event; `None` when the tail dropped this follower (its queue was full) or
    /// stopped.
    pub async fn recv(&mut self) -> Option<Arc<FeedEvent>> {
        self.receiver.recv().await
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut state = self.tail.lock();
        if let Some(list) = state.followers.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                state.followers.remove(&self.key);
            }
        }
    }
}

impl Tail {
    /// Starts the tail of this process: reads through `pool`, woken by `signal`, each follower
    /// queueing at most `buffer` events; stops (ending every follower) when `stop` is
    /// cancelled.
    pub fn start(
        pool: PgPool,
        signal: &FeedSignal,
        buffer: usize,
        stop: CancellationToken,
    ) -> Self {
        let tail = Self {
            inner: Arc::new(Inner {
                pool,
                buffer: buffer.max(1),
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
            }),
        };
        let wake = signal.subscribe("live tail", Arc::new(|_: &str| true));
        let settled = signal.subscribe_settled();
        tokio::spawn(tail.clone().run(wake, settled, stop));
        tail
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the events of `aggregate_type` `aggregate_id` committed from now on. Read the
    /// aggregate's history from the store *after* this returns: together they miss nothing
    /// (an event may come both ways; tell them apart by sequence).
    ///
    /// # Errors
    /// The feed's head could not be read (the tail was idle).
    pub async fn follow(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Follower, sqlx::Error> {
        let (sender, receiver) = mpsc::channel(self.inner.buffer);
        let key = (aggregate_type.to_owned(), aggregate_id.to_owned());
        let mut sender = Some(sender);
        let mut head = None;
        let id = loop {
            {
                // Starting the tail and registering happen under one lock, so the tail cannot
                // go idle (and forget its place) in between.
                let mut state = self.lock();
                if state.known.is_none() {
                    state.known = head;
                }
                if state.known.is_some()
                    && let Some(sender) = sender.take()
                {
                    state.next_id += 1;
                    let id = state.next_id;
                    state
                        .followers
                        .entry(key.clone())
                        .or_default()
                        .push((id, sender));
                    break id;
                }
            }
            let mut conn = self.inner.pool.acquire().await?;
            head = Some(read::head(&mut conn).await?.unwrap_or(Checkpoint::START));
        };
        self.inner.arrived.notify_one();
        Ok(Follower {
            receiver,
            key,
            id,
            tail: self.clone(),
        })
    }

    /// How many followers are registered now.
    pub fn followers(&self) -> usize {
        self.lock().followers.values().map(Vec::len).sum()
    }

    /// How many followers were dropped for a full queue since start.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    async fn run(
        self,
        mut wake: tokio::sync::watch::Receiver<u64>,
        mut settled: tokio::sync::watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        let mut held_back_wait = Duration::from_millis(1);
        loop {
            let Some(known) = self.active() else {
                tokio::select! {
                    () = self.inner.arrived.notified() => continue,
                    () = stop.cancelled() => break,
                }
            };
            let next = match self.inner.pool.acquire().await {
                Ok(mut conn) => read::read_next(&mut conn, known, BATCH).await,
                Err(error) => Err(error),
            };
            let wait = match next {
                Ok(batch) => {
                    let full = i64::try_from(batch.events.len()).unwrap_or(i64::MAX) >= BATCH;
                    self.hand_out(batch.events);
                    if full {
                        Duration::ZERO
                    } else if batch.held_back {
                        held_back_wait = (held_back_wait * 2).min(HELD_BACK_MAX_WAIT);
                        held_back_wait
                    } else {
                        held_back_wait = Duration::from_millis(1);
                        POLL
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "live tail could not read the feed; retrying");
                    RETRY
                }
            };
            if wait.is_zero() {
                continue;
            }
            let _ = tokio::time::timeout(wait, async {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = settled.changed() => {}
                    () = self.inner.arrived.notified() => {}
                    () = stop.cancelled() => {}
                }
            })
            .await;
            if stop.is_cancelled() {
                break;
            }
        }
        // Ending every follower's stream lets a graceful shutdown finish its responses.
        self.lock().followers.clear();
    }

    /// Where to read from, or `None` (and idle from now on) when no one follows.
    fn active(&self) -> Option<Checkpoint> {
        let mut state = self.lock();
        if state.followers.is_empty() {
            state.known = None;
        }
        state.known
    }

    /// Hands `events` to their followers and moves past them; drops a follower whose queue is
    /// full.
    fn hand_out(&self, events: Vec<FeedEvent>) {
        let mut state = self.lock();
        let Some(last) = events.last().map(|e| e.checkpoint) else {
            return;
        };
        let mut dropped = 0;
        for event in events {
            let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
            let Some(list) = state.followers.get_mut(&key) else {
                continue;
            };
            let event = Arc::new(event);
            list.retain(|(_, sender)| match sender.try_send(Arc::clone(&event)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                state.followers.remove(&key);
            }
        }
        if dropped > 0 {
            tracing::info!(dropped, "live followers too slow to keep up: disconnected");
            metrics::counter!("reserva_live_followers_dropped_total").increment(dropped);
        }
        state.dropped += dropped;
        state.known = Some(last);
    }
}
