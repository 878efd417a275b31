//! Read models of Reserva, built by projectors from the ordered event feed.
//!
//! Not built yet: until the feed and its subscriptions exist, queries read the aggregates
//! through `commands::CommandBus::load`. The crate is in the workspace so the dependency
//! direction (`domain` ← `commands` ← `projections` ← `api`) is fixed from the start.
//!
//! # Rules this crate keeps
//! Projectors never issue commands or call out; read models are never cqrs-es inline queries.
