//! TCP transport: `connect` and `accept` with TCP_NODELAY (a 4 KiB op must not wait for
//! Nagle), on tokio's owned halves. Simulations call [`crate::establish`] on their own streams.

use std::fmt::Display;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::auth::{random_nonce, Identity, Side};
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
        identity,
        handler,
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
    let hint = match stream.peer_addr() {
        Ok(a) => format!("peer at {a}"),
        Err(_) => "the peer".to_owned(),
    };
    on_stream(stream, Side::Acceptor, config, identity, handler, &hint).await
}

async fn on_stream<H: Handler>(
    stream: TcpStream,
    side: Side,
    config: &LinkConfig,
    identity: &Identity,
    handler: H,
    hint: &str,
) -> Result<Link, LinkError> {
    stream
        .set_nodelay(true)
        .map_err(|source| LinkError::HandshakeIo {
            peer: hint.to_owned(),
            source,
        })?;
    let nonce = random_nonce()?;
    let (r, w) = stream.into_split();
    establish_split(r, w, side, config, identity, nonce, handler, hint).await
}
