use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

use super::command::{OrderCommand, OrderItem};
use super::error::OrderError;
use super::event::OrderEvent;
use crate::status::{StatusMachine, Transition, decide};
use crate::{CustomerId, Money, PaymentId};

/// Where an order is in its life. Serialized as the upper-case names clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Placed; the saga is reserving stock.
    Started,
    /// Every item is held.
    StockReserved,
    /// Waiting for the payment.
    PaymentPending,
    /// Paid and committed.
    Completed,
    /// An item could not be held (end).
    StockFailed,
    /// The payment failed (end).
    PaymentFailed,
    /// Cancelled (end, unless a refund follows).
    Cancelled,
    /// Not paid in time (end, unless a late payment is refunded).
    Expired,
    /// Money returned (end).
    Refunded,
}

impl OrderStatus {
    /// Every status, in the order of the machine.
    pub const ALL: [Self; 9] = [
        Self::Started,
        Self::StockReserved,
        Self::PaymentPending,
        Self::Completed,
        Self::StockFailed,
        Self::PaymentFailed,
        Self::Cancelled,
        Self::Expired,
        Self::Refunded,
    ];

    /// The status named `name` (upper case, as [`OrderStatus::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The upper-case name, e.g. `PAYMENT_PENDING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::StockReserved => "STOCK_RESERVED",
            Self::PaymentPending => "PAYMENT_PENDING",
            Self::Completed => "COMPLETED",
            Self::StockFailed => "STOCK_FAILED",
            Self::PaymentFailed => "PAYMENT_FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::Refunded => "REFUNDED",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StatusMachine for OrderStatus {
    fn can_move_to(self, to: Self) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Started, StockReserved | StockFailed | Cancelled | Expired)
                | (
                    StockReserved,
                    // PaymentFailed: the provider refused to create the intent at all.
                    PaymentPending | PaymentFailed | Cancelled | Expired
                )
                | (
                    PaymentPending,
                    Completed | PaymentFailed | Cancelled | Expired
                )
                | (Completed, Cancelled | Refunded)
                | (Cancelled | Expired | PaymentFailed, Refunded)
        )
    }
}

/// The state of one order, rebuilt from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    status: Option<OrderStatus>,
    customer_id: Option<CustomerId>,
    items: Vec<OrderItem>,
    total: Option<Money>,
    payment_id: Option<PaymentId>,
    failure_reason: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

impl Order {
    /// Current status; `None` before the order is placed.
    pub fn status(&self) -> Option<OrderStatus> {
        self.status
    }
    /// Who ordered.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.customer_id
    }
    /// What was ordered.
    pub fn items(&self) -> &[OrderItem] {
        &self.items
    }
    /// Sum of the items.
    pub fn total(&self) -> Option<Money> {
        self.total
    }
    /// The payment requested, if any.
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.payment_id
    }
    /// When the order expires if unpaid.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }
    /// Why the order failed, if it did.
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }

    fn place(
        &self,
        customer_id: CustomerId,
        items: Vec<OrderItem>,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        if self.status.is_some() {
            return Err(OrderError::AlreadyPlaced);
        }
        let first = items.first().ok_or(OrderError::NoItems)?;
        let mut seen = BTreeSet::new();
        let mut total = Money::zero(first.unit_price.currency);
        for item in &items {
            if !seen.insert(&item.sku) {
                return Err(OrderError::DuplicateSku(item.sku.clone()));
            }
            let line = item
                .unit_price
                .checked_mul(item.quantity.get())
                .map_err(OrderError::Total)?;
            total = total.checked_add(line).map_err(OrderError::Total)?;
        }
        Ok(vec![OrderEvent::OrderPlaced {
            customer_id,
            items,
            total,
            expires_at: Some(expires_at),
        }])
    }

    /// Checks the move to `to`; `Ok(None)` for a repeat, `Ok(Some(from))` for a legal move.
    fn transition(&self, to: OrderStatus) -> Result<Option<OrderStatus>, OrderError> {
        let from = self.status.ok_or(OrderError::NotFound)?;
        match decide(from, to) {
            Transition::AlreadyThere => Ok(None),
            Transition::Allowed => Ok(Some(from)),
            Transition::Illegal => Err(OrderError::IllegalTransition { from, to }),
        }
    }

    /// Like [`Self::transition`] for moves that name a payment: it must be the order's own
    /// (or, when the order has none yet and `may_be_first`, becomes it).
    fn payment_transition(
        &self,
        to: OrderStatus,
        payment_id: PaymentId,
        may_be_first: bool,
    ) -> Result<Option<OrderStatus>, OrderError> {
        let from = self.transition(to)?;
        match self.payment_id {
            Some(own) if own == payment_id => Ok(from),
            None if may_be_first => Ok(from),
            _ => Err(OrderError::PaymentMismatch(payment_id)),
        }
    }

    fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus as S;
        let event = match command {
            OrderCommand::Place {
                customer_id,
                items,
                expires_at,
            } => return self.place(customer_id, items, expires_at),
            OrderCommand::ConfirmStockReserved => self
                .transition(S::StockReserved)?
                .map(|_| OrderEvent::OrderStockReserved),
            OrderCommand::FailStock { sku, reason } => self
                .transition(S::StockFailed)?
                .map(|_| OrderEvent::OrderStockFailed { sku, reason }),
            OrderCommand::RequestPayment { payment_id } => self
                .payment_transition(S::PaymentPending, payment_id, true)?
                .map(|_| OrderEvent::OrderPaymentRequested { payment_id }),
            OrderCommand::Complete { payment_id } => self
                .payment_transition(S::Completed, payment_id, false)?
                .map(|_| OrderEvent::OrderCompleted { payment_id }),
            OrderCommand::FailPayment { reason } => self
                .transition(S::PaymentFailed)?
                .map(|_| OrderEvent::OrderPaymentFailed { reason }),
            OrderCommand::Cancel { reason, by } => self
                .transition(S::Cancelled)?
                .map(|from| OrderEvent::OrderCancelled { reason, from, by }),
            OrderCommand::Expire => self
                .transition(S::Expired)?
                .map(|from| OrderEvent::OrderExpired { from }),
            OrderCommand::MarkRefunded { payment_id, amount } => self
                .payment_transition(S::Refunded, payment_id, false)?
                .map(|_| OrderEvent::OrderRefunded { payment_id, amount }),
        };
        Ok(event.into_iter().collect())
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use OrderStatus as S;
        match event {
            OrderEvent::OrderPlaced {
                customer_id,
                items,
                total,
                expires_at,
            } => {
                self.status = Some(S::Started);
                self.expires_at = expires_at;
                self.customer_id = Some(customer_id);
                self.items = items;
                self.total = Some(total);
            }
            OrderEvent::OrderStockReserved => self.status = Some(S::StockReserved),
            OrderEvent::OrderStockFailed { sku, reason } => {
                self.status = Some(S::StockFailed);
                self.failure_reason = Some(format!("{sku}: {reason}"));
            }
            OrderEvent::OrderPaymentRequested { payment_id } => {
                self.status = Some(S::PaymentPending);
                self.payment_id = Some(payment_id);
            }
            OrderEvent::OrderCompleted { .. } => self.status = Some(S::Completed),
            OrderEvent::OrderPaymentFailed { reason } => {
                self.status = Some(S::PaymentFailed);
                self.failure_reason = Some(reason);
            }
            OrderEvent::OrderCancelled { reason, .. } => {
                self.status = Some(S::Cancelled);
                self.failure_reason = Some(reason);
            }
            OrderEvent::OrderExpired { .. } => self.status = Some(S::Expired),
            OrderEvent::OrderRefunded { .. } => self.status = Some(S::Refunded),
        }
    }
}
