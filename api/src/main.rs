//! `reserva`: parse the command line, start telemetry, dispatch.

use anyhow::Context;
use api::cli::{Cli, Command};
use api::configuration::Settings;
use api::startup::Application;
use api::{database, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    let settings = Settings::from_env().context("reading configuration")?;
    let db = database::open(&settings).await?;
    let result = match cli.command {
        Command::Serve => serve(&settings, &db).await,
        Command::Migrate { revert_all } => migrate(&db, revert_all).await,
    };
    db.pool.close().await;
    if let Some(cluster) = &db.cluster {
        cluster
            .stop()
            .await
            .context("stopping the private cluster")?;
    }
    result
}

async fn serve(settings: &Settings, db: &database::Database) -> anyhow::Result<()> {
    commands::MIGRATOR
        .run(&db.pool)
        .await
        .context("running migrations")?;
    let app = Application::build(settings, db.pool.clone()).context("binding the HTTP port")?;
    tracing::info!(port = app.port(), "reserva listening");
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
