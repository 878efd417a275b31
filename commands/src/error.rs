//! What can go wrong when executing a command, after conflicts have been retried.

use cqrs_es::AggregateError;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The outcome of a command that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused: a business rule or an invalid command.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept winning the race for this aggregate; nothing was written.
    #[error("concurrent updates kept conflicting after {attempts} attempts")]
    Conflict {
        /// How many times the command was decided.
        attempts: u32,
    },
    /// The event store could not be reached.
    #[error("event store unavailable")]
    Unavailable(#[source] BoxError),
    /// Stored events could not be read back, or another unexpected failure.
    #[error("unexpected event store failure")]
    Internal(#[source] BoxError),
}

impl<E: std::error::Error> CommandError<E> {
    /// Maps a framework error; `AggregateConflict` only reaches here once retries are spent.
    pub(crate) fn from_aggregate(error: AggregateError<E>, attempts: u32) -> Self {
        match error {
            AggregateError::UserError(e) => Self::Rejected(e),
            AggregateError::AggregateConflict => Self::Conflict { attempts },
            AggregateError::DatabaseConnectionError(e) => Self::Unavailable(e),
            AggregateError::DeserializationError(e) | AggregateError::UnexpectedError(e) => {
                Self::Internal(e)
            }
        }
    }

    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Self::Unavailable(Box::new(error)),
            other => Self::Internal(Box::new(other)),
        }
    }
}
