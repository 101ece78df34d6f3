//! The quorum server: accepts arrays of many domains on one TCP listener and answers their
//! claims from the durable grant records.
//!
//! # Contract
//! 1. Each connection runs the link's handshake as a multi-domain acceptor
//!    ([`metrofs_link::accept_stream_with`]): the array names its domain, the server proves
//!    and checks knowledge of *that* domain's secret. An unknown domain, a wrong secret or
//!    garbage is refused with the link's `Refuse` frame (the array logs why) and logged here;
//!    nothing reaches the grant records.
//! 2. Requests ([`crate::proto`]) are answered for the authenticated domain only; a `Claim` or
//!    `Force` must name the authenticated array. Garbage, epoch 0 or another array's name is
//!    answered `Refused` and logged; the record is unchanged.
//! 3. A grant or a force is durable (fsync) before it is answered ([`crate::grants`]).
//! 4. A failing grant store stops the server ([`QuorumServer::run`] returns the error): a
//!    quorum server that cannot record grants must not answer as if it could.
//!
//! Limits: at most `max_connections` connections at once (more are closed at once, logged);
//! per connection the link's `max_incoming_in_flight` requests; handshakes bounded by the
//! link's `handshake_timeout_ms`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrofs_link::{decode_header, encode_header, Handler, Identity, LinkConfig, Peer, Secret};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{ServerError, StoreError};
use crate::grants::{ClaimOutcome, GrantStore};
use crate::proto::{Request, Response, ScopeHex};

/// The name the server gives in handshakes unless told otherwise. An array of the same name
/// is refused by the link (`SameName`): do not call an array "quorum".
pub const DEFAULT_SERVER_NAME: &str = "quorum";
/// Connections served at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The file in the data directory that may list domains (see [`DomainSecrets::add_toml`]).
pub const DOMAINS_FILE: &str = "domains.toml";
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The domains a server arbitrates, each with its own shared secret (the same secret the
/// domain's two arrays use on their link).
#[derive(Clone, Debug, Default)]
pub struct DomainSecrets {
    domains: BTreeMap<String, Secret>,
}

/// `domains.toml`: `[domains.NAME]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainsFile {
    /// Domain name → its entry.
    #[serde(default)]
    domains: BTreeMap<String, DomainEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainEntry {
    /// The domain's shared secret file; relative paths are relative to the domains file.
    secret_file: std::path::PathBuf,
}

impl DomainSecrets {
    #[must_use]
    pub fn new() -> DomainSecrets {
        DomainSecrets::default()
    }

    /// Adds `domain` with `secret`. The name follows the link's rules; a domain given twice
    /// is an error (two secrets for one domain cannot both be right).
    pub fn insert(&mut self, domain: &str, secret: Secret) -> Result<(), ServerError> {
        Identity::new(domain, DEFAULT_SERVER_NAME, secret.clone())
            .map_err(|e| ServerError::Domains(e.to_string()))?;
        if self.domains.contains_key(domain) {
            return Err(ServerError::Domains(format!(
                "domain '{domain}' is given twice: give each domain once"
            )));
        }
        self.domains.insert(domain.to_owned(), secret);
        Ok(())
    }

    /// Adds `domain` with the secret read from `secret_file` (trailing whitespace dropped, as
    /// the arrays read theirs).
    pub fn add_file(&mut self, domain: &str, secret_file: &Path) -> Result<(), ServerError> {
        let secret = Secret::from_file(secret_file).map_err(|e| {
            ServerError::Domains(format!(
                "domain '{domain}': {e} (the file must hold the domain's shared secret, the same as the arrays' secret_file)"
            ))
        })?;
        self.insert(domain, secret)
    }

    /// Adds a domain from a `NAME=SECRET_FILE` argument (`--domain`).
    pub fn add_arg(&mut self, spec: &str) -> Result<(), ServerError> {
        let Some((name, file)) = spec.split_once('=') else {
            return Err(ServerError::Domains(format!(
                "--domain {spec:?}: expected NAME=SECRET_FILE, e.g. --domain prod=/etc/metrofs/prod.secret"
            )));
        };
        if name.is_empty() || file.is_empty() {
            return Err(ServerError::Domains(format!(
                "--domain {spec:?}: both NAME and SECRET_FILE are needed (NAME=SECRET_FILE)"
            )));
        }
        self.add_file(name, Path::new(file))
    }

    /// Adds every domain of a TOML file:
    ///
    /// ```toml
    /// [domains.prod]
    /// secret_file = "prod.secret"   # relative to this file's directory
    /// ```
    pub fn add_toml(&mut self, path: &Path) -> Result<(), ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Domains(format!("cannot read {}: {e}", path.display())))?;
        let file: DomainsFile = toml::from_str(&text)
            .map_err(|e| ServerError::Domains(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, entry) in file.domains {
            let secret = base.join(&entry.secret_file);
            self.add_file(&name, &secret)
                .map_err(|e| ServerError::Domains(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// The domains' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

/// How a server runs, beyond its domains and data directory.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The server's name in handshakes (arrays log it).
    pub name: String,
    /// Link timing and limits on the server's side of each connection.
    pub link: LinkConfig,
    /// Connections served at once; more are closed as they come.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            name: DEFAULT_SERVER_NAME.to_owned(),
            link: LinkConfig::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// A quorum server with its grant store open, ready to [`run`](QuorumServer::run).
#[derive(Debug)]
pub struct QuorumServer {
    ctx: Arc<Ctx>,
    max_connections: usize,
}

#[derive(Debug)]
struct Ctx {
    store: Arc<GrantStore>,
    /// Domain → the server's identity in it.
    identities: BTreeMap<String, Identity>,
    link: LinkConfig,
    /// Set once the grant store failed: the server stops.
    fatal: watch::Sender<Option<String>>,
}

/// Opens the grant store in `data_dir` and serves `domains` on `listener` until the process
/// ends or the grant store fails. The convenience form of [`QuorumServer`].
pub async fn serve(
    listener: TcpListener,
    data_dir: &Path,
    domains: DomainSecrets,
) -> Result<(), ServerError> {
    QuorumServer::open(data_dir, domains, ServerOptions::default())?
        .run(listener)
        .await
}

impl QuorumServer {
    /// Checks the options and domains and opens (or creates) `data_dir/grants.redb`.
    pub fn open(
        data_dir: &Path,
        domains: DomainSecrets,
        options: ServerOptions,
    ) -> Result<QuorumServer, ServerError> {
        options
            .link
            .validate()
            .map_err(|e| ServerError::Options(e.to_string()))?;
        if options.max_connections == 0 {
            return Err(ServerError::Options(
                "max_connections must be at least 1".into(),
            ));
        }
        if domains.is_empty() {
            return Err(ServerError::Domains(
                "no domain to arbitrate: give at least one --domain NAME=SECRET_FILE".into(),
            ));
        }
        let mut identities = BTreeMap::new();
        for (name, secret) in domains.domains {
            let id = Identity::new(name.clone(), options.name.clone(), secret)
                .map_err(|e| ServerError::Options(format!("server name: {e}")))?;
            identities.insert(name, id);
        }
        let store = Arc::new(GrantStore::open(data_dir)?);
        Ok(QuorumServer {
            ctx: Arc::new(Ctx {
                store,
                identities,
                link: options.link,
                fatal: watch::Sender::new(None),
            }),
            max_connections: options.max_connections,
        })
    }

    /// The domains served, sorted.
    #[must_use]
    pub fn domains(&self) -> Vec<String> {
        self.ctx.identities.keys().cloned().collect()
    }

    /// The grant store's file.
    #[must_use]
    pub fn store_path(&self) -> &Path {
        self.ctx.store.path()
    }

    /// Serves until the grant store fails (then returns the error).
    pub async fn run(self, listener: TcpListener) -> Result<(), ServerError> {
        self.run_until(listener, std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then closes every connection and the grant store
    /// (a commit in progress finishes first; the file is released when this returns).
    /// Returns early with the error if the grant store fails.
    pub async fn run_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        tracing::info!(
            %addr,
            domains = ?self.domains(),
            store = %self.ctx.store.path().display(),
            "quorum server listening"
        );
        let mut fatal = self.ctx.fatal.subscribe();
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            while conns.try_join_next().is_some() {}
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                why = store_failed(&mut fatal) => {
                    break Err(ServerError::Store(StoreError::Io(why)));
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        if conns.len() >= self.max_connections {
                            tracing::warn!(%remote, max = self.max_connections, "quorum connection closed: too many connections (max_connections)");
                            drop(stream);
                            continue;
                        }
                        conns.spawn(connection(stream, remote, self.ctx.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(%addr, "accepting a quorum connection failed: {e}; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        };
        // Closing: connections first (their links close), then the store, waiting for a
        // commit in progress, so the file is free when this returns.
        conns.shutdown().await;
        let store = self.ctx.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!(%addr, "quorum server stopped");
        result
    }
}

/// Completes with the reason once the grant store failed.
async fn store_failed(rx: &mut watch::Receiver<Option<String>>) -> String {
    let failed = match rx.wait_for(Option::is_some).await {
        Ok(why) => why.clone(),
        Err(_) => None,
    };
    failed.unwrap_or_else(|| "the server's state is gone".to_owned())
}

/// One array's connection: handshake, then its requests until the link is down.
async fn connection(stream: TcpStream, remote: SocketAddr, ctx: Arc<Ctx>) {
    let conn_ctx = ctx.clone();
    let link = metrofs_link::accept_stream_with(
        stream,
        &ctx.link,
        |domain: &str| ctx.identities.get(domain).cloned(),
        move |peer: &Peer| Conn {
            ctx: conn_ctx,
            peer: peer.clone(),
        },
    )
    .await;
    match link {
        Err(e) => tracing::warn!(%remote, "quorum connection refused: {e}"),
        Ok(link) => {
            let peer = link.peer().clone();
            tracing::info!(%remote, array = %peer.name, domain = %peer.domain, "array connected");
            let reason = link.closed().await;
            tracing::info!(%remote, array = %peer.name, domain = %peer.domain, "array disconnected: {reason}");
        }
    }
}

/// Serves one authenticated array's requests.
struct Conn {
    ctx: Arc<Ctx>,
    peer: Peer,
}

impl Handler for Conn {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let resp = self.answer(&header, &body).await;
        let h = encode_header(&resp).unwrap_or_else(|e| {
            // Only a record with an absurd holder name could be too large; names are ≤ 64 bytes.
            tracing::error!("quorum reply not encodable: {e}");
            encode_header(&Response::Failed("reply not encodable".into())).unwrap_or_default()
        });
        (h, Bytes::new())
    }
}

impl Conn {
    fn refuse(&self, why: String) -> Response {
        tracing::warn!(array = %self.peer.name, domain = %self.peer.domain, "quorum request refused: {why}");
        Response::Refused(why)
    }

    async fn answer(&self, header: &[u8], body: &[u8]) -> Response {
        let req: Request = match decode_header(header) {
            Ok(r) => r,
            Err(e) => {
                return self.refuse(format!(
                    "the request is not a quorum request ({} bytes): {e}",
                    header.len()
                ))
            }
        };
        if !body.is_empty() {
            return self.refuse(format!(
                "a quorum request carries no body, this one has {} bytes",
                body.len()
            ));
        }
        let domain = self.peer.domain.clone();
        match req {
            Request::Ping => Response::Pong,
            Request::Status { scope } => match self.store(move |s| s.get(&domain, scope)).await {
                Ok(g) => Response::Status(g),
                Err(e) => self.failed(&e),
            },
            Request::Claim {
                scope,
                epoch,
                array,
            } => {
                if let Some(r) = self.check_array(&array) {
                    return r;
                }
                if epoch == 0 {
                    return self.refuse(format!(
                        "claim of epoch 0 for scope {}: epochs start at 1",
                        ScopeHex(scope)
                    ));
                }
                let a = array.clone();
                match self
                    .store(move |s| s.claim(&domain, scope, epoch, &a))
                    .await
                {
                    Ok(ClaimOutcome::Granted(g)) => {
                        tracing::info!(domain = %self.peer.domain, scope = %ScopeHex(scope), epoch, %array, "claim granted");
                        Response::Granted(g)
                    }
                    Ok(ClaimOutcome::Denied(g)) => {
                        if epoch < g.epoch {
                            tracing::warn!(domain = %self.peer.domain, scope = %ScopeHex(scope), epoch, %array, stored = g.epoch, holder = %g.holder, "claim denied: old epoch");
                        } else {
                            tracing::info!(domain = %self.peer.domain, scope = %ScopeHex(scope), epoch, %array, holder = %g.holder, "claim denied: epoch already granted to another array");
                        }
                        Response::Denied(g)
                    }
                    Err(e) => self.failed(&e),
                }
            }
            Request::Force {
                scope,
                epoch,
                array,
            } => {
                if let Some(r) = self.check_array(&array) {
                    return r;
                }
                let a = array.clone();
                match self
                    .store(move |s| s.force(&domain, scope, epoch, &a))
                    .await
                {
                    Ok(g) => {
                        tracing::warn!(domain = %self.peer.domain, scope = %ScopeHex(scope), asked = epoch, epoch = g.epoch, %array, "force-start recorded");
                        Response::Forced(g)
                    }
                    Err(e @ StoreError::Exhausted { .. }) => self.refuse(e.to_string()),
                    Err(e) => self.failed(&e),
                }
            }
        }
    }

    /// A `Claim` or `Force` may only name the authenticated array.
    fn check_array(&self, array: &str) -> Option<Response> {
        (array != self.peer.name).then(|| {
            self.refuse(format!(
                "array '{}' asked in the name of '{array}': an array may only claim for itself",
                self.peer.name
            ))
        })
    }

    fn failed(&self, e: &StoreError) -> Response {
        tracing::error!(array = %self.peer.name, domain = %self.peer.domain, "quorum request failed: {e}");
        if let Some(why) = self.ctx.store.failure() {
            self.ctx.fatal.send_if_modified(|f| {
                if f.is_none() {
                    *f = Some(why);
                    true
                } else {
                    false
                }
            });
        }
        Response::Failed(e.to_string())
    }

    /// Runs a grant-store call off the async threads (it may fsync).
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GrantStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Io(format!("the grant store call did not finish: {e}")))?
    }
}
