//! The operator's commands that talk to a running array through its management API:
//! `metrofs fs ...`, `metrofs export ...` and `metrofs pair ...`.
//!
//! Exit codes (docs/operations.md):
//! - 0: done;
//! - 1: the array refused or failed the request (unknown fs, name taken, a pair action in the
//!   wrong state, ...), or `pair verify` found a difference;
//! - 2: the command line is wrong (clap's usage errors, a bad CIDR): nothing was sent;
//! - 3: the API could not be reached, or what answered is not a metrofs API.

pub mod client;
pub mod pair;
pub mod table;

use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use metrofs_core::Cidr;

use crate::api::model::{CreateFs, FsView, SetExport};
use crate::config::DEFAULT_API_URL;
use client::{segment, ApiClient, ClientError};

/// `--api URL`, on every command that calls an array.
#[derive(Args, Debug, Clone)]
pub struct ApiArg {
    /// The array's management API (its `api_listen`).
    #[arg(long, global = true, value_name = "URL", env = "METROFS_API", default_value = DEFAULT_API_URL)]
    pub api: String,
}

#[derive(Subcommand, Debug)]
pub enum FsCmd {
    /// Create a file system, exported as /NAME to 127.0.0.0/8, read-write, root squashed.
    Create {
        /// 1 to 64 characters from A-Z a-z 0-9 - _ . (not starting with '.').
        name: String,
    },
    /// List the file systems and their exports.
    List {
        /// Print JSON (the API's answer) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one file system.
    Show {
        name: String,
        /// Print JSON (the API's answer) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a file system and every file in it.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ExportCmd {
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
        ClientError::Refused { .. } => ExitCode::from(1),
        ClientError::BadUrl { .. } => ExitCode::from(2),
        ClientError::Unreachable { .. } | ClientError::Protocol { .. } => ExitCode::from(3),
    }
}

fn finish(r: Result<(), ClientError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
    }
}

pub fn run_fs(cmd: FsCmd, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = ApiClient::new(&api.api)?;
        match cmd {
            FsCmd::Create { name } => {
                let fs: FsView = c.post("/api/fs", &CreateFs { name })?;
                println!("created file system {} (id {})", fs.name, fs.id);
                println!(
                    "exported as {} to {}",
                    fs.export.path,
                    table::export_summary(&fs)
                );
            }
            FsCmd::List { json } => {
                let all: Vec<FsView> = c.get("/api/fs")?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
                } else {
                    print!("{}", table::fs_table(&all));
                }
            }
            FsCmd::Show { name, json } => {
                let fs: FsView = c.get(&format!("/api/fs/{}", segment(&name)))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&fs).unwrap_or_default());
                } else {
                    print!("{}", table::fs_detail(&fs));
                }
            }
            FsCmd::Delete { name } => {
                c.delete(&format!("/api/fs/{}", segment(&name)))?;
                println!("deleted file system {name}");
            }
        }
        Ok(())
    })())
}

pub fn run_export(cmd: ExportCmd, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = ApiClient::new(&api.api)?;
        match cmd {
            ExportCmd::Set(a) => {
                let body = SetExport {
                    clients: a.clients.iter().map(ToString::to_string).collect(),
                    read_only: a.ro,
                    root_squash: a.root_squash,
                    anon_uid: a.anon_uid,
                    anon_gid: a.anon_gid,
                };
                let fs: FsView = c.put(&format!("/api/fs/{}/export", segment(&a.name)), &body)?;
                println!(
                    "{} is exported as {} to {}",
                    fs.name,
                    fs.export.path,
                    table::export_summary(&fs)
                );
            }
        }
        Ok(())
    })())
}
