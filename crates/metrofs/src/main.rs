//! `metrofs`: the array daemon, its operator CLI, the demo and the benchmark, in one binary.
//!
//! # Layout
//! - [`config`]: the TOML configuration, raw then validated.
//! - [`daemon`]: `metrofs array`: store, array, NFS server, management API, flusher, signals.
//! - [`stop`]: the one stop signal every task watches (graceful or fatal).
//! - [`api`]: the management API (axum): bodies, errors and their HTTP mapping, handlers,
//!   OpenAPI document, bearer token, `/metrics`, the dashboard.
//! - [`alarms`]: the alarm worker and its conditions.
//! - [`cli`]: `metrofs status`, `events`, `alarms`, `fs ...`, `export ...`, `pair ...` and the
//!   rest: one command per API call.
//! - [`demo`]: `metrofs demo`, two linked arrays and a paired fs in one process.
//! - `metrofs bench`: the metrofs-bench crate's arguments and run, dispatched as is.
//!
//! Exit codes: 0 done; 1 failed (the array refused a request, or an array stopped on an
//! error); 2 wrong command line or configuration; 3 the API could not be reached; 4 the API
//! token is missing or wrong (see `cli`).

mod alarms;
mod api;
mod arbitration;
mod cli;
mod config;
mod daemon;
mod demo;
mod quorum_cmd;
mod service_addr;
mod stop;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "metrofs",
    version,
    about = "Two-site synchronously replicated NAS (NFSv3)",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one array: its store, NFSv3 + MOUNT, and the management API.
    Array(ArrayArgs),
    /// The whole domain at a glance: arrays, link, quorum servers, every pair, who serves,
    /// alarms, I/O.
    Status {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// The domain: its arrays, the link between them, the quorum servers.
    Domain {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// The arrays of the domain, as this one sees them.
    Arrays {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// Whether the array answers, and its version.
    Health {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// The durable event log: state changes, arbitrations, failovers, swaps, force starts,
    /// alarms and operator actions.
    Events {
        #[command(flatten)]
        args: cli::events::EventsArgs,
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// The active alarms, critical first.
    Alarms {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// The array's Prometheus metrics (what `GET /metrics` serves).
    Metrics {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// The array's OpenAPI document (what `GET /api/openapi.json` serves).
    Openapi {
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// Manage file systems of a running array.
    Fs {
        #[command(subcommand)]
        cmd: cli::FsCmd,
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// Manage exports (who may mount a file system, and how).
    Export {
        #[command(subcommand)]
        cmd: cli::ExportCmd,
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// Manage metro pairs: a file system kept identical on this array and its peer.
    Pair {
        #[command(subcommand)]
        cmd: cli::PairCmd,
        #[command(flatten)]
        api: cli::ApiArg,
    },
    /// Everything in one process: two linked arrays (site-a, site-b) and a paired file system
    /// `demo`, nothing to configure.
    Demo(demo::DemoArgs),
    /// Drive any NFSv3 export and print what it sustains (throughput, latency, metadata rates).
    Bench(metrofs_bench::BenchArgs),
    /// Move a sequential write's bytes the way an unpaired and a paired fs do, and nothing else:
    /// what the copies alone cost on this machine (bench/pair.sh's reference).
    Copies(metrofs_bench::copies::CopiesArgs),
    /// Run a quorum server: arbitrates which array of a domain goes on when the two lose
    /// each other.
    Quorum(quorum_cmd::QuorumArgs),
}

#[derive(clap::Args, Debug)]
struct ArrayArgs {
    /// The configuration file (TOML, see docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `nfs_listen` (IP:PORT).
    #[arg(long, value_name = "IP:PORT")]
    nfs_listen: Option<String>,
    /// Overrides `api_listen` (IP:PORT).
    #[arg(long, value_name = "IP:PORT")]
    api_listen: Option<String>,
}

fn init_logging(level: tracing::Level) {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Runs an async command on a multi-threaded runtime; an error is printed and exits 1.
fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    block_on_with(None, f)
}

/// [`block_on`] with `workers` worker threads (`None`: the runtime's default, one per core).
fn block_on_with(
    workers: Option<usize>,
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    exit_code(rt.block_on(f))
}

/// A command's result as the process's exit: 0, or the error printed and 1.
fn exit_code(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Array(a) => {
            let overrides = config::Overrides {
                data_dir: a.data_dir,
                nfs_listen: a.nfs_listen,
                api_listen: a.api_listen,
            };
            let cfg = match config::Config::load(&a.config, &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}\nhint: every key is described in docs/configuration.md");
                    return ExitCode::from(2);
                }
            };
            init_logging(cfg.log_level);
            block_on_with(cfg.worker_threads, daemon::run(cfg))
        }
        Cmd::Status { api } => cli::status::run(cli::status::Show::Status, &api),
        Cmd::Domain { api } => cli::status::run(cli::status::Show::Domain, &api),
        Cmd::Arrays { api } => cli::status::run(cli::status::Show::Arrays, &api),
        Cmd::Health { api } => cli::status::run(cli::status::Show::Health, &api),
        Cmd::Events { args, api } => cli::events::run_events(&args, &api),
        Cmd::Alarms { api } => cli::events::run_alarms(&api),
        Cmd::Metrics { api } => cli::status::run(cli::status::Show::Metrics, &api),
        Cmd::Openapi { api } => cli::status::run(cli::status::Show::OpenApi, &api),
        Cmd::Fs { cmd, api } => cli::run_fs(cmd, &api),
        Cmd::Export { cmd, api } => cli::run_export(cmd, &api),
        Cmd::Pair { cmd, api } => cli::run_pair(cmd, &api),
        Cmd::Demo(d) => {
            init_logging(d.log_level);
            block_on(demo::run(d))
        }
        Cmd::Bench(b) => {
            init_logging(tracing::Level::WARN);
            block_on(metrofs_bench::run(b))
        }
        Cmd::Copies(c) => exit_code(metrofs_bench::copies::run(c)),
        Cmd::Quorum(q) => quorum_cmd::run(q),
    }
}
