//! The quorum crate's errors: the grant store's, the server's, and the client's. Each says what
//! went wrong and, where an operator can act, what to do.

use std::path::PathBuf;

/// The grant store (`grants.redb`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the file.
    #[error("the grant store {} is in use by another process: another `metrofs quorum` runs on the same --data directory; stop it, or give this server its own directory", path.display())]
    InUse { path: PathBuf },

    /// The file (or its directory) cannot be opened or created.
    #[error("cannot open the grant store {}: {detail}: check that the --data directory exists, is writable by this user, and is on a healthy disk", path.display())]
    Open { path: PathBuf, detail: String },

    /// The file holds records of a layout this build does not read.
    #[error("the grant store {} is of format {found}, this build reads format 1: run the metrofs release that wrote it", path.display())]
    Format { path: PathBuf, found: u64 },

    /// Reading or committing failed. Fatal: the server stops and grants nothing more.
    #[error("the grant store failed: {0}; restart the quorum server once the disk is healthy (every grant already answered is on disk)")]
    Io(String),

    /// A stored record breaks the store's invariants.
    #[error("corrupt grant store: {0}")]
    Corrupt(String),

    /// The epoch cannot be raised any further.
    #[error("domain '{domain}' scope {scope:016x} already holds the last epoch ({}); nothing can be forced above it", u64::MAX)]
    Exhausted { domain: String, scope: u64 },

    /// The server is stopping.
    #[error("the grant store is closed: the quorum server is stopping")]
    Closed,
}

/// Starting or running a quorum server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The domains given cannot be used (name, secret file, duplicates, none at all).
    #[error("{0}")]
    Domains(String),

    /// The grant store could not be opened, or failed while serving.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The server's options cannot work.
    #[error("invalid quorum server options: {0}")]
    Options(String),

    /// Accepting connections failed for good.
    #[error("cannot accept connections on {addr}: {source}")]
    Accept {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a [`crate::QuorumClient`] call has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// Fewer than a majority of the quorum servers answered within the timeout (down, cut
    /// off, refusing this array, or failing); the text names each server's outcome. No other
    /// array was seen to hold the epoch (that would be `Claim::Denied`).
    #[error("no quorum: {0}")]
    Unreachable(String),

    /// The request cannot be sent (epoch 0, a force above the last epoch ...). A bug in the
    /// caller, or an exhausted epoch space.
    #[error("invalid quorum request: {0}")]
    Invalid(String),
}
