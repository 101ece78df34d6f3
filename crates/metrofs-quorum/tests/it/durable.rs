//! Grants are durable: they survive an orderly restart and an aborted server; a retry of the
//! same epoch by its holder is granted again (also after a restart), anyone else's denied;
//! force raises the epoch above whatever is stored.

use metrofs_quorum::grants::GrantStore;
use metrofs_quorum::{Claim, Grant, QuorumError};

use crate::{array, client, wait_connected, wait_until, TestServer, ANSWER};

const SCOPE: u64 = 0x00c0_ffee_0000_0001;

fn denied(epoch: u64, holder: &str) -> Claim {
    Claim::Denied {
        epoch,
        holder: holder.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_survive_restarts_and_retries_are_granted_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = TestServer::start(dir.path()).await;
    let a = client(&[&server], array("site-a"));
    let b = client(&[&server], array("site-b"));

    assert_eq!(a.claim(SCOPE, 5, ANSWER).await, Ok(Claim::Granted));
    assert_eq!(b.claim(SCOPE, 5, ANSWER).await, Ok(denied(5, "site-a")));

    // Orderly restart.
    server.stop().await;
    wait_until("site-a sees the server gone", || !a.reachable()).await;
    server.restart().await;
    assert_eq!(b.claim(SCOPE, 5, ANSWER).await, Ok(denied(5, "site-a")));
    assert_eq!(b.claim(SCOPE, 4, ANSWER).await, Ok(denied(5, "site-a")));
    // The holder's retry (e.g. its first reply was lost) is granted again.
    assert_eq!(a.claim(SCOPE, 5, ANSWER).await, Ok(Claim::Granted));

    // A higher epoch goes to whoever asks first; then the old holder is behind.
    assert_eq!(b.claim(SCOPE, 6, ANSWER).await, Ok(Claim::Granted));

    // Aborted server (no orderly close of anything).
    server.crash().await;
    server.restart().await;
    assert_eq!(a.claim(SCOPE, 6, ANSWER).await, Ok(denied(6, "site-b")));
    assert_eq!(a.claim(SCOPE, 5, ANSWER).await, Ok(denied(6, "site-b")));
    assert_eq!(b.claim(SCOPE, 6, ANSWER).await, Ok(Claim::Granted));

    wait_connected(&a).await;
    let recs = a.records(SCOPE, ANSWER).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].record,
        Ok(Some(Grant {
            epoch: 6,
            holder: "site-b".into()
        }))
    );
    assert_eq!(a.records(SCOPE + 1, ANSWER).await[0].record, Ok(None));
    server.stop().await;

    // What a restarted server reads is exactly the store's records.
    let store = GrantStore::open(dir.path()).expect("open the store");
    assert_eq!(
        store.get("prod", SCOPE).expect("get"),
        Some(Grant {
            epoch: 6,
            holder: "site-b".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_whose_reply_was_lost_is_granted_on_retry() {
    // The server committed the grant and died before replying: the store holds it, the
    // array does not know. Its retry must be granted, the other array's claim denied.
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = GrantStore::open(dir.path()).expect("open");
        store.claim("prod", SCOPE, 7, "site-a").expect("claim");
    }
    let server = TestServer::start(dir.path()).await;
    let a = client(&[&server], array("site-a"));
    let b = client(&[&server], array("site-b"));
    assert_eq!(b.claim(SCOPE, 7, ANSWER).await, Ok(denied(7, "site-a")));
    assert_eq!(a.claim(SCOPE, 7, ANSWER).await, Ok(Claim::Granted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_raises_the_epoch_above_what_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path()).await;
    let a = client(&[&server], array("site-a"));
    let b = client(&[&server], array("site-b"));
    wait_connected(&b).await;
    // Nothing stored: the asked epoch, at least 1.
    assert_eq!(b.force(SCOPE, 0, ANSWER).await, Ok(1));
    assert_eq!(a.claim(SCOPE, 3, ANSWER).await, Ok(Claim::Granted));
    // Stored 3 by site-a: force of 2 records 4 for site-b.
    assert_eq!(b.force(SCOPE, 2, ANSWER).await, Ok(4));
    assert_eq!(a.claim(SCOPE, 4, ANSWER).await, Ok(denied(4, "site-b")));
    // A force above the stored epoch is taken as asked.
    assert_eq!(b.force(SCOPE, 10, ANSWER).await, Ok(10));
    assert_eq!(a.claim(SCOPE, 11, ANSWER).await, Ok(Claim::Granted));
    // Epoch 0 is never claimed.
    assert!(matches!(
        a.claim(SCOPE, 0, ANSWER).await,
        Err(QuorumError::Invalid(_))
    ));
}
