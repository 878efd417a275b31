//! `saga_instances` and `saga_steps`: a saga's state and its history.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

use super::process::{Effect, SagaData, SagaState};
use feed::HandlerError;

/// A saga as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its state.
    pub data: SagaData,
    /// Steps recorded so far.
    pub version: i32,
    /// When its first event was handled (the start of `reserva_saga_duration_seconds`).
    pub created_at: DateTime<Utc>,
}

/// One handled event of a saga's history.
#[derive(Debug, Clone)]
pub struct Step {
    /// The event's global position.
    pub global_position: i64,
    /// The event's type.
    pub event_type: String,
    /// The state after it.
    pub state: SagaState,
    /// What was done about it.
    pub effects: Vec<Effect>,
}

/// A saga after a batch.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The saga (the order's or booking's id).
    pub id: Uuid,
    /// Its new state.
    pub data: SagaData,
    /// Steps recorded before this batch.
    pub version: i32,
    /// This batch's steps.
    pub steps: Vec<Step>,
}

fn undecodable(id: Uuid, error: &serde_json::Error) -> HandlerError {
    HandlerError::Rejected(format!("saga {id} state does not decode: {error}"))
}

/// The stored sagas among `ids`.
///
/// # Errors
/// The query failed or a stored state does not decode.
pub async fn load(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Stored>, HandlerError> {
    let rows: Vec<(Uuid, String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, data::text, version, created_at FROM saga_instances WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, data, version, created_at)| {
            let data = serde_json::from_str(&data).map_err(|e| undecodable(id, &e))?;
            Ok((
                id,
                Stored {
                    data,
                    version,
                    created_at,
                },
            ))
        })
        .collect()
}

/// `(payment, saga, saga_type)` of the sagas that created any of `payments`.
///
/// # Errors
/// The query failed.
pub async fn by_payment(
    conn: &mut PgConnection,
    payments: &[domain::PaymentId],
) -> Result<Vec<(Uuid, Uuid, String)>, sqlx::Error> {
    let ids: Vec<Uuid> = payments.iter().map(|p| p.0).collect();
    sqlx::query_as(
        "SELECT payment_id, id, saga_type FROM saga_instances WHERE payment_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
}

/// Writes the sagas' new states and appends their steps, two statements whatever the count.
///
/// # Errors
/// The statements failed.
pub async fn save(
    conn: &mut PgConnection,
    saga_type: &str,
    sagas: &[Updated],
) -> Result<(), HandlerError> {
    if sagas.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(sagas.len());
    let mut states = Vec::with_capacity(sagas.len());
    let mut datas = Vec::with_capacity(sagas.len());
    let mut versions = Vec::with_capacity(sagas.len());
    let mut payments = Vec::with_capacity(sagas.len());
    let mut due = Vec::with_capacity(sagas.len());
    let (mut step_sagas, mut numbers, mut positions, mut types, mut step_states, mut effects) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for saga in sagas {
        let encode = |e: serde_json::Error| {
            HandlerError::Rejected(format!("saga {} does not encode: {e}", saga.id))
        };
        ids.push(saga.id);
        states.push(saga.data.state.as_str());
        datas.push(serde_json::to_string(&saga.data).map_err(encode)?);
        let steps = i32::try_from(saga.steps.len()).unwrap_or(i32::MAX);
        versions.push(saga.version.saturating_add(steps));
        payments.push(saga.data.payment_id.map(|p| p.0));
        due.push(saga.data.due_at());
        for (n, step) in (saga.version + 1..).zip(&saga.steps) {
            step_sagas.push(saga.id);
            numbers.push(n);
            positions.push(step.global_position);
            types.push(step.event_type.as_str());
            step_states.push(step.state.as_str());
            effects.push(serde_json::to_string(&step.effects).map_err(encode)?);
        }
    }
    sqlx::query(
        "INSERT INTO saga_instances (id, saga_type, state, data, version, payment_id, due_at) \
         SELECT id, $2, state, data::jsonb, version, payment_id, due_at \
         FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::int[], $6::uuid[], \
                     $7::timestamptz[]) \
              AS t(id, state, data, version, payment_id, due_at) \
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, data = EXCLUDED.data, \
             version = EXCLUDED.version, payment_id = EXCLUDED.payment_id, \
             due_at = EXCLUDED.due_at, updated_at = now()",
    )
    .bind(&ids)
    .bind(saga_type)
    .bind(&states)
    .bind(&datas)
    .bind(&versions)
    .bind(&payments)
    .bind(&due)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO saga_steps (saga_id, step, global_position, event_type, state, commands) \
         SELECT saga_id, step, global_position, event_type, state, commands::jsonb \
         FROM UNNEST($1::uuid[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[]) \
              AS t(saga_id, step, global_position, event_type, state, commands)",
    )
    .bind(&step_sagas)
    .bind(&numbers)
    .bind(&positions)
    .bind(&types)
    .bind(&step_states)
    .bind(&effects)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A saga as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SagaView {
    /// The order's or booking's id.
    pub id: Uuid,
    /// `order_saga` or `booking_saga`.
    pub saga_type: String,
    /// Current state.
    pub state: String,
    /// Everything it remembers.
    pub data: serde_json::Value,
    /// Steps so far.
    pub version: i32,
    /// Its payment, once created.
    pub payment_id: Option<Uuid>,
    /// First handled event.
    pub created_at: DateTime<Utc>,
    /// Last handled event.
    pub updated_at: DateTime<Utc>,
    /// Every step, oldest first.
    pub history: Vec<StepView>,
}

/// One step of [`SagaView::history`].
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepView {
    /// 1-based.
    pub step: i32,
    /// The event's global position.
    pub global_position: i64,
    /// The event's type.
    pub event_type: String,
    /// The state after it.
    pub state: String,
    /// Commands and provider calls with their outcomes.
    pub commands: serde_json::Value,
    /// When the step was stored.
    pub recorded_at: DateTime<Utc>,
}

/// The saga of order or booking `id`, with its history.
///
/// # Errors
/// The queries failed.
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<SagaView>, sqlx::Error> {
    type Row = (
        Uuid,
        String,
        String,
        serde_json::Value,
        i32,
        Option<Uuid>,
        DateTime<Utc>,
        DateTime<Utc>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, saga_type, state, data, version, payment_id, created_at, updated_at \
         FROM saga_instances WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some((id, saga_type, state, data, version, payment_id, created_at, updated_at)) = row
    else {
        return Ok(None);
    };
    let history = sqlx::query_as(
        "SELECT step, global_position, event_type, state, commands, recorded_at \
         FROM saga_steps WHERE saga_id = $1 ORDER BY step",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(SagaView {
        id,
        saga_type,
        state,
        data,
        version,
        payment_id,
        created_at,
        updated_at,
        history,
    }))
}

/// `(saga_type, state, count)` of every saga, for the `reserva_saga_instances` gauge.
///
/// # Errors
/// The query failed.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT saga_type, state, count(*) FROM saga_instances GROUP BY 1, 2")
        .fetch_all(pool)
        .await
}
