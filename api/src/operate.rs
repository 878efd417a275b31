//! The operator subcommands: `rebuild`, `projections [verify]`, `dead-letters`.

use anyhow::{Context, bail};
use feed::SubscriptionOptions;
use feed::dead_letters::{self, Action, Requested};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use projections::read_model::Projection;
use projections::rebuild::{self, Phase, Progress};
use projections::verify::{self, Difference, Report};
use projections::{catalog, status};
use sqlx::PgPool;
use std::io::Write;
use std::time::Duration;
use tokio::sync::watch;

/// The projections a `NAME|--all` argument names.
fn targets(name: Option<&str>, all: bool) -> anyhow::Result<Vec<&'static dyn Projection>> {
    Ok(match (name, all) {
        (_, true) => catalog::all().to_vec(),
        (Some(name), false) => vec![catalog::find(name).with_context(|| {
            format!(
                "no projection {name}; known: {}",
                catalog::names().join(", ")
            )
        })?],
        (None, false) => bail!(
            "name a projection ({}) or pass --all",
            catalog::names().join(", ")
        ),
    })
}

/// `reserva rebuild NAME|--all`: rebuilds side by side, one progress bar each.
pub async fn rebuild(pool: &PgPool, name: Option<&str>, all: bool) -> anyhow::Result<()> {
    let targets = targets(name, all)?;
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:>12} {msg:>11} [{bar:30}] {human_pos}/{human_len} {per_sec:>14} ETA {eta}",
    )
    .context("progress template")?
    .progress_chars("=> ");
    let runs = targets.into_iter().map(|projection| {
        let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
        bar.set_prefix(projection.name());
        async move {
            let (sender, receiver) = watch::channel(Progress {
                phase: Phase::Preparing,
                applied: 0,
                total: 0,
            });
            let follow = tokio::spawn(follow(bar.clone(), receiver));
            let result = rebuild::rebuild(pool, projection, &sender).await;
            follow.abort();
            match &result {
                Ok(report) => bar.finish_with_message(format!(
                    "{} events in {:.1}s = {:.0} events/s",
                    report.events,
                    report.elapsed.as_secs_f64(),
                    report.events_per_second()
                )),
                Err(error) => bar.abandon_with_message(format!("failed: {error}")),
            }
            result.map(|report| (projection.name(), report))
        }
    });
    let results = futures::future::join_all(runs).await;
    let mut failed = 0;
    for result in results {
        match result {
            Ok((name, report)) => println!(
                "{name}: {} events in {:.2}s = {:.0} events/s",
                report.events,
                report.elapsed.as_secs_f64(),
                report.events_per_second()
            ),
            Err(error) => {
                failed += 1;
                eprintln!("{error}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} rebuild(s) failed; their live tables are untouched");
    }
    Ok(())
}

async fn follow(bar: ProgressBar, mut progress: watch::Receiver<Progress>) {
    loop {
        let now = *progress.borrow_and_update();
        bar.set_length(now.total.max(now.applied));
        bar.set_position(now.applied);
        bar.set_message(format!("{:?}", now.phase).to_lowercase());
        if progress.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `reserva projections`: position and lag of each.
pub async fn projections(pool: &PgPool) -> anyhow::Result<()> {
    println!(
        "{:<12} {:>12} {:>10} {:>10} {:>12}  updated",
        "projection", "position", "lag", "lag_s", "dead_letters"
    );
    for s in status::all(pool).await? {
        println!(
            "{:<12} {:>12} {:>10} {:>10.3} {:>12}  {}",
            s.name,
            s.position,
            s.lag_events,
            s.lag_seconds,
            s.open_dead_letters,
            s.updated_at
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
        );
    }
    Ok(())
}

/// `reserva dead-letters list`.
pub async fn list_dead_letters(
    pool: &PgPool,
    subscription: Option<&str>,
    all: bool,
) -> anyhow::Result<()> {
    let letters = dead_letters::list(pool, subscription, !all, 1000).await?;
    println!(
        "{:>6} {:<12} {:<10} {:<38} {:>10} {:<10} {:>8}  error",
        "id", "subscription", "type", "aggregate", "position", "status", "attempts"
    );
    for l in letters {
        println!(
            "{:>6} {:<12} {:<10} {:<38} {:>10} {:<10} {:>8}  {}",
            l.id,
            l.subscription,
            l.aggregate_type,
            l.aggregate_id,
            l.global_position,
            l.status,
            l.attempts,
            l.error.unwrap_or_default()
        );
    }
    Ok(())
}

/// `reserva dead-letters retry|skip ID`: records the request and, when no service runs the
/// subscription, carries it out at once.
pub async fn request_dead_letter(pool: &PgPool, id: i64, action: Action) -> anyhow::Result<()> {
    let letter = match dead_letters::request(pool, id, action).await? {
        Requested::Accepted(letter) => letter,
        Requested::NotFound => bail!("no dead letter {id}"),
        Requested::Closed(letter) => bail!("dead letter {id} is already {}", letter.status),
    };
    let projection = catalog::find(&letter.subscription)
        .with_context(|| format!("no projection {}", letter.subscription))?;
    let handler = projection.handler(projection.table());
    if feed::retry::serve_if_unattended(pool, handler.as_ref(), &SubscriptionOptions::default())
        .await?
    {
        let after = dead_letters::list(pool, Some(&letter.subscription), false, 1000).await?;
        let now = after.iter().find(|l| l.id == id).map(|l| l.status.as_str());
        println!("dead letter {id}: {}", now.unwrap_or("gone"));
    } else {
        println!(
            "dead letter {id}: {:?} requested; the running service carries it out",
            action
        );
    }
    Ok(())
}

/// What `reserva projections verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    /// One report per projection verified.
    pub reports: Vec<Report>,
    /// Projections that could not be verified.
    pub failed: usize,
}

impl Verified {
    /// The process exit code: 0 when every model equals the events, 1 when one differed
    /// (even if `--repair` fixed it), 2 when one could not be checked.
    pub fn exit_code(&self) -> u8 {
        if self.failed > 0 {
            crate::cli::EXIT_ERROR
        } else if self.reports.iter().any(|r| !r.is_clean()) {
            1
        } else {
            0
        }
    }
}

/// `reserva projections verify NAME|--all [--repair]`: folds each model from the event
/// store and compares it with its table, one after the other, with a progress bar each (on
/// a terminal); prints every difference and a summary per projection to `out`.
///
/// # Errors
/// An unknown name, or `out` cannot be written. A projection that cannot be verified is
/// counted in [`Verified::failed`] and reported on `out`.
pub async fn verify(
    pool: &PgPool,
    name: Option<&str>,
    all: bool,
    repair: bool,
    out: &mut impl Write,
) -> anyhow::Result<Verified> {
    let style = ProgressStyle::with_template(
        "{prefix:>17} {msg:>9} [{bar:30}] {human_pos}/{human_len} {per_sec:>14} ETA {eta}",
    )
    .context("progress template")?
    .progress_chars("=> ");
    let mut verified = Verified::default();
    for projection in targets(name, all)? {
        let bar = ProgressBar::new(0).with_style(style.clone());
        bar.set_prefix(projection.name());
        let (sender, receiver) = watch::channel(verify::Progress::default());
        let follow = tokio::spawn(follow_verify(bar.clone(), receiver));
        let result = verify::verify(pool, projection, repair, &sender).await;
        follow.abort();
        bar.finish_and_clear();
        match result {
            Ok(report) => {
                print_report(&report, out)?;
                verified.reports.push(report);
            }
            Err(error) => {
                verified.failed += 1;
                writeln!(out, "{}: could not verify: {error}", projection.name())?;
            }
        }
    }
    Ok(verified)
}

async fn follow_verify(bar: ProgressBar, mut progress: watch::Receiver<verify::Progress>) {
    loop {
        let now = *progress.borrow_and_update();
        match now.phase {
            verify::Phase::Folding => {
                bar.set_length(now.total.max(now.events));
                bar.set_position(now.events);
            }
            _ => {
                bar.set_length(now.rows.max(1));
                bar.set_position(now.rows);
            }
        }
        bar.set_message(format!("{:?}", now.phase).to_lowercase());
        if progress.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One projection's differences, one line each, then its summary.
fn print_report(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    for difference in &report.differences {
        match difference {
            Difference::Missing { id, .. } => {
                writeln!(
                    out,
                    "  missing  {id}  (the events make it; {} lacks it)",
                    report.table
                )?;
            }
            Difference::Extra { id, found } => {
                writeln!(out, "  extra    {id}  (no events make it): {found}")?;
            }
            Difference::Differs { id, columns } => {
                let columns: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{}: expected {}, found {}", c.column, c.expected, c.found))
                    .collect();
                writeln!(out, "  differs  {id}  {}", columns.join("; "))?;
            }
        }
    }
    let (missing, extra, differing) = report.counts();
    let verdict = if report.is_clean() {
        "equals the events".to_owned()
    } else {
        format!(
            "{} differences ({missing} missing, {extra} extra, {differing} differing){}",
            report.differences.len(),
            if report.repaired > 0 {
                format!("; repaired {} rows in one transaction", report.repaired)
            } else {
                String::new()
            }
        )
    };
    writeln!(
        out,
        "{}: {verdict} — checkpoint {}, {} events folded, {} rows compared in {:.2} s \
         ({:.0} events/s, {:.0} rows/s)",
        report.projection,
        report.checkpoint.global_position,
        report.events,
        report.rows,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.rows_per_second(),
    )
}
