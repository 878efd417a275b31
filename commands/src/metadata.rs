//! Who asked for a command and why, stored with every event it produces.

use std::collections::HashMap;
use uuid::Uuid;

use feed::trace_context;

/// Metadata copied onto each event of a command.
///
/// With these four keys one request can be followed through every aggregate it touched: the
/// correlation id is shared by everything a request caused, the causation id names the direct
/// cause (a request or an event a saga reacted to). `traceparent` joins the same chain to the
/// distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMetadata {
    /// Shared by every command one request caused (from `X-Correlation-ID`, or new).
    pub correlation_id: String,
    /// The request id, or the id of the event a saga reacted to.
    pub causation_id: String,
    /// Who: the token subject, `anonymous`, or `saga:<name>` / `system:<job>`.
    pub actor: String,
    /// The HTTP request id, empty for background work.
    pub request_id: String,
    /// The W3C `traceparent` of the span that issued the command, so whoever handles its
    /// events continues the same trace. Absent (and not stored) when the issuer ran in no
    /// traced span; events stored before it existed have none.
    pub traceparent: Option<String>,
}

impl CommandMetadata {
    /// Metadata for a command caused directly by a request (traced as the caller's span).
    pub fn for_request(correlation_id: String, request_id: String, actor: String) -> Self {
        Self {
            correlation_id,
            causation_id: request_id.clone(),
            actor,
            request_id,
            traceparent: trace_context::current_traceparent(),
        }
    }

    /// Metadata for work with no request behind it (CLI, seeding, benchmarks, webhooks),
    /// traced as the caller's span when it runs in one.
    pub fn system(actor: &str) -> Self {
        let id = Uuid::new_v4().to_string();
        Self {
            correlation_id: id.clone(),
            causation_id: id,
            actor: actor.to_owned(),
            request_id: String::new(),
            traceparent: trace_context::current_traceparent(),
        }
    }

    /// The same metadata traced as `traceparent` (`None` keeps the current one).
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        if traceparent.is_some() {
            self.traceparent = traceparent;
        }
        self
    }

    /// The map postgres-es stores in the `metadata` column.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
            ("actor".to_owned(), self.actor.clone()),
            ("request_id".to_owned(), self.request_id.clone()),
        ]);
        if let Some(traceparent) = &self.traceparent {
            map.insert(trace_context::TRACEPARENT.to_owned(), traceparent.clone());
        }
        map
    }
}
