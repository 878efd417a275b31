use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

use super::command::PaymentCommand;
use super::error::PaymentError;
use super::event::PaymentEvent;
use crate::status::{StatusMachine, Transition, decide};
use crate::{Money, Owner};

/// Where a payment is. Serialized in Stripe's lower-case spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The intent exists, nothing happened yet.
    Created,
    /// The customer must act.
    RequiresAction,
    /// Paid.
    Succeeded,
    /// The last attempt failed (the customer may retry).
    Failed,
    /// Cancelled (end).
    Canceled,
    /// Fully or partly refunded.
    Refunded,
}

impl PaymentStatus {
    /// Every status, in the order a payment usually moves through them.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::RequiresAction,
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
        Self::Refunded,
    ];

    /// The lower-case name, e.g. `requires_action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::RequiresAction => "requires_action",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Refunded => "refunded",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StatusMachine for PaymentStatus {
    fn can_move_to(self, to: Self) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, to),
            (
                Created | RequiresAction | Failed,
                RequiresAction | Succeeded | Failed | Canceled
            ) | (Succeeded, Refunded)
                // The provider's word wins: a success reported after a cancel means money was
                // taken (the cancel lost a race), and it must be recorded so it is refunded.
                | (Canceled, Succeeded)
        )
    }
}

/// The state of one payment, rebuilt from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    status: Option<PaymentStatus>,
    owner: Option<Owner>,
    amount: Option<Money>,
    provider: String,
    provider_intent_id: String,
    client_secret: Option<String>,
    refunded: Option<Money>,
    applied_provider_events: BTreeSet<String>,
    applied_refunds: BTreeSet<String>,
}

impl Payment {
    /// Current status; `None` before creation.
    pub fn status(&self) -> Option<PaymentStatus> {
        self.status
    }
    /// The order or booking paid for.
    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }
    /// How much.
    pub fn amount(&self) -> Option<Money> {
        self.amount
    }
    /// Gateway name.
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The provider's intent id.
    pub fn provider_intent_id(&self) -> &str {
        &self.provider_intent_id
    }
    /// Client secret.
    pub fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_deref()
    }
    /// Refunded so far.
    pub fn refunded(&self) -> Option<Money> {
        self.refunded
    }
    /// Whether a provider event was already applied.
    pub fn has_applied(&self, provider_event_id: &str) -> bool {
        self.applied_provider_events.contains(provider_event_id)
    }

    fn transition(&self, to: PaymentStatus) -> Result<bool, PaymentError> {
        let from = self.status.ok_or(PaymentError::NotFound)?;
        match decide(from, to) {
            Transition::AlreadyThere => Ok(false),
            Transition::Allowed => Ok(true),
            Transition::Illegal => Err(PaymentError::IllegalTransition { from, to }),
        }
    }

    fn seen(&self, provider_event_id: Option<&str>) -> bool {
        provider_event_id.is_some_and(|id| self.has_applied(id))
    }

    fn refund(
        &self,
        provider_event_id: Option<String>,
        refund_id: String,
        amount: Money,
    ) -> Result<Option<PaymentEvent>, PaymentError> {
        let from = self.status.ok_or(PaymentError::NotFound)?;
        if self.applied_refunds.contains(&refund_id) {
            return Ok(None);
        }
        if !matches!(from, PaymentStatus::Succeeded | PaymentStatus::Refunded) {
            return Err(PaymentError::IllegalTransition {
                from,
                to: PaymentStatus::Refunded,
            });
        }
        let paid = self.amount.ok_or(PaymentError::NotFound)?;
        let already = self.refunded.unwrap_or(Money::zero(paid.currency));
        let refundable = paid
            .checked_sub(already)
            .unwrap_or(Money::zero(paid.currency));
        let refunded_total = match already.checked_add(amount) {
            Ok(total) if amount.amount > 0 && total.amount <= paid.amount => total,
            _ => {
                return Err(PaymentError::RefundExceedsPayment {
                    requested: amount,
                    refundable,
                });
            }
        };
        Ok(Some(PaymentEvent::PaymentRefunded {
            provider_event_id,
            refund_id,
            amount,
            refunded_total,
        }))
    }

    fn decide(&self, command: PaymentCommand) -> Result<Option<PaymentEvent>, PaymentError> {
        use PaymentStatus as S;
        Ok(match command {
            PaymentCommand::Create {
                owner,
                amount,
                provider,
                provider_intent_id,
                client_secret,
            } => {
                if self.status.is_some() {
                    return Err(PaymentError::AlreadyCreated);
                }
                Some(PaymentEvent::PaymentCreated {
                    owner,
                    amount,
                    provider,
                    provider_intent_id,
                    client_secret,
                })
            }
            PaymentCommand::RequireAction { provider_event_id } => {
                (!self.seen(Some(&provider_event_id)) && self.transition(S::RequiresAction)?)
                    .then_some(PaymentEvent::PaymentRequiresAction { provider_event_id })
            }
            PaymentCommand::Succeed { provider_event_id } => (!self.seen(Some(&provider_event_id))
                && self.transition(S::Succeeded)?)
            .then_some(PaymentEvent::PaymentSucceeded { provider_event_id }),
            PaymentCommand::Fail {
                provider_event_id,
                reason,
            } => (!self.seen(Some(&provider_event_id)) && self.transition(S::Failed)?).then_some(
                PaymentEvent::PaymentFailed {
                    provider_event_id,
                    reason,
                },
            ),
            PaymentCommand::Cancel {
                provider_event_id,
                reason,
            } => (!self.seen(provider_event_id.as_deref()) && self.transition(S::Canceled)?)
                .then_some(PaymentEvent::PaymentCanceled {
                    provider_event_id,
                    reason,
                }),
            PaymentCommand::Refund {
                provider_event_id,
                refund_id,
                amount,
            } => {
                if self.seen(provider_event_id.as_deref()) {
                    return Ok(None);
                }
                self.refund(provider_event_id, refund_id, amount)?
            }
        })
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use PaymentStatus as S;
        if let Some(id) = event.provider_event_id() {
            self.applied_provider_events.insert(id.to_owned());
        }
        match event {
            PaymentEvent::PaymentCreated {
                owner,
                amount,
                provider,
                provider_intent_id,
                client_secret,
            } => {
                self.status = Some(S::Created);
                self.owner = Some(owner);
                self.amount = Some(amount);
                self.provider = provider;
                self.provider_intent_id = provider_intent_id;
                self.client_secret = client_secret;
            }
            PaymentEvent::PaymentRequiresAction { .. } => self.status = Some(S::RequiresAction),
            PaymentEvent::PaymentSucceeded { .. } => self.status = Some(S::Succeeded),
            PaymentEvent::PaymentFailed { .. } => self.status = Some(S::Failed),
            PaymentEvent::PaymentCanceled { .. } => self.status = Some(S::Canceled),
            PaymentEvent::PaymentRefunded {
                refund_id,
                refunded_total,
                ..
            } => {
                self.status = Some(S::Refunded);
                self.applied_refunds.insert(refund_id);
                self.refunded = Some(refunded_total);
            }
        }
    }
}
