//! Timeouts, retries and a circuit breaker around any [`PaymentGateway`].
//!
//! Retries come from `backon` (exponential backoff with jitter) and the breaker from `failsafe`
//! (consecutive failures, constant cool-down), both small and MIT/Apache-licensed, rather than
//! hand-written. Only [`PaymentGatewayError::Unavailable`] is retried or counted against the breaker:
//! a decline is the provider working correctly. Retrying is safe because every attempt of a
//! call re-sends the same deterministic idempotency key.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use domain::Money;
use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::futures::CircuitBreaker;
use failsafe::{Config, StateMachine};
use tracing::Instrument;

use super::{Intent, IntentRequest, PaymentGateway, PaymentGatewayError, ProviderIntent};

/// How hard [`Resilient`] tries before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResiliencePolicy {
    /// Longest one attempt may take; a slower one counts as unavailable.
    pub attempt_timeout: Duration,
    /// Attempts per call, the first included.
    pub attempts: usize,
    /// Back-off before the first retry; doubles per retry, plus jitter.
    pub base_delay: Duration,
    /// Cap on one back-off.
    pub max_delay: Duration,
    /// Consecutive unavailable attempts that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before letting trial calls through.
    pub cool_down: Duration,
}

impl Default for ResiliencePolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

type Breaker = StateMachine<ConsecutiveFailures<Constant>, ()>;

/// A gateway that times out, retries and stops calling a provider that keeps failing.
///
/// The breaker counts attempts, not calls: after `failure_threshold` consecutive unavailable
/// attempts it answers [`PaymentGatewayError::CircuitOpen`] without calling for `cool_down`, then lets
/// calls through half-open; the first failure there re-opens it and the first success closes it.
/// Every call is counted in `reserva_gateway_calls_total{provider,operation,outcome}` and timed
/// (retries and back-off included) in `reserva_gateway_call_duration_seconds`; after each call
/// `reserva_gateway_circuit_open{gateway}` is 1 while the breaker refuses calls, else 0.
pub struct Resilient<G> {
    inner: G,
    policy: ResiliencePolicy,
    breaker: Breaker,
}

impl<G: PaymentGateway> Resilient<G> {
    /// Wraps `inner`, with a closed circuit.
    pub fn new(inner: G, policy: ResiliencePolicy) -> Self {
        let breaker = Config::new()
            .failure_policy(failure_policy::consecutive_failures(
                policy.failure_threshold,
                backoff::constant(policy.cool_down),
            ))
            .build();
        metrics::gauge!("reserva_gateway_circuit_open", "gateway" => inner.provider()).set(0.0);
        Self {
            inner,
            policy,
            breaker,
        }
    }

    /// The wrapped gateway.
    pub fn inner(&self) -> &G {
        &self.inner
    }

    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        call: F,
    ) -> Result<T, PaymentGatewayError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, PaymentGatewayError>>,
    {
        let started = std::time::Instant::now();
        let attempt = || async {
            let timed = async {
                tokio::time::timeout(self.policy.attempt_timeout, call())
                    .await
                    .unwrap_or_else(|_| {
                        Err(PaymentGatewayError::Unavailable(format!(
                            "no answer within {:?}",
                            self.policy.attempt_timeout
                        )))
                    })
            };
            let unavailable =
                |e: &PaymentGatewayError| matches!(e, PaymentGatewayError::Unavailable(_));
            match self.breaker.call_with(unavailable, timed).await {
                Ok(value) => Ok(value),
                Err(failsafe::Error::Inner(error)) => Err(error),
                Err(failsafe::Error::Rejected) => Err(PaymentGatewayError::CircuitOpen),
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.base_delay)
            .with_max_delay(self.policy.max_delay)
            .with_max_times(self.policy.attempts.saturating_sub(1))
            .with_jitter();
        // A child of the caller's span (a saga step): the call joins the order's trace.
        let span = tracing::info_span!(
            "payment gateway call",
            provider = self.inner.provider(),
            operation
        );
        let outcome = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, PaymentGatewayError::Unavailable(_)))
            .notify(|error, delay| {
                tracing::warn!(operation, %error, ?delay, "payment gateway attempt failed; retrying");
            })
            .instrument(span)
            .await;
        let label = outcome
            .as_ref()
            .map_or_else(PaymentGatewayError::outcome, |_| "ok");
        metrics::counter!(
            "reserva_gateway_calls_total",
            "provider" => self.inner.provider(),
            "operation" => operation,
            "outcome" => label,
        )
        .increment(1);
        metrics::histogram!(
            "reserva_gateway_call_duration_seconds",
            "provider" => self.inner.provider(),
            "operation" => operation,
            "outcome" => label,
        )
        .record(started.elapsed().as_secs_f64());
        let open = if self.breaker.is_call_permitted() {
            0.0
        } else {
            1.0
        };
        metrics::gauge!("reserva_gateway_circuit_open", "gateway" => self.inner.provider())
            .set(open);
        outcome
    }
}

#[async_trait::async_trait]
impl<G: PaymentGateway> PaymentGateway for Resilient<G> {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn create_intent(&self, request: &IntentRequest) -> Result<Intent, PaymentGatewayError> {
        self.run("create_intent", || self.inner.create_intent(request))
            .await
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<(), PaymentGatewayError> {
        self.run("cancel_intent", || self.inner.cancel_intent(intent_id))
            .await
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        refund_key: &str,
    ) -> Result<String, PaymentGatewayError> {
        self.run("refund", || {
            self.inner.refund(intent_id, amount, refund_key)
        })
        .await
    }

    /// The whole listing is one attempt: a failure part-way re-reads every page.
    async fn list_intents(&self) -> Result<Vec<ProviderIntent>, PaymentGatewayError> {
        self.run("list_intents", || self.inner.list_intents()).await
    }
}
