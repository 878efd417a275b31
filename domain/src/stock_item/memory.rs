//! How a StockItem remembers reservations that ended, without growing for ever.
//!
//! Sagas retry: a `Reserve` repeated after the hold was committed or released must change
//! nothing, a `CommitReservation` repeated after the sale must too, and a refund must put back
//! exactly the units sold. So closed reservations are remembered — but a best-selling SKU closes
//! thousands a day, and remembering all of them made its state and load time grow without bound.
//!
//! A closed reservation is remembered for [`RETAINED`] after its hold's `expires_at`, measured
//! against the latest `expires_at` the item has seen (the aggregate has no clock; holds are
//! taken "now + a few minutes", so the latest one is a close stand-in for now, and the same
//! events always forget the same reservations — replays and snapshots agree). Forgetting
//! raises a horizon: a `Reserve` whose `expires_at` is at or before it belongs to a hold that
//! was closed and forgotten, and is a no-op, so even a very late retry cannot re-take units.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::ReservationId;

/// How long a closed reservation is remembered past its hold's expiry: longer than any saga
/// retries, and than the refund window in which a sale's units may come back.
pub const RETAINED: Duration = Duration::days(120);

/// How a reservation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Closed {
    /// Sold; its units may come back with a refund.
    Committed,
    /// Returned to availability unsold.
    Released,
    /// Sold, then refunded and put back.
    Returned,
}

/// One remembered reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// How it ended.
    pub how: Closed,
    /// Units it held (those a return puts back).
    pub quantity: u32,
    /// When its hold would have lapsed: when it may be forgotten, [`RETAINED`] later.
    pub expires_at: DateTime<Utc>,
}

/// Closed reservations of the last [`RETAINED`], and the horizon of those forgotten.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedMemory {
    ended: BTreeMap<ReservationId, Ended>,
    /// `ended` by expiry, oldest first: what to forget next.
    by_expiry: BTreeSet<(DateTime<Utc>, ReservationId)>,
    /// The latest hold expiry seen.
    latest: Option<DateTime<Utc>>,
    /// The latest expiry among forgotten reservations.
    horizon: Option<DateTime<Utc>>,
}

impl ClosedMemory {
    /// How `id` ended, if it is remembered.
    pub fn get(&self, id: &ReservationId) -> Option<&Ended> {
        self.ended.get(id)
    }

    /// Whether a hold expiring at `expires_at` would be one already closed and forgotten.
    pub fn forgotten(&self, expires_at: DateTime<Utc>) -> bool {
        self.horizon.is_some_and(|horizon| expires_at <= horizon)
    }

    /// Reservations remembered.
    pub fn len(&self) -> usize {
        self.ended.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.ended.is_empty()
    }

    /// Records that `id` ended (again: a return after a commit keeps the sale's expiry).
    pub fn close(&mut self, id: ReservationId, ended: Ended) {
        if let Some(previous) = self.ended.insert(id, ended) {
            self.by_expiry.remove(&(previous.expires_at, id));
        }
        self.by_expiry.insert((ended.expires_at, id));
        self.forget_old();
    }

    /// A hold expiring at `expires_at` was taken: time has moved on at least that far.
    pub fn saw_hold(&mut self, expires_at: DateTime<Utc>) {
        if self.latest.is_none_or(|latest| expires_at > latest) {
            self.latest = Some(expires_at);
            self.forget_old();
        }
    }

    fn forget_old(&mut self) {
        let Some(cutoff) = self.latest.map(|latest| latest - RETAINED) else {
            return;
        };
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at >= cutoff {
                break;
            }
            self.by_expiry.pop_first();
            self.ended.remove(&id);
            self.horizon = Some(self.horizon.map_or(expires_at, |h| h.max(expires_at)));
        }
    }
}
