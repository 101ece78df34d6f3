//! metrofs-nfs: the NFSv3 and MOUNT v3 front end, generic over [`metrofs_core::Backend`].
//!
//! One TCP port serves both programs (no portmapper): each file system of the backend is
//! exported as `/NAME`, reachable by libnfs as
//! `nfs://HOST/NAME/...?nfsport=P&mountport=P&version=3`.
//!
//! ```no_run
//! # async fn run<B: metrofs_core::Backend>(backend: std::sync::Arc<B>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:2049").await?;
//! let server = metrofs_nfs::NfsServer::new(backend);
//! let connections = server.connections(); // connections.close_all() on failover
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`server`]: [`NfsServer`], connections (reader, concurrent calls, one writer), dispatch
//!   of programs, versions and procedures, and the reply cache's use.
//! - [`record`]: RPC record marking, with its size limit.
//! - [`rpc`]: call headers, AUTH_SYS / AUTH_NONE credentials, reply headers.
//! - [`xdr`]: bounded, zero-copy decoding of arguments; replies packed with `nfs3_types`.
//! - [`cache`]: the duplicate request cache for non-idempotent calls, and the key that names
//!   such a call to the backend, so the other array of a pair answers its retransmission
//!   after a failover ([`metrofs_core::Backend::replayed`]).
//! - `nfs`: the NFSv3 procedures; `mount`: MOUNT v3.
//! - [`perm`]: permission checks (ACCESS, and every change before it is submitted).
//! - [`error`]: the one mapping from `FsError` to `nfsstat3`.
//! - `convert`: attributes and handles between metrofs-core and NFSv3 types.
//! - [`failpoint`]: **test only**: `METROFS_FAILPOINT=kill-before-reply:PROC:NAME` makes
//!   the process kill itself with SIGKILL after the named change was applied and before its
//!   reply is sent (read once when an [`NfsServer`] is made), so process tests can lose a
//!   reply with the array that applied the change.
//!
//! Handles are `metrofs_core::FileHandle`'s bytes: fs id, inode, generation, nothing local,
//! so they stay valid across restarts and on the other array of a pair.

pub mod cache;
mod convert;
pub mod error;
pub mod failpoint;
mod mount;
mod nfs;
pub mod perm;
pub mod record;
pub mod rpc;
pub mod server;
pub mod xdr;

pub use nfs::{DIR_BYTES_PREF, IO_BYTES_MAX, LINK_MAX};
pub use server::{Connections, NfsServer, TurnedAway, IN_FLIGHT_MAX};
