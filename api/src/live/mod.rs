//! Live views: server-sent events of an order's or booking's status and of a stock item's
//! availability, as they change.
//!
//! Every instance follows the feed with its own [`feed::Tail`] (no checkpoint, idle while no
//! one watches), so a client may connect to any instance. A stream starts from the store —
//! the order's or booking's whole history, the stock item's current state — and takes over
//! from the tail, telling the two apart by the aggregate's sequence: nothing is missed and
//! nothing is sent twice. Each message's `id` is the global position of the event that
//! caused it; a client that reconnects with `Last-Event-ID` gets exactly the messages after
//! it (browsers' `EventSource` does that by itself).
//!
//! A client that does not read fast enough fills its queue (`RESERVA_LIVE__BUFFER` messages)
//! and is disconnected; the feed never waits for it.
//!
//! # Layout
//! - [`views`]: what each aggregate shows ([`views::LiveView`]).
//! - [`stream`]: the event stream of one aggregate.

pub mod stream;
pub mod views;

pub use stream::{KEEP_ALIVE, open};
pub use views::LiveView;
