//! `reserva audit …` and `reserva replay`: what happened, what it looked like then, what one
//! request caused, whether anyone rewrote it, and whether today's code still reads it.

use anyhow::{Context, bail};
use chrono::DateTime;
use commands::audit::history::{self, AsOf, AuditEvent, TraceNode, TraceRoot};
use commands::audit::replay::{self, Replayed, Scope};
use commands::audit::{self, FindingKind, Verified};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgPool;
use std::io::Write;

use crate::configuration::AuditSettings;

/// How `audit stream` and `audit trace` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One aligned line per event.
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line (for `jq`, or a log shipper).
    Ndjson,
}

/// The aggregate type named on the command line, checked.
fn aggregate_type(name: &str) -> anyhow::Result<&'static str> {
    history::TYPES
        .into_iter()
        .find(|t| *t == name)
        .with_context(|| {
            format!(
                "no aggregate type {name}; known: {}",
                history::TYPES.join(", ")
            )
        })
}

/// `--at`: a global position (digits) or an RFC 3339 time.
///
/// # Errors
/// Neither.
pub fn parse_as_of(raw: &str) -> Result<AsOf, String> {
    if let Ok(position) = raw.parse::<i64>() {
        return Ok(AsOf::Position(position));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| AsOf::Time(t.to_utc()))
        .map_err(|e| format!("{raw:?} is neither a global position nor an RFC 3339 time ({e})"))
}

/// `reserva audit stream TYPE ID`: every event of one aggregate.
///
/// # Errors
/// An unknown type, the database, or `out`.
pub async fn stream(
    pool: &PgPool,
    kind: &str,
    id: &str,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let events = history::stream(pool, aggregate_type(kind)?, id, i64::MAX, 0).await?;
    if events.is_empty() {
        bail!("no events for {kind} {id}");
    }
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&events)?)?,
        Format::Ndjson => {
            for event in &events {
                writeln!(out, "{}", serde_json::to_string(event)?)?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:>5} {:>10}  {:<32} {:<24} {:>7}  {:<24} payload",
                "seq", "position", "recorded_at", "event", "version", "actor"
            )?;
            for event in &events {
                writeln!(out, "{}", table_line(event, ""))?;
            }
        }
    }
    Ok(())
}

fn table_line(event: &AuditEvent, indent: &str) -> String {
    let actor = event
        .metadata
        .get("actor")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let payload = event
        .payload
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&event.payload);
    format!(
        "{:>5} {:>10}  {:<32} {:<24} {:>7}  {:<24} {indent}{payload}",
        event.sequence,
        event.global_position,
        event.recorded_at.to_rfc3339(),
        event.event_type,
        event.event_version,
        actor,
    )
}

/// `reserva audit as-of TYPE ID --at T`: the state then, replayed with today's code.
///
/// # Errors
/// An unknown type, no events by then, an event today's code cannot read, or `out`.
pub async fn as_of(
    pool: &PgPool,
    kind: &str,
    id: &str,
    at: AsOf,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let state = history::as_of(pool, aggregate_type(kind)?, id, at)
        .await?
        .with_context(|| format!("{kind} {id} had no events by {at:?}"))?;
    writeln!(out, "{}", serde_json::to_string_pretty(&state.state)?)?;
    writeln!(
        out,
        "as of sequence {} (position {}, recorded {})",
        state.sequence,
        state.global_position,
        state
            .recorded_at
            .map_or_else(String::new, |t| t.to_rfc3339())
    )?;
    Ok(())
}

/// `reserva audit trace CORRELATION_ID`: everything one request caused, as a tree.
///
/// # Errors
/// Nothing carries that correlation id, the database, or `out`.
pub async fn trace(
    pool: &PgPool,
    correlation: &str,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let roots = history::trace(pool, correlation).await?;
    if roots.is_empty() {
        bail!("no events carry correlation id {correlation}");
    }
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&roots)?)?,
        Format::Ndjson => {
            for root in &roots {
                writeln!(out, "{}", serde_json::to_string(root)?)?;
            }
        }
        Format::Table => {
            for TraceRoot {
                cause,
                actor,
                caused,
            } in &roots
            {
                writeln!(out, "{cause} ({})", actor.as_deref().unwrap_or("?"))?;
                for node in caused {
                    print_node(node, 1, out)?;
                }
            }
        }
    }
    Ok(())
}

fn print_node(node: &TraceNode, depth: usize, out: &mut impl Write) -> std::io::Result<()> {
    let event = &node.event;
    writeln!(
        out,
        "{:indent$}└ {}/{} #{} {} @{} ({})",
        "",
        event.aggregate_type,
        event.aggregate_id,
        event.sequence,
        event.event_type,
        event.global_position,
        event
            .metadata
            .get("actor")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(""),
        indent = depth * 2
    )?;
    for child in &node.caused {
        print_node(child, depth + 1, out)?;
    }
    Ok(())
}

/// A progress line on stderr for a walk over about `total` events.
fn progress_bar(pool_estimate: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(pool_estimate), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {human_pos}/~{human_len} events {per_sec:>14} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// The planner's estimate of the events table's rows (free, unlike `count(*)`).
async fn estimated_events(pool: &PgPool) -> u64 {
    sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE relname = 'events'")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .map_or(0, |n| n.max(0.0) as u64)
}

/// `reserva audit verify [--since P]`: every chain and checkpoint. Prints each finding and a
/// summary; the caller exits 1 when anything was found.
///
/// # Errors
/// The database, or `out`.
pub async fn verify(
    pool: &PgPool,
    since: i64,
    settings: Option<&AuditSettings>,
    out: &mut impl Write,
) -> anyhow::Result<Verified> {
    if settings.is_none() {
        writeln!(
            out,
            "audit verify: RESERVA_AUDIT__KEY is not set, so checkpoint signatures are not \
             checked (their heads and counts still are)"
        )?;
    }
    let bar = progress_bar(estimated_events(pool).await, "audit verify");
    let verified = audit::verify(pool, since, settings.map(|s| &s.key), |n| {
        bar.set_position(n)
    })
    .await
    .context("verifying the event store")?;
    bar.finish_and_clear();
    for finding in &verified.findings {
        let kind = match finding.kind {
            FindingKind::Modified => "modified",
            FindingKind::Deleted => "deleted",
            FindingKind::Reordered => "reordered",
            FindingKind::Inserted => "inserted",
            FindingKind::Checkpoint => "checkpoint",
        };
        let at = finding
            .sequence
            .map_or_else(String::new, |s| format!(" #{s}"));
        let position = finding
            .global_position
            .map_or_else(String::new, |p| format!(" @{p}"));
        writeln!(
            out,
            "{kind:<10} {}/{}{at}{position}: {}",
            finding.aggregate_type, finding.aggregate_id, finding.detail
        )?;
    }
    writeln!(
        out,
        "audit verify: {} events in {:.1}s = {:.0} events/s, {} checkpoints; {}",
        verified.events,
        verified.elapsed.as_secs_f64(),
        verified.events_per_second(),
        verified.checkpoints,
        match verified.findings.len() {
            0 => "the store is as it was written".to_owned(),
            1 => "1 finding".to_owned(),
            n => format!("{n} findings"),
        }
    )?;
    Ok(verified)
}

/// `reserva audit sign`: signs a checkpoint of everything appended since the last one.
///
/// # Errors
/// No key configured, the database, or `out`.
pub async fn sign(
    pool: &PgPool,
    settings: Option<&AuditSettings>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let settings = settings.context(
        "RESERVA_AUDIT__KEY is not set: checkpoints are signed with it (at least 32 bytes)",
    )?;
    match audit::sign(pool, &settings.key).await? {
        Some(signed) => writeln!(
            out,
            "checkpoint {} signed: {} events of {} aggregates, up to {}",
            signed.id, signed.events, signed.aggregates, signed.upto
        )?,
        None => writeln!(out, "nothing appended since the last checkpoint")?,
    }
    Ok(())
}

/// `reserva replay TYPE ID | --all [--dry-run]`: today's code over the stored events. Prints
/// every problem and a summary; the caller exits 1 when anything was found.
///
/// # Errors
/// An unknown type, the database, or `out`.
pub async fn replay(
    pool: &PgPool,
    one: Option<(&str, &str)>,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<Replayed> {
    let scope = match one {
        Some((kind, id)) => Scope::One(aggregate_type(kind)?, id),
        None => Scope::All { dry_run },
    };
    let bar = progress_bar(estimated_events(pool).await, "replay");
    let replayed = replay::replay(pool, scope, |n| bar.set_position(n))
        .await
        .context("replaying the event store")?;
    bar.finish_and_clear();
    for problem in &replayed.problems {
        writeln!(
            out,
            "{:<16} {}/{} #{} {}: {}",
            serde_json::to_value(problem.kind)?
                .as_str()
                .unwrap_or_default(),
            problem.aggregate_type,
            problem.aggregate_id,
            problem.sequence,
            problem.event_type.as_deref().unwrap_or("snapshot"),
            problem.detail
        )?;
    }
    if replayed.aggregates == 0 && one.is_some() {
        bail!("no events for that aggregate");
    }
    writeln!(
        out,
        "replay: {} aggregates, {} events, {} snapshots compared in {:.1}s; {}{}",
        replayed.aggregates,
        replayed.events,
        replayed.snapshots,
        replayed.elapsed.as_secs_f64(),
        match replayed.problems.len() {
            0 => "today's code reads every event".to_owned(),
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        },
        if replayed.snapshots_dropped > 0 {
            format!(
                " ({} differing snapshots deleted)",
                replayed.snapshots_dropped
            )
        } else {
            String::new()
        }
    )?;
    Ok(replayed)
}
