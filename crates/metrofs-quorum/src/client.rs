//! The array's side: [`QuorumClient`] keeps a link to each quorum server and asks them for
//! epochs.
//!
//! # Contract
//! - [`QuorumClient::new`] starts one background task per server that keeps a link up
//!   (reconnecting [`RECONNECT_INTERVAL`] after a failure or a loss). Dropping the last
//!   `Arc<QuorumClient>` stops the tasks and closes the links.
//! - [`QuorumClient::claim`] asks every server at once. The claim is `Granted` once a
//!   majority (`n / 2 + 1` of the `n` servers configured) granted it. Otherwise, once the
//!   outcome is settled: `Denied` if any server denied it (another array may hold the epoch),
//!   naming the holder of the highest epoch seen, the one most servers name at that epoch
//!   (answers are awaited until one array holds a majority, every server answered or failed,
//!   or the timeout passed, so it names the array that won the majority when one did); else
//!   `Err(Unreachable)`. A server not connected yet is waited for until the timeout; a
//!   call cut by a link loss is sent again on the next link (a claim is idempotent for the
//!   same array and epoch, so a grant whose reply was lost is granted again, not denied).
//! - At most one array can be granted an epoch: any two majorities share a server, and a
//!   server grants each (domain, scope, epoch) to one array only, durably.
//! - [`QuorumClient::force`] is best effort: every server connected now records the force;
//!   the highest epoch recorded is returned.
//! - [`QuorumClient::reachable`] and [`QuorumClient::status`] read the links' state now
//!   (heartbeats take a link down within its `heartbeat_timeout_ms`).
//!
//! A caller that applies a "static priority" fallback on `Unreachable` must know that
//! `Unreachable` means "no majority answered *this* array": with an odd number of servers
//! and a partition, the other array may still have reached a majority. `Denied` always means
//! another array holds the epoch (or a higher one) on some server.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use metrofs_link::{Identity, Link, LinkConfig, LinkError, NoRequests};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::QuorumError;
use crate::proto::{Grant, Request, Response, ScopeHex};

/// How long after a failed connect or a lost link a server is dialled again.
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// The outcome of a claim that a majority of servers answered (or that one denied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Claim {
    /// A majority of the quorum servers granted the epoch to this array (durably).
    Granted,
    /// The epoch is not this array's: a server holds this record (a higher epoch, or the
    /// same one granted to `holder`). The highest record seen among the denials.
    Denied { epoch: u64, holder: String },
}

/// One quorum server as this client sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    /// The address as configured.
    pub addr: String,
    /// The link is up (handshake done, heartbeats flowing).
    pub reachable: bool,
    /// The last heartbeat round trip, in microseconds, while reachable.
    pub rtt_us: Option<u64>,
    /// Why the server is not reachable (the last connect error or link loss); `None` while
    /// reachable.
    pub last_error: Option<String>,
}

/// One server's answer to a `Status` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerRecord {
    pub addr: String,
    /// The record (`Ok(None)`: never claimed), or why there is no answer.
    pub record: Result<Option<Grant>, String>,
}

/// One quorum server: its current link and why it has none.
struct Server {
    addr: String,
    link: watch::Sender<Option<Link>>,
    last_error: Mutex<Option<String>>,
}

impl Server {
    fn set_error(&self, e: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = e;
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The link if it is up now.
    fn up(&self) -> Option<Link> {
        self.link
            .borrow()
            .as_ref()
            .filter(|l| l.down_reason().is_none())
            .cloned()
    }
}

/// An array's client of its quorum servers. See the module documentation for the rules.
pub struct QuorumClient {
    identity: Identity,
    servers: Vec<Arc<Server>>,
    /// Dropped with the client: the background tasks see it and end.
    _stop: watch::Sender<()>,
}

impl std::fmt::Debug for QuorumClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumClient")
            .field("array", &self.identity.name())
            .field("domain", &self.identity.domain())
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.addr).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl QuorumClient {
    /// A client of `servers` (`host:port` each) for `identity` (the array's domain, its name
    /// and the domain's shared secret, as on its link to the peer array), with `link` timing
    /// (its heartbeats decide [`reachable`](QuorumClient::reachable)).
    ///
    /// Starts connecting at once, in the background, on the current tokio runtime (so it must
    /// be called inside one). An address listed twice is used once (it would count twice
    /// towards a majority). An empty list gives a client that is never reachable and whose
    /// claims are `Unreachable`.
    #[must_use]
    pub fn new(servers: Vec<String>, identity: Identity, link: LinkConfig) -> Arc<QuorumClient> {
        let (stop, _) = watch::channel(());
        let mut list: Vec<Arc<Server>> = Vec::new();
        for addr in servers {
            if list.iter().any(|s| s.addr == addr) {
                tracing::warn!(%addr, "quorum server listed twice; using it once");
                continue;
            }
            list.push(Arc::new(Server {
                addr,
                link: watch::Sender::new(None),
                last_error: Mutex::new(Some("not connected yet".into())),
            }));
        }
        for s in &list {
            tokio::spawn(keep_connected(
                s.clone(),
                identity.clone(),
                link.clone(),
                stop.subscribe(),
            ));
        }
        Arc::new(QuorumClient {
            identity,
            servers: list,
            _stop: stop,
        })
    }

    /// How many servers must grant a claim: `n / 2 + 1` of the `n` configured.
    #[must_use]
    pub fn majority(&self) -> usize {
        self.servers.len() / 2 + 1
    }

    /// The servers' addresses, as configured (duplicates removed).
    #[must_use]
    pub fn servers(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.addr.clone()).collect()
    }

    /// A majority of the servers is connected now (their links' heartbeats are answered).
    #[must_use]
    pub fn reachable(&self) -> bool {
        !self.servers.is_empty()
            && self.servers.iter().filter(|s| s.up().is_some()).count() >= self.majority()
    }

    /// Each server's state now, in configuration order.
    #[must_use]
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers
            .iter()
            .map(|s| {
                let up = s.up();
                ServerStatus {
                    addr: s.addr.clone(),
                    reachable: up.is_some(),
                    rtt_us: up
                        .as_ref()
                        .and_then(Link::rtt)
                        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    last_error: if up.is_some() { None } else { s.last_error() },
                }
            })
            .collect()
    }

    /// Asks the quorum to let this array go on for `epoch` of `scope` (the pair id).
    ///
    /// `Ok(Granted)`: a majority of the servers recorded the epoch for this array, durably;
    /// no other array can be granted it. `Ok(Denied { epoch, holder })`: some server holds
    /// `epoch` (≥ the one asked) for `holder`; this array must not act as the winner.
    /// `Err(Unreachable)`: no majority answered within `timeout` and none denied. Calling
    /// again with the same epoch is safe (a retry is granted again, never to two arrays).
    pub async fn claim(
        &self,
        scope: u64,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Claim, QuorumError> {
        if epoch == 0 {
            return Err(QuorumError::Invalid(
                "epoch 0 cannot be claimed: epochs start at 1".into(),
            ));
        }
        let req = Request::Claim {
            scope,
            epoch,
            array: self.identity.name().to_owned(),
        };
        let deadline = Instant::now() + timeout;
        let need = self.majority();
        let mut asks = self.ask_all(&self.servers, &req, deadline);
        let mut granted = 0usize;
        let mut denials: Vec<Grant> = Vec::new();
        let mut outcomes: Vec<String> = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let (addr, answer) = match joined {
                Ok(a) => a,
                Err(e) => ("?".to_owned(), Err(format!("the request task failed: {e}"))),
            };
            match answer {
                Ok(Response::Granted(g))
                    if g.epoch == epoch && g.holder == self.identity.name() =>
                {
                    granted += 1;
                    outcomes.push(format!("{addr}: granted"));
                }
                Ok(Response::Denied(g)) => {
                    outcomes.push(format!(
                        "{addr}: denied, epoch {} held by {}",
                        g.epoch, g.holder
                    ));
                    denials.push(g);
                }
                Ok(Response::Refused(why)) => {
                    outcomes.push(format!("{addr}: refused the request: {why}"))
                }
                Ok(Response::Failed(why)) => outcomes.push(format!("{addr}: failed: {why}")),
                Ok(other) => outcomes.push(format!("{addr}: unexpected answer {other:?}")),
                Err(why) => outcomes.push(format!("{addr}: {why}")),
            }
            if granted >= need {
                tracing::info!(scope = %ScopeHex(scope), epoch, granted, servers = self.servers.len(), "quorum granted the epoch");
                return Ok(Claim::Granted);
            }
            if granted + asks.len() < need && top_holder(&denials).is_some_and(|(_, n)| n >= need) {
                // A majority can no longer grant it and another array holds one: the others'
                // answers change nothing. (Without such a holder yet, they tell who holds it.)
                break;
            }
        }
        drop(asks);
        let denied = top_holder(&denials).map(|(g, _)| g.clone());
        let summary = format!(
            "{granted} of {} quorum servers granted epoch {epoch} of scope {}, {need} needed: {}",
            self.servers.len(),
            ScopeHex(scope),
            if outcomes.is_empty() {
                "no quorum server is configured".to_owned()
            } else {
                outcomes.join("; ")
            }
        );
        match denied {
            Some(g) => {
                tracing::info!(scope = %ScopeHex(scope), epoch, "quorum denied the epoch: {summary}");
                Ok(Claim::Denied {
                    epoch: g.epoch,
                    holder: g.holder,
                })
            }
            None => {
                tracing::warn!(scope = %ScopeHex(scope), epoch, "no quorum: {summary}");
                Err(QuorumError::Unreachable(summary))
            }
        }
    }

    /// The operator's force-start: every server connected now records this array as holder
    /// of `scope` at `max(epoch, its stored epoch + 1)`. Returns the highest epoch recorded
    /// (use it as the new epoch). When no server is connected, all are waited for until
    /// `timeout`; `Err(Unreachable)` if none recorded it.
    ///
    /// Servers that were not reached keep their records; a later claim above the returned
    /// epoch overrides them.
    pub async fn force(
        &self,
        scope: u64,
        epoch: u64,
        timeout: Duration,
    ) -> Result<u64, QuorumError> {
        let req = Request::Force {
            scope,
            epoch,
            array: self.identity.name().to_owned(),
        };
        let deadline = Instant::now() + timeout;
        let connected: Vec<Arc<Server>> = self
            .servers
            .iter()
            .filter(|s| s.up().is_some())
            .cloned()
            .collect();
        let targets = if connected.is_empty() {
            &self.servers
        } else {
            &connected
        };
        let mut asks = self.ask_all(targets, &req, deadline);
        let mut best: Option<u64> = None;
        let mut outcomes = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let (addr, answer) = match joined {
                Ok(a) => a,
                Err(e) => ("?".to_owned(), Err(format!("the request task failed: {e}"))),
            };
            match answer {
                Ok(Response::Forced(g)) => {
                    outcomes.push(format!("{addr}: recorded epoch {}", g.epoch));
                    best = best.max(Some(g.epoch));
                }
                Ok(Response::Refused(why)) => outcomes.push(format!("{addr}: refused: {why}")),
                Ok(Response::Failed(why)) => outcomes.push(format!("{addr}: failed: {why}")),
                Ok(other) => outcomes.push(format!("{addr}: unexpected answer {other:?}")),
                Err(why) => outcomes.push(format!("{addr}: {why}")),
            }
        }
        let summary = outcomes.join("; ");
        match best {
            Some(e) => {
                tracing::warn!(scope = %ScopeHex(scope), asked = epoch, epoch = e, "force-start recorded by the quorum: {summary}");
                Ok(e)
            }
            None => Err(QuorumError::Unreachable(format!(
                "no quorum server recorded the force-start of scope {}: {}",
                ScopeHex(scope),
                if summary.is_empty() {
                    "no quorum server is configured"
                } else {
                    &summary
                }
            ))),
        }
    }

    /// Every server's record of `scope`, asked at once, each within `timeout`.
    pub async fn records(&self, scope: u64, timeout: Duration) -> Vec<ServerRecord> {
        let deadline = Instant::now() + timeout;
        let mut asks = self.ask_all(&self.servers, &Request::Status { scope }, deadline);
        let mut got = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let Ok((addr, answer)) = joined else { continue };
            let record = match answer {
                Ok(Response::Status(g)) => Ok(g),
                Ok(Response::Refused(why) | Response::Failed(why)) => Err(why),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(why) => Err(why),
            };
            got.push(ServerRecord { addr, record });
        }
        got.sort_by_key(|r| self.servers.iter().position(|s| s.addr == r.addr));
        got
    }

    fn ask_all(
        &self,
        servers: &[Arc<Server>],
        req: &Request,
        deadline: Instant,
    ) -> JoinSet<(String, Result<Response, String>)> {
        let mut set = JoinSet::new();
        for s in servers {
            let (s, req) = (s.clone(), req.clone());
            set.spawn(async move {
                let answer = ask(&s, &req, deadline).await;
                (s.addr.clone(), answer)
            });
        }
        set
    }
}

/// Sends `req` to one server, waiting for a link until `deadline` and sending again on the
/// next link if one is lost under the call. `Err` says why there is no answer.
async fn ask(s: &Server, req: &Request, deadline: Instant) -> Result<Response, String> {
    let mut rx = s.link.subscribe();
    let mut last: Option<String> = None;
    loop {
        let waited: Result<Result<Option<Link>, ()>, ()> = {
            let w = tokio::time::timeout_at(
                deadline,
                rx.wait_for(|l| l.as_ref().is_some_and(|l| l.down_reason().is_none())),
            )
            .await;
            match w {
                Ok(Ok(l)) => Ok(Ok(l.clone())),
                Ok(Err(_)) => Ok(Err(())),
                Err(_) => Err(()),
            }
        };
        let link = match waited {
            Ok(Ok(l)) => l,
            Ok(Err(())) => return Err("the client is shutting down".into()),
            Err(()) => {
                let why = last
                    .or_else(|| s.last_error())
                    .unwrap_or_else(|| "not connected".into());
                return Err(format!("no answer before the timeout ({why})"));
            }
        };
        let Some(link) = link else { continue };
        let call = link.call_typed::<Request, Response>(req, Bytes::new());
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok((resp, _))) => return Ok(resp),
            Ok(Err(e @ (LinkError::Down { .. } | LinkError::CallTimeout { .. }))) => {
                // Lost with the link (the next link gets it again) or not answered in the
                // link's call_timeout_ms (sent again). Safe: a claim is idempotent for the
                // same array and epoch.
                tracing::debug!(addr = %s.addr, "quorum call not answered, sending it again: {e}");
                last = Some(e.to_string());
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                let why = last.map_or_else(String::new, |l| format!(" (before that: {l})"));
                return Err(format!("no answer before the timeout{why}"));
            }
        }
    }
}

/// Keeps a link to one server up until the client is dropped.
async fn keep_connected(
    s: Arc<Server>,
    identity: Identity,
    config: LinkConfig,
    mut stop: watch::Receiver<()>,
) {
    let mut logged: Option<String> = None;
    loop {
        let attempt = tokio::select! {
            _ = stop.changed() => return,
            r = metrofs_link::connect(s.addr.as_str(), &config, &identity, NoRequests) => r,
        };
        match attempt {
            Ok(link) => {
                tracing::info!(addr = %s.addr, server = %link.peer().name, "quorum server connected");
                logged = None;
                s.set_error(None);
                s.link.send_replace(Some(link.clone()));
                let reason = tokio::select! {
                    _ = stop.changed() => return,
                    r = link.closed() => r,
                };
                s.link.send_replace(None);
                let why = format!("link lost: {reason}");
                tracing::warn!(addr = %s.addr, "quorum server {why}");
                s.set_error(Some(why));
            }
            Err(e) => {
                let why = e.to_string();
                // One warning per distinct reason, not one per attempt.
                if logged.as_deref() != Some(why.as_str()) {
                    tracing::warn!(addr = %s.addr, "cannot reach quorum server: {why}");
                    logged = Some(why.clone());
                } else {
                    tracing::debug!(addr = %s.addr, "cannot reach quorum server: {why}");
                }
                s.set_error(Some(why));
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(RECONNECT_INTERVAL) => {}
        }
    }
}

/// The record to name in a `Denied`: at the highest epoch denied, the holder most servers name
/// (the first one heard on a tie), with how many name it.
fn top_holder(denials: &[Grant]) -> Option<(&Grant, usize)> {
    let top = denials.iter().map(|g| g.epoch).max()?;
    let at_top = || denials.iter().filter(move |g| g.epoch == top);
    at_top()
        .map(|g| (g, at_top().filter(|h| h.holder == g.holder).count()))
        .fold(None, |best: Option<(&Grant, usize)>, (g, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((g, n)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(epoch: u64, holder: &str) -> Grant {
        Grant { epoch, holder: holder.to_owned() }
    }

    #[test]
    fn a_denial_names_the_majority_holder_at_the_highest_epoch() {
        assert_eq!(top_holder(&[]), None);
        // The first heard holds one server, the other array two: the other array is named.
        let d = [g(3, "site-b"), g(3, "site-a"), g(3, "site-a")];
        assert_eq!(top_holder(&d), Some((&d[1], 2)));
        // A higher epoch wins over more servers at a lower one.
        let d = [g(3, "site-a"), g(3, "site-a"), g(4, "site-b")];
        assert_eq!(top_holder(&d), Some((&d[2], 1)));
        // A tie names the first heard.
        let d = [g(2, "site-b"), g(2, "site-a")];
        assert_eq!(top_holder(&d), Some((&d[0], 1)));
    }
}
