//! A quorum server restarted during an arbitration: both arrays claim the same epoch while
//! the server is aborted (at a seeded moment: before, during or after it decides) and
//! restarted (after a seeded pause). Whatever the moment, at most one array is granted the
//! epoch; and since the server comes back within the claims' timeout, exactly one is, and
//! the stored record names it. With three servers, one of them restarted: the same.

use std::time::Duration;

use metrofs_quorum::{Claim, Grant};

use crate::{array, client, seeds, wait_connected, Rng, TestServer, ANSWER};

async fn arbitrate_across_a_restart(servers: usize, base: u64, n: u64) {
    let dirs: Vec<_> = (0..servers)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut list = Vec::new();
    for d in &dirs {
        list.push(TestServer::start(d.path()).await);
    }
    let (a, b) = {
        let refs: Vec<&TestServer> = list.iter().collect();
        (
            client(&refs, array("site-a")),
            client(&refs, array("site-b")),
        )
    };
    for seed in seeds(base, n) {
        println!(
            "restart during arbitration on {servers} server(s), seed {seed} (replay with METROFS_QUORUM_SEED={seed})"
        );
        let mut rng = Rng::new(seed);
        wait_connected(&a).await;
        wait_connected(&b).await;
        let scope = rng.next_u64();
        let epoch = 1 + rng.below(1000);
        let victim = usize::try_from(rng.below(servers as u64)).expect("small");
        let (da, db) = (rng.below(3000), rng.below(3000));
        let kill_after = Duration::from_micros(rng.below(4000));
        let down_for = Duration::from_millis(rng.below(300));

        let ca = {
            let a = a.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(da)).await;
                a.claim(scope, epoch, ANSWER).await
            })
        };
        let cb = {
            let b = b.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(db)).await;
                b.claim(scope, epoch, ANSWER).await
            })
        };
        tokio::time::sleep(kill_after).await;
        let settled = (ca.is_finished(), cb.is_finished());
        list[victim].crash().await;
        println!("  server {victim} aborted after {kill_after:?}; claims finished then (a, b): {settled:?}");
        tokio::time::sleep(down_for).await;
        list[victim].restart().await;

        let ra = ca
            .await
            .expect("task a")
            .expect("a answered within the timeout");
        let rb = cb
            .await
            .expect("task b")
            .expect("b answered within the timeout");
        let winner = match (&ra, &rb) {
            (Claim::Granted, Claim::Granted) => {
                panic!("seed {seed}: both arrays were granted epoch {epoch}")
            }
            (Claim::Granted, Claim::Denied { .. }) => "site-a",
            (Claim::Denied { .. }, Claim::Granted) => "site-b",
            _ => panic!("seed {seed}: nobody won epoch {epoch}: a {ra:?}, b {rb:?}"),
        };
        // A majority of the servers record the winner.
        let held = a
            .records(scope, ANSWER)
            .await
            .into_iter()
            .filter(|r| {
                r.record
                    == Ok(Some(Grant {
                        epoch,
                        holder: winner.into(),
                    }))
            })
            .count();
        assert!(
            held > servers / 2,
            "seed {seed}: {held} servers record {winner}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_restarted_during_arbitration_still_one_winner() {
    arbitrate_across_a_restart(1, 3000, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_restarted_during_arbitration_still_one_winner() {
    arbitrate_across_a_restart(3, 4000, 10).await;
}
