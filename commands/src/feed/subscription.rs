//! Durable subscriptions to the ordered feed.
//!
//! A [`Subscription`] hands batches of events to a [`Handler`] inside one transaction that also
//! advances the subscription's checkpoint, so whatever crashes, the handler's effects and the
//! checkpoint move together: nothing is applied twice and nothing is skipped.
//!
//! Rules it keeps:
//! - **One runner per subscription across processes**: a session advisory lock held on the
//!   runner's own connection. A second process waits in standby and takes over when the first
//!   one's connection goes away.
//! - **Every batch re-reads the checkpoint** under a shared transaction-level advisory lock; a
//!   rebuild takes the same lock exclusively to swap tables and move the checkpoint, so a batch
//!   never straddles a swap.
//! - **Failures are sequenced per aggregate**: a failing event is retried with back-off, then
//!   parked in `dead_letters`; later events of that aggregate wait behind it while the other
//!   aggregates keep flowing (see [`crate::feed::dead_letters`]).

use async_trait::async_trait;
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection as _, PgConnection, PgPool};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::feed::dead_letters::{self, AggregateKey};
use crate::feed::{self, Checkpoint, FeedEvent, FeedSignal};
use crate::trace_context;

/// What a subscriber does with events.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The subscription's name: its checkpoint row, its lock, its dead letters.
    fn name(&self) -> &str;

    /// Whether this handler cares about an aggregate type. Events of other types still move
    /// the checkpoint; they are just not handed over.
    fn wants(&self, aggregate_type: &str) -> bool;

    /// Applies `events` (in feed order, all wanted) inside the runner's open transaction.
    ///
    /// # Errors
    /// [`HandlerError`]; the runner rolls the whole transaction back.
    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError>;
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event cannot be applied as it is (undecodable, or a rule of the read side broke).
    #[error("{0}")]
    Rejected(String),
    /// The database refused or failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Something the handler depends on (the event store through the command bus, a provider)
    /// is briefly unreachable: retried without counting towards parking.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HandlerError {
    /// Whether the failure is about the connection or the server's state rather than the
    /// event, so it must not count towards parking the event.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Rejected(_) => false,
            Self::Database(error) => is_transient(error),
            Self::Unavailable(_) => true,
        }
    }
}

/// Connection losses, shutdowns, resource exhaustion, serialization failures and deadlocks
/// (SQLSTATE classes 08, 57, 53, 40) say nothing about the event being handled.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| ["08", "57", "53", "40"].iter().any(|c| code.starts_with(c))),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Longest wait before looking again at events held back by an open transaction. Such
/// transactions last milliseconds; backing off further only adds latency to everything behind.
const HELD_BACK_MAX_WAIT: Duration = Duration::from_millis(20);

/// Tuning of a runner.
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    /// Events per transaction.
    pub batch_size: i64,
    /// Longest sleep without a wake-up before looking at the feed anyway.
    pub poll_interval: Duration,
    /// Tries of a failing event before it is parked.
    pub max_attempts: u32,
    /// First back-off between tries; doubles, with jitter, up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    /// Longest back-off between tries.
    pub retry_max_delay: Duration,
    /// How often a runner in standby tries to take the lock.
    pub standby_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            max_attempts: 5,
            retry_base_delay: Duration::from_millis(50),
            retry_max_delay: Duration::from_secs(2),
            standby_interval: Duration::from_secs(1),
        }
    }
}

impl SubscriptionOptions {
    pub(crate) fn retry_delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry_base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.retry_max_delay);
        ceiling.mul_f64(0.5 + rand::rng().random::<f64>() / 2.0)
    }
}

/// Advisory-lock keys of a subscription, derived from its name by the server.
pub mod keys {
    /// Held for the runner's whole life (session level).
    pub const RUN: &str = "reserva.subscription.run.";
    /// Shared by every batch, exclusive for a rebuild's swap (transaction level).
    pub const SWAP: &str = "reserva.subscription.swap.";
    /// Held by a rebuild for its whole life, so two never build the same shadow.
    pub const REBUILD: &str = "reserva.subscription.rebuild.";
}

/// Creates the subscription's row if it is missing.
///
/// # Errors
/// Any database error.
pub async fn ensure_row(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO subscriptions (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// The subscription's stored checkpoint (start if it has none).
///
/// # Errors
/// Any database error.
pub async fn stored_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, global_position FROM subscriptions WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map_or(Checkpoint::START, |(t, g)| Checkpoint {
        transaction_id: t,
        global_position: g,
    }))
}

/// Moves the checkpoint (inside the caller's transaction).
///
/// # Errors
/// Any database error.
pub async fn store_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    checkpoint: Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET transaction_id = $2, global_position = $3, updated_at = now() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.global_position)
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Takes the shared swap lock and reads the checkpoint: the start of every handling
/// transaction.
pub(crate) async fn begin_handling(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Checkpoint, sqlx::Error> {
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
        .bind(format!("{}{name}", keys::SWAP))
        .execute(&mut *conn)
        .await?;
    stored_checkpoint(conn, name).await
}

/// A dedicated connection (outside the pool: it holds a session lock for its whole life)
/// named after its job in `pg_stat_activity`.
///
/// # Errors
/// Any connection error.
pub async fn dedicated_connection(pool: &PgPool, job: &str) -> Result<PgConnection, sqlx::Error> {
    job_options(pool, job).connect().await
}

/// A dedicated connection for one long statement (a rebuild's stream): sqlx's slow-statement
/// warning would fire on every rebuild and say nothing.
///
/// # Errors
/// Any connection error.
pub async fn streaming_connection(pool: &PgPool, job: &str) -> Result<PgConnection, sqlx::Error> {
    job_options(pool, job)
        .disable_statement_logging()
        .connect()
        .await
}

fn job_options(pool: &PgPool, job: &str) -> PgConnectOptions {
    (*pool.connect_options())
        .clone()
        .application_name(&format!("reserva {job}"))
}

/// Tries to take a session advisory lock named `key` + `name` on `conn`.
///
/// # Errors
/// Any database error.
pub async fn try_session_lock(
    conn: &mut PgConnection,
    key: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("{key}{name}"))
        .fetch_one(&mut *conn)
        .await
}

/// What one step of the runner achieved.
enum Step {
    /// Events were handled (or parked); look again at once.
    Progress,
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
    task: JoinHandle<()>,
    /// `true` asks the runner to stop after its current batch; the runner holds the only
    /// receiver, so the channel closes when the runner has ended.
    stop: watch::Sender<bool>,
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
        self.stop.send_replace(true);
        self.stop.closed().await;
    }

    /// Whether the runner's task has ended (it only ends when aborted or panicking).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for SubscriptionHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let name = self.handler.name().to_owned();
        let progress = self.progress.subscribe();
        let (stop, stop_requested) = watch::channel(false);
        let task = tokio::spawn(self.run(stop_requested));
        SubscriptionHandle {
            name,
            progress,
            task,
            stop,
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.handler.name().to_owned();
        let mut failures = 0;
        while !*stop.borrow() {
            match self.session(&mut stop).await {
                Ok(()) => break,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(subscription = %name, %error, "subscription lost its connection; reconnecting");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.options.retry_delay(failures)) => {}
                () = stop_requested(&mut stop) => {}
            }
        }
        tracing::info!(subscription = %name, "subscription stopped");
    }

    /// One connection's life: take the lock, then handle batches until something fails
    /// (`Err`) or a stop is requested (`Ok`, after releasing the lock).
    async fn session(&self, stop: &mut watch::Receiver<bool>) -> Result<(), sqlx::Error> {
        let name = self.handler.name();
        let mut conn = dedicated_connection(&self.pool, &format!("subscription {name}")).await?;
        while !try_session_lock(&mut conn, keys::RUN, name).await? {
            tokio::select! {
                () = tokio::time::sleep(self.options.standby_interval) => {}
                () = stop_requested(stop) => return Ok(()),
            }
        }
        tracing::info!(subscription = %name, "subscription running");
        ensure_row(&mut conn, name).await?;
        let mut state = RunState {
            parked: dead_letters::open_aggregates(&mut conn, name).await?,
            known: stored_checkpoint(&mut conn, name).await?,
            last_request_check: None,
        };
        self.progress.send_replace(state.known);
        let mut wake = self.signal.subscribe();
        let mut settled = self.signal.subscribe_settled();
        let mut idle_backoff = Duration::from_millis(1);
        loop {
            if *stop.borrow() {
                release(conn).await;
                return Ok(());
            }
            if state.requests_due(self.options.poll_interval) {
                self.serve_requests(&mut conn, &mut state).await?;
            }
            match self.step(&mut conn, &mut state).await? {
                Step::Progress => {
                    idle_backoff = Duration::from_millis(1);
                    self.signal.bump_settled();
                }
                Step::Idle { held_back: true } => {
                    // Committed events wait behind an open transaction that may end without
                    // any append to wake us: look again at the next append, when another
                    // subscription here commits its batch (the usual holder), or soon anyway
                    // (a holder in another process), backing off to HELD_BACK_MAX_WAIT.
                    let _ = tokio::time::timeout(idle_backoff, async {
                        tokio::select! {
                            _ = wake.changed() => {}
                            _ = settled.changed() => {}
                            () = stop_requested(stop) => {}
                        }
                    })
                    .await;
                    idle_backoff = (idle_backoff * 2)
                        .min(HELD_BACK_MAX_WAIT)
                        .min(self.options.poll_interval);
                }
                Step::Idle { held_back: false } => {
                    idle_backoff = Duration::from_millis(1);
                    // Any outcome (a wake-up, the poll timeout, a closed channel, a stop) means:
                    // look.
                    let _ = tokio::time::timeout(self.options.poll_interval, async {
                        tokio::select! {
                            _ = wake.changed() => {}
                            () = stop_requested(stop) => {}
                        }
                    })
                    .await;
                }
            }
        }
    }

    async fn step(
        &self,
        conn: &mut PgConnection,
        state: &mut RunState,
    ) -> Result<Step, sqlx::Error> {
        let name = self.handler.name();
        let checkpoint = begin_handling(conn, name).await?;
        if checkpoint != state.known {
            // Someone else moved the checkpoint (a rebuild swapped tables): our view of the
            // parked aggregates belongs to the old table.
            state.parked = dead_letters::open_aggregates(conn, name).await?;
            state.known = checkpoint;
        }
        let events = feed::read_after(conn, checkpoint, &[], self.options.batch_size).await?;
        let Some(last) = events.last().map(|e| e.checkpoint) else {
            let held_back = feed::held_back(conn, checkpoint, &[]).await?;
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            return Ok(Step::Idle { held_back });
        };
        let (live, behind) = self.split(&events, &state.parked);
        let spans = event_spans(name, &live);
        match self.handler.handle(conn, &live).await {
            Ok(()) => {
                dead_letters::queue_behind(conn, name, &behind).await?;
                store_checkpoint(conn, name, last).await?;
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                drop(spans);
                self.advanced(state, last);
                record_lag(name, &live);
                Ok(Step::Progress)
            }
            Err(error) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                if error.is_transient() {
                    return Err(error.into_sqlx());
                }
                tracing::debug!(subscription = %name, %error, "batch failed; handling its events one by one");
                self.one_by_one(conn, state, checkpoint, &events).await?;
                Ok(Step::Progress)
            }
        }
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

    /// The slow path after a failed batch: each event in its own transaction, a failing one
    /// retried and then parked, so one poisoned event cannot hold back the others.
    async fn one_by_one(
        &self,
        conn: &mut PgConnection,
        state: &mut RunState,
        mut expected: Checkpoint,
        events: &[FeedEvent],
    ) -> Result<(), sqlx::Error> {
        let name = self.handler.name();
        for event in events {
            let wanted = self.handler.wants(&event.aggregate_type);
            let key = AggregateKey::of(event);
            let mut attempt = 0;
            loop {
                attempt += 1;
                let checkpoint = begin_handling(conn, name).await?;
                if checkpoint != expected {
                    // A swap moved the checkpoint under us: the normal loop takes over.
                    sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                    return Ok(());
                }
                let result = if !wanted {
                    Ok(())
                } else if state.parked.contains(&key) {
                    dead_letters::queue_behind(conn, name, std::slice::from_ref(event))
                        .await
                        .map_err(HandlerError::from)
                } else {
                    let _spans = event_spans(name, std::slice::from_ref(event));
                    self.handler.handle(conn, std::slice::from_ref(event)).await
                };
                match result {
                    Ok(()) => {
                        store_checkpoint(conn, name, event.checkpoint).await?;
                        sqlx::query("COMMIT").execute(&mut *conn).await?;
                        break;
                    }
                    Err(error) => {
                        sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                        if error.is_transient() {
                            return Err(error.into_sqlx());
                        }
                        metrics_failed(name);
                        if attempt < self.options.max_attempts {
                            tracing::warn!(subscription = %name, position = event.position(), attempt, %error, "event failed; retrying");
                            tokio::time::sleep(self.options.retry_delay(attempt)).await;
                            continue;
                        }
                        tracing::error!(subscription = %name, position = event.position(), attempts = attempt, %error, "event parked in dead_letters");
                        let checkpoint = begin_handling(conn, name).await?;
                        if checkpoint != expected {
                            sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                            return Ok(());
                        }
                        dead_letters::park(conn, name, event, attempt, &error.to_string()).await?;
                        store_checkpoint(conn, name, event.checkpoint).await?;
                        sqlx::query("COMMIT").execute(&mut *conn).await?;
                        state.parked.insert(key.clone());
                        break;
                    }
                }
            }
            expected = event.checkpoint;
            self.advanced(state, expected);
        }
        Ok(())
    }

    /// Carries out operators' retry and skip requests for this subscription's dead letters.
    async fn serve_requests(
        &self,
        conn: &mut PgConnection,
        state: &mut RunState,
    ) -> Result<(), sqlx::Error> {
        state.last_request_check = Some(Instant::now());
        dead_letters::serve_requests(
            conn,
            self.handler.as_ref(),
            &mut state.parked,
            &self.options,
        )
        .await
    }
}

/// Resolves once a stop is requested; never if the handle is gone without asking (the handle
/// aborts the task when dropped).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Hands the subscription back at once: unlocking explicitly rather than by disconnecting,
/// so the lock is free when this returns, not when the server notices the closed socket.
async fn release(mut conn: PgConnection) {
    if let Err(error) = sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut conn)
        .await
    {
        tracing::debug!(%error, "could not unlock; closing the connection releases the lock");
    }
    let _ = conn.close().await;
}

/// The runner's memory between steps.
struct RunState {
    /// Aggregates with an open dead letter: their events queue behind it.
    parked: HashSet<AggregateKey>,
    /// The checkpoint as this runner last stored or read it.
    known: Checkpoint,
    last_request_check: Option<Instant>,
}

impl RunState {
    fn requests_due(&self, every: Duration) -> bool {
        self.last_request_check
            .is_none_or(|at| at.elapsed() >= every)
    }
}

impl HandlerError {
    /// As the runner's own error type, for failures that end the current attempt.
    pub(crate) fn into_sqlx(self) -> sqlx::Error {
        match self {
            Self::Database(error) => error,
            Self::Rejected(message) => sqlx::Error::Protocol(message),
            Self::Unavailable(message) => sqlx::Error::Io(std::io::Error::other(message)),
        }
    }
}

/// One span per traced event handed to the handler, each a child of the span that issued the
/// event (its stored `traceparent`), so a projector's work on an order shows in the order's
/// trace. They stay open while the batch is handled and committed; a batch applies its events
/// together, so they share that time. Untraced events get none (no trace to join).
fn event_spans(name: &str, events: &[FeedEvent]) -> Vec<tracing::Span> {
    events
        .iter()
        .filter_map(|event| {
            let traceparent = trace_context::traceparent_in(&event.metadata)?;
            let span = tracing::info_span!(
                "subscription event",
                subscription = %name,
                event = %event.event_type,
                position = event.position(),
            );
            trace_context::continue_trace(&span, Some(&traceparent));
            Some(span)
        })
        .collect()
}

/// Commit-to-visible lag of the events just handled: from their append's transaction start
/// (`recorded_at`) to this commit, as the read side's clients experience it.
fn record_lag(name: &str, events: &[FeedEvent]) {
    if events.is_empty() {
        return;
    }
    let now = chrono::Utc::now();
    let histogram =
        metrics::histogram!("reserva_projection_lag_seconds", "subscription" => name.to_owned());
    for event in events {
        histogram.record((now - event.recorded_at).as_seconds_f64().max(0.0));
    }
    metrics::counter!("reserva_subscription_events_total", "subscription" => name.to_owned())
        .increment(events.len() as u64);
}

fn metrics_failed(name: &str) {
    metrics::counter!("reserva_subscription_failures_total", "subscription" => name.to_owned())
        .increment(1);
}
