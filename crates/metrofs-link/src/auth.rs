//! The handshake: who the peer is, and proof that it holds the domain's shared secret.
//!
//! # Contract
//! Initiator I (the side that connected) and acceptor A exchange four frames, in order:
//!
//! 1. I → A `Hello` {protocol version, I's side, domain, I's name, I's 32-byte random nonce}.
//! 2. A checks version, domain, sides and names; on a mismatch it sends `Refuse` and closes.
//!    Otherwise A → I `Hello` {version, A's side, domain, A's name, A's nonce}; I checks the same.
//! 3. I → A `Proof` = HMAC-SHA256(secret, transcript("initiator")); A verifies it in constant time
//!    (`Mac::verify_slice`), or sends `Refuse` (wrong secret) and closes.
//! 4. A → I `Proof` = HMAC-SHA256(secret, transcript("acceptor")); I verifies it likewise.
//!
//! The transcript binds a fixed context string, the direction of the proof, the protocol
//! version, the domain, both names and both nonces, each length-prefixed. So a proof is good for
//! one connection only (fresh nonces: no replay) and one direction only (no reflection of A's
//! proof back to A). A proves only after I has proved, so a client without the secret never
//! obtains a valid proof from an array to study.
//!
//! A `Refuse` frame carries a code, the refuser's version, domain and name, and a text; both
//! sides end with the same typed [`LinkError`] (`WrongSecret`, `WrongDomain`, ...).
//! The caller bounds the whole handshake with `handshake_timeout_ms`.
//!
//! An acceptor that serves several domains (a quorum server) does not know its identity
//! before step 1: it picks the identity (its name and the secret) by the domain the
//! initiator's Hello names, right after the version, format and role checks. A domain it does
//! not serve is refused with code `UnknownDomain` (the Refuse then carries empty domain and
//! name: the acceptor has no identity to give); from there on the handshake is the same.
//!
//! What this does not do: encrypt, or authenticate each later frame. Run the link on a trusted
//! network (or inside a VPN/TLS tunnel); see the crate documentation.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use metrofs_core::bufpool::BufPool;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::LinkError;
use crate::frame::{self, Frame, Kind, ReadError};

/// The link protocol this build speaks. Both ends must speak the same one.
pub const PROTOCOL_VERSION: u16 = 1;
/// Shortest shared secret accepted.
pub const SECRET_MIN_BYTES: usize = 16;
/// Longest shared secret accepted.
pub const SECRET_MAX_BYTES: usize = 4096;
/// Longest domain or array name.
pub const NAME_MAX_BYTES: usize = 64;
/// Bytes of the random nonce each side contributes.
pub const NONCE_BYTES: usize = 32;

/// How long a side whose handshake failed keeps reading, so its refusal reaches the peer
/// before the connection is torn down (closing with unread input sends a reset).
const REFUSE_LINGER: Duration = Duration::from_millis(500);
/// Largest Hello header (version, side, two names, nonce).
const HELLO_MAX_BYTES: usize = 2 + 1 + 1 + NAME_MAX_BYTES + 1 + NAME_MAX_BYTES + NONCE_BYTES;
const PROOF_CONTEXT: &[u8] = b"metrofs-link handshake proof\0";
const PROOF_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The domain's shared secret. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret of [`SECRET_MIN_BYTES`]..=[`SECRET_MAX_BYTES`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, LinkError> {
        let bytes = bytes.into();
        if bytes.len() < SECRET_MIN_BYTES || bytes.len() > SECRET_MAX_BYTES {
            return Err(LinkError::Secret(format!(
                "it is {} bytes; use {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes \
                 (e.g. `head -c 32 /dev/urandom | base64 > secret`), the same on both arrays",
                bytes.len()
            )));
        }
        Ok(Secret(bytes.into()))
    }

    /// Reads a secret file; trailing whitespace (a final newline) is not part of the secret.
    pub fn from_file(path: &Path) -> Result<Secret, LinkError> {
        let mut bytes = std::fs::read(path).map_err(|e| {
            LinkError::Secret(format!("cannot read secret file {}: {e}", path.display()))
        })?;
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        Secret::new(bytes).map_err(|e| match e {
            LinkError::Secret(s) => LinkError::Secret(format!("{}: {s}", path.display())),
            other => other,
        })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; `Secret::new` bounds it anyway.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Who this end is: its domain, its name in that domain, and the domain's shared secret.
#[derive(Clone, Debug)]
pub struct Identity {
    domain: String,
    name: String,
    secret: Secret,
}

impl Identity {
    /// Domain and name: 1 to [`NAME_MAX_BYTES`] characters among `a-z A-Z 0-9 . _ -`.
    pub fn new(
        domain: impl Into<String>,
        name: impl Into<String>,
        secret: Secret,
    ) -> Result<Identity, LinkError> {
        let domain = domain.into();
        let name = name.into();
        check_name("domain name", &domain)?;
        check_name("array name", &name)?;
        Ok(Identity {
            domain,
            name,
            secret,
        })
    }

    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn check_name(what: &'static str, value: &str) -> Result<(), LinkError> {
    let ok = !value.is_empty()
        && value.len() <= NAME_MAX_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LinkError::Name {
            what,
            value: value.to_owned(),
        })
    }
}

/// Which end of the connection this is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that connected; it speaks first.
    Initiator,
    /// The end that accepted.
    Acceptor,
}

impl Side {
    fn wire(self) -> u8 {
        match self {
            Side::Initiator => 1,
            Side::Acceptor => 2,
        }
    }

    fn label(self) -> &'static [u8] {
        match self {
            Side::Initiator => b"initiator",
            Side::Acceptor => b"acceptor",
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Initiator => Side::Acceptor,
            Side::Acceptor => Side::Initiator,
        }
    }
}

/// The authenticated peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's array (or client) name, proven by the handshake.
    pub name: String,
    /// The domain both ends belong to.
    pub domain: String,
}

/// A fresh random nonce from the operating system. The handshake takes its nonce as a value
/// (the randomness seam): simulations pass seeded ones.
pub fn random_nonce() -> Result<[u8; NONCE_BYTES], LinkError> {
    let mut n = [0u8; NONCE_BYTES];
    getrandom::fill(&mut n).map_err(|e| {
        LinkError::Secret(format!(
            "the operating system gave no random bytes for the handshake nonce: {e}"
        ))
    })?;
    Ok(n)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Hello {
    version: u16,
    side: u8,
    domain: String,
    name: String,
    nonce: [u8; NONCE_BYTES],
}

impl Hello {
    fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HELLO_MAX_BYTES);
        b.put_u16(self.version);
        b.put_u8(self.side);
        put_short(&mut b, &self.domain);
        put_short(&mut b, &self.name);
        b.put_slice(&self.nonce);
        b.freeze()
    }

    /// The version alone: read first, so a later protocol may change everything after it.
    fn version_of(header: &[u8]) -> Option<u16> {
        (header.len() >= 2).then(|| u16::from_be_bytes([header[0], header[1]]))
    }

    fn decode(mut h: &[u8]) -> Result<Hello, String> {
        if h.len() > HELLO_MAX_BYTES {
            return Err(format!("Hello of {} bytes is too long", h.len()));
        }
        if h.len() < 3 {
            return Err("Hello is too short".into());
        }
        let version = h.get_u16();
        let side = h.get_u8();
        let domain = get_short(&mut h).ok_or("Hello has a malformed domain name")?;
        let name = get_short(&mut h).ok_or("Hello has a malformed array name")?;
        if h.len() != NONCE_BYTES {
            return Err(format!(
                "Hello nonce is {} bytes, expected {NONCE_BYTES}",
                h.len()
            ));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(h);
        check_name("domain name", &domain).map_err(|e| e.to_string())?;
        check_name("array name", &name).map_err(|e| e.to_string())?;
        Ok(Hello {
            version,
            side,
            domain,
            name,
            nonce,
        })
    }
}

fn put_short(b: &mut BytesMut, s: &str) {
    // Names are checked to be at most NAME_MAX_BYTES (< 256) before they get here.
    debug_assert!(s.len() <= NAME_MAX_BYTES);
    b.put_u8(u8::try_from(s.len()).unwrap_or(u8::MAX));
    b.put_slice(&s.as_bytes()[..s.len().min(usize::from(u8::MAX))]);
}

fn get_short(h: &mut &[u8]) -> Option<String> {
    let len = usize::from(*h.first()?);
    let bytes = h.get(1..1 + len)?;
    let s = std::str::from_utf8(bytes).ok()?.to_owned();
    h.advance(1 + len);
    Some(s)
}

/// Why a side refused, as carried in a `Refuse` frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
enum RefuseCode {
    Protocol = 1,
    Version = 2,
    Domain = 3,
    Secret = 4,
    SameName = 5,
    /// A multi-domain acceptor (a quorum server) does not serve the domain the initiator
    /// named. Added after version 1 shipped; an older initiator reports it as `Refused` with
    /// the text, which is the right outcome.
    UnknownDomain = 6,
}

impl RefuseCode {
    fn from_u8(v: u8) -> Option<RefuseCode> {
        [
            RefuseCode::Protocol,
            RefuseCode::Version,
            RefuseCode::Domain,
            RefuseCode::Secret,
            RefuseCode::SameName,
            RefuseCode::UnknownDomain,
        ]
        .into_iter()
        .find(|c| *c as u8 == v)
    }
}

/// A decoded `Refuse`: who refused and why.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Refusal {
    code: Option<RefuseCode>,
    version: u16,
    domain: String,
    name: String,
    text: String,
}

/// A `Refuse` frame. `domain` and `name` are the refuser's; both are empty for an acceptor
/// that refuses before it knows which of its identities the peer asked for.
fn encode_refuse(code: RefuseCode, domain: &str, name: &str, text: &str) -> Frame {
    let mut b = BytesMut::new();
    b.put_u8(code as u8);
    b.put_u16(PROTOCOL_VERSION);
    put_short(&mut b, domain);
    put_short(&mut b, name);
    let room = frame::HEADER_MAX_BYTES - b.len();
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    b.put_slice(&text.as_bytes()[..end]);
    Frame::new(Kind::Refuse, 0, b.freeze(), Bytes::new())
        .unwrap_or_else(|_| Frame::text(Kind::Refuse, 0, text))
}

fn decode_refuse(mut h: &[u8]) -> Refusal {
    let mut r = Refusal {
        code: None,
        version: 0,
        domain: String::new(),
        name: String::new(),
        text: String::new(),
    };
    if h.len() < 3 {
        r.text = String::from_utf8_lossy(h).into_owned();
        return r;
    }
    r.code = RefuseCode::from_u8(h.get_u8());
    r.version = h.get_u16();
    r.domain = get_short(&mut h).unwrap_or_default();
    r.name = get_short(&mut h).unwrap_or_default();
    r.text = String::from_utf8_lossy(h).into_owned();
    r
}

/// The bytes a proof covers: context, direction, version, domain, both names, both nonces.
fn transcript(
    mac: &mut HmacSha256,
    prover: Side,
    domain: &str,
    initiator: &Hello,
    acceptor: &Hello,
) {
    let mut field = |b: &[u8]| {
        // Every field is shorter than 64 KiB; the length prefix keeps fields unambiguous.
        mac.update(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
        mac.update(b);
    };
    field(PROOF_CONTEXT);
    field(prover.label());
    field(&PROTOCOL_VERSION.to_be_bytes());
    field(domain.as_bytes());
    field(initiator.name.as_bytes());
    field(acceptor.name.as_bytes());
    field(&initiator.nonce);
    field(&acceptor.nonce);
}

fn proof(secret: &Secret, prover: Side, domain: &str, i: &Hello, a: &Hello) -> Bytes {
    let mut mac = secret.mac();
    transcript(&mut mac, prover, domain, i, a);
    Bytes::copy_from_slice(&mac.finalize().into_bytes())
}

fn verify(secret: &Secret, prover: Side, domain: &str, i: &Hello, a: &Hello, got: &[u8]) -> bool {
    let mut mac = secret.mac();
    transcript(&mut mac, prover, domain, i, a);
    // Constant-time comparison.
    mac.verify_slice(got).is_ok()
}

/// Who this end is in a handshake.
pub(crate) enum Me<'a> {
    /// One identity, for either side (an array).
    Fixed(&'a Identity),
    /// An acceptor that serves several domains (a quorum server): the identity for the domain
    /// the initiator's Hello names, or `None`, and the initiator is refused with
    /// `UnknownDomain`. Only the acceptor may pick: the initiator speaks first.
    ByDomain(&'a mut (dyn FnMut(&str) -> Option<Identity> + Send)),
}

/// One handshake run: the stream halves, what we know of the peer so far, and our identity.
struct Run<'a, R, W> {
    r: &'a mut R,
    w: &'a mut W,
    buf: &'a mut BytesMut,
    /// Our identity, once known: from the start for `Me::Fixed`, after the peer's Hello for
    /// `Me::ByDomain`.
    me: Option<Identity>,
    side: Side,
    /// Name for messages: the peer's address until its Hello names it.
    peer: String,
}

impl<R, W> Run<'_, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    fn my_domain(&self) -> &str {
        self.me.as_ref().map_or("", |m| m.domain.as_str())
    }

    fn my_name(&self) -> &str {
        self.me.as_ref().map_or("", |m| m.name.as_str())
    }

    async fn send(&mut self, f: &Frame) -> Result<(), LinkError> {
        let mut out = BytesMut::with_capacity(f.encoded_len());
        f.encode(&mut out);
        let res = async {
            self.w.write_all(&out).await?;
            self.w.flush().await
        }
        .await;
        res.map_err(|source| LinkError::HandshakeIo {
            peer: self.peer.clone(),
            source,
        })
    }

    /// Sends a `Refuse` and half-closes; [`linger`] then waits for the peer to close too.
    /// Returns `err` for chaining.
    async fn refuse(&mut self, code: RefuseCode, text: &str, err: LinkError) -> LinkError {
        tracing::warn!(peer = %self.peer, "refusing link: {err}");
        let f = encode_refuse(code, self.my_domain(), self.my_name(), text);
        if self.send(&f).await.is_ok() {
            let _ = self.w.shutdown().await;
        }
        err
    }

    /// The next frame, which must be of kind `want`; a `Refuse` becomes its typed error.
    async fn expect(&mut self, want: Kind, peer_hello: Option<&Hello>) -> Result<Frame, LinkError> {
        let stage = match want {
            Kind::Hello => "before its Hello",
            _ => "before its Proof",
        };
        // Handshake frames are small: a large one would only borrow a buffer from a pool of
        // its own.
        let f = match frame::read_frame(self.r, self.buf, &BufPool::new(0), || {}).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(LinkError::HandshakeClosed {
                    peer: self.peer.clone(),
                    detail: format!("connection closed {stage}"),
                })
            }
            Err(ReadError::Frame(frame::FrameError::Truncated { have, need })) => {
                return Err(LinkError::HandshakeClosed {
                    peer: self.peer.clone(),
                    detail: format!(
                        "connection closed {stage}, inside a frame ({have} of {need} bytes)"
                    ),
                })
            }
            Err(ReadError::Frame(e)) => {
                let text = format!("expected a {want:?} frame: {e}");
                let err = LinkError::BadHandshake {
                    peer: self.peer.clone(),
                    detail: text.clone(),
                };
                return Err(self.refuse(RefuseCode::Protocol, &text, err).await);
            }
            Err(ReadError::Io(source)) => {
                return Err(LinkError::HandshakeIo {
                    peer: self.peer.clone(),
                    source,
                })
            }
        };
        if f.kind() == want {
            return Ok(f);
        }
        if f.kind() == Kind::Refuse {
            return Err(self.refused(&decode_refuse(f.header()), peer_hello));
        }
        let text = format!("expected a {want:?} frame, got {:?}", f.kind());
        let err = LinkError::BadHandshake {
            peer: self.peer.clone(),
            detail: text.clone(),
        };
        Err(self.refuse(RefuseCode::Protocol, &text, err).await)
    }

    /// The typed error for a refusal the peer sent us.
    fn refused(&self, r: &Refusal, peer_hello: Option<&Hello>) -> LinkError {
        let peer = if r.name.is_empty() {
            self.peer.clone()
        } else {
            r.name.clone()
        };
        let domain = self.my_domain().to_owned();
        match r.code {
            Some(RefuseCode::Version) => LinkError::VersionMismatch {
                peer,
                ours: PROTOCOL_VERSION,
                theirs: r.version,
            },
            Some(RefuseCode::Domain) => LinkError::WrongDomain {
                peer,
                ours: domain,
                theirs: peer_hello.map_or_else(|| r.domain.clone(), |h| h.domain.clone()),
            },
            Some(RefuseCode::Secret) => LinkError::WrongSecret { peer, domain },
            Some(RefuseCode::SameName) => LinkError::SameName {
                name: self.my_name().to_owned(),
            },
            Some(RefuseCode::UnknownDomain) => LinkError::DomainUnknownThere { peer, domain },
            Some(RefuseCode::Protocol) | None => LinkError::Refused {
                peer,
                reason: r.text.clone(),
            },
        }
    }

    /// Step 2's checks on the peer's Hello; refuses on a mismatch. Returns the peer's Hello
    /// and our identity (picked by the Hello's domain for `Me::ByDomain`).
    async fn check_hello(&mut self, f: &Frame, me: Me<'_>) -> Result<(Hello, Identity), LinkError> {
        if let Some(theirs) = Hello::version_of(f.header()) {
            if theirs != PROTOCOL_VERSION {
                let err = LinkError::VersionMismatch {
                    peer: self.peer.clone(),
                    ours: PROTOCOL_VERSION,
                    theirs,
                };
                let text = err.to_string();
                return Err(self.refuse(RefuseCode::Version, &text, err).await);
            }
        }
        let hello = match Hello::decode(f.header()) {
            Ok(h) => h,
            Err(detail) => {
                let err = LinkError::BadHandshake {
                    peer: self.peer.clone(),
                    detail: detail.clone(),
                };
                return Err(self.refuse(RefuseCode::Protocol, &detail, err).await);
            }
        };
        self.peer.clone_from(&hello.name);
        if hello.side != self.side.other().wire() {
            let detail = format!(
                "the peer claims the same role ({:?}) as this end",
                self.side
            );
            let err = LinkError::BadHandshake {
                peer: self.peer.clone(),
                detail: detail.clone(),
            };
            return Err(self.refuse(RefuseCode::Protocol, &detail, err).await);
        }
        let me = match me {
            Me::Fixed(me) => me.clone(),
            Me::ByDomain(pick) => match pick(&hello.domain) {
                Some(me) => me,
                None => {
                    let err = LinkError::DomainUnknownHere {
                        peer: hello.name.clone(),
                        domain: hello.domain.clone(),
                    };
                    let text = format!("domain '{}' is not served here", hello.domain);
                    return Err(self.refuse(RefuseCode::UnknownDomain, &text, err).await);
                }
            },
        };
        self.me = Some(me.clone());
        if hello.domain != me.domain {
            let err = LinkError::WrongDomain {
                peer: hello.name.clone(),
                ours: me.domain.clone(),
                theirs: hello.domain.clone(),
            };
            let text = format!(
                "array {} belongs to domain '{}', you to domain '{}'",
                me.name, me.domain, hello.domain
            );
            return Err(self.refuse(RefuseCode::Domain, &text, err).await);
        }
        if hello.name == me.name {
            let err = LinkError::SameName {
                name: me.name.clone(),
            };
            let text = err.to_string();
            return Err(self.refuse(RefuseCode::SameName, &text, err).await);
        }
        Ok((hello, me))
    }

    async fn check_proof(
        &mut self,
        f: &Frame,
        me: &Identity,
        initiator: &Hello,
        acceptor: &Hello,
    ) -> Result<(), LinkError> {
        let prover = self.side.other();
        let ok = f.header().len() == PROOF_BYTES
            && verify(
                &me.secret,
                prover,
                &me.domain,
                initiator,
                acceptor,
                f.header(),
            );
        if ok {
            return Ok(());
        }
        let err = LinkError::WrongSecret {
            peer: self.peer.clone(),
            domain: me.domain.clone(),
        };
        let text = format!(
            "array {} holds a different shared secret for domain '{}'",
            me.name, me.domain
        );
        Err(self.refuse(RefuseCode::Secret, &text, err).await)
    }
}

/// After a failed handshake: reads (and discards) until the peer closes, for at most
/// `REFUSE_LINGER`, so a `Refuse` just sent is delivered rather than cut by a reset. Runs
/// outside the handshake timeout, so the typed error is what the caller gets.
pub(crate) async fn linger<R: AsyncRead + Unpin>(r: &mut R) {
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        let mut sink = [0u8; 4096];
        while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

fn hello_for(me: &Identity, side: Side, nonce: [u8; NONCE_BYTES]) -> (Hello, Frame) {
    let mine = Hello {
        version: PROTOCOL_VERSION,
        side: side.wire(),
        domain: me.domain.clone(),
        name: me.name.clone(),
        nonce,
    };
    let frame = Frame::new(Kind::Hello, 0, mine.encode(), Bytes::new())
        .unwrap_or_else(|_| unreachable!("a Hello is far below the header limit"));
    (mine, frame)
}

fn proof_frame(p: Bytes) -> Frame {
    Frame::new(Kind::Proof, 0, p, Bytes::new()).unwrap_or_else(|_| unreachable!("32 bytes"))
}

/// Runs the handshake on a connected stream (without a timeout: the caller adds one).
/// `buf` keeps bytes read past the handshake (the peer may already send more); the connection
/// reader starts from it.
///
/// The initiator's identity must be `Me::Fixed` (it speaks first); an acceptor may pick its
/// identity by the domain the initiator names (`Me::ByDomain`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handshake<R, W>(
    r: &mut R,
    w: &mut W,
    buf: &mut BytesMut,
    side: Side,
    me: Me<'_>,
    nonce: [u8; NONCE_BYTES],
    peer_hint: &str,
) -> Result<Peer, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut run = Run {
        r,
        w,
        buf,
        me: None,
        side,
        peer: peer_hint.to_owned(),
    };
    match (side, me) {
        (Side::Initiator, Me::Fixed(me)) => {
            run.me = Some(me.clone());
            let (mine, hello_frame) = hello_for(me, side, nonce);
            // 1. Hello →
            run.send(&hello_frame).await?;
            // 2. ← Hello, checked.
            let f = run.expect(Kind::Hello, None).await?;
            let (theirs, me) = run.check_hello(&f, Me::Fixed(me)).await?;
            // 3. Proof →
            let p = proof(&me.secret, side, &me.domain, &mine, &theirs);
            run.send(&proof_frame(p)).await?;
            // 4. ← Proof, verified.
            let f = run.expect(Kind::Proof, Some(&theirs)).await?;
            run.check_proof(&f, &me, &mine, &theirs).await?;
            Ok(Peer {
                name: theirs.name,
                domain: theirs.domain,
            })
        }
        (Side::Initiator, Me::ByDomain(_)) => Err(LinkError::Config(
            "an initiator must know its identity before it speaks (Me::ByDomain is for acceptors)"
                .into(),
        )),
        (Side::Acceptor, me) => {
            if let Me::Fixed(m) = &me {
                run.me = Some((*m).clone());
            }
            // 1. ← Hello, checked (nothing is revealed to a peer that fails the checks), and
            //    for a multi-domain acceptor the identity of the domain it names picked.
            let f = run.expect(Kind::Hello, None).await?;
            let (theirs, me) = run.check_hello(&f, me).await?;
            // 2. Hello →
            let (mine, hello_frame) = hello_for(&me, side, nonce);
            run.send(&hello_frame).await?;
            // 3. ← Proof, verified.
            let f = run.expect(Kind::Proof, Some(&theirs)).await?;
            run.check_proof(&f, &me, &theirs, &mine).await?;
            // 4. Proof →
            let p = proof(&me.secret, side, &me.domain, &theirs, &mine);
            run.send(&proof_frame(p)).await?;
            Ok(Peer {
                name: theirs.name,
                domain: theirs.domain,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str, nonce: u8) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            side: 1,
            domain: "prod".into(),
            name: name.into(),
            nonce: [nonce; NONCE_BYTES],
        }
    }

    #[test]
    fn hello_round_trips() {
        let h = hello("site-a", 7);
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn malformed_hellos_are_errors() {
        let good = hello("site-a", 7).encode();
        for cut in 0..good.len() {
            assert!(Hello::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.to_vec();
        long.push(0);
        assert!(Hello::decode(&long).is_err());
        // A name longer than its buffer.
        let mut bad = good.to_vec();
        bad[4] = 200;
        assert!(Hello::decode(&bad).is_err());
    }

    #[test]
    fn proofs_bind_direction_nonces_and_secret() {
        let s = Secret::new(vec![1u8; 32]).expect("32 bytes");
        let other = Secret::new(vec![2u8; 32]).expect("32 bytes");
        let i = hello("site-a", 1);
        let a = hello("site-b", 2);
        let p = proof(&s, Side::Initiator, "prod", &i, &a);
        assert!(verify(&s, Side::Initiator, "prod", &i, &a, &p));
        // Reflected: the same proof offered as the acceptor's.
        assert!(!verify(&s, Side::Acceptor, "prod", &i, &a, &p));
        // Replayed on another connection (another nonce).
        assert!(!verify(
            &s,
            Side::Initiator,
            "prod",
            &hello("site-a", 3),
            &a,
            &p
        ));
        assert!(!verify(&other, Side::Initiator, "prod", &i, &a, &p));
        assert!(!verify(&s, Side::Initiator, "test", &i, &a, &p));
    }

    #[test]
    fn refuse_round_trips() {
        let me = Identity::new("prod", "site-b", Secret::new(vec![1u8; 16]).expect("ok"))
            .expect("valid");
        let f = encode_refuse(RefuseCode::Domain, &me.domain, &me.name, "no");
        let r = decode_refuse(f.header());
        assert_eq!(r.code, Some(RefuseCode::Domain));
        assert_eq!(r.version, PROTOCOL_VERSION);
        assert_eq!(r.domain, "prod");
        assert_eq!(r.name, "site-b");
        assert_eq!(r.text, "no");
        // Garbage never panics.
        let _ = decode_refuse(&[9, 9, 9, 255, 1]);
    }

    #[test]
    fn secret_file_loses_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("metrofs-link-secret-{}", std::process::id()));
        std::fs::write(&path, b"0123456789abcdef\n").expect("write temp file");
        let s = Secret::from_file(&path).expect("16 bytes + newline");
        assert_eq!(&*s.0, b"0123456789abcdef");
        std::fs::write(&path, b"short\n").expect("write temp file");
        let e = Secret::from_file(&path).expect_err("too short").to_string();
        assert!(
            e.contains("it is 5 bytes") && e.contains(&path.display().to_string()),
            "{e}"
        );
        std::fs::remove_file(&path).expect("remove temp file");
        let e = Secret::from_file(&path).expect_err("missing").to_string();
        assert!(e.contains("cannot read secret file"), "{e}");
    }

    #[test]
    fn names_and_secrets_are_checked() {
        assert!(Secret::new(vec![0u8; 8]).is_err());
        let s = Secret::new(vec![0u8; 16]).expect("16 bytes");
        assert!(format!("{s:?}").contains("16 bytes"));
        assert!(Identity::new("prod", "", s.clone()).is_err());
        assert!(Identity::new("pr od", "a", s.clone()).is_err());
        assert!(Identity::new("prod", "x".repeat(65), s.clone()).is_err());
        assert!(Identity::new("prod", "site-a.1_x", s).is_ok());
    }
}
