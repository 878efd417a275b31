//! A private PostgreSQL cluster for machines with no `DATABASE_URL`: the README's first command
//! works on a fresh machine with nothing but the system's PostgreSQL binaries installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Why the private cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `initdb`/`pg_ctl` on this machine.
    #[error(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH): \
         install them with `apt-get install postgresql` (or `brew install postgresql`), \
         or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound,
    /// A PostgreSQL tool failed.
    #[error("{step} failed: {detail}")]
    Step {
        /// Which tool.
        step: &'static str,
        /// Its output.
        detail: String,
    },
    /// File system or process error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Tuning for the cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// `false` trades crash safety for speed: for throwaway test clusters only.
    pub durable: bool,
    /// `max_connections`.
    pub max_connections: u32,
    /// Loads `pg_stat_statements` (it must be installed beside the server), so the statements
    /// run are counted: the test suite's statement budget and profiling read it.
    pub statement_statistics: bool,
}

/// A running private cluster, shared by every process that starts or joins it (a `serve`, an
/// operator's `reserva rebuild`, concurrent test runs). Each registers itself in a `users`
/// folder beside the data; [`PrivateCluster::stop`] and the watchdog that covers a process
/// dying without stopping both stop the cluster only when no other registered process lives —
/// the last one out turns off the light.
#[derive(Debug)]
pub struct PrivateCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl PrivateCluster {
    /// Starts (creating on first use) the cluster in `dir`, or joins the one already running
    /// there.
    ///
    /// # Errors
    /// [`ClusterError`] when binaries are missing or `initdb` / `pg_ctl` fail.
    pub async fn start(dir: &Path, options: ClusterOptions) -> Result<Self, ClusterError> {
        let bin_dir = find_bin_dir().ok_or(ClusterError::BinariesNotFound)?;
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let mut cluster = Self {
            bin_dir,
            data_dir: dir.join("pgdata"),
            port: 0,
            as_postgres_user: is_root().await,
        };
        if cluster.as_postgres_user {
            cluster
                .run_plain("chown", &["-R", "postgres:postgres", &path_str(&dir)])
                .await?;
            if !cluster.postgres_can_enter(&dir).await {
                // A parent directory is closed to other users (a 0700 checkout, say): keep the
                // data where the postgres user can reach it, named after the requested path.
                let fallback = std::env::temp_dir().join(format!("reserva-{}", short_hash(&dir)));
                std::fs::create_dir_all(&fallback)?;
                cluster
                    .run_plain("chown", &["-R", "postgres:postgres", &path_str(&fallback)])
                    .await?;
                tracing::warn!(requested = %dir.display(), using = %fallback.display(),
                    "the postgres user cannot enter the data directory; using a temporary one");
                cluster.data_dir = fallback.join("pgdata");
            }
        }
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.initdb().await?;
        }
        cluster.join_or_start(options).await?;
        Ok(cluster)
    }

    /// Starts (creating on first use) a streaming replica of this cluster beside it, in folder
    /// `name` next to its data: a base backup taken with `-R`, so it follows the primary at
    /// once. For the tests and local trials of `RESERVA_DB__READ_URL`; a deployment's
    /// replicas are its operators' (see `docs/operations.md`).
    ///
    /// # Errors
    /// The backup or the start failed.
    pub async fn start_replica(&self, name: &str) -> Result<Self, ClusterError> {
        let dir = self
            .data_dir
            .parent()
            .map_or_else(|| PathBuf::from(name), |parent| parent.join(name));
        std::fs::create_dir_all(&dir)?;
        let mut replica = Self {
            bin_dir: self.bin_dir.clone(),
            data_dir: dir.join("pgdata"),
            port: 0,
            as_postgres_user: self.as_postgres_user,
        };
        if replica.as_postgres_user {
            replica
                .run_plain("chown", &["-R", "postgres:postgres", &path_str(&dir)])
                .await?;
        }
        if !replica.data_dir.join("PG_VERSION").exists() {
            let data = path_str(&replica.data_dir);
            let port = self.port.to_string();
            replica
                .run_pg(
                    "pg_basebackup",
                    &[
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-U",
                        "postgres",
                        "-D",
                        &data,
                        "-R",
                        "-X",
                        "stream",
                        "--no-sync",
                    ],
                )
                .await?;
        }
        let options = ClusterOptions {
            durable: true,
            max_connections: 100,
            statement_statistics: false,
        };
        replica.join_or_start(options).await?;
        Ok(replica)
    }

    /// Registers this process as a user of the data directory, then joins the postmaster
    /// already running on it or starts one on a free port.
    async fn join_or_start(&mut self, options: ClusterOptions) -> Result<(), ClusterError> {
        // Registered before looking for a running postmaster, so a process that is about to
        // stop the cluster sees this one and leaves it running.
        self.register()?;
        self.spawn_watchdog()?;
        if let Some(port) = self.running_port() {
            self.port = port;
            return Ok(());
        }
        self.port = free_port()?;
        self.pg_ctl_start(options).await
    }

    /// URL of the `postgres` database, for creating others.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// URL of database `name` on the cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the cluster (fast shutdown: open sessions are disconnected).
    ///
    /// # Errors
    /// `pg_ctl stop` failed.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let _ = std::fs::remove_file(self.users_dir().join(std::process::id().to_string()));
        if self.other_users_alive() {
            return Ok(());
        }
        let data = path_str(&self.data_dir);
        self.run_pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .await
    }

    async fn postgres_can_enter(&self, dir: &Path) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w", &path_str(dir)])
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    async fn initdb(&self) -> Result<(), ClusterError> {
        let data = path_str(&self.data_dir);
        self.run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .await
    }

    async fn pg_ctl_start(&self, options: ClusterOptions) -> Result<(), ClusterError> {
        let data = path_str(&self.data_dir);
        let log = path_str(&self.data_dir.join("server.log"));
        let mut server = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections={}",
            self.port, options.max_connections
        );
        if !options.durable {
            server.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if options.statement_statistics {
            server.push_str(
                " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
            );
        }
        self.run_pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &server, "-w", "-t", "60", "start",
            ],
        )
        .await
    }

    /// Where the processes using the cluster register (one empty file per pid).
    fn users_dir(&self) -> PathBuf {
        self.data_dir.with_file_name("users")
    }

    fn register(&self) -> Result<(), ClusterError> {
        let users = self.users_dir();
        std::fs::create_dir_all(&users)?;
        std::fs::write(users.join(std::process::id().to_string()), b"")?;
        Ok(())
    }

    /// Whether a registered process other than this one is still alive.
    fn other_users_alive(&self) -> bool {
        let me = std::process::id().to_string();
        let Ok(entries) = std::fs::read_dir(self.users_dir()) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let pid = entry.file_name().to_string_lossy().into_owned();
            pid != me && Path::new("/proc").join(&pid).exists()
        })
    }

    /// The port of a postmaster already running on this data directory, if any.
    fn running_port(&self) -> Option<u16> {
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let mut lines = pid_file.lines();
        let pid = lines.next()?.trim();
        let port = lines.nth(2)?.trim().parse().ok()?;
        Path::new("/proc").join(pid).exists().then_some(port)
    }

    /// A detached shell that stops the cluster once this process is gone, however it died.
    fn spawn_watchdog(&self) -> Result<(), ClusterError> {
        let pg_ctl = path_str(&self.bin_dir.join("pg_ctl"));
        let stop = if self.as_postgres_user {
            format!("runuser -u postgres -- {pg_ctl}")
        } else {
            pg_ctl
        };
        // $0: our pid, $1: data directory, $2: users folder. Once we are gone, deregister and
        // stop the cluster unless another registered process still lives.
        let script = format!(
            "while [ -d \"/proc/$0\" ]; do sleep 1; done; rm -f \"$2/$0\"; \
             for f in \"$2\"/*; do [ -e \"$f\" ] || continue; \
               if [ -d \"/proc/${{f##*/}}\" ]; then exit 0; fi; rm -f \"$f\"; done; \
             {stop} -D \"$1\" -m fast stop"
        );
        std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(std::process::id().to_string())
            .arg(&self.data_dir)
            .arg(self.users_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }

    async fn run_pg(&self, tool: &'static str, args: &[&str]) -> Result<(), ClusterError> {
        let program = path_str(&self.bin_dir.join(tool));
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            Command::new(&program)
        };
        command.args(args);
        run(tool, command).await
    }

    async fn run_plain(&self, tool: &'static str, args: &[&str]) -> Result<(), ClusterError> {
        let mut command = Command::new(tool);
        command.args(args);
        run(tool, command).await
    }
}

async fn run(step: &'static str, mut command: Command) -> Result<(), ClusterError> {
    let output = command.stdin(Stdio::null()).output().await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Step {
            step,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

fn short_hash(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `RESERVA_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").exists() && dir.join("pg_ctl").exists();
    if let Some(dir) = std::env::var_os("RESERVA_PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|dir| has_tools(dir)))
}

async fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .await
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
