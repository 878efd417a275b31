//! Expiring orders and bookings that were not paid in time.
//!
//! The deadlines are write-side state: each order's and booking's saga keeps `due_at` on its
//! row of `saga_instances` while the flow waits for the customer to pay, and clears it when
//! the flow ends (written with the saga's state and checkpoint, so it is rebuilt whenever the
//! saga is). A job claims due sagas with `FOR UPDATE SKIP LOCKED` and a lease
//! (`claimed_until`), then issues `Expire` to their owners. Any number of processes may run the
//! job: a saga is claimed by one at a time, and a claim whose holder died lapses and is taken
//! again. Expiry itself is idempotent (a repeat is a no-op, an
//! order that ended meanwhile refuses), so a lapsed or lost claim costs at most a command that
//! changes nothing. Releasing stock and cancelling the payment follow from `OrderExpired` /
//! `BookingExpired` in the sagas, not from here.

use chrono::{DateTime, Utc};
use domain::booking::{Booking, BookingCommand};
use domain::order::{Order, OrderCommand};
use futures::StreamExt;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{CommandBus, Routed};
use crate::error::CommandError;
use crate::metadata::CommandMetadata;

/// The saga type whose due sagas expire orders.
pub const ORDER_DEADLINES: &str = "order_saga";
/// The saga type whose due sagas expire bookings.
pub const BOOKING_DEADLINES: &str = "booking_saga";
/// How long a claim holds a row: long enough for one batch's commands, short enough that a
/// row whose claimer died is expired soon after.
pub const LEASE: Duration = Duration::from_secs(30);
/// Rows claimed per statement by the scheduled job.
pub const BATCH: usize = 100;
/// Expiry commands in flight at once.
const CONCURRENCY: usize = 8;
/// The `actor` of every expiry command.
const ACTOR: &str = "system:deadlines";

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Orders this run moved to `EXPIRED`.
    pub orders: usize,
    /// Bookings this run moved to `EXPIRED`.
    pub bookings: usize,
    /// Claimed rows whose order or booking had ended or expired already.
    pub skipped: usize,
    /// Claimed rows whose command failed; they are claimed again once the lease lapses.
    pub failed: usize,
}

/// Why the deadline job could not run or start.
#[derive(Debug, thiserror::Error)]
pub enum DeadlineError {
    /// Due rows could not be claimed.
    #[error("could not claim due deadlines")]
    Claim(#[from] sqlx::Error),
    /// The scheduler could not be built, started or stopped.
    #[error("deadline scheduler failed")]
    Scheduler(#[from] JobSchedulerError),
}

/// Claims up to `limit` sagas of type `saga_type` due at `now` and not held by a live claim,
/// marking them held until `now + lease`, earliest due first; returns their ids (the order's
/// or booking's).
///
/// One statement, so one short transaction, on purpose: the ordered feed cannot read past an
/// open transaction that holds an xid, so a claim held open while its commands run would stall
/// every subscriber. Issue the commands only after this returns (the claim has committed).
/// Concurrent claimers skip each other's locked rows and never return the same row while its
/// lease lasts.
///
/// # Errors
/// Any database error; nothing is claimed then.
pub async fn claim_due_deadlines(
    pool: &PgPool,
    saga_type: &str,
    now: DateTime<Utc>,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let until = chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    sqlx::query_scalar(
        "UPDATE saga_instances SET claimed_until = $2 \
         WHERE id IN (SELECT id FROM saga_instances \
                       WHERE saga_type = $4 AND due_at <= $1 \
                         AND (claimed_until IS NULL OR claimed_until < $1) \
                       ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING id",
    )
    .bind(now)
    .bind(until)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(saga_type)
    .fetch_all(pool)
    .await
}

/// Expires every order and booking that is due now, `limit` claimed at a time, until a claim
/// comes back short — so a backlog left by downtime is cleared in one run.
///
/// Safe to run from several processes at once: each row is expired by whoever claimed it.
/// An order or booking that ended meanwhile is skipped. Any other failure is logged and left
/// claimed until [`LEASE`] lapses, when a later run tries again. A saga its runner is
/// rewriting at that instant is locked, so this run passes it over and the next takes it.
///
/// # Errors
/// [`DeadlineError::Claim`] when due rows cannot be claimed; what ran before is kept.
pub async fn run_once(bus: &CommandBus, limit: usize) -> Result<Expired, DeadlineError> {
    run_until_stopped(bus, limit, &CancellationToken::new()).await
}

async fn run_until_stopped(
    bus: &CommandBus,
    limit: usize,
    stop: &CancellationToken,
) -> Result<Expired, DeadlineError> {
    let limit = limit.max(1);
    let mut total = Expired::default();
    loop {
        let orders =
            claim_due_deadlines(bus.pool(), ORDER_DEADLINES, Utc::now(), limit, LEASE).await?;
        let (expired, skipped, failed) =
            expire_each::<Order>(bus, "order", &orders, OrderCommand::Expire).await;
        total.orders += expired;
        total.skipped += skipped;
        total.failed += failed;

        let bookings =
            claim_due_deadlines(bus.pool(), BOOKING_DEADLINES, Utc::now(), limit, LEASE).await?;
        let (expired, skipped, failed) =
            expire_each::<Booking>(bus, "booking", &bookings, BookingCommand::Expire).await;
        total.bookings += expired;
        total.skipped += skipped;
        total.failed += failed;

        if (orders.len() < limit && bookings.len() < limit) || stop.is_cancelled() {
            return Ok(total);
        }
    }
}

/// Issues `command` to each of `ids`, a few at a time; `(expired, skipped, failed)`.
async fn expire_each<A>(
    bus: &CommandBus,
    kind: &'static str,
    ids: &[Uuid],
    command: A::Command,
) -> (usize, usize, usize)
where
    A: Routed,
    A::Command: Clone + Send,
{
    let outcomes: Vec<Option<bool>> = futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let command = command.clone();
            async move {
                let metadata = CommandMetadata::system(ACTOR);
                match bus.execute::<A>(&id.to_string(), command, &metadata).await {
                    Ok(committed) => Some(committed.events > 0),
                    // Ended (or never placed): nothing to expire.
                    Err(CommandError::Rejected(_)) => Some(false),
                    Err(error) => {
                        tracing::warn!(
                            kind,
                            %id,
                            error.cause_chain = ?error,
                            "could not expire; retried once the claim lapses"
                        );
                        None
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let expired = outcomes.iter().filter(|o| **o == Some(true)).count();
    let failed = outcomes.iter().filter(|o| o.is_none()).count();
    metrics::counter!("reserva_deadlines_expired_total", "kind" => kind).increment(expired as u64);
    (expired, outcomes.len() - expired - failed, failed)
}

/// The scheduled expiry job; stops when dropped or [shut down](DeadlineJob::shutdown).
#[must_use = "the job stops when dropped"]
pub struct DeadlineJob {
    scheduler: Option<JobScheduler>,
    state: Arc<JobState>,
}

struct JobState {
    /// Held by the run in progress, so runs never overlap (the scheduler spawns each tick);
    /// holds when the last run started.
    running: Arc<Mutex<Instant>>,
    /// Time between the starts of two runs.
    interval: Duration,
    /// Cancelled on shutdown: later ticks do nothing and a run in progress ends after its
    /// batch.
    stopped: CancellationToken,
}

/// Every second, seconds first (tokio-cron-scheduler's six-field cron).
const EVERY_SECOND: &str = "* * * * * *";

/// A tick this close to the interval's end counts as on time (ticks land on whole seconds).
const TICK_SLACK: Duration = Duration::from_millis(500);

/// Starts the expiry job: one run at once in the background (the sweep after downtime), then
/// one every `interval`, to the second (shorter intervals run every second). A run still
/// going when the next is due makes that one skip, so runs never overlap in one process.
///
/// The scheduler ticks a cron job every second and the job decides whether `interval` has
/// passed, rather than using `Job::new_repeated_async(interval, ..)`: tokio-cron-scheduler
/// 0.15 keeps repeated jobs to whole seconds (a sub-second one runs once or twice and never
/// again) and stops a repeated job for good once one tick comes later than its interval
/// (a stalled runtime, a suspended VM). A cron job's next tick is computed from now, so it
/// survives both.
///
/// # Errors
/// [`DeadlineError::Scheduler`] when the scheduler cannot be built or started.
pub async fn start(bus: CommandBus, interval: Duration) -> Result<DeadlineJob, DeadlineError> {
    let state = Arc::new(JobState {
        running: Arc::new(Mutex::new(Instant::now())),
        interval,
        stopped: CancellationToken::new(),
    });
    // Held before the scheduler exists, so its first tick cannot start a second run.
    let sweep_guard = state
        .running
        .clone()
        .try_lock_owned()
        .unwrap_or_else(|_| unreachable!("a new mutex is unlocked"));
    let scheduler = JobScheduler::new().await?;
    let (job_bus, job_state) = (bus.clone(), state.clone());
    let job = Job::new_async(EVERY_SECOND, move |_id, _scheduler| {
        let (bus, state) = (job_bus.clone(), job_state.clone());
        Box::pin(async move {
            let Ok(mut last_start) = state.running.try_lock() else {
                tracing::debug!("previous deadline run still going; tick skipped");
                return;
            };
            if last_start.elapsed() + TICK_SLACK < state.interval {
                return;
            }
            *last_start = Instant::now();
            run_logged(&bus, &state).await;
        })
    })?;
    scheduler.add(job).await?;
    let sweep_state = state.clone();
    tokio::spawn(async move {
        let _running = sweep_guard;
        run_logged(&bus, &sweep_state).await;
    });
    scheduler.start().await?;
    Ok(DeadlineJob {
        scheduler: Some(scheduler),
        state,
    })
}

async fn run_logged(bus: &CommandBus, state: &JobState) {
    if state.stopped.is_cancelled() {
        return;
    }
    match run_until_stopped(bus, BATCH, &state.stopped).await {
        Ok(done) if done != Expired::default() => tracing::info!(
            orders = done.orders,
            bookings = done.bookings,
            skipped = done.skipped,
            failed = done.failed,
            "deadlines run"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(error.cause_chain = ?error, "deadlines run failed"),
    }
}

impl DeadlineJob {
    /// Stops the scheduler and waits for a run in progress to finish its batch. Idempotent.
    ///
    /// # Errors
    /// [`DeadlineError::Scheduler`] when the scheduler does not stop cleanly; no further run
    /// starts either way.
    pub async fn shutdown(&mut self) -> Result<(), DeadlineError> {
        self.state.stopped.cancel();
        let stopped = match self.scheduler.take() {
            Some(mut scheduler) => scheduler.shutdown().await,
            None => Ok(()),
        };
        let _finished = self.state.running.lock().await;
        Ok(stopped?)
    }
}

impl Drop for DeadlineJob {
    /// Stops further runs at once; the scheduler's loop is stopped in the background.
    fn drop(&mut self) {
        self.state.stopped.cancel();
        if let Some(mut scheduler) = self.scheduler.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = scheduler.shutdown().await;
            });
        }
    }
}

/// Runs the expiry job (see [`start`]) until `stop` is cancelled, then shuts it down, letting
/// a run in progress finish its batch.
pub async fn run_until_cancelled(bus: CommandBus, interval: Duration, stop: CancellationToken) {
    match start(bus, interval).await {
        Ok(mut job) => {
            stop.cancelled().await;
            if let Err(error) = job.shutdown().await {
                tracing::warn!(%error, "the deadline job did not stop cleanly");
            }
        }
        Err(error) => tracing::error!(%error, "the deadline job did not start"),
    }
}
