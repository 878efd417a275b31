//! Read models against the events: `reserva projections verify --all` as a subprocess when
//! the binary is given, else `GET /admin/projections/{name}/verify` for every projection.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// Differing rows (missing + extra + differing) per projection.
pub type Differences = Vec<(String, i64)>;

/// Runs `reserva projections verify --all` against `database_url`. The command exits 1 on
/// any difference; its summary lines are echoed, and the count is read from them.
///
/// # Errors
/// The binary cannot be run, or it failed for another reason than differences.
pub async fn by_command(reserva: &Path, database_url: &str) -> anyhow::Result<Differences> {
    let output = tokio::process::Command::new(reserva)
        .args(["projections", "verify", "--all"])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .with_context(|| format!("running {}", reserva.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("    | {line}");
    }
    match output.status.code() {
        Some(0) => Ok(vec![("projections verify --all".to_owned(), 0)]),
        Some(1) => {
            // Each difference is one line `  missing|extra|differs  <id> …`; at least one.
            let differing = stdout
                .lines()
                .map(str::trim_start)
                .filter(|l| {
                    ["missing ", "extra ", "differs "]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .count()
                .max(1);
            Ok(vec![(
                "projections verify --all".to_owned(),
                i64::try_from(differing).unwrap_or(i64::MAX),
            )])
        }
        _ => bail!(
            "projections verify failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Asks the service to verify each projection it lists.
///
/// # Errors
/// The service did not answer, or answered something other than a verify report.
pub async fn by_http(client: &reqwest::Client, url: &str) -> anyhow::Result<Differences> {
    let listed: Value = client
        .get(format!("{url}/admin/projections"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let names: Vec<String> = listed
        .as_array()
        .context("GET /admin/projections is not a list")?
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let mut differences = Vec::new();
    for name in names {
        let report: Value = client
            .get(format!("{url}/admin/projections/{name}/verify"))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("verifying {name}"))?
            .json()
            .await?;
        let count = ["missing", "extra", "differing"]
            .iter()
            .map(|k| report[*k].as_i64().unwrap_or(0))
            .sum();
        differences.push((
            format!("projection {name} rows differing from the events"),
            count,
        ));
    }
    Ok(differences)
}
