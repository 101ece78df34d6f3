//! The operator's commands that talk to a running array through its management API: one
//! command per API call.
//!
//! | command | call |
//! | --- | --- |
//! | `metrofs status` | `GET /api/status` |
//! | `metrofs domain` | `GET /api/domain` |
//! | `metrofs arrays` | `GET /api/arrays` |
//! | `metrofs health` | `GET /api/health` |
//! | `metrofs events [--follow]` | `GET /api/events` |
//! | `metrofs alarms` | `GET /api/alarms` |
//! | `metrofs metrics` | `GET /metrics` |
//! | `metrofs openapi` | `GET /api/openapi.json` |
//! | `metrofs fs list / show / create / delete` | `/api/fs`, `/api/fs/{name}` |
//! | `metrofs export list / show / set` | `/api/exports`, `/api/fs/{name}/export` |
//! | `metrofs pair list / show / create / pause / resume / swap / force-start / verify / delete` | `/api/pairs...` |
//!
//! Every command takes `--api URL` (env `METROFS_API`), `--token-file FILE` (env
//! `METROFS_TOKEN_FILE`; or `METROFS_TOKEN`, see [`auth`]) and `--json` (the API's answer as
//! JSON instead of a table or text).
//!
//! Exit codes (docs/api.md):
//! - 0: done;
//! - 1: the array refused or failed the request (unknown fs, name taken, a pair action in the
//!   wrong state, ...), `pair verify` found a difference, or `--wait` ended with the pair not
//!   Normal;
//! - 2: the command line is wrong (clap's usage errors, a bad CIDR, an unconfirmed force
//!   start): nothing was sent;
//! - 3: the API could not be reached, or what answered is not a metrofs API;
//! - 4: the call needs the API token and none was found, or the array refused the token.

pub mod auth;
pub mod client;
pub mod events;
pub mod pair;
pub mod progress;
pub mod status;
pub mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use metrofs_core::Cidr;

use crate::api::model::{CreateFs, ExportEntry, ExportView, FsView, SetExport};
use crate::config::DEFAULT_API_URL;
use client::{segment, ApiClient, ClientError};

/// `--api URL`, `--token-file FILE` and `--json`, on every command that calls an array.
#[derive(Args, Debug, Clone)]
pub struct ApiArg {
    /// The array's management API (its `api_listen`).
    #[arg(long, global = true, value_name = "URL", env = "METROFS_API", default_value = DEFAULT_API_URL)]
    pub api: String,
    /// File holding the array's API token (changing calls need it). Default: METROFS_TOKEN,
    /// else the array's own token file when this user can read it.
    #[arg(long, global = true, value_name = "FILE", env = "METROFS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's answer as JSON instead of a table or text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Why you make this change (a ticket, "peer maintenance"...): recorded with the action
    /// in the array's event log, next to who made it. Changing commands only; at most 200
    /// characters.
    #[arg(long, global = true, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: Option<String>,
}

impl ApiArg {
    /// A client of the API these arguments name.
    pub fn client(&self) -> Result<ApiClient, ClientError> {
        Ok(ApiClient::new(&self.api)?
            .with_tokens(auth::TokenSource::new(self.token_file.clone()))
            .with_reason(self.reason.clone()))
    }
}

fn parse_reason(s: &str) -> Result<String, String> {
    let max = crate::api::auth::REASON_CHARS_MAX;
    if s.chars().count() > max {
        return Err(format!("at most {max} characters"));
    }
    crate::api::auth::clean_reason(s).ok_or_else(|| "empty".to_owned())
}

#[derive(Subcommand, Debug)]
pub enum FsCmd {
    /// Create a file system, exported as /NAME to 127.0.0.0/8, read-write, root squashed.
    Create {
        /// 1 to 64 characters from A-Z a-z 0-9 - _ . (not starting with '.').
        name: String,
    },
    /// List the file systems and their exports.
    List,
    /// Show one file system.
    Show { name: String },
    /// Delete a file system and every file in it.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// List every export: file system, MOUNT path, clients, access, root squash.
    List,
    /// Show one file system's export rules.
    Show {
        /// The file system.
        name: String,
    },
    /// Replace an export's rules: who may mount it and how.
    #[command(group(ArgGroup::new("access").required(true).args(["rw", "ro"])))]
    #[command(group(ArgGroup::new("squash").required(true).args(["root_squash", "no_root_squash"])))]
    Set(ExportSetArgs),
}

#[derive(Args, Debug)]
pub struct ExportSetArgs {
    /// The file system.
    pub name: String,
    /// Networks allowed to mount and call it, comma-separated (ADDR/PREFIX or one address).
    #[arg(long, value_name = "CIDR[,CIDR]", value_delimiter = ',', required = true, num_args = 1.., value_parser = parse_cidr)]
    pub clients: Vec<Cidr>,
    /// Clients may change files.
    #[arg(long)]
    pub rw: bool,
    /// Clients may only read: every change answers ROFS.
    #[arg(long)]
    pub ro: bool,
    /// Map uid/gid 0 of clients to the anonymous ids.
    #[arg(long)]
    pub root_squash: bool,
    /// Trust clients' root.
    #[arg(long)]
    pub no_root_squash: bool,
    /// uid a squashed root becomes (default 65534).
    #[arg(long, value_name = "UID")]
    pub anon_uid: Option<u32>,
    /// gid a squashed root becomes (default 65534).
    #[arg(long, value_name = "GID")]
    pub anon_gid: Option<u32>,
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.trim().parse()
}

pub use pair::{run_pair, PairCmd};

/// Exit code of a failed call.
pub(crate) fn exit_code(e: &ClientError) -> ExitCode {
    match e {
        ClientError::Refused { status: 401, .. } | ClientError::NoToken(_) => ExitCode::from(4),
        ClientError::Refused { .. } => ExitCode::from(1),
        ClientError::BadUrl { .. } => ExitCode::from(2),
        ClientError::Unreachable { .. } | ClientError::Protocol { .. } => ExitCode::from(3),
    }
}

/// The exit code of a command's result, printing the error.
pub(crate) fn finish(r: Result<ExitCode, ClientError>) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
    }
}

/// Pretty JSON of an answer.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

pub fn run_fs(cmd: FsCmd, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = api.client()?;
        let j = api.json;
        match cmd {
            FsCmd::Create { name } => {
                let fs: FsView = c.post("/api/fs", &CreateFs { name })?;
                if j {
                    println!("{}", json(&fs));
                } else {
                    println!("created file system {} (id {})", fs.name, fs.id);
                    println!(
                        "exported as {} to {}",
                        fs.export.path,
                        table::export_summary(&fs)
                    );
                }
            }
            FsCmd::List => {
                let all: Vec<FsView> = c.get("/api/fs")?;
                if j {
                    println!("{}", json(&all));
                } else {
                    print!("{}", table::fs_table(&all));
                }
            }
            FsCmd::Show { name } => {
                let fs: FsView = c.get(&format!("/api/fs/{}", segment(&name)))?;
                if j {
                    println!("{}", json(&fs));
                } else {
                    print!("{}", table::fs_detail(&fs));
                }
            }
            FsCmd::Delete { name } => {
                c.delete(&format!("/api/fs/{}", segment(&name)))?;
                if j {
                    println!("{}", json(&serde_json::json!({ "deleted": name })));
                } else {
                    println!("deleted file system {name}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })())
}

pub fn run_export(cmd: ExportCmd, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = api.client()?;
        let j = api.json;
        match cmd {
            ExportCmd::List => {
                let all: Vec<ExportEntry> = c.get("/api/exports")?;
                if j {
                    println!("{}", json(&all));
                } else {
                    print!("{}", table::export_table(&all));
                }
            }
            ExportCmd::Show { name } => {
                let e: ExportView = c.get(&format!("/api/fs/{}/export", segment(&name)))?;
                if j {
                    println!("{}", json(&e));
                } else {
                    print!(
                        "{}",
                        table::export_table(&[ExportEntry {
                            fs: name,
                            export: e
                        }])
                    );
                }
            }
            ExportCmd::Set(a) => {
                let body = SetExport {
                    clients: a.clients.iter().map(ToString::to_string).collect(),
                    read_only: a.ro,
                    root_squash: a.root_squash,
                    anon_uid: a.anon_uid,
                    anon_gid: a.anon_gid,
                };
                let fs: FsView = c.put(&format!("/api/fs/{}/export", segment(&a.name)), &body)?;
                if j {
                    println!("{}", json(&fs));
                } else {
                    println!(
                        "{} is exported as {} to {}",
                        fs.name,
                        fs.export.path,
                        table::export_summary(&fs)
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })())
}
