//! metrofs-quorum: the quorum server that decides which array of a domain goes on serving a
//! pair when the two arrays lose each other, and the arrays' client of it.
//!
//! The server keeps, per (domain, scope = pair id), the highest epoch it granted and to whom,
//! durably, and grants each epoch to one array only. An array goes on after a loss only with
//! a majority of its quorum servers' grants, so at most one side wins an epoch.
//!
//! # Layout
//! - [`proto`]: the requests and answers, and the granting rule.
//! - [`grants`]: the durable grant records (redb, fsync before answering).
//! - [`server`]: [`QuorumServer`] / [`serve`]: many domains on one listener, each with its own
//!   secret, over the authenticated link of `metrofs-link`.
//! - [`client`]: [`QuorumClient`]: a link to each server, kept up in the background; majority
//!   claims, force-start, reachability.
//! - [`error`]: [`StoreError`], [`ServerError`], [`QuorumError`].
//!
//! # Seams
//! Time is tokio's; the transport is the link's (TCP here; the link itself runs on any
//! stream). Tests run servers and clients in one process on loopback, and the real
//! `metrofs quorum` process under `kill -9`.

pub mod client;
pub mod error;
pub mod grants;
pub mod proto;
pub mod server;

pub use client::{Claim, QuorumClient, ServerRecord, ServerStatus, RECONNECT_INTERVAL};
pub use error::{QuorumError, ServerError, StoreError};
pub use grants::GrantStore;
pub use proto::Grant;
pub use server::{serve, DomainSecrets, QuorumServer, ServerOptions, DOMAINS_FILE};
