//! Two arrays racing for one epoch: exactly one wins, the other is told who, on one server
//! and on three, over many seeds (each seed: a fresh scope, delays before each claim drawn
//! from the seed, both claims in flight at once).

use std::time::Duration;

use metrofs_quorum::{Claim, QuorumClient};

use crate::{array, client, seeds, wait_connected, Rng, TestServer, ANSWER};

/// Races `a` and `b` for `epoch` of `scope`; returns the winner's name.
async fn race(
    a: &std::sync::Arc<QuorumClient>,
    b: &std::sync::Arc<QuorumClient>,
    scope: u64,
    epoch: u64,
    rng: &mut Rng,
) -> &'static str {
    let (da, db) = (rng.below(1500), rng.below(1500));
    let (ra, rb) = tokio::join!(
        {
            let a = a.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(da)).await;
                a.claim(scope, epoch, ANSWER).await
            })
        },
        {
            let b = b.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(db)).await;
                b.claim(scope, epoch, ANSWER).await
            })
        }
    );
    let ra = ra.expect("task a").expect("a answered");
    let rb = rb.expect("task b").expect("b answered");
    match (&ra, &rb) {
        (Claim::Granted, Claim::Denied { epoch: e, holder }) => {
            assert_eq!((*e, holder.as_str()), (epoch, "site-a"));
            "site-a"
        }
        (Claim::Denied { epoch: e, holder }, Claim::Granted) => {
            assert_eq!((*e, holder.as_str()), (epoch, "site-b"));
            "site-b"
        }
        _ => panic!(
            "scope {scope:x} epoch {epoch}: exactly one winner expected, got a: {ra:?}, b: {rb:?}"
        ),
    }
}

async fn run(servers: usize, base: u64, n: u64) {
    let dirs: Vec<_> = (0..servers)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut list = Vec::new();
    for d in &dirs {
        list.push(TestServer::start(d.path()).await);
    }
    let refs: Vec<&TestServer> = list.iter().collect();
    let a = client(&refs, array("site-a"));
    let b = client(&refs, array("site-b"));
    wait_connected(&a).await;
    wait_connected(&b).await;
    let mut wins = [0u32; 2];
    for seed in seeds(base, n) {
        println!(
            "race on {servers} server(s), seed {seed} (replay with METROFS_QUORUM_SEED={seed})"
        );
        let mut rng = Rng::new(seed);
        let scope = rng.next_u64();
        // Several rounds on the same scope, epochs rising: each round is its own race.
        for epoch in 1..=3 {
            match race(&a, &b, scope, epoch, &mut rng).await {
                "site-a" => wins[0] += 1,
                _ => wins[1] += 1,
            }
        }
    }
    println!(
        "wins on {servers} server(s): site-a {}, site-b {}",
        wins[0], wins[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_one_winner_per_epoch() {
    run(1, 1000, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_one_winner_per_epoch() {
    run(3, 2000, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_claim_is_granted_to_its_holder_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path()).await;
    let a = client(&[&server], array("site-a"));
    let b = client(&[&server], array("site-b"));
    let scope = 42;
    assert_eq!(a.claim(scope, 1, ANSWER).await, Ok(Claim::Granted));
    for _ in 0..3 {
        // Retries of the same claim by its holder, concurrently with the other's claims.
        let (ra, rb) = tokio::join!(a.claim(scope, 1, ANSWER), b.claim(scope, 1, ANSWER));
        assert_eq!(ra, Ok(Claim::Granted));
        assert_eq!(
            rb,
            Ok(Claim::Denied {
                epoch: 1,
                holder: "site-a".into()
            })
        );
    }
}
