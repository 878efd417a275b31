//! The saga's state machine: what to do next, and how to undo what was done.
//!
//! Decisions read only the saga's own persisted state, never the order of unrelated events:
//! the saga issues a command and records the result before it stores its state, so when it
//! sees a later event it already knows everything it did. What others did (a customer cancel,
//! the deadline job's expiry, a provider webhook) reaches it as events, and a command of its
//! own that the owner refuses because of them is recorded and left to the event that follows.

use chrono::{DateTime, Utc};
use domain::payment::{Payment, PaymentCommand};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand};
use domain::{Owner, PaymentId, ReservationId};
use uuid::Uuid;

pub use super::state::{Effect, Input, PaymentFact, SagaData, SagaState};
use super::{Flow, Line, OwnerFact, OwnerStep};
use crate::bus::Routed;
use crate::payment_gateway::{IntentRequest, PaymentGateway, PaymentGatewayError};
use crate::{CommandBus, CommandError, CommandMetadata};
use feed::HandlerError;

/// Holds of events recorded before deadlines existed lapse this long after placing.
const LEGACY_TTL_MINUTES: i64 = 15;

/// How a command came out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Events were recorded.
    Applied,
    /// A repeat: nothing to record.
    Unchanged,
    /// The aggregate refused (the world moved on).
    Refused(String),
}

/// The saga's hands: the bus, the provider, and the log of what they did.
pub(crate) struct Effects<'a> {
    pub bus: &'a CommandBus,
    pub gateway: &'a dyn PaymentGateway,
    pub metadata: CommandMetadata,
    pub log: Vec<Effect>,
}

impl Effects<'_> {
    async fn run<A>(
        &mut self,
        id: &str,
        action: &str,
        command: A::Command,
    ) -> Result<Outcome, HandlerError>
    where
        A: Routed<Command: Clone + Send>,
    {
        let outcome = match self.bus.execute::<A>(id, command, &self.metadata).await {
            Ok(committed) if committed.events == 0 => Outcome::Unchanged,
            Ok(_) => Outcome::Applied,
            Err(CommandError::Rejected(reason)) => Outcome::Refused(reason.to_string()),
            Err(error @ (CommandError::Conflict { .. } | CommandError::Unavailable(_))) => {
                return Err(HandlerError::Unavailable(format!(
                    "{} {id} {action}: {error}",
                    A::TYPE
                )));
            }
            Err(error @ CommandError::Internal(_)) => {
                return Err(HandlerError::Rejected(format!(
                    "{} {id} {action}: {error}",
                    A::TYPE
                )));
            }
        };
        self.log.push(Effect {
            target: format!("{}/{id}", A::TYPE),
            action: action.to_owned(),
            outcome: match &outcome {
                Outcome::Applied => "applied".to_owned(),
                Outcome::Unchanged => "unchanged".to_owned(),
                Outcome::Refused(reason) => format!("refused: {reason}"),
            },
        });
        Ok(outcome)
    }

    fn called(&mut self, action: &str, outcome: String) {
        self.log.push(Effect {
            target: "gateway".to_owned(),
            action: action.to_owned(),
            outcome,
        });
    }
}

/// One saga's process over one input.
pub(crate) struct Process<'e, 'a, F> {
    pub fx: &'e mut Effects<'a>,
    pub id: Uuid,
    pub flow: std::marker::PhantomData<F>,
}

impl<F: Flow> Process<'_, '_, F> {
    fn owner(&self) -> Owner {
        F::owner(self.id)
    }

    fn reservation(&self, line: &Line) -> ReservationId {
        ReservationId::for_owner(self.owner(), &line.sku)
    }

    async fn tell_owner(&mut self, step: OwnerStep) -> Result<Outcome, HandlerError> {
        let action = format!("{step:?}");
        let id = self.id.to_string();
        self.fx
            .run::<F::Owner>(&id, &action, F::command(step))
            .await
    }

    /// The provider intent of payment `id` when the Payment was already created (by an earlier
    /// attempt of this step whose saga state rolled back).
    async fn created_intent(&self, id: PaymentId) -> Result<Option<String>, HandlerError> {
        let payment = self
            .fx
            .bus
            .load::<Payment>(&id.to_string())
            .await
            .map_err(|e| HandlerError::Unavailable(format!("payment {id}: {e}")))?;
        Ok(payment
            .status()
            .is_some()
            .then(|| payment.provider_intent_id().to_owned()))
    }

    /// `None` while the owner is open; once it has moved on, the state the saga is in: the
    /// end the saga gave it itself, else `Held` until its cancel or expiry arrives.
    async fn owner_moved_on(&self) -> Result<Option<SagaState>, HandlerError> {
        let owner = self
            .fx
            .bus
            .load::<F::Owner>(&self.id.to_string())
            .await
            .map_err(|e| HandlerError::Unavailable(format!("{} {}: {e}", F::NAME, self.id)))?;
        if !F::has_moved_on(&owner) {
            return Ok(None);
        }
        Ok(Some(F::ended_by_saga(&owner).unwrap_or(SagaState::Held)))
    }

    async fn stock(
        &mut self,
        line: &Line,
        action: &str,
        command: StockItemCommand,
    ) -> Result<Outcome, HandlerError> {
        self.fx
            .run::<StockItem>(line.sku.as_str(), action, command)
            .await
    }

    async fn payment(
        &mut self,
        payment_id: PaymentId,
        action: &str,
        command: PaymentCommand,
    ) -> Result<Outcome, HandlerError> {
        self.fx
            .run::<Payment>(&payment_id.to_string(), action, command)
            .await
    }

    // One match on purpose: the state machine reads as one table of (state, input) → moves.
    /// Handles one input, updating `data`.
    pub(crate) async fn handle(
        &mut self,
        data: &mut SagaData,
        input: Input,
        recorded_at: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        use SagaState as S;
        match (data.state, input) {
            (
                S::New,
                Input::Owner(OwnerFact::Placed {
                    mut lines,
                    amount,
                    expires_at,
                }),
            ) => {
                lines.sort_by(|a, b| a.sku.cmp(&b.sku));
                data.lines = lines;
                data.amount = Some(amount);
                data.expires_at = Some(expires_at.unwrap_or_else(|| {
                    recorded_at + chrono::Duration::minutes(LEGACY_TTL_MINUTES)
                }));
                self.placed(data).await
            }
            (
                S::Held | S::AwaitingPayment,
                Input::Owner(fact @ (OwnerFact::Cancelled | OwnerFact::Expired)),
            ) => {
                let expired = fact == OwnerFact::Expired;
                let reason = if expired {
                    ReleaseReason::Expired
                } else {
                    ReleaseReason::Cancelled
                };
                self.release_all(data, reason).await?;
                self.cancel_intent(data, if expired { "expired" } else { "cancelled" })
                    .await?;
                data.state = if expired { S::Expired } else { S::Cancelled };
                Ok(())
            }
            (S::Completed, Input::Owner(OwnerFact::Cancelled | OwnerFact::Expired)) => {
                // Paid and committed, then ended (a cancel after payment, or an expiry that
                // raced the payment): the money goes back and so do the units.
                self.refund(data).await?;
                for line in data.lines.clone() {
                    let command = StockItemCommand::ReturnReservation {
                        reservation_id: self.reservation(&line),
                    };
                    self.stock(&line, "ReturnReservation", command).await?;
                }
                data.state = S::Refunding;
                Ok(())
            }
            (S::AwaitingPayment, Input::Payment(PaymentFact::Succeeded)) => {
                data.paid = true;
                self.paid(data).await
            }
            (
                S::Held | S::Cancelled | S::Expired | S::PaymentFailed,
                Input::Payment(PaymentFact::Succeeded),
            ) => {
                // Money for something that will not ship is never kept.
                data.paid = true;
                self.refund(data).await?;
                data.state = S::Refunding;
                Ok(())
            }
            (S::AwaitingPayment, Input::Payment(PaymentFact::Failed(reason))) => {
                self.release_all(data, ReleaseReason::PaymentFailed).await?;
                self.tell_owner(OwnerStep::PaymentFailed(reason)).await?;
                // The intent would accept another attempt; this flow has ended, so close it (a
                // success that still slips through is refunded).
                self.cancel_intent(data, "payment failed").await?;
                data.state = S::PaymentFailed;
                Ok(())
            }
            (S::AwaitingPayment, Input::Payment(PaymentFact::Canceled)) => {
                self.release_all(data, ReleaseReason::Cancelled).await?;
                self.tell_owner(OwnerStep::Cancel(
                    "the payment was canceled at the provider".to_owned(),
                ))
                .await?;
                data.state = S::Cancelled;
                Ok(())
            }
            (_, Input::Payment(PaymentFact::Refunded(total))) => {
                let (Some(amount), Some(payment_id)) = (data.amount, data.payment_id) else {
                    return Ok(());
                };
                if total.amount >= amount.amount {
                    self.tell_owner(OwnerStep::Refunded(payment_id, total))
                        .await?;
                    data.state = S::Refunded;
                }
                Ok(())
            }
            // Repeats and events that need nothing in this state.
            _ => Ok(()),
        }
    }

    /// Reserves every line in SKU order, then creates the payment.
    async fn placed(&mut self, data: &mut SagaData) -> Result<(), HandlerError> {
        let expires_at = data.expires_at.unwrap_or_else(Utc::now);
        let lines = data.lines.clone();
        for (held, line) in lines.iter().enumerate() {
            let command = StockItemCommand::Reserve {
                reservation_id: self.reservation(line),
                quantity: line.quantity,
                owner: self.owner(),
                expires_at,
            };
            if let Outcome::Refused(reason) = self.stock(line, "Reserve", command).await? {
                for line in &lines[..held] {
                    self.release(line, ReleaseReason::Compensation).await?;
                }
                self.tell_owner(OwnerStep::StockFailed {
                    sku: line.sku.clone(),
                    reason,
                })
                .await?;
                data.state = SagaState::StockFailed;
                return Ok(());
            }
        }
        // Refused: the owner heard it before, so this is a replay of the step (its batch
        // rolled back after the commands were kept).
        let replayed = matches!(
            self.tell_owner(OwnerStep::StockHeld).await?,
            Outcome::Refused(_)
        );
        if replayed && let Some(ended) = self.owner_moved_on().await? {
            // Ended meanwhile: its Cancelled/Expired event follows and releases the lines
            // (`Held`) — unless this saga ended it itself on an earlier attempt whose saga
            // state was rolled back (a failed batch replayed event by event): then it already
            // released the lines, and no event follows to move it out of `Held`.
            // (Refused but still open: a replay after this saga already moved it further.)
            data.state = ended;
            return Ok(());
        }
        self.create_payment(data, replayed).await
    }

    /// Creates the intent and the Payment; on a `replayed` step, first looks for the Payment
    /// an earlier attempt created (the Payment is created only after the owner heard
    /// `StockHeld`, so a first attempt never needs the look, and pays nothing for it).
    async fn create_payment(
        &mut self,
        data: &mut SagaData,
        replayed: bool,
    ) -> Result<(), HandlerError> {
        let Some(amount) = data.amount else {
            return Ok(());
        };
        let payment_id = PaymentId::for_owner(self.owner());
        data.payment_id = Some(payment_id);
        let created = if replayed {
            self.created_intent(payment_id).await?
        } else {
            None
        };
        if let Some(intent_id) = created {
            // A replay (the batch that created the payment rolled back, the payment did not):
            // the provider has the intent and may have been paid already. Asking it again
            // could meet an open breaker and fail an owner whose money is on its way.
            data.intent_id = Some(intent_id);
            data.state = SagaState::AwaitingPayment;
            self.tell_owner(OwnerStep::PaymentRequested(payment_id))
                .await?;
            return Ok(());
        }
        let request = IntentRequest {
            payment_id,
            owner: self.owner(),
            amount,
        };
        let intent = match self.fx.gateway.create_intent(&request).await {
            Ok(intent) => intent,
            Err(error) => {
                // Declined, or still unreachable after the resilience layer's retries: fail
                // the payment now rather than hold the customer's stock until the deadline.
                self.fx.called("create_intent", format!("failed: {error}"));
                self.release_all(data, ReleaseReason::PaymentFailed).await?;
                self.tell_owner(OwnerStep::PaymentFailed(format!(
                    "the payment could not be created: {error}"
                )))
                .await?;
                data.state = SagaState::PaymentFailed;
                return Ok(());
            }
        };
        self.fx.called("create_intent", intent.id.clone());
        data.intent_id = Some(intent.id.clone());
        let command = PaymentCommand::Create {
            owner: self.owner(),
            amount,
            provider: self.fx.gateway.provider().to_owned(),
            provider_intent_id: intent.id,
            client_secret: intent.client_secret,
        };
        // A replay finds it created (`AlreadyCreated`): recorded as refused, nothing lost.
        self.payment(payment_id, "Create", command).await?;
        data.state = SagaState::AwaitingPayment;
        // Refused only when the owner ended meanwhile; its event follows and cancels the intent.
        self.tell_owner(OwnerStep::PaymentRequested(payment_id))
            .await?;
        Ok(())
    }

    /// Commits every line and completes the owner.
    async fn paid(&mut self, data: &mut SagaData) -> Result<(), HandlerError> {
        let Some(payment_id) = data.payment_id else {
            return Ok(());
        };
        let mut lost = None;
        for line in data.lines.clone() {
            let command = StockItemCommand::CommitReservation {
                reservation_id: self.reservation(&line),
            };
            if let Outcome::Refused(reason) =
                self.stock(&line, "CommitReservation", command).await?
            {
                lost = Some(reason);
            }
        }
        if let Some(reason) = lost {
            // A hold vanished under a paid order (an operator released it): it cannot ship
            // complete, so undo the rest and give the money back.
            for line in data.lines.clone() {
                let command = StockItemCommand::ReturnReservation {
                    reservation_id: self.reservation(&line),
                };
                self.stock(&line, "ReturnReservation", command).await?;
            }
            self.tell_owner(OwnerStep::Cancel(format!("stock no longer held: {reason}")))
                .await?;
            self.refund(data).await?;
            data.state = SagaState::Refunding;
            return Ok(());
        }
        // Refused only when the owner ended meanwhile (an expiry racing the payment); its
        // event follows, finds the saga completed, and refunds.
        self.tell_owner(OwnerStep::Paid(payment_id)).await?;
        data.state = SagaState::Completed;
        Ok(())
    }

    async fn release(&mut self, line: &Line, reason: ReleaseReason) -> Result<(), HandlerError> {
        let command = StockItemCommand::ReleaseReservation {
            reservation_id: self.reservation(line),
            reason,
        };
        self.stock(line, "ReleaseReservation", command).await?;
        Ok(())
    }

    async fn release_all(
        &mut self,
        data: &SagaData,
        reason: ReleaseReason,
    ) -> Result<(), HandlerError> {
        for line in &data.lines {
            self.release(line, reason).await?;
        }
        Ok(())
    }

    /// Cancels the intent, recording the cancel on the Payment only when the provider agreed:
    /// a refused cancel may mean the customer just paid, and that success must still land
    /// (and be refunded) rather than be shadowed by a local "canceled".
    async fn cancel_intent(&mut self, data: &SagaData, reason: &str) -> Result<(), HandlerError> {
        let (Some(payment_id), Some(intent_id)) = (data.payment_id, data.intent_id.as_deref())
        else {
            return Ok(());
        };
        match self.fx.gateway.cancel_intent(intent_id).await {
            Ok(()) => {
                self.fx.called("cancel_intent", "canceled".to_owned());
                let command = PaymentCommand::Cancel {
                    provider_event_id: None,
                    reason: reason.to_owned(),
                };
                self.payment(payment_id, "Cancel", command).await?;
            }
            Err(error) => self.fx.called("cancel_intent", format!("failed: {error}")),
        }
        Ok(())
    }

    /// Asks the provider for a full refund, once per payment whatever the reason (one
    /// idempotency key per payment, so a cancel-refund and a late-payment refund can never
    /// both be paid out). The provider's `charge.refunded` webhook records it.
    async fn refund(&mut self, data: &mut SagaData) -> Result<(), HandlerError> {
        if data.refund_requested {
            return Ok(());
        }
        let (Some(payment_id), Some(amount)) = (data.payment_id, data.amount) else {
            return Ok(());
        };
        // A saga state written before the intent id was kept (an older replay) still refunds:
        // the Payment knows its intent.
        let intent_id = match data.intent_id.clone() {
            Some(intent_id) => intent_id,
            None => match self.created_intent(payment_id).await? {
                Some(intent_id) => intent_id,
                None => return Ok(()),
            },
        };
        let key = format!("{payment_id}-full");
        match self.fx.gateway.refund(&intent_id, amount, &key).await {
            Ok(refund_id) => self.fx.called("refund", refund_id),
            Err(PaymentGatewayError::Declined(reason)) => {
                // Nothing left to refund (an operator refunded by hand) or never paid.
                self.fx.called("refund", format!("declined: {reason}"));
            }
            Err(error) => {
                // Money is at stake: fail the event so it is retried, then parked for an
                // operator, never silently dropped.
                return Err(HandlerError::Rejected(format!(
                    "refund of payment {payment_id} failed: {error}"
                )));
            }
        }
        data.refund_requested = true;
        Ok(())
    }
}
