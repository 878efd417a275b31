//! `reserva`: parse the command line, start telemetry, dispatch, map the outcome to an exit
//! code (1 on failure; `reconcile`: 1 for discrepancies, 2 on failure).

use std::process::ExitCode;

use anyhow::Context;
use api::cli::{self, Audit, Cli, Command, DeadLetters, Projections};
use api::configuration::Settings;
use api::startup::Application;
use api::{audit, database, operate, seed, telemetry};
use clap::Parser;
use feed::dead_letters::Action;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = telemetry::init();
    // `reconcile` answers 1 for "discrepancies found", so its failures need a code of their own.
    let failure = match cli.command {
        Command::Reconcile
        | Command::Replay { .. }
        | Command::Audit(Audit::Verify { .. })
        | Command::Projections {
            command: Some(Projections::Verify { .. }),
        } => cli::EXIT_ERROR,
        _ => 1,
    };
    let code = match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::from(failure)
        }
    };
    // Flushes spans still waiting for export.
    drop(telemetry);
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Needs neither the database nor the rest of the configuration.
    if let Command::Token { sub, role, ttl } = &cli.command {
        println!("{}", cli::token(sub, *role, *ttl)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut settings = Settings::from_env().context("reading configuration")?;
    if let Command::Serve { role } = &cli.command {
        settings.role = *role;
    }
    let db = database::open(&settings).await?;
    let mut code = ExitCode::SUCCESS;
    let result = match cli.command {
        Command::Serve { .. } => serve(&settings, &db).await,
        Command::Migrate { revert_all } => migrate(&db, revert_all).await,
        Command::Rebuild { name, all } => {
            migrated(&db).await?;
            operate::rebuild(&db.pool, name.as_deref(), all).await
        }
        Command::Projections { command: None } => {
            migrated(&db).await?;
            operate::projections(&db.pool).await
        }
        Command::Projections {
            command: Some(Projections::Verify { name, all, repair }),
        } => {
            migrated(&db).await?;
            operate::verify(
                &db.pool,
                name.as_deref(),
                all,
                repair,
                &mut std::io::stdout(),
            )
            .await
            .map(|verified| code = ExitCode::from(verified.exit_code()))
        }
        Command::DeadLetters(command) => {
            migrated(&db).await?;
            match command {
                DeadLetters::List { subscription, all } => {
                    operate::list_dead_letters(&db.pool, subscription.as_deref(), all).await
                }
                DeadLetters::Retry { id } => {
                    operate::request_dead_letter(&db.pool, id, Action::Retry).await
                }
                DeadLetters::Skip { id } => {
                    operate::request_dead_letter(&db.pool, id, Action::Skip).await
                }
            }
        }
        Command::Audit(command) => {
            migrated(&db).await?;
            let mut out = std::io::stdout();
            match command {
                Audit::Stream {
                    aggregate_type,
                    id,
                    format,
                } => audit::stream(&db.pool, &aggregate_type, &id, format, &mut out).await,
                Audit::AsOf {
                    aggregate_type,
                    id,
                    at,
                } => audit::as_of(&db.pool, &aggregate_type, &id, at, &mut out).await,
                Audit::Trace {
                    correlation_id,
                    format,
                } => audit::trace(&db.pool, &correlation_id, format, &mut out).await,
                Audit::Verify { since } => {
                    audit::verify(&db.pool, since, settings.audit.as_ref(), &mut out)
                        .await
                        .map(|verified| {
                            code = ExitCode::from(u8::from(!verified.is_clean()));
                        })
                }
                Audit::Sign => audit::sign(&db.pool, settings.audit.as_ref(), &mut out).await,
            }
        }
        Command::Replay {
            aggregate_type,
            id,
            all: _,
            dry_run,
        } => {
            migrated(&db).await?;
            let one = aggregate_type.as_deref().zip(id.as_deref());
            audit::replay(&db.pool, one, dry_run, &mut std::io::stdout())
                .await
                .map(|replayed| code = ExitCode::from(u8::from(!replayed.is_clean())))
        }
        Command::Token { .. } => Ok(()),
        Command::Reconcile => {
            migrated(&db).await?;
            cli::reconcile(&settings, &db.pool, &mut std::io::stdout())
                .await
                .map(|reconciled| code = ExitCode::from(reconciled.exit_code()))
        }
        Command::Seed { products, slots } => {
            migrated(&db).await?;
            seed::run(&settings, &db.pool, products, slots, &mut std::io::stdout()).await
        }
    };
    db.pool.close().await;
    if let Some(cluster) = &db.cluster {
        cluster
            .stop()
            .await
            .context("stopping the private cluster")?;
    }
    result.map(|()| code)
}

/// Operator commands may run before the first `serve`: bring the schema up first.
async fn migrated(db: &database::Database) -> anyhow::Result<()> {
    commands::MIGRATOR
        .run(&db.pool)
        .await
        .context("running migrations")
}

async fn serve(settings: &Settings, db: &database::Database) -> anyhow::Result<()> {
    commands::MIGRATOR
        .run(&db.pool)
        .await
        .context("running migrations")?;
    if settings.auth.is_none() {
        tracing::warn!(
            "auth is off (neither RESERVA_AUTH__JWT_SECRET nor RESERVA_AUTH__JWKS_URL is set): every request has full rights"
        );
    }
    let app = Application::build(settings, db.pool.clone()).context("binding the HTTP port")?;
    tracing::info!(
        port = app.port(),
        role = settings.role.as_str(),
        "reserva listening"
    );
    app.run_until_stopped().await.context("serving HTTP")
}

async fn migrate(db: &database::Database, revert_all: bool) -> anyhow::Result<()> {
    if revert_all {
        commands::MIGRATOR.undo(&db.pool, 0).await?;
        tracing::info!("all migrations reverted");
    } else {
        commands::MIGRATOR.run(&db.pool).await?;
        tracing::info!("migrations applied");
    }
    Ok(())
}
