//! Three quorum servers: a claim needs two grants. One server down: claims are still
//! granted and the client is reachable. Two down: `Unreachable` once the timeout passes, with
//! each server's outcome named; not reachable. A server that another array already holds
//! does not stop a majority of the others from granting.

use std::time::{Duration, Instant};

use metrofs_quorum::{Claim, QuorumClient, QuorumError};

use crate::{array, client, wait_connected, wait_until, TestServer, ANSWER};

async fn three() -> (Vec<tempfile::TempDir>, Vec<TestServer>) {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut servers = Vec::new();
    for d in &dirs {
        servers.push(TestServer::start(d.path()).await);
    }
    (dirs, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_grants_with_one_server_down_and_not_with_two() {
    let (_dirs, mut s) = three().await;
    let a = client(&[&s[0], &s[1], &s[2]], array("site-a"));
    let b = client(&[&s[0], &s[1], &s[2]], array("site-b"));
    assert_eq!(a.majority(), 2);
    wait_connected(&a).await;
    wait_connected(&b).await;
    assert!(a.reachable());
    let st = a.status();
    assert_eq!(st.len(), 3);
    assert!(
        st.iter().all(|x| x.reachable && x.last_error.is_none()),
        "{st:?}"
    );
    wait_until("a heartbeat RTT is measured", || {
        a.status().iter().all(|x| x.rtt_us.is_some())
    })
    .await;

    s[2].stop().await;
    wait_until("server 3 seen down", || !a.status()[2].reachable).await;
    assert!(a.reachable(), "2 of 3 is a majority");
    assert!(a.status()[2].last_error.is_some());
    assert_eq!(a.claim(1, 1, ANSWER).await, Ok(Claim::Granted));
    assert_eq!(
        b.claim(1, 1, ANSWER).await,
        Ok(Claim::Denied {
            epoch: 1,
            holder: "site-a".into()
        })
    );

    s[1].stop().await;
    wait_until("server 2 seen down", || !a.status()[1].reachable).await;
    assert!(!a.reachable(), "1 of 3 is no majority");
    let started = Instant::now();
    let e = a
        .claim(1, 2, Duration::from_millis(700))
        .await
        .expect_err("no majority");
    assert!(started.elapsed() >= Duration::from_millis(700));
    let QuorumError::Unreachable(why) = &e else {
        panic!("{e:?}")
    };
    assert!(
        why.contains("1 of 3 quorum servers granted epoch 2"),
        "{why}"
    );
    assert!(why.contains("2 needed"), "{why}");
    assert!(why.contains(&format!("{}: granted", s[0].addr)), "{why}");
    assert!(
        why.contains(&format!("{}: no answer before the timeout", s[1].addr)),
        "{why}"
    );
    let json = serde_json::to_value(a.status()).expect("status serializes");
    assert_eq!(json[1]["reachable"], false, "{json}");
    assert!(json[1]["last_error"].is_string(), "{json}");
    assert_eq!(json[0]["reachable"], true, "{json}");
    assert!(json[0]["rtt_us"].is_u64(), "{json}");

    // A server coming back (with its records) makes the majority again; the claim that
    // was granted by server 1 alone is granted again by it (a retry) and by server 2.
    s[1].restart().await;
    wait_until("server 2 back", || a.reachable()).await;
    assert_eq!(a.claim(1, 2, ANSWER).await, Ok(Claim::Granted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_a_server_that_comes_up_within_the_timeout() {
    let (_dirs, mut s) = three().await;
    s[1].stop().await;
    s[2].stop().await;
    let a = client(&[&s[0], &s[1], &s[2]], array("site-a"));
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s[2].restart().await;
    };
    let (r, ()) = tokio::join!(a.claim(9, 1, ANSWER), restart);
    assert_eq!(r, Ok(Claim::Granted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_held_by_the_other_array_does_not_block_a_majority() {
    let (_dirs, s) = three().await;
    // site-b got server 1 alone for epoch 3 (e.g. it was cut off from the other two).
    let b_alone = client(&[&s[0]], array("site-b"));
    assert_eq!(b_alone.claim(5, 3, ANSWER).await, Ok(Claim::Granted));
    let a = client(&[&s[0], &s[1], &s[2]], array("site-a"));
    let b = client(&[&s[0], &s[1], &s[2]], array("site-b"));
    assert_eq!(a.claim(5, 3, ANSWER).await, Ok(Claim::Granted));
    // site-b, with the full list now, sees servers 2 and 3 held by site-a.
    assert_eq!(
        b.claim(5, 3, ANSWER).await,
        Ok(Claim::Denied {
            epoch: 3,
            holder: "site-a".into()
        })
    );
    // No majority for anyone: 1 grant for b, 2 held by a. Neither unreachable nor granted.
    let c = client(&[&s[0], &s[1], &s[2]], array("site-c"));
    assert_eq!(
        c.claim(5, 3, ANSWER).await,
        Ok(Claim::Denied {
            epoch: 3,
            holder: "site-a".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_never_reachable() {
    let a = QuorumClient::new(Vec::new(), array("site-a"), crate::link());
    assert!(!a.reachable());
    assert!(a.status().is_empty());
    assert!(matches!(
        a.claim(1, 1, Duration::from_millis(10)).await,
        Err(QuorumError::Unreachable(why)) if why.contains("no quorum server is configured")
    ));
    assert!(matches!(
        a.force(1, 1, Duration::from_millis(10)).await,
        Err(QuorumError::Unreachable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_listed_twice_counts_once() {
    let (_dirs, s) = three().await;
    let a = QuorumClient::new(
        vec![s[0].addr.to_string(), s[0].addr.to_string()],
        array("site-a"),
        crate::link(),
    );
    assert_eq!(a.servers().len(), 1);
    assert_eq!(a.majority(), 1);
}
