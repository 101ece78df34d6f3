//! TCP transport: `connect` and `accept` with TCP_NODELAY (a 4 KiB op must not wait for
//! Nagle), on tokio's owned halves. Simulations call [`crate::establish`] on their own streams.

use std::fmt::Display;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::auth::{random_nonce, Identity, Me, Peer, Side};
use crate::config::LinkConfig;
use crate::connection::{establish_split, Handler, Link};
use crate::error::LinkError;

/// Connects to the peer at `addr` and runs the handshake as the initiator.
/// Both steps are bounded: `connect_timeout_ms`, then `handshake_timeout_ms`.
pub async fn connect<A, H>(
    addr: A,
    config: &LinkConfig,
    identity: &Identity,
    handler: H,
) -> Result<Link, LinkError>
where
    A: ToSocketAddrs + Display,
    H: Handler,
{
    config.validate()?;
    let name = addr.to_string();
    let stream =
        match tokio::time::timeout(config.connect_timeout(), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(LinkError::Connect { addr: name, source }),
            Err(_) => {
                return Err(LinkError::Connect {
                    addr: name,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no answer within {} ms (connect_timeout_ms)",
                            config.connect_timeout_ms
                        ),
                    ),
                })
            }
        };
    on_stream(
        stream,
        Side::Initiator,
        config,
        Me::Fixed(identity),
        move |_: &Peer| handler,
        &format!("peer at {name}"),
    )
    .await
}

/// Accepts one connection on `listener` and runs the handshake as the acceptor.
/// A server that must not stall on a slow or hostile client accepts itself and spawns
/// [`accept_stream`] per connection.
pub async fn accept<H: Handler>(
    listener: &TcpListener,
    config: &LinkConfig,
    identity: &Identity,
    handler: H,
) -> Result<Link, LinkError> {
    let (stream, _) = listener.accept().await.map_err(LinkError::Accept)?;
    accept_stream(stream, config, identity, handler).await
}

/// Runs the acceptor's handshake on a connection already accepted.
pub async fn accept_stream<H: Handler>(
    stream: TcpStream,
    config: &LinkConfig,
    identity: &Identity,
    handler: H,
) -> Result<Link, LinkError> {
    let hint = peer_hint(&stream);
    on_stream(
        stream,
        Side::Acceptor,
        config,
        Me::Fixed(identity),
        move |_: &Peer| handler,
        &hint,
    )
    .await
}

/// Runs the acceptor's handshake on a connection already accepted, for an end that serves
/// several domains (a quorum server): see [`crate::establish_with`] for `identify` (this
/// end's identity in the domain the peer names, or `None` to refuse it) and `handler` (makes
/// the request handler for the authenticated peer).
pub async fn accept_stream_with<F, M, H>(
    stream: TcpStream,
    config: &LinkConfig,
    mut identify: F,
    handler: M,
) -> Result<Link, LinkError>
where
    F: FnMut(&str) -> Option<Identity> + Send,
    M: FnOnce(&Peer) -> H + Send,
    H: Handler,
{
    let hint = peer_hint(&stream);
    on_stream(
        stream,
        Side::Acceptor,
        config,
        Me::ByDomain(&mut identify),
        handler,
        &hint,
    )
    .await
}

fn peer_hint(stream: &TcpStream) -> String {
    match stream.peer_addr() {
        Ok(a) => format!("peer at {a}"),
        Err(_) => "the peer".to_owned(),
    }
}

async fn on_stream<M, H>(
    stream: TcpStream,
    side: Side,
    config: &LinkConfig,
    me: Me<'_>,
    handler: M,
    hint: &str,
) -> Result<Link, LinkError>
where
    M: FnOnce(&Peer) -> H,
    H: Handler,
{
    stream
        .set_nodelay(true)
        .map_err(|source| LinkError::HandshakeIo {
            peer: hint.to_owned(),
            source,
        })?;
    let nonce = random_nonce()?;
    let (r, w) = stream.into_split();
    establish_split(r, w, side, config, me, nonce, handler, hint).await
}
