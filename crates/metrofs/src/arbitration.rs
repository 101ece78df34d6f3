//! The daemon's side of arbitration: the quorum client behind the metro module's [`Quorum`]
//! seam, and the service address following what the metro module serves.

use std::sync::Arc;
use std::time::Duration;

use metrofs_link::{Identity, LinkConfig};
use metrofs_metro::{Claim, Metro, Quorum, QuorumFuture, QuorumServerView};
use metrofs_nfs::Connections;
use metrofs_quorum::QuorumClient;

use crate::service_addr::ServiceAddress;
use crate::stop::Stop;

/// [`QuorumClient`] as the metro module asks it.
pub struct QuorumAdapter {
    client: Arc<QuorumClient>,
    timeout: Duration,
}

impl QuorumAdapter {
    /// Starts the client (it keeps a link to every server in the background).
    #[must_use]
    pub fn start(servers: Vec<String>, identity: Identity, link: LinkConfig, timeout: Duration) -> Arc<Self> {
        Arc::new(Self { client: QuorumClient::new(servers, identity, link), timeout })
    }
}

impl Quorum for QuorumAdapter {
    fn claim(&self, scope: u64, epoch: u64) -> QuorumFuture<'_, Claim> {
        Box::pin(async move {
            match self.client.claim(scope, epoch, self.timeout).await {
                Ok(metrofs_quorum::Claim::Granted) => Ok(Claim::Granted),
                Ok(metrofs_quorum::Claim::Denied { epoch, holder }) => Ok(Claim::Denied { epoch, holder }),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn force(&self, scope: u64, epoch: u64) -> QuorumFuture<'_, u64> {
        Box::pin(async move { self.client.force(scope, epoch, self.timeout).await.map_err(|e| e.to_string()) })
    }

    fn reachable(&self) -> bool {
        self.client.reachable()
    }

    fn servers(&self) -> Vec<QuorumServerView> {
        self.client
            .status()
            .into_iter()
            .map(|s| QuorumServerView { addr: s.addr, reachable: s.reachable, rtt_us: s.rtt_us, last_error: s.last_error })
            .collect()
    }
}

/// Holds the service address while this array serves, and lets go of it when it stops: at
/// start it is removed (a restarted array does not know yet whether it serves). Before the
/// address goes, the NFS connections (`conns`) are closed and new ones to it turned away, so
/// the closes reach the hosts (see [`metrofs_nfs::Connections::release`]).
pub async fn follow_service(metro: Arc<Metro>, addr: ServiceAddress, conns: Connections, stop: Stop) {
    if let Err(e) = addr.deactivate().await {
        tracing::warn!(error = %e, "cannot remove the service address at start");
    }
    let mut rx = metro.service_watch();
    let mut held = false;
    loop {
        let active = rx.borrow_and_update().active;
        if active != held {
            let r = if active { addr.activate().await } else { release(&addr, &conns).await };
            match r {
                Ok(()) => {
                    held = active;
                    tracing::info!(active, "service address {}", if active { "taken" } else { "released" });
                }
                Err(e) => tracing::error!(error = %e, active, "cannot move the service address; retrying"),
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            () = tokio::time::sleep(Duration::from_secs(2)), if active != held => {}
            _ = stop.stopped() => break,
        }
    }
    if held {
        if let Err(e) = release(&addr, &conns).await {
            tracing::warn!(error = %e, "cannot remove the service address at stop");
        }
    }
}

/// How long the service address waits, before it goes, for the NFS connections to it to close.
const RELEASE_WAIT: Duration = Duration::from_millis(500);

/// Closes the NFS connections to the service address (turning new ones away) and removes it.
async fn release(addr: &ServiceAddress, conns: &Connections) -> Result<(), String> {
    let (_turned_away, left) = conns.release(addr.addr().into(), RELEASE_WAIT).await;
    if left > 0 {
        tracing::warn!(
            address = %addr.addr(),
            left,
            "NFS connections to the service address still open {} ms after their close: the address goes anyway; their hosts wait for their RPC timeout",
            RELEASE_WAIT.as_millis()
        );
    }
    addr.deactivate().await
}
