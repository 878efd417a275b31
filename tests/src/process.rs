//! [`ServeProcess`]: the real `reserva serve` binary as a child process on a test database, for
//! tests that need several instances as a deployment runs them (each its own process, pool,
//! wake-ups and background work) or that kill one with SIGKILL.

use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::{Child, Command};

use crate::{TestDatabase, eventually};

/// One `reserva serve` process; killed when dropped.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

impl ServeProcess {
    /// Starts `reserva serve --role <role>` on `database` (already migrated) with rate limits
    /// and auth off, quick polls, webhooks signed with [`crate::WEBHOOK_SECRET`], and `env` on
    /// top; returns once it answers `/health/live`.
    pub async fn start(database: &TestDatabase, role: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(reserva_binary());
        command
            .args(["serve", "--role", role])
            .env("DATABASE_URL", database.url())
            .env("RESERVA_HTTP__PORT", port.to_string())
            .env("RESERVA_HTTP__WORKERS", "1")
            .env("RESERVA_DB__MAX_CONNECTIONS", "6")
            .env("RESERVA_RATE_LIMIT__ENABLED", "false")
            .env("RESERVA_STRIPE__WEBHOOK_SECRET", crate::WEBHOOK_SECRET)
            .env("RESERVA_FEED__POLL_INTERVAL_MS", "50")
            .env("RESERVA_DEADLINES__INTERVAL_MS", "1000")
            .env_remove("NATS_URL")
            .env_remove("REDIS_URL")
            .env_remove("RESERVA_AUTH__JWT_SECRET")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start reserva serve");
        let address = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(&format!("{address} to answer"), || async {
            let live = http.get(format!("{address}/health/live")).send().await;
            live.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
        Self { child, address }
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

/// Runs `reserva <args>` to its end in an environment of `env` only (nothing inherited, and
/// a `DATABASE_URL` nothing answers, so a command that gets past its configuration fails fast
/// rather than starting a cluster), for tests of what the binary refuses. Panics after 30 s.
pub async fn run_reserva(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(reserva_binary());
    command
        .args(args)
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .expect("reserva to exit within 30 s")
        .expect("run reserva")
}

/// The `reserva` binary cargo built beside this test binary (`target/<profile>/reserva`;
/// `cargo test --workspace` builds it).
fn reserva_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("reserva");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test --workspace` builds it",
        binary.display()
    );
    binary
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
