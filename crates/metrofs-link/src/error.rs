//! The link's errors. Each says what went wrong and, where an operator can act, what to do.
//! Handshake refusals are typed so the daemon, the API and the CLI can report *why* two arrays
//! do not talk, on both arrays.

use crate::frame::FrameError;

/// Why an established link went down. Cheap to clone: every pending call receives one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DownReason {
    #[error("no frame from the peer for {silent_ms} ms (heartbeat_timeout_ms is {timeout_ms}): the peer or the network to it is down or stalled")]
    HeartbeatTimeout { silent_ms: u64, timeout_ms: u64 },
    #[error("the peer closed the link: {reason}")]
    PeerClosed { reason: String },
    #[error("the peer closed the connection without a Close frame (it stopped or crashed)")]
    Eof,
    #[error("I/O error on the connection: {0}")]
    Io(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("closed on this side: {0}")]
    Closed(String),
}

/// Everything that can go wrong on a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The configuration cannot work; the text names the field to change.
    #[error("invalid link configuration: {0}")]
    Config(String),

    /// The shared secret is not usable; the text says how to make one.
    #[error("invalid link secret: {0}")]
    Secret(String),

    /// A domain or array name that cannot be sent in a Hello.
    #[error("invalid {what} {value:?}: use 1 to 64 characters among a-z A-Z 0-9 . _ -")]
    Name { what: &'static str, value: String },

    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}: is the peer array running and its link port reachable?")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    /// Accepting a TCP connection failed.
    #[error("cannot accept a link connection: {0}")]
    Accept(#[source] std::io::Error),

    /// The handshake did not finish in time.
    #[error("handshake with {peer} did not finish within {ms} ms (handshake_timeout_ms): the peer is stalled, or is not a metrofs array")]
    HandshakeTimeout { peer: String, ms: u64 },

    /// The two ends speak different protocol versions.
    #[error("peer {peer} speaks link protocol version {theirs}, this array speaks {ours}: upgrade the older array so both run the same metrofs release")]
    VersionMismatch {
        peer: String,
        ours: u16,
        theirs: u16,
    },

    /// The two ends belong to different domains.
    #[error("peer {peer} belongs to domain '{theirs}', this array to domain '{ours}': check the domain name and the peer address in both arrays' configuration")]
    WrongDomain {
        peer: String,
        ours: String,
        theirs: String,
    },

    /// The peer does not know our shared secret (or we do not know theirs).
    #[error("peer {peer} presented a different shared secret for domain '{domain}': check secret_file on both arrays")]
    WrongSecret { peer: String, domain: String },

    /// (Multi-domain acceptor side.) The peer asked for a domain this end does not serve.
    #[error("peer {peer} asked for domain '{domain}', which is not served here: add the domain and its secret to this end's configuration, or correct the domain name on the peer")]
    DomainUnknownHere { peer: String, domain: String },

    /// (Initiator side.) The peer serves several domains (a quorum server) and not ours.
    #[error("{peer} does not serve domain '{domain}': add the domain and its secret to that server's configuration, or check the domain name of this array")]
    DomainUnknownThere { peer: String, domain: String },

    /// The peer introduced itself with our own name.
    #[error("the peer introduced itself as '{name}', the name of this array: the peer address points back at this array, or both arrays were given the same name")]
    SameName { name: String },

    /// The peer broke the handshake protocol (garbage, wrong frame, malformed Hello).
    #[error("handshake with {peer} failed: {detail}")]
    BadHandshake { peer: String, detail: String },

    /// The peer refused us for a reason we have no type for.
    #[error("peer {peer} refused the link: {reason}")]
    Refused { peer: String, reason: String },

    /// The connection ended before the handshake finished.
    #[error("peer {peer} closed the connection during the handshake ({detail}): check the peer's log for why it refused this array")]
    HandshakeClosed { peer: String, detail: String },

    /// I/O error during the handshake.
    #[error("I/O error during the handshake with {peer}: {source}")]
    HandshakeIo {
        peer: String,
        #[source]
        source: std::io::Error,
    },

    /// The link is down; every pending and later call fails with this.
    #[error("link to {peer} is down: {reason}")]
    Down { peer: String, reason: DownReason },

    /// No reply within `call_timeout_ms`. The peer may still have executed the request.
    #[error("no reply from {peer} within {ms} ms (call_timeout_ms); the request may still have been executed by the peer")]
    CallTimeout { peer: String, ms: u64 },

    /// A header or body over the frame limits.
    #[error("{what} of {len} bytes exceeds the link limit of {max} bytes: split it")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },

    /// The peer received the request but could not hand it to its handler.
    #[error("peer {peer} could not handle the request: {reason}")]
    Remote { peer: String, reason: String },

    /// A typed header could not be encoded.
    #[error("cannot encode a header: {0}")]
    Encode(String),

    /// A typed header could not be decoded.
    #[error("cannot decode a header ({0}): the peer runs an incompatible metrofs version")]
    Decode(String),
}

impl DownReason {
    /// The connection cannot carry anything more (nothing is flushed before it is dropped).
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DownReason::HeartbeatTimeout { .. } | DownReason::Eof | DownReason::Io(_)
        )
    }
}

impl From<FrameError> for DownReason {
    fn from(e: FrameError) -> Self {
        DownReason::Protocol(e.to_string())
    }
}
