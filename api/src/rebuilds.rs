//! Rebuilds started over HTTP: they run in the background and report progress to
//! `GET /admin/projections`.

use projections::read_model::Projection;
use projections::rebuild::{self, Phase, Progress};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

use crate::views::operations::RebuildState;

/// The latest rebuild of each projection started by this process.
#[derive(Default, Clone)]
pub struct Rebuilds {
    runs: Arc<Mutex<HashMap<&'static str, Run>>>,
}

#[derive(Clone)]
struct Run {
    progress: watch::Receiver<Progress>,
    error: Arc<Mutex<Option<String>>>,
}

impl Rebuilds {
    /// Starts a rebuild of `projection` unless this process already runs one; another
    /// process's rebuild is refused by the rebuild itself (its lock) and shows as failed.
    pub fn start(&self, pool: PgPool, projection: &'static dyn Projection) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let name = projection.name();
        if runs
            .get(name)
            .is_some_and(|run| !matches!(run.progress.borrow().phase, Phase::Done | Phase::Failed))
        {
            return false;
        }
        let (sender, receiver) = watch::channel(Progress {
            phase: Phase::Preparing,
            applied: 0,
            total: 0,
        });
        let error = Arc::new(Mutex::new(None));
        runs.insert(
            name,
            Run {
                progress: receiver,
                error: error.clone(),
            },
        );
        tokio::spawn(async move {
            match rebuild::rebuild(&pool, projection, &sender).await {
                Ok(report) => tracing::info!(
                    projection = name,
                    events = report.events,
                    events_per_second = report.events_per_second(),
                    "rebuild finished"
                ),
                Err(e) => {
                    tracing::error!(projection = name, error = %e, "rebuild failed");
                    sender.send_modify(|p| p.phase = Phase::Failed);
                    *error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                }
            }
        });
        true
    }

    /// The latest rebuild of `name` started here, if any.
    pub fn state(&self, name: &str) -> Option<RebuildState> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.get(name).map(|run| {
            let error = run
                .error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            RebuildState::new(*run.progress.borrow(), error)
        })
    }
}
