//! The event stream of one aggregate: its history from the store, then the tail.

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::Bytes;
use feed::{FeedEvent, Follower};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use super::LiveView;
use crate::auth::Access;
use crate::problem::ApiError;
use crate::state::AppState;

/// How often a quiet stream sends a comment, so proxies and browsers keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before reconnecting (the `retry` field).
const RECONNECT_MS: u64 = 2000;

/// Opens the live view of `A` `id` for `access`, sending only what comes after
/// `last_event_id` (a position) when the client gives one.
///
/// # Errors
/// 404 (`A::NOT_FOUND`) for an id without events or one the caller may not watch (like an
/// unknown id); 503 when the store cannot be read.
pub async fn open<A: LiveView>(
    state: &AppState,
    access: &Access,
    id: &str,
    last_event_id: Option<i64>,
) -> Result<HttpResponse, ApiError>
where
    ApiError: From<commands::CommandError<A::Error>>,
{
    // Follow first, then read the store: together they miss nothing.
    let follower = state.tail.follow(A::TYPE, id).await?;
    let mut view = View::<A>::new(id, state.pool.clone());
    let mut pending = VecDeque::from([Bytes::from(format!("retry: {RECONNECT_MS}\n\n"))]);
    if A::FROM_START {
        let history = {
            let mut conn = state.pool.acquire().await?;
            feed::read::aggregate_events(&mut conn, A::TYPE, id, 0).await?
        };
        for event in &history {
            if let Some(message) = view.apply(event)?
                && last_event_id.is_none_or(|last| event.position() > last)
            {
                pending.push_back(message);
            }
        }
    } else {
        let (aggregate, sequence, position) = state
            .bus
            .load_latest::<A>(id)
            .await
            .map_err(ApiError::from)?;
        view.start_at(aggregate, sequence);
        if let Some(position) = position {
            pending.push_back(view.current(position));
        }
    }
    let visible = view.sequence > 0
        && view
            .aggregate
            .customer()
            .is_none_or(|customer| access.may_act_for(customer));
    if !visible {
        return Err(ApiError::not_found(
            A::NOT_FOUND,
            format!("no {} {id}", A::TYPE.replace('_', " ")),
        ));
    }
    let live = Live {
        view,
        follower,
        pending,
        keep_alive: tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        _gauge: Gauge::open(),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx would otherwise hold messages back to fill a buffer.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(futures::stream::unfold(live, Live::next)))
}

/// The aggregate as the stream has folded it.
struct View<A> {
    aggregate: A,
    /// The last event folded in.
    sequence: i64,
    /// What the client was last told.
    watched: Option<Value>,
    id: String,
    pool: PgPool,
}

impl<A: LiveView> View<A> {
    fn new(id: &str, pool: PgPool) -> Self {
        Self {
            aggregate: A::default(),
            sequence: 0,
            watched: None,
            id: id.to_owned(),
            pool,
        }
    }

    fn start_at(&mut self, aggregate: A, sequence: usize) {
        self.watched = Some(aggregate.watched());
        self.aggregate = aggregate;
        self.sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
    }

    /// The message of the current state, caused by the event at `position`.
    fn current(&self, position: i64) -> Bytes {
        message::<A>(
            &self.id,
            position,
            None,
            self.watched.clone().unwrap_or_default(),
        )
    }

    /// Folds `event` in (the next of the aggregate) and returns the message when what the
    /// client watches changed.
    fn apply(&mut self, event: &FeedEvent) -> Result<Option<Bytes>, ApiError> {
        let decoded: A::Event = domain::upcast::decode(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            &event.payload,
        )
        .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))?;
        self.aggregate.apply(decoded);
        self.sequence = event.sequence;
        let watched = self.aggregate.watched();
        if self.watched.as_ref() == Some(&watched) {
            return Ok(None);
        }
        self.watched = Some(watched.clone());
        Ok(Some(message::<A>(
            &self.id,
            event.position(),
            Some(event),
            watched,
        )))
    }

    /// Folds in an event from the tail: skipped when the history had it, and when events
    /// are missing before it (committed, but not yet handed out when the history was read
    /// and behind it in the feed), they are read from the store first.
    async fn take(&mut self, event: &FeedEvent) -> Result<Vec<Bytes>, ApiError> {
        if event.sequence <= self.sequence {
            return Ok(Vec::new());
        }
        let events = if event.sequence == self.sequence + 1 {
            vec![event.clone()]
        } else {
            let mut conn = self.pool.acquire().await?;
            feed::read::aggregate_events(&mut conn, A::TYPE, &self.id, self.sequence).await?
        };
        let mut messages = Vec::new();
        for event in &events {
            messages.extend(self.apply(event)?);
        }
        Ok(messages)
    }
}

/// One SSE message: `id` is the position of the event that caused it.
fn message<A: LiveView>(
    id: &str,
    position: i64,
    cause: Option<&FeedEvent>,
    watched: Value,
) -> Bytes {
    let mut data = json!({
        "id": id,
        "position": position,
        "cause": cause.map(|e| e.event_type.as_str()),
        "at": cause.map(|e| e.recorded_at),
    });
    if let (Some(data), Value::Object(watched)) = (data.as_object_mut(), watched) {
        data.extend(watched);
    }
    Bytes::from(format!(
        "id: {position}\nevent: {}\ndata: {data}\n\n",
        A::EVENT
    ))
}

/// A stream being served.
struct Live<A> {
    view: View<A>,
    follower: Follower,
    pending: VecDeque<Bytes>,
    keep_alive: tokio::time::Interval,
    _gauge: Gauge,
}

impl<A: LiveView> Live<A> {
    /// The next chunk; `None` ends the stream (the tail dropped it for falling behind or is
    /// stopping, or the store failed): the client reconnects with `Last-Event-ID`.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(chunk), self));
            }
            tokio::select! {
                event = self.follower.recv() => {
                    let event = event?;
                    match self.view.take(&event).await {
                        Ok(messages) => self.pending.extend(messages),
                        Err(error) => {
                            tracing::warn!(%error, id = %self.view.id, "live view ended");
                            return None;
                        }
                    }
                }
                _ = self.keep_alive.tick() => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
            }
        }
    }
}

/// `reserva_live_streams`: streams open in this process.
struct Gauge;

impl Gauge {
    fn open() -> Self {
        metrics::gauge!("reserva_live_streams").increment(1.0);
        Self
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("reserva_live_streams").decrement(1.0);
    }
}
