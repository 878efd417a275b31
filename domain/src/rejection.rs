//! What every aggregate error tells its callers besides its message.

/// How a refusal should be treated by whoever reports it.
///
/// Kept free of HTTP so the domain does not know its transport; `api` maps each kind to one
/// status code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The aggregate the command addresses does not exist.
    NotFound,
    /// The command is well-formed but the current state forbids it (a business conflict).
    Conflict,
    /// The command itself is invalid, whatever the state.
    Invalid,
}

/// An aggregate's refusal with a stable machine-readable code.
///
/// The code is part of the public contract (clients branch on it), so it never changes once
/// released, even if the message does.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// Stable snake_case code, e.g. `"insufficient_stock"`.
    fn code(&self) -> &'static str;
    /// How the refusal should be classified.
    fn kind(&self) -> RejectionKind;
}
