//! metrofs-metro: the metro (HyperMetro) module.
//!
//! # Layout
//! - [`array`]: [`Array`], one array's file systems behind the [`metrofs_core::Backend`] seam:
//!   reads go to the local store; each change is made fully determined (inode number and
//!   generation, timestamp) and applied. The pair issue adds the dual-write process (LOG,
//!   remote apply, DCL) here, between "determined" and "applied".
//! - [`error`]: [`ArrayError`], what catalog operations answer.

pub mod arbiter;
pub mod array;
pub mod conflicts;
pub mod dcl;
pub mod engine;
pub mod events;
pub mod locks;
pub mod log;
pub mod metro;
pub mod proto;
pub mod replies;
pub mod resync;
pub mod error;

pub use array::Array;
pub use error::ArrayError;
pub use arbiter::{ArbitrationConfig, Claim, OnQuorumLoss, Quorum, QuorumFuture, QuorumServerView, Recovery};
pub use metro::{ArbitrationView, Metro, MetroConfig, MetroError, PairView, PeerConfig, Phase, ServiceState, VerifyReport};
pub use metrofs_store::FsInfo;
pub use replies::ReplyBook;
