//! The link under turmoil (seeded network simulation, simulated time): the seams DESIGN.md
//! asks for (stream as a type parameter, tokio timers, nonce as a value) are enough to run
//! it there. A partition takes the link down on both sides within the heartbeat timeout.

use std::time::Duration;

use bytes::Bytes;
use metrofs_link::{establish, DownReason, LinkError, Side};
use tokio::time::Instant;

use crate::{site_a, site_b, tight_config, Echo};

const PORT: u16 = 7700;

fn seed() -> u64 {
    std::env::var("METROFS_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x11_4e)
}

#[test]
fn partition_takes_the_link_down_in_simulated_time() -> turmoil::Result {
    let seed = seed();
    println!("turmoil seed {seed} (replay with METROFS_SIM_SEED={seed})");
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(30))
        .build();

    sim.host("site-a", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
        let (stream, _) = listener.accept().await?;
        let link = establish(
            stream,
            Side::Acceptor,
            &tight_config(),
            &site_a(),
            [0xA; 32],
            Echo::default(),
        )
        .await?;
        let reason = link.closed().await;
        assert!(
            matches!(reason, DownReason::HeartbeatTimeout { .. }),
            "site-a: {reason:?}"
        );
        Ok(())
    });

    sim.client("site-b", async {
        let stream = turmoil::net::TcpStream::connect(("site-a", PORT)).await?;
        let link = establish(
            stream,
            Side::Initiator,
            &tight_config(),
            &site_b(),
            [0xB; 32],
            Echo::default(),
        )
        .await?;
        assert_eq!(link.peer().name, "site-a");
        for i in 0u8..20 {
            let (h, b) = link
                .call(Bytes::from(vec![i]), Bytes::from(vec![i; 4096]))
                .await?;
            assert_eq!(&h[..], &[b'r', b'e', b':', i]);
            assert_eq!(b.len(), 4096);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(link.rtt().is_some());

        let pending = tokio::spawn({
            let link = link.clone();
            async move { link.call(Bytes::from_static(b"x"), Bytes::new()).await }
        });
        tokio::task::yield_now().await;
        let cut_at = Instant::now();
        turmoil::partition("site-a", "site-b");
        let reason = link.closed().await;
        let after = cut_at.elapsed();
        assert!(
            matches!(reason, DownReason::HeartbeatTimeout { .. }),
            "site-b: {reason:?}"
        );
        assert!(
            after <= Duration::from_millis(300 + 50 + 50),
            "down after {after:?}"
        );
        let e = pending.await?.expect_err("pending call fails");
        assert!(matches!(e, LinkError::Down { .. }), "{e:?}");
        Ok(())
    });

    sim.run()
}
