use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::command::{ReleaseReason, StockItemCommand, StockKind};
use super::error::StockItemError;
use super::event::StockItemEvent;
use super::memory::{Closed, ClosedMemory, Ended};
use crate::{Money, Owner, Quantity, ReservationId, Sku};

/// An open hold on units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Units held.
    pub quantity: u32,
    /// Who holds them.
    pub owner: Owner,
    /// When the hold lapses.
    pub expires_at: DateTime<Utc>,
}

/// The state of one SKU, rebuilt from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockItem {
    sku: Option<Sku>,
    name: String,
    kind: Option<StockKind>,
    on_hand: u32,
    low_stock_threshold: u32,
    unit_price: Option<Money>,
    reservations: BTreeMap<ReservationId, Reservation>,
    /// Reservations that ended, so late commands for them stay idempotent (bounded in time).
    closed: ClosedMemory,
}

impl StockItem {
    /// Whether the item exists.
    pub fn is_registered(&self) -> bool {
        self.sku.is_some()
    }
    /// The SKU, once registered.
    pub fn sku(&self) -> Option<&Sku> {
        self.sku.as_ref()
    }
    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Product or time slot.
    pub fn kind(&self) -> Option<StockKind> {
        self.kind
    }
    /// Units physically held by the business.
    pub fn on_hand(&self) -> u32 {
        self.on_hand
    }
    /// Units held by open reservations.
    pub fn reserved(&self) -> u32 {
        self.reservations.values().map(|r| r.quantity).sum()
    }
    /// Units that can still be reserved.
    pub fn available(&self) -> u32 {
        self.on_hand.saturating_sub(self.reserved())
    }
    /// Low-stock threshold.
    pub fn low_stock_threshold(&self) -> u32 {
        self.low_stock_threshold
    }
    /// Price of one unit.
    pub fn unit_price(&self) -> Option<Money> {
        self.unit_price
    }
    /// Open reservations by id.
    pub fn reservations(&self) -> &BTreeMap<ReservationId, Reservation> {
        &self.reservations
    }
    /// Ended reservations still remembered (bounded: see [`super::memory`]).
    pub fn remembered(&self) -> usize {
        self.closed.len()
    }

    fn require_registered(&self) -> Result<(), StockItemError> {
        if self.is_registered() {
            Ok(())
        } else {
            Err(StockItemError::NotRegistered)
        }
    }

    fn register(&self, command: StockItemCommand) -> Result<Vec<StockItemEvent>, StockItemError> {
        if self.is_registered() {
            return Err(StockItemError::AlreadyRegistered);
        }
        let StockItemCommand::Register {
            sku,
            name,
            kind,
            quantity,
            low_stock_threshold,
            unit_price,
        } = command
        else {
            return Ok(Vec::new());
        };
        Ok(vec![StockItemEvent::StockItemRegistered {
            sku,
            name,
            kind,
            on_hand: quantity,
            low_stock_threshold,
            unit_price,
        }])
    }

    fn restock(&self, quantity: Quantity) -> Result<Vec<StockItemEvent>, StockItemError> {
        self.require_registered()?;
        let on_hand = self
            .on_hand
            .checked_add(quantity.get())
            .ok_or(StockItemError::CountOverflow)?;
        Ok(vec![StockItemEvent::StockRestocked {
            quantity: quantity.get(),
            on_hand,
        }])
    }

    fn adjust(&self, delta: i64, reason: String) -> Result<Vec<StockItemEvent>, StockItemError> {
        self.require_registered()?;
        let reserved = self.reserved();
        let on_hand = i64::from(self.on_hand).saturating_add(delta);
        if on_hand < i64::from(reserved) {
            return Err(StockItemError::AdjustmentBelowReserved {
                delta,
                on_hand,
                reserved,
            });
        }
        let on_hand = u32::try_from(on_hand).map_err(|_| StockItemError::CountOverflow)?;
        Ok(vec![StockItemEvent::StockAdjusted {
            delta,
            on_hand,
            reason,
        }])
    }

    fn reserve(
        &self,
        reservation_id: ReservationId,
        quantity: Quantity,
        owner: Owner,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        self.require_registered()?;
        if self.reservations.contains_key(&reservation_id)
            || self.closed.get(&reservation_id).is_some()
            || self.closed.forgotten(expires_at)
        {
            return Ok(Vec::new());
        }
        let available = self.available();
        if quantity.get() > available {
            return Err(StockItemError::InsufficientStock {
                requested: quantity.get(),
                available,
            });
        }
        Ok(vec![StockItemEvent::StockReserved {
            reservation_id,
            quantity: quantity.get(),
            owner,
            expires_at,
        }])
    }

    fn commit(&self, reservation_id: ReservationId) -> Result<Vec<StockItemEvent>, StockItemError> {
        self.require_registered()?;
        match (
            self.reservations.get(&reservation_id),
            self.closed.get(&reservation_id).map(|e| e.how),
        ) {
            (Some(held), _) => Ok(vec![StockItemEvent::ReservationCommitted {
                reservation_id,
                quantity: held.quantity,
                on_hand: self.on_hand - held.quantity,
            }]),
            (None, Some(Closed::Committed | Closed::Returned)) => Ok(Vec::new()),
            (None, Some(Closed::Released)) => {
                Err(StockItemError::ReservationReleased(reservation_id))
            }
            (None, None) => Err(StockItemError::ReservationNotFound(reservation_id)),
        }
    }

    fn release(
        &self,
        reservation_id: ReservationId,
        reason: ReleaseReason,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        self.require_registered()?;
        if let Some(held) = self.reservations.get(&reservation_id) {
            return Ok(vec![StockItemEvent::ReservationReleased {
                reservation_id,
                quantity: held.quantity,
                reason,
            }]);
        }
        match self.closed.get(&reservation_id).map(|e| e.how) {
            Some(Closed::Committed | Closed::Returned) => {
                Err(StockItemError::ReservationCommitted(reservation_id))
            }
            // Released before, or never held (a compensation for a line that failed): no-op.
            _ => Ok(Vec::new()),
        }
    }

    /// Puts the units of a committed reservation back on hand (the sale was refunded).
    /// Returning twice is a no-op, so a saga replaying its compensation changes nothing.
    fn return_sold(
        &self,
        reservation_id: ReservationId,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        self.require_registered()?;
        match self
            .closed
            .get(&reservation_id)
            .map(|e| (e.how, e.quantity))
        {
            Some((Closed::Returned, _)) => Ok(Vec::new()),
            Some((Closed::Committed, quantity)) => {
                let on_hand = self
                    .on_hand
                    .checked_add(quantity)
                    .ok_or(StockItemError::CountOverflow)?;
                Ok(vec![StockItemEvent::ReservationReturned {
                    reservation_id,
                    quantity,
                    on_hand,
                }])
            }
            Some((Closed::Released, _)) => Err(StockItemError::ReservationReleased(reservation_id)),
            _ if self.reservations.contains_key(&reservation_id) => {
                Err(StockItemError::ReservationNotCommitted(reservation_id))
            }
            _ => Err(StockItemError::ReservationNotFound(reservation_id)),
        }
    }

    /// Moves `id` from the open holds (or the remembered sales, for a return) to the closed.
    fn close(&mut self, id: ReservationId, how: Closed, quantity: u32) {
        let expires_at = match self.reservations.remove(&id) {
            Some(held) => held.expires_at,
            // A return: the sale is remembered, or it would not have been accepted; an event
            // without either (hand-written) is kept from the latest hold seen.
            None => self
                .closed
                .get(&id)
                .map(|e| e.expires_at)
                .unwrap_or_default(),
        };
        self.closed.close(
            id,
            Ended {
                how,
                quantity,
                expires_at,
            },
        );
    }

    /// Threshold events for the availability change `before → after`.
    fn threshold_events(&self, before: u32, after: u32) -> Vec<StockItemEvent> {
        let mut events = Vec::new();
        let threshold = self.low_stock_threshold;
        if threshold > 0 && before > threshold && after <= threshold {
            events.push(StockItemEvent::LowStockReached {
                available: after,
                threshold,
            });
        }
        if before > 0 && after == 0 {
            events.push(StockItemEvent::StockDepleted);
        }
        events
    }
}

impl Aggregate for StockItem {
    const TYPE: &'static str = "stock_item";
    type Command = StockItemCommand;
    type Event = StockItemEvent;
    type Error = StockItemError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            StockItemCommand::Register { .. } => self.register(command)?,
            StockItemCommand::Restock { quantity } => self.restock(quantity)?,
            StockItemCommand::Adjust { delta, reason } => self.adjust(delta, reason)?,
            StockItemCommand::Reserve {
                reservation_id,
                quantity,
                owner,
                expires_at,
            } => self.reserve(reservation_id, quantity, owner, expires_at)?,
            StockItemCommand::CommitReservation { reservation_id } => {
                self.commit(reservation_id)?
            }
            StockItemCommand::ReleaseReservation {
                reservation_id,
                reason,
            } => self.release(reservation_id, reason)?,
            StockItemCommand::ReturnReservation { reservation_id } => {
                self.return_sold(reservation_id)?
            }
        };
        if events.is_empty() {
            return Ok(());
        }
        let before = self.available();
        let registering = !self.is_registered();
        for event in events {
            sink.write(event, self).await;
        }
        if !registering {
            for event in self.threshold_events(before, self.available()) {
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            StockItemEvent::StockItemRegistered {
                sku,
                name,
                kind,
                on_hand,
                low_stock_threshold,
                unit_price,
            } => {
                self.sku = Some(sku);
                self.name = name;
                self.kind = Some(kind);
                self.on_hand = on_hand;
                self.low_stock_threshold = low_stock_threshold;
                self.unit_price = Some(unit_price);
            }
            StockItemEvent::StockRestocked { on_hand, .. }
            | StockItemEvent::StockAdjusted { on_hand, .. } => self.on_hand = on_hand,
            StockItemEvent::StockReserved {
                reservation_id,
                quantity,
                owner,
                expires_at,
            } => {
                self.closed.saw_hold(expires_at);
                self.reservations.insert(
                    reservation_id,
                    Reservation {
                        quantity,
                        owner,
                        expires_at,
                    },
                );
            }
            StockItemEvent::ReservationCommitted {
                reservation_id,
                quantity,
                on_hand,
            } => {
                self.close(reservation_id, Closed::Committed, quantity);
                self.on_hand = on_hand;
            }
            StockItemEvent::ReservationReturned {
                reservation_id,
                quantity,
                on_hand,
            } => {
                self.close(reservation_id, Closed::Returned, quantity);
                self.on_hand = on_hand;
            }
            StockItemEvent::ReservationReleased {
                reservation_id,
                quantity,
                ..
            } => self.close(reservation_id, Closed::Released, quantity),
            StockItemEvent::LowStockReached { .. } | StockItemEvent::StockDepleted => {}
        }
    }
}
