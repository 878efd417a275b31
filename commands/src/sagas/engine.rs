//! Runs a [`Flow`] on the ordered feed.
//!
//! One batch can hold events of many sagas. Each saga's events are handled in feed order, and
//! different sagas run concurrently (their commands go to different aggregates, or meet in the
//! bus's per-aggregate lock), so a burst of orders does not queue behind one another's round
//! trips. All states and history rows are written at the end, in the runner's transaction,
//! with the checkpoint.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::PaymentId;
use domain::payment::{Payment, PaymentEvent};
use futures::{StreamExt, TryStreamExt};
use sqlx::PgConnection;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

use super::Flow;
use super::process::{Effects, Input, PaymentFact, Process, SagaData};
use super::store::{self, Stored, Updated};
use crate::payment_gateway::PaymentGateway;
use crate::{CommandBus, CommandMetadata};
use feed::FeedEvent;
use feed::trace_context;
use feed::{Handler, HandlerError};

/// Sagas handled at once within a batch.
const CONCURRENCY: usize = 32;

/// The feed handler of one flow.
pub struct SagaRunner<F> {
    bus: CommandBus,
    gateway: Arc<dyn PaymentGateway>,
    flow: PhantomData<fn() -> F>,
}

impl<F: Flow> SagaRunner<F> {
    /// A runner issuing commands through `bus` and paying through `gateway`.
    pub fn new(bus: CommandBus, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self {
            bus,
            gateway,
            flow: PhantomData,
        }
    }
}

/// An input with the saga it belongs to and the event it came from.
struct Routed<'e> {
    saga: Uuid,
    input: Input,
    event: &'e FeedEvent,
}

/// A decoded event whose saga may still be unknown.
enum Decoded<'e> {
    Owner(Uuid, Input, &'e FeedEvent),
    Payment(PaymentId, PaymentFact, &'e FeedEvent),
}

#[async_trait]
impl<F: Flow> Handler for SagaRunner<F> {
    fn name(&self) -> &str {
        F::NAME
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        aggregate_type == <F::Owner as Aggregate>::TYPE || aggregate_type == Payment::TYPE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        let routed = self.route(conn, events).await?;
        if routed.is_empty() {
            return Ok(());
        }
        let mut order = Vec::new();
        let mut groups: HashMap<Uuid, Vec<Routed<'_>>> = HashMap::new();
        for item in routed {
            let group = groups.entry(item.saga).or_default();
            if group.is_empty() {
                order.push(item.saga);
            }
            group.push(item);
        }
        let stored = store::load(conn, &order).await?;
        let updated: Vec<Option<Updated>> = futures::stream::iter(order)
            .map(|saga| {
                let inputs = groups.remove(&saga).unwrap_or_default();
                let prior = stored.get(&saga).cloned();
                self.run_saga(saga, prior, inputs)
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let updated: Vec<Updated> = updated.into_iter().flatten().collect();
        store::save(conn, F::NAME, &updated).await?;
        Ok(())
    }
}

impl<F: Flow> SagaRunner<F> {
    /// Decodes the wanted events and finds each one's saga.
    async fn route<'e>(
        &self,
        conn: &mut PgConnection,
        events: &'e [FeedEvent],
    ) -> Result<Vec<Routed<'e>>, HandlerError> {
        let mut decoded = Vec::with_capacity(events.len());
        let mut owners: HashMap<PaymentId, Option<Uuid>> = HashMap::new();
        for event in events {
            if event.aggregate_type == Payment::TYPE {
                let payment_id = PaymentId(parse_id(event)?);
                let payload: PaymentEvent = decode(event)?;
                if let PaymentEvent::PaymentCreated { owner, .. } = &payload {
                    owners.insert(payment_id, F::saga_of(*owner));
                }
                if let Some(fact) = payment_fact(payload) {
                    decoded.push(Decoded::Payment(payment_id, fact, event));
                }
            } else if event.aggregate_type == <F::Owner as Aggregate>::TYPE {
                let payload = decode(event)?;
                if let Some(fact) = F::read(payload) {
                    decoded.push(Decoded::Owner(parse_id(event)?, Input::Owner(fact), event));
                }
            }
        }
        let unknown: Vec<PaymentId> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Payment(id, ..) if !owners.contains_key(id) => Some(*id),
                _ => None,
            })
            .collect();
        if !unknown.is_empty() {
            self.resolve(conn, unknown, &mut owners).await?;
        }
        Ok(decoded
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Owner(saga, input, event) => Some(Routed { saga, input, event }),
                Decoded::Payment(id, fact, event) => {
                    owners.get(&id).copied().flatten().map(|saga| Routed {
                        saga,
                        input: Input::Payment(fact),
                        event,
                    })
                }
            })
            .collect())
    }

    /// Finds the owners of payments created in earlier batches: the saga rows first, the
    /// Payment aggregate itself for the rest (payments of the other flow, or of no saga).
    async fn resolve(
        &self,
        conn: &mut PgConnection,
        mut unknown: Vec<PaymentId>,
        owners: &mut HashMap<PaymentId, Option<Uuid>>,
    ) -> Result<(), HandlerError> {
        unknown.sort_unstable_by_key(|id| id.0);
        unknown.dedup();
        for (payment, saga, saga_type) in store::by_payment(conn, &unknown).await? {
            owners.insert(PaymentId(payment), (saga_type == F::NAME).then_some(saga));
        }
        for id in unknown {
            if owners.contains_key(&id) {
                continue;
            }
            let payment = self
                .bus
                .load::<Payment>(&id.to_string())
                .await
                .map_err(|e| HandlerError::Unavailable(format!("payment {id}: {e}")))?;
            owners.insert(id, payment.owner().and_then(F::saga_of));
        }
        Ok(())
    }

    /// Handles one saga's inputs in order; `None` when nothing happened to it.
    async fn run_saga(
        &self,
        saga: Uuid,
        prior: Option<Stored>,
        inputs: Vec<Routed<'_>>,
    ) -> Result<Option<Updated>, HandlerError> {
        let started = prior.as_ref().map(|s| s.created_at);
        let (mut data, version) = prior.map_or((SagaData::default(), 0), |s| (s.data, s.version));
        let started = started.or_else(|| inputs.first().map(|r| r.event.recorded_at));
        let mut steps = Vec::new();
        for routed in inputs {
            let before = data.clone();
            let span = step_span::<F>(saga, routed.event);
            let mut fx = Effects {
                bus: &self.bus,
                gateway: self.gateway.as_ref(),
                metadata: metadata_for::<F>(routed.event)
                    .with_traceparent(trace_context::traceparent_of(&span)),
                log: Vec::new(),
            };
            let mut process = Process::<F> {
                fx: &mut fx,
                id: saga,
                flow: PhantomData,
            };
            process
                .handle(&mut data, routed.input, routed.event.recorded_at)
                .instrument(span)
                .await?;
            if data.state != before.state && data.state.is_end() {
                record_end::<F>(data.state, started);
            }
            if data != before || !fx.log.is_empty() {
                steps.push(store::Step {
                    global_position: routed.event.position(),
                    event_type: routed.event.event_type.clone(),
                    state: data.state,
                    effects: fx.log,
                });
            }
        }
        if steps.is_empty() {
            return Ok(None);
        }
        metrics::counter!("reserva_saga_steps_total", "saga" => F::NAME)
            .increment(steps.len() as u64);
        Ok(Some(Updated {
            id: saga,
            data,
            version,
            steps,
        }))
    }
}

/// `reserva_saga_duration_seconds{saga,outcome}`: from the saga's first event to the end
/// state it just reached. A batch that rolls back and is handled again records it again.
fn record_end<F: Flow>(state: super::SagaState, started: Option<chrono::DateTime<chrono::Utc>>) {
    let Some(started) = started else {
        return;
    };
    let seconds = (chrono::Utc::now() - started).as_seconds_f64().max(0.0);
    metrics::histogram!(
        "reserva_saga_duration_seconds",
        "saga" => F::NAME,
        "outcome" => state.as_str(),
    )
    .record(seconds);
}

fn parse_id(event: &FeedEvent) -> Result<Uuid, HandlerError> {
    event.aggregate_id.parse().map_err(|e| {
        HandlerError::Rejected(format!(
            "{} id {:?} is not a UUID: {e}",
            event.aggregate_type, event.aggregate_id
        ))
    })
}

fn decode<E: serde::de::DeserializeOwned>(event: &FeedEvent) -> Result<E, HandlerError> {
    domain::upcast::decode(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )
    .map_err(|e| {
        HandlerError::Rejected(format!(
            "{} {} does not decode: {e}",
            event.aggregate_type, event.event_type
        ))
    })
}

fn payment_fact(event: PaymentEvent) -> Option<PaymentFact> {
    match event {
        PaymentEvent::PaymentSucceeded { .. } => Some(PaymentFact::Succeeded),
        PaymentEvent::PaymentFailed { reason, .. } => Some(PaymentFact::Failed(reason)),
        PaymentEvent::PaymentCanceled { .. } => Some(PaymentFact::Canceled),
        PaymentEvent::PaymentRefunded { refunded_total, .. } => {
            Some(PaymentFact::Refunded(refunded_total))
        }
        PaymentEvent::PaymentCreated { .. } | PaymentEvent::PaymentRequiresAction { .. } => None,
    }
}

/// The span of one step: a child of the span that issued the event (its stored
/// `traceparent`), so the step's commands and gateway calls join the request's trace.
fn step_span<F: Flow>(saga: Uuid, event: &FeedEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "saga step",
        saga = F::NAME,
        saga_id = %saga,
        event = %event.event_type,
        position = event.position(),
    );
    trace_context::continue_trace(
        &span,
        trace_context::traceparent_in(&event.metadata).as_deref(),
    );
    span
}

/// The saga's commands share the event's correlation and name the event as their cause.
fn metadata_for<F: Flow>(event: &FeedEvent) -> CommandMetadata {
    let correlation_id = serde_json::from_str::<HashMap<String, String>>(&event.metadata)
        .ok()
        .and_then(|mut m| m.remove("correlation_id"))
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    CommandMetadata {
        correlation_id,
        causation_id: format!(
            "{}/{}/{}",
            event.aggregate_type, event.aggregate_id, event.sequence
        ),
        actor: format!("saga:{}", F::NAME),
        request_id: String::new(),
        traceparent: None,
    }
}
