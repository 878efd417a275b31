//! One customer purchase, an order or a booking, played step by step the way its saga and the
//! payment provider would drive it.

use chrono::{DateTime, Duration, Utc};
use domain::order::OrderItem;
use domain::payment::{Payment, PaymentCommand};
use domain::stock_item::ReleaseReason;
use domain::{BookingId, CustomerId, Money, OrderId, Owner, PaymentId, Quantity};
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::VecDeque;
use uuid::Uuid;

use crate::buyer::{Buyer, Move};
use crate::catalogue::Catalogue;
use crate::record::{Recorder, Tracked, metadata, uuid};

enum Step {
    Place,
    Reserve(usize),
    CreatePayment,
    RequireAction,
    Succeed,
    Fail,
    CancelPayment(&'static str),
    Commit(usize),
    Release(usize, ReleaseReason),
    Buyer(Move),
}

struct Line {
    item: usize,
    quantity: Quantity,
}

/// A purchase in flight; the plan is drawn up front and rewritten only when stock runs out.
pub struct Purchase {
    buyer: Buyer,
    owner: Owner,
    customer_id: CustomerId,
    lines: Vec<Line>,
    total: Money,
    payment: Tracked<Payment>,
    correlation_id: Uuid,
    expires_at: DateTime<Utc>,
    plan: VecDeque<Step>,
}

impl Purchase {
    /// An order of one to three distinct products, reserved in SKU order as the saga does.
    pub fn order(
        customer_id: CustomerId,
        cat: &Catalogue,
        rng: &mut StdRng,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let id = OrderId(uuid(rng));
        let count = rng.random_range(1..=3).min(cat.products().len());
        let mut items: Vec<usize> = rand::seq::index::sample(rng, cat.products().len(), count)
            .into_iter()
            .map(|i| cat.products()[i])
            .collect();
        items.sort_by(|a, b| cat.sku(*a).cmp(cat.sku(*b)));
        let lines = items
            .into_iter()
            .map(|item| {
                let quantity = [1, 1, 1, 2, 2, 3, 4, 5][rng.random_range(0..8)];
                Ok(Line {
                    item,
                    quantity: Quantity::new(quantity)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let buyer = Buyer::Order(Tracked::new(id.to_string()));
        Self::new(buyer, Owner::Order(id), customer_id, lines, cat, rng, now)
    }

    /// A booking of one to four seats on a time slot.
    pub fn booking(
        customer_id: CustomerId,
        cat: &Catalogue,
        rng: &mut StdRng,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let id = BookingId(uuid(rng));
        let item = cat.slots()[rng.random_range(0..cat.slots().len())];
        let quantity = Quantity::new(rng.random_range(1..=4))?;
        let buyer = Buyer::Booking(Tracked::new(id.to_string()));
        let lines = vec![Line { item, quantity }];
        Self::new(buyer, Owner::Booking(id), customer_id, lines, cat, rng, now)
    }

    fn new(
        buyer: Buyer,
        owner: Owner,
        customer_id: CustomerId,
        lines: Vec<Line>,
        cat: &Catalogue,
        rng: &mut StdRng,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let mut total = Money::zero(cat.unit_price(lines[0].item).currency);
        for line in &lines {
            total =
                total.checked_add(cat.unit_price(line.item).checked_mul(line.quantity.get())?)?;
        }
        let hold = match owner {
            Owner::Order(_) => Duration::minutes(15),
            Owner::Booking(_) => Duration::minutes(30),
        };
        let payment_id = PaymentId::for_owner(owner);
        let n = lines.len();
        let mut plan: VecDeque<Step> = [Step::Place].into();
        plan.extend((0..n).map(Step::Reserve));
        plan.push_back(Step::Buyer(Move::Held));
        plan.push_back(Step::CreatePayment);
        plan.push_back(Step::Buyer(Move::RequestPayment(payment_id)));
        if rng.random_bool(0.1) {
            plan.push_back(Step::RequireAction);
        }
        let ending = rng.random_range(0..100);
        let releases = |reason| (0..n).map(move |i| Step::Release(i, reason));
        match ending {
            0..80 => {
                plan.push_back(Step::Succeed);
                plan.extend((0..n).map(Step::Commit));
                plan.push_back(Step::Buyer(Move::Complete(payment_id)));
            }
            80..87 => {
                plan.push_back(Step::Fail);
                plan.extend(releases(ReleaseReason::PaymentFailed));
                plan.push_back(Step::Buyer(Move::FailPayment));
            }
            87..94 => {
                plan.push_back(Step::Buyer(Move::Cancel));
                plan.push_back(Step::CancelPayment("order cancelled by the customer"));
                plan.extend(releases(ReleaseReason::Cancelled));
            }
            _ => {
                plan.extend(releases(ReleaseReason::Expired));
                plan.push_back(Step::Buyer(Move::Expire));
                plan.push_back(Step::CancelPayment("reservation expired"));
            }
        }
        Ok(Self {
            buyer,
            owner,
            customer_id,
            lines,
            total,
            payment: Tracked::new(payment_id.to_string()),
            correlation_id: uuid(rng),
            expires_at: now + hold,
            plan,
        })
    }

    /// Plays the next step; `true` once the purchase has reached its end.
    pub fn step(
        &mut self,
        cat: &mut Catalogue,
        rng: &mut StdRng,
        out: &mut Recorder,
    ) -> anyhow::Result<bool> {
        let Some(step) = self.plan.pop_front() else {
            return Ok(true);
        };
        let meta = metadata(rng, self.correlation_id);
        let event_id = |rng: &mut StdRng| format!("evt_sim_{}", uuid(rng).simple());
        match step {
            Step::Place => self.place(cat, &meta, out)?,
            Step::Reserve(i) => self.reserve(i, cat, rng, &meta, out)?,
            Step::CreatePayment => {
                let intent = format!("pi_sim_{}", uuid(rng).simple());
                let command = PaymentCommand::Create {
                    owner: self.owner,
                    amount: self.total,
                    provider: "simulated".to_owned(),
                    client_secret: Some(format!("{intent}_secret_{}", uuid(rng).simple())),
                    provider_intent_id: intent,
                };
                self.payment.execute(command, &meta, out)?;
            }
            Step::RequireAction => {
                let provider_event_id = event_id(rng);
                let command = PaymentCommand::RequireAction { provider_event_id };
                self.payment.execute(command, &meta, out)?;
            }
            Step::Succeed => {
                let provider_event_id = event_id(rng);
                let command = PaymentCommand::Succeed { provider_event_id };
                self.payment.execute(command, &meta, out)?;
            }
            Step::Fail => {
                let command = PaymentCommand::Fail {
                    provider_event_id: event_id(rng),
                    reason: "card_declined".to_owned(),
                };
                self.payment.execute(command, &meta, out)?;
            }
            Step::CancelPayment(reason) => {
                let command = PaymentCommand::Cancel {
                    provider_event_id: None,
                    reason: reason.to_owned(),
                };
                self.payment.execute(command, &meta, out)?;
            }
            Step::Commit(i) => cat.commit(self.lines[i].item, self.owner, &meta, out)?,
            Step::Release(i, reason) => {
                cat.release(self.lines[i].item, self.owner, reason, &meta, out)?;
            }
            Step::Buyer(to) => self.buyer.advance(to, &meta, out)?,
        }
        Ok(self.plan.is_empty())
    }

    fn place(&mut self, cat: &Catalogue, meta: &str, out: &mut Recorder) -> anyhow::Result<()> {
        let items = self
            .lines
            .iter()
            .map(|line| OrderItem {
                sku: cat.sku(line.item).clone(),
                quantity: line.quantity,
                unit_price: cat.unit_price(line.item),
            })
            .collect();
        self.buyer.place(self.customer_id, items, meta, out)
    }

    /// Holds line `i`. When it is short, the shop usually restocks (or adds seats) first; the
    /// rest of the time the purchase fails and the lines already held are released.
    fn reserve(
        &mut self,
        i: usize,
        cat: &mut Catalogue,
        rng: &mut StdRng,
        meta: &str,
        out: &mut Recorder,
    ) -> anyhow::Result<()> {
        let Line { item, quantity } = self.lines[i];
        let available = cat.available(item);
        if quantity.get() > available && rng.random_bool(0.8) {
            let extra = rng.random_range(20..=150);
            cat.restock(item, quantity.get() - available + extra, rng, out)?;
        }
        if cat.reserve(item, self.owner, quantity, self.expires_at, meta, out)? {
            return Ok(());
        }
        let reason = domain::stock_item::StockItemError::InsufficientStock {
            requested: quantity.get(),
            available,
        }
        .to_string();
        self.plan.clear();
        self.plan
            .extend((0..i).map(|j| Step::Release(j, ReleaseReason::Compensation)));
        let sku = cat.sku(item).clone();
        self.plan
            .push_back(Step::Buyer(Move::FailStock(sku, reason)));
        Ok(())
    }
}
