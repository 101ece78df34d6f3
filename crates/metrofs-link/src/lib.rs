//! metrofs-link: the wire between arrays, and between an array and a quorum server.
//!
//! An authenticated, multiplexed request/response transport over any byte stream. It moves
//! opaque headers and bodies; it knows nothing of file systems.
//!
//! # Layout
//! - [`frame`]: the frame format (length-prefixed head, small header, raw body) and its codec.
//! - [`auth`]: the handshake: Hello both ways, then an HMAC-SHA256 proof of the domain's shared
//!   secret both ways; typed refusals (`WrongSecret`, `WrongDomain`, `VersionMismatch`, ...).
//! - [`connection`]: [`Link`]: concurrent calls matched by id, a handler for the peer's
//!   requests, one batching writer, heartbeats, RTT, and "down" with a reason.
//! - [`config`]: [`LinkConfig`], the timing and limits, as values.
//! - [`tcp`]: [`connect`] / [`accept`] over TCP with `TCP_NODELAY`; [`accept_stream_with`]
//!   for an acceptor that serves several domains and picks the secret by the one the peer names.
//! - [`error`]: [`LinkError`] and [`DownReason`].
//!
//! # Seams
//! The stream is a type parameter ([`establish`] takes any `AsyncRead + AsyncWrite`), timers
//! are tokio's (driven by paused time or turmoil in simulation), and the handshake nonce is a
//! value ([`auth::random_nonce`] for real use).
//!
//! # Security
//! The handshake authenticates both ends; later frames are neither encrypted nor individually
//! authenticated. The link belongs on a trusted replication network (or in a VPN/TLS tunnel).

pub mod auth;
pub mod config;
pub mod connection;
pub mod error;
pub mod frame;
pub mod tcp;

pub use auth::{random_nonce, Identity, Peer, Secret, Side, PROTOCOL_VERSION};
pub use config::LinkConfig;
pub use connection::{
    decode_header, encode_header, establish, establish_with, Handler, Link, NoRequests, PendingCall,
};
pub use error::{DownReason, LinkError};
pub use tcp::{accept, accept_stream, accept_stream_with, connect};
