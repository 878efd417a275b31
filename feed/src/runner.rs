//! Durable subscriptions to the ordered feed.
//!
//! A [`Subscription`] hands batches of events to a [`Handler`] inside one transaction that also
//! advances the subscription's checkpoint, so whatever crashes, the handler's effects and the
//! checkpoint move together: nothing is applied twice and nothing is skipped.
//!
//! Rules it keeps:
//! - **One runner per subscription across processes** (see [`crate::locks`]).
//! - **Every batch claims the checkpoint** under the shared swap lock, so a batch never
//!   straddles a rebuild's swap; the feed is read before, from the checkpoint the runner last
//!   stored, so a look that finds nothing costs one statement and no transaction.
//! - **Transactions are guards**: every one is an sqlx [`sqlx::Transaction`], rolled back
//!   when dropped, so no error path or dropped future can leave the connection inside a
//!   half-done transaction whose later `COMMIT` would keep part of a batch.
//! - **A bad event costs one batch, not seconds**: when a batch fails, its events are tried
//!   again one by one behind savepoints in a single transaction; a failing event is set aside
//!   as a dead letter (later events of its aggregate queue behind it) and everything else
//!   commits at once. Set-aside events are retried with back-off between batches, never by
//!   sleeping in front of them (see [`crate::dead_letters`]).

use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::attempt::attempt;
use crate::backoff::Backoff;
use crate::dead_letters::{self, AggregateKey};
use crate::handler::{Handler, RunnerError};
use crate::options::SubscriptionOptions;
use crate::{Checkpoint, FeedEvent, FeedSignal, checkpoint, locks, read, retry, telemetry};

/// Longest wait before looking again at events held back by an open transaction. Such
/// transactions last milliseconds; backing off further only adds latency to everything behind.
const HELD_BACK_MAX_WAIT: Duration = Duration::from_millis(20);

/// Longest wait before a runner reconnects after its session ended. A lost connection says
/// nothing about any event, so the retry schedule of failing events (long for the sagas,
/// which wait out the payment breaker) must not stretch a reconnect.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

/// What one step of the runner achieved.
enum Step {
    /// A full batch was handled (or set aside): there may be more, look again at once.
    Progress,
    /// Events were handled and the batch was not full: the feed is read to its end, so wait
    /// as when idle (saves a step that would only find nothing, a third of a wake-up's
    /// statements).
    CaughtUp { held_back: bool },
    /// Nothing to read. `held_back`: committed events wait behind an open transaction.
    Idle { held_back: bool },
}

/// A subscriber to the ordered feed, run by [`Subscription::spawn`].
pub struct Subscription {
    handler: Arc<dyn Handler>,
    pool: PgPool,
    signal: FeedSignal,
    options: SubscriptionOptions,
    progress: watch::Sender<Checkpoint>,
}

/// A running subscription: its task and what it has committed.
pub struct SubscriptionHandle {
    /// The subscription's name.
    pub name: String,
    /// The checkpoint this process last committed for it (start while in standby).
    pub progress: watch::Receiver<Checkpoint>,
    stop: CancellationToken,
    tracker: TaskTracker,
    task: AbortHandle,
}

impl SubscriptionHandle {
    /// Stops the runner (its connection closes, releasing the lock; an open batch rolls back).
    /// A crash, as far as the subscription can tell; [`SubscriptionHandle::stop`] is the
    /// clean way.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Stops the runner cleanly and waits until it has: the batch in progress commits with its
    /// checkpoint, then the runner releases its advisory lock and closes its connection, so
    /// another process can take over at once. A runner in standby just stops waiting.
    /// Idempotent.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.wait().await;
    }

    /// Whether the runner's task has ended (it only ends when stopped, aborted or panicking).
    pub fn is_finished(&self) -> bool {
        self.tracker.is_empty()
    }
}

impl Drop for SubscriptionHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The runner's memory between steps.
struct RunState {
    /// Aggregates with an open dead letter: their events queue behind it.
    parked: HashSet<AggregateKey>,
    /// The checkpoint as this runner last stored or read it.
    known: Checkpoint,
    /// When dead letters are next looked at (operators' requests, retries that fall due).
    retries: Retries,
}

impl Subscription {
    /// A runner for `handler` reading through `pool`, woken by `signal`.
    pub fn new(
        handler: Arc<dyn Handler>,
        pool: PgPool,
        signal: FeedSignal,
        options: SubscriptionOptions,
    ) -> Self {
        Self {
            handler,
            pool,
            signal,
            options,
            progress: watch::Sender::new(Checkpoint::START),
        }
    }

    /// Runs until the handle is dropped, aborted or [stopped](SubscriptionHandle::stop).
    pub fn spawn(self) -> SubscriptionHandle {
        self.spawn_under(&CancellationToken::new(), &TaskTracker::new())
    }

    /// Like [`Subscription::spawn`], and also stops cleanly when `shutdown` is cancelled; the
    /// task is tracked by `group` too, so whoever owns it can wait for every runner at once.
    pub fn spawn_under(
        self,
        shutdown: &CancellationToken,
        group: &TaskTracker,
    ) -> SubscriptionHandle {
        let name = self.handler.name().to_owned();
        let progress = self.progress.subscribe();
        let stop = shutdown.child_token();
        let tracker = TaskTracker::new();
        let task = group
            .spawn(tracker.track_future(self.run(stop.clone())))
            .abort_handle();
        tracker.close();
        SubscriptionHandle {
            name,
            progress,
            stop,
            tracker,
            task,
        }
    }

    async fn run(self, stop: CancellationToken) {
        let name = self.handler.name().to_owned();
        let mut failures = 0;
        while !stop.is_cancelled() {
            let ended = self.session(&stop).await;
            // Whatever the session ended on, the lease may be gone with it.
            self.handler.reset(false);
            match ended {
                Ok(()) => break,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(subscription = %name, %error, "subscription session ended; reconnecting");
                }
            }
            let reconnect = Backoff::new(
                self.options.retry_base_delay,
                self.options.retry_max_delay.min(RECONNECT_MAX_DELAY),
            );
            tokio::select! {
                () = tokio::time::sleep(reconnect.delay(failures)) => {}
                () = stop.cancelled() => {}
            }
        }
        tracing::info!(subscription = %name, "subscription stopped");
    }

    /// One connection's life: take the lock, then handle batches until something fails
    /// (`Err`) or a stop is requested (`Ok`, after releasing the lock).
    async fn session(&self, stop: &CancellationToken) -> Result<(), RunnerError> {
        let name = self.handler.name();
        let mut conn =
            locks::dedicated_connection(&self.pool, &format!("subscription {name}")).await?;
        while !locks::try_session_lock(&mut conn, locks::keys::RUN, name).await? {
            tokio::select! {
                () = tokio::time::sleep(self.options.standby_interval) => {}
                () = stop.cancelled() => return Ok(()),
            }
        }
        tracing::info!(subscription = %name, "subscription running");
        checkpoint::ensure_row(&mut conn, name).await?;
        let mut state = RunState {
            parked: dead_letters::open_aggregates(&mut conn, name).await?,
            known: checkpoint::stored(&mut conn, name).await?,
            retries: Retries::now(),
        };
        self.handler.reset(true);
        self.progress.send_replace(state.known);
        let handler = Arc::clone(&self.handler);
        let mut wake = self
            .signal
            .subscribe(name, Arc::new(move |t: &str| handler.follows(t)));
        let mut settled = self.signal.subscribe_settled();
        let mut idle_backoff = Duration::from_millis(1);
        loop {
            if stop.is_cancelled() {
                locks::release(conn).await;
                return Ok(());
            }
            if state.retries.due() {
                self.serve_dead_letters(&mut conn, &mut state).await?;
            }
            let step = self.step(&mut conn, &mut state).await?;
            if let Step::Progress | Step::CaughtUp { .. } = step {
                idle_backoff = Duration::from_millis(1);
                self.signal.bump_settled();
            }
            match step {
                Step::Progress => {}
                Step::Idle { held_back: true } | Step::CaughtUp { held_back: true } => {
                    // Committed events wait behind an open transaction that may end without
                    // any append to wake us: look again at the next append, when another
                    // subscription here commits its batch (the usual holder), or soon anyway
                    // (a holder in another process), backing off to HELD_BACK_MAX_WAIT.
                    let wait = idle_backoff.min(state.retries.until_due());
                    let _ = tokio::time::timeout(wait, async {
                        tokio::select! {
                            _ = wake.changed() => {}
                            _ = settled.changed() => {}
                            () = stop.cancelled() => {}
                        }
                    })
                    .await;
                    idle_backoff = (idle_backoff * 2)
                        .min(HELD_BACK_MAX_WAIT)
                        .min(self.options.poll_interval);
                }
                Step::Idle { held_back: false } | Step::CaughtUp { held_back: false } => {
                    idle_backoff = Duration::from_millis(1);
                    // Any outcome (a wake-up, the timeout, a closed channel, a stop) means:
                    // look.
                    let wait = self.options.poll_interval.min(state.retries.until_due());
                    let _ = tokio::time::timeout(wait, async {
                        tokio::select! {
                            _ = wake.changed() => {}
                            () = stop.cancelled() => {}
                        }
                    })
                    .await;
                }
            }
        }
    }

    /// Reads the next batch and applies it with the checkpoint in one transaction.
    ///
    /// The read runs before the transaction, from the checkpoint this runner last stored: a
    /// look that finds nothing is one statement. A batch's transaction then claims that
    /// checkpoint under the swap lock ([`checkpoint::claim`]); if someone else moved it
    /// meanwhile (a rebuild swapped tables), the read is dropped and the next step reads from
    /// where the checkpoint is now.
    async fn step(
        &self,
        conn: &mut PgConnection,
        state: &mut RunState,
    ) -> Result<Step, RunnerError> {
        let name = self.handler.name();
        let read::NextBatch { events, held_back } =
            read::read_next(conn, state.known, self.options.batch_size).await?;
        let Some(last) = events.last().map(|e| e.checkpoint) else {
            return Ok(Step::Idle { held_back });
        };
        let mut tx = conn.begin().await?;
        let checkpoint = checkpoint::claim(&mut tx, name)
            .await?
            .unwrap_or(Checkpoint::START);
        if checkpoint != state.known {
            // Our view of the parked aggregates belongs to the old table too.
            state.parked = dead_letters::open_aggregates(&mut tx, name).await?;
            tx.rollback().await?;
            tracing::debug!(subscription = %name, ?checkpoint, "checkpoint moved by another process; reading from it");
            self.handler.reset(true);
            self.advanced(state, checkpoint);
            return Ok(Step::Progress);
        }
        let (live, behind) = self.split(&events, &state.parked);
        match attempt(&mut tx, self.handler.as_ref(), &live).await {
            Ok(()) => {
                dead_letters::queue_behind(&mut tx, name, &behind).await?;
                checkpoint::store(&mut tx, name, last).await?;
                tx.commit().await?;
                self.handler.committed(&ids(&live));
                self.advanced(state, last);
                telemetry::record_lag(name, &live);
                let full =
                    i64::try_from(events.len()).unwrap_or(i64::MAX) >= self.options.batch_size;
                // A batch short of the limit read everything visible; whatever commits later
                // wakes us, but events already committed behind an open transaction would not.
                Ok(if full {
                    Step::Progress
                } else {
                    Step::CaughtUp { held_back }
                })
            }
            Err(error) if error.is_transient() => Err(error.into()),
            Err(error) => {
                tx.rollback().await?;
                tracing::debug!(subscription = %name, %error, "batch failed; isolating the event that fails");
                self.isolate(conn, state, checkpoint, &events).await?;
                Ok(Step::Progress)
            }
        }
    }

    /// The path after a failed batch, in one transaction: each wanted event is tried behind
    /// a savepoint in feed order; one that fails is rolled back to its savepoint and set aside
    /// (a dead letter retried later), later events of its aggregate queue behind it, and the
    /// rest commits with the checkpoint at the batch's end. Other aggregates wait for this one
    /// transaction, never for a retry's back-off.
    async fn isolate(
        &self,
        conn: &mut PgConnection,
        state: &mut RunState,
        expected: Checkpoint,
        events: &[FeedEvent],
    ) -> Result<(), RunnerError> {
        let name = self.handler.name();
        let Some(last) = events.last().map(|e| e.checkpoint) else {
            return Ok(());
        };
        let mut tx = conn.begin().await?;
        if checkpoint::claim(&mut tx, name)
            .await?
            .unwrap_or(Checkpoint::START)
            != expected
        {
            // A swap moved the checkpoint meanwhile: the normal loop takes over.
            return Ok(());
        }
        let mut failed: Vec<(&FeedEvent, String)> = Vec::new();
        let mut newly_parked: HashSet<AggregateKey> = HashSet::new();
        let mut behind: Vec<FeedEvent> = Vec::new();
        let mut applied: Vec<FeedEvent> = Vec::new();
        for event in events
            .iter()
            .filter(|e| self.handler.wants(&e.aggregate_type))
        {
            let key = AggregateKey::of(event);
            if state.parked.contains(&key) || newly_parked.contains(&key) {
                behind.push(event.clone());
                continue;
            }
            let mut savepoint = tx.begin().await?;
            match attempt(
                &mut savepoint,
                self.handler.as_ref(),
                std::slice::from_ref(event),
            )
            .await
            {
                Ok(()) => {
                    savepoint.commit().await?;
                    applied.push(event.clone());
                }
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => {
                    savepoint.rollback().await?;
                    tracing::warn!(subscription = %name, position = event.position(), %error, "event failed; set aside for retry, later events of its aggregate wait behind it");
                    newly_parked.insert(key);
                    failed.push((event, error.to_string()));
                }
            }
        }
        let backoff = self.options.backoff();
        for (event, error) in &failed {
            dead_letters::set_aside(&mut tx, name, event, error, backoff.delay(1)).await?;
        }
        dead_letters::queue_behind(&mut tx, name, &behind).await?;
        checkpoint::store(&mut tx, name, last).await?;
        tx.commit().await?;
        self.handler.committed(&ids(&applied));
        state.parked.extend(newly_parked);
        if !failed.is_empty() {
            state.retries.due_within(backoff.delay(1));
        }
        self.advanced(state, last);
        telemetry::record_lag(name, &applied);
        Ok(())
    }

    /// Carries out operators' retry and skip requests and the retries that fell due.
    async fn serve_dead_letters(
        &self,
        conn: &mut PgConnection,
        state: &mut RunState,
    ) -> Result<(), RunnerError> {
        let served = retry::serve(conn, self.handler.as_ref(), &self.options).await?;
        // A retry that succeeded applied events of an aggregate that is now flowing again or
        // still held behind a later one.
        let touched: Vec<&str> = served
            .emptied
            .iter()
            .chain(&served.parked)
            .map(|key| key.aggregate_id.as_str())
            .collect();
        self.handler.committed(&touched);
        for key in served.emptied {
            state.parked.remove(&key);
        }
        for key in served.parked {
            state.parked.insert(key);
        }
        let interval = self.options.poll_interval;
        state.retries = Retries::after(served.next_retry.map_or(interval, |d| d.min(interval)));
        Ok(())
    }

    /// Wanted events of aggregates that flow, and those that must wait behind a parked one.
    fn split(
        &self,
        events: &[FeedEvent],
        parked: &HashSet<AggregateKey>,
    ) -> (Vec<FeedEvent>, Vec<FeedEvent>) {
        events
            .iter()
            .filter(|e| self.handler.wants(&e.aggregate_type))
            .cloned()
            .partition(|e| !parked.contains(&AggregateKey::of(e)))
    }

    fn advanced(&self, state: &mut RunState, to: Checkpoint) {
        state.known = to;
        self.progress.send_replace(to);
    }
}

/// The aggregate ids of `events`.
fn ids(events: &[FeedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.aggregate_id.as_str()).collect()
}

/// When the runner next looks at its dead letters: at least every poll interval (requests
/// come from operators in any process), sooner when a retry falls due.
#[derive(Debug, Clone, Copy)]
struct Retries {
    next: Instant,
}

impl Retries {
    /// Due at once.
    fn now() -> Self {
        Self {
            next: Instant::now(),
        }
    }

    /// Due in `delay`.
    fn after(delay: Duration) -> Self {
        Self {
            next: Instant::now() + delay,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// How long until due (zero when due).
    fn until_due(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// A retry falls due within `delay`.
    fn due_within(&mut self, delay: Duration) {
        self.next = self.next.min(Instant::now() + delay);
    }
}
