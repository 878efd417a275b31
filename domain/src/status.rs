//! The shared shape of the Order and Booking status machines.

/// A status enum whose legal moves are listed in one table.
pub trait StatusMachine: Copy + Eq {
    /// Whether `self → to` is a legal transition (not counting staying in place).
    fn can_move_to(self, to: Self) -> bool;
}

/// What a requested status change amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Already in the target status: a repeated command (a saga replay) records nothing.
    AlreadyThere,
    /// A legal move: record the event.
    Allowed,
    /// Forbidden by the table: refuse.
    Illegal,
}

/// Classifies the move `from → to`.
///
/// Repeats are not errors so that process managers can re-issue a command after a crash without
/// tracking whether the first attempt landed.
pub fn decide<S: StatusMachine>(from: S, to: S) -> Transition {
    if from == to {
        Transition::AlreadyThere
    } else if from.can_move_to(to) {
        Transition::Allowed
    } else {
        Transition::Illegal
    }
}
