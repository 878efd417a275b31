//! The order flow: a basket of SKUs.

use domain::order::{Canceller, Order, OrderCommand, OrderEvent, OrderStatus};
use domain::{OrderId, Owner};
use uuid::Uuid;

use super::{Flow, Line, OwnerFact, OwnerStep, SagaState};

/// Reserves an order's lines in SKU order, pays, commits; compensates every failure.
pub struct OrderSaga;

impl Flow for OrderSaga {
    const NAME: &'static str = "order_saga";
    type Owner = Order;

    fn owner(id: Uuid) -> Owner {
        Owner::Order(OrderId(id))
    }

    fn saga_of(owner: Owner) -> Option<Uuid> {
        match owner {
            Owner::Order(id) => Some(id.0),
            Owner::Booking(_) => None,
        }
    }

    fn read(event: OrderEvent) -> Option<OwnerFact> {
        match event {
            OrderEvent::OrderPlaced {
                items,
                total,
                expires_at,
                ..
            } => Some(OwnerFact::Placed {
                lines: items
                    .into_iter()
                    .map(|item| Line {
                        sku: item.sku,
                        quantity: item.quantity,
                    })
                    .collect(),
                amount: total,
                expires_at,
            }),
            OrderEvent::OrderCancelled { .. } => Some(OwnerFact::Cancelled),
            OrderEvent::OrderExpired { .. } => Some(OwnerFact::Expired),
            _ => None,
        }
    }

    fn has_moved_on(order: &Order) -> bool {
        !matches!(
            order.status(),
            None | Some(
                OrderStatus::Started | OrderStatus::StockReserved | OrderStatus::PaymentPending
            )
        )
    }

    fn ended_by_saga(order: &Order) -> Option<SagaState> {
        match order.status() {
            Some(OrderStatus::PaymentFailed) => Some(SagaState::PaymentFailed),
            Some(OrderStatus::StockFailed) => Some(SagaState::StockFailed),
            _ => None,
        }
    }

    fn command(step: OwnerStep) -> OrderCommand {
        match step {
            OwnerStep::StockHeld => OrderCommand::ConfirmStockReserved,
            OwnerStep::StockFailed { sku, reason } => OrderCommand::FailStock { sku, reason },
            OwnerStep::PaymentRequested(payment_id) => OrderCommand::RequestPayment { payment_id },
            OwnerStep::Paid(payment_id) => OrderCommand::Complete { payment_id },
            OwnerStep::PaymentFailed(reason) => OrderCommand::FailPayment { reason },
            OwnerStep::Cancel(reason) => OrderCommand::Cancel {
                reason,
                by: Canceller::System,
            },
            OwnerStep::Refunded(payment_id, amount) => {
                OrderCommand::MarkRefunded { payment_id, amount }
            }
        }
    }
}
