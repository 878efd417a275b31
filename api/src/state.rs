//! What every handler can reach.

use commands::CommandBus;

/// Shared application state (in `web::Data`).
pub struct AppState {
    /// Executes commands.
    pub bus: CommandBus,
}
