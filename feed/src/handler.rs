//! What a subscriber does with events, and how its failures are told apart.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::FeedEvent;

/// What a subscriber does with events.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The subscription's name: its checkpoint row, its lock, its dead letters.
    fn name(&self) -> &str;

    /// Whether this handler cares about an aggregate type. Events of other types still move
    /// the checkpoint; they are just not handed over.
    fn wants(&self, aggregate_type: &str) -> bool;

    /// Whether an append of `aggregate_type` should wake this subscription at once: the types
    /// it wants, and those whose positions readers compare with its checkpoint (a joined view
    /// asks the payments model to have passed an order's last event). Any other append waits
    /// for the subscription's next poll, so it costs a command nothing.
    fn follows(&self, aggregate_type: &str) -> bool {
        self.wants(aggregate_type)
    }

    /// The rows of these aggregates changed in a transaction that has just committed. Called
    /// before the runner reports its progress, so that a handler keeping rows in memory drops
    /// them before any reader that waited for that progress looks.
    fn committed(&self, _aggregate_ids: &[&str]) {}

    /// This process's runner took (`running`) or lost the subscription's lease, or found its
    /// checkpoint moved by another writer (a rebuild's swap): whatever the handler keeps in
    /// memory about the rows is void. Only a handler whose runner holds the lease knows every
    /// write as it commits.
    fn reset(&self, _running: bool) {}

    /// Applies `events` (in feed order, all wanted) inside the runner's open transaction.
    ///
    /// The connection is inside a transaction (or a savepoint of one) that the runner owns:
    /// the handler must neither commit nor roll it back. It may open savepoints of its own
    /// (`Connection::begin` on it nests).
    ///
    /// # Errors
    /// [`HandlerError`]; the runner rolls back everything the call wrote.
    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError>;
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event cannot be applied as it is (undecodable, or a rule of the read side broke).
    #[error("{0}")]
    Rejected(String),
    /// The database refused or failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Something the handler depends on (the event store through the command bus, a provider)
    /// is briefly unreachable: retried without counting towards parking.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HandlerError {
    /// Whether the failure is about the connection or the server's state rather than the
    /// event, so it must not count towards parking the event.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Rejected(_) => false,
            Self::Database(error) => is_transient(error),
            Self::Unavailable(_) => true,
        }
    }
}

/// Connection losses, shutdowns, resource exhaustion, serialization failures and deadlocks
/// (SQLSTATE classes 08, 57, 53, 40) say nothing about the event being handled.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| ["08", "57", "53", "40"].iter().any(|c| code.starts_with(c))),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Why a runner's session ended: the connection or something a handler needs is gone. The
/// runner reconnects and carries on from its stored checkpoint; nothing it did was kept
/// without its checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The database failed (connection lost, server shutting down, …).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A handler reported a transient failure.
    #[error("a handler's dependency is unavailable: {0}")]
    Unavailable(String),
}

impl From<HandlerError> for RunnerError {
    fn from(error: HandlerError) -> Self {
        match error {
            HandlerError::Database(error) => Self::Database(error),
            HandlerError::Rejected(message) | HandlerError::Unavailable(message) => {
                Self::Unavailable(message)
            }
        }
    }
}
