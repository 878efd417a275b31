//! The load's writer: order, booking and restock flows on the bus, and the rows they must leave.

use super::{PRODUCTS, SLOTS, TARGET_EVENTS, later, meta, mxn, product, quantity, slot};
use commands::CommandBus;
use commands::bus::Routed;
use domain::booking::{Booking, BookingCommand};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::payment::{Payment, PaymentCommand};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand};
use domain::{BookingId, CustomerId, Money, OrderId, Owner, PaymentId, ReservationId, Sku};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tests::TestApp;
use uuid::Uuid;

fn reserve(owner: Owner, sku: &Sku, n: u32) -> StockItemCommand {
    StockItemCommand::Reserve {
        reservation_id: ReservationId::for_owner(owner, sku),
        quantity: quantity(n),
        owner,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
    }
}

/// How every order, booking and payment a writer touched must end up in its read model:
/// status and payment id (orders, bookings) or status and owner id (payments).
#[derive(Default)]
pub(super) struct Expected {
    pub(super) orders: BTreeMap<Uuid, (String, Option<Uuid>)>,
    pub(super) bookings: BTreeMap<Uuid, (String, Option<Uuid>)>,
    pub(super) payments: BTreeMap<Uuid, (String, Uuid)>,
}

impl Expected {
    pub(super) fn merge(mut self, other: Self) -> Self {
        self.orders.extend(other.orders);
        self.bookings.extend(other.bookings);
        self.payments.extend(other.payments);
        self
    }
}

/// Drives the server's own bus, counting the events it commits.
#[derive(Clone)]
pub(super) struct Writer {
    bus: CommandBus,
    written: Arc<AtomicUsize>,
}

impl Writer {
    pub(super) fn new(app: &TestApp) -> Self {
        Self {
            bus: app.bus.clone(),
            written: Arc::default(),
        }
    }

    pub(super) async fn run<A>(&self, id: &str, command: A::Command)
    where
        A: Routed,
        A::Command: Clone + Send,
    {
        let committed = self
            .bus
            .execute::<A>(id, command, &meta())
            .await
            .unwrap_or_else(|e| panic!("{} {id}: {e}", A::TYPE));
        self.written.fetch_add(committed.events, Ordering::Relaxed);
    }

    async fn create_payment(&self, owner: Owner, amount: Money) -> PaymentId {
        let id = PaymentId::for_owner(owner);
        let create = PaymentCommand::Create {
            owner,
            amount,
            provider: "simulated".into(),
            provider_intent_id: format!("pi_{}", id.0.simple()),
            client_secret: Some(format!("pi_{}_secret", id.0.simple())),
        };
        self.run::<Payment>(&id.to_string(), create).await;
        id
    }

    /// Place → reserve each line → stock reserved → payment requested, then either paid
    /// (commit, complete) or failed (release, payment failed).
    async fn order(&self, customer: CustomerId, lines: &[(Sku, u32)], pays: bool) -> Expected {
        let id = OrderId::new_random();
        let key = id.to_string();
        let items = lines
            .iter()
            .map(|(sku, n)| OrderItem {
                sku: sku.clone(),
                quantity: quantity(*n),
                unit_price: mxn(1500),
            })
            .collect();
        let units: i64 = lines.iter().map(|(_, n)| i64::from(*n)).sum();
        let place = OrderCommand::Place {
            customer_id: customer,
            items,
            expires_at: later(),
        };
        self.run::<Order>(&key, place).await;
        let owner = Owner::Order(id);
        for (sku, n) in lines {
            self.run::<StockItem>(sku.as_str(), reserve(owner, sku, *n))
                .await;
        }
        self.run::<Order>(&key, OrderCommand::ConfirmStockReserved)
            .await;
        let payment = self.create_payment(owner, mxn(1500 * units)).await;
        let payment_key = payment.to_string();
        self.run::<Order>(
            &key,
            OrderCommand::RequestPayment {
                payment_id: payment,
            },
        )
        .await;
        let (order_status, payment_status) = if pays {
            let succeed = PaymentCommand::Succeed {
                provider_event_id: format!("evt_ok_{payment_key}"),
            };
            self.run::<Payment>(&payment_key, succeed).await;
            for (sku, _) in lines {
                let commit = StockItemCommand::CommitReservation {
                    reservation_id: ReservationId::for_owner(owner, sku),
                };
                self.run::<StockItem>(sku.as_str(), commit).await;
            }
            let complete = OrderCommand::Complete {
                payment_id: payment,
            };
            self.run::<Order>(&key, complete).await;
            ("COMPLETED", "succeeded")
        } else {
            let fail = PaymentCommand::Fail {
                provider_event_id: format!("evt_no_{payment_key}"),
                reason: "card_declined".into(),
            };
            self.run::<Payment>(&payment_key, fail).await;
            for (sku, _) in lines {
                let release = StockItemCommand::ReleaseReservation {
                    reservation_id: ReservationId::for_owner(owner, sku),
                    reason: ReleaseReason::PaymentFailed,
                };
                self.run::<StockItem>(sku.as_str(), release).await;
            }
            let fail = OrderCommand::FailPayment {
                reason: "card_declined".into(),
            };
            self.run::<Order>(&key, fail).await;
            ("PAYMENT_FAILED", "failed")
        };
        let mut out = Expected::default();
        out.orders
            .insert(id.0, (order_status.to_owned(), Some(payment.0)));
        out.payments
            .insert(payment.0, (payment_status.to_owned(), id.0));
        out
    }

    /// Place → hold seats → payment requested → paid → seats committed → confirmed.
    async fn booking(&self, customer: CustomerId, slot: &Sku, guests: u32) -> Expected {
        let id = BookingId::new_random();
        let key = id.to_string();
        let place = BookingCommand::Place {
            customer_id: customer,
            slot_sku: slot.clone(),
            guests: quantity(guests),
            unit_price: mxn(1500),
            expires_at: later(),
        };
        self.run::<Booking>(&key, place).await;
        let owner = Owner::Booking(id);
        self.run::<StockItem>(slot.as_str(), reserve(owner, slot, guests))
            .await;
        self.run::<Booking>(&key, BookingCommand::MarkSeatsHeld)
            .await;
        let payment = self
            .create_payment(owner, mxn(1500 * i64::from(guests)))
            .await;
        let payment_key = payment.to_string();
        self.run::<Booking>(
            &key,
            BookingCommand::RequestPayment {
                payment_id: payment,
            },
        )
        .await;
        let succeed = PaymentCommand::Succeed {
            provider_event_id: format!("evt_ok_{payment_key}"),
        };
        self.run::<Payment>(&payment_key, succeed).await;
        let commit = StockItemCommand::CommitReservation {
            reservation_id: ReservationId::for_owner(owner, slot),
        };
        self.run::<StockItem>(slot.as_str(), commit).await;
        self.run::<Booking>(
            &key,
            BookingCommand::Confirm {
                payment_id: payment,
            },
        )
        .await;
        let mut out = Expected::default();
        out.bookings
            .insert(id.0, ("CONFIRMED".to_owned(), Some(payment.0)));
        out.payments
            .insert(payment.0, ("succeeded".to_owned(), id.0));
        out
    }

    /// An order cancelled before anything was reserved, and a restock and a correction.
    async fn cancel_and_restock(&self, customer: CustomerId, sku: &Sku) -> Expected {
        let id = OrderId::new_random();
        let place = OrderCommand::Place {
            customer_id: customer,
            items: vec![OrderItem {
                sku: sku.clone(),
                quantity: quantity(1),
                unit_price: mxn(1500),
            }],
            expires_at: later(),
        };
        self.run::<Order>(&id.to_string(), place).await;
        let cancel = OrderCommand::Cancel {
            reason: "changed my mind".into(),
            by: domain::order::Canceller::Customer,
        };
        self.run::<Order>(&id.to_string(), cancel).await;
        let restock = StockItemCommand::Restock {
            quantity: quantity(5),
        };
        self.run::<StockItem>(sku.as_str(), restock).await;
        let adjust = StockItemCommand::Adjust {
            delta: -2,
            reason: "count".into(),
        };
        self.run::<StockItem>(sku.as_str(), adjust).await;
        let mut out = Expected::default();
        out.orders.insert(id.0, ("CANCELLED".to_owned(), None));
        out
    }

    /// Writer `w`'s mix of flows, until all writers together wrote [`TARGET_EVENTS`].
    pub(super) async fn drive(self, w: usize) -> Expected {
        let mut out = Expected::default();
        let customer = CustomerId::new_random();
        let mut i = 0;
        while self.written.load(Ordering::Relaxed) < TARGET_EVENTS {
            // Offsets 0, 11 and 22 modulo 40 never collide: an order's SKUs are distinct.
            let lines: Vec<(Sku, u32)> = (0..1 + i % 3)
                .map(|j| {
                    let sku = product((w + i * 3 + j * 11) % PRODUCTS);
                    (sku, 1 + ((w + i + j) % 3) as u32)
                })
                .collect();
            let done = match i % 5 {
                0 | 1 => self.order(customer, &lines, true).await,
                2 => self.order(customer, &lines, false).await,
                3 => {
                    let guests = 1 + (i % 4) as u32;
                    self.booking(customer, &slot((w + i) % SLOTS), guests).await
                }
                _ => self.cancel_and_restock(customer, &lines[0].0).await,
            };
            out = out.merge(done);
            i += 1;
        }
        out
    }
}
