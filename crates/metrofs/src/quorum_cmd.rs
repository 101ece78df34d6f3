//! `metrofs quorum`: runs a quorum server (the metrofs-quorum crate) for one or more domains.
//!
//! Start-up errors (no domain, a secret file that cannot be read, a data directory that
//! cannot be used, a listen address that cannot be bound) exit 2 with what to do; a grant
//! store that fails while serving exits 1; SIGTERM or SIGINT stops it cleanly (exit 0).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use metrofs_quorum::{DomainSecrets, QuorumServer, ServerOptions, DOMAINS_FILE};

#[derive(clap::Args, Debug)]
pub struct QuorumArgs {
    /// Where arrays connect, IP:PORT (port 0: any free port, logged at start).
    #[arg(long, value_name = "IP:PORT")]
    listen: String,
    /// The directory of the grant records (created if missing). A `domains.toml` in it, if
    /// present, lists more domains.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// A domain to arbitrate and the file holding its shared secret (the arrays' secret_file).
    /// Repeat for more domains.
    #[arg(long = "domain", value_name = "NAME=SECRET_FILE")]
    domains: Vec<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,
}

/// Prints a start-up error with a hint and returns exit code 2.
fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}\nhint: `metrofs quorum --help`; the flags are described in docs/configuration.md (\"Quorum server\")");
    ExitCode::from(2)
}

fn domains(args: &QuorumArgs) -> Result<DomainSecrets, metrofs_quorum::ServerError> {
    let mut d = DomainSecrets::new();
    for spec in &args.domains {
        d.add_arg(spec)?;
    }
    let file = args.data.join(DOMAINS_FILE);
    if file.exists() {
        d.add_toml(&file)?;
    }
    Ok(d)
}

fn check_data_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "--data {}: it is not a directory; give a directory for the grant records",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "--data {}: cannot create the directory: {e}; create it, or give a writable directory",
            dir.display()
        )
    })?;
    std::fs::read_dir(dir).map_err(|e| {
        format!(
            "--data {}: cannot read the directory: {e}; give the user running `metrofs quorum` read and write access",
            dir.display()
        )
    })?;
    Ok(())
}

/// Runs `metrofs quorum` to the end; the process's exit code.
pub fn run(args: QuorumArgs) -> ExitCode {
    crate::init_logging(args.log_level);
    if let Err(e) = check_data_dir(&args.data) {
        return usage_error(&e);
    }
    let domains = match domains(&args) {
        Ok(d) => d,
        Err(e) => return usage_error(&e),
    };
    let server = match QuorumServer::open(&args.data, domains, ServerOptions::default()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "another process (another `metrofs quorum`?) listens there: stop it or choose another --listen port"
                } else {
                    "give --listen as IP:PORT with an address of this host"
                };
                return usage_error(&format!("cannot listen on {}: {e}: {hint}", args.listen));
            }
        };
        match server.run_until(listener, stop_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("quorum server stopped: {e}");
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("{name}: stopping the quorum server");
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot watch for SIGTERM/SIGINT ({e}); stop the server with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
