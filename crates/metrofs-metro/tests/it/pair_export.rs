//! Export rules of a paired fs (`Metro::set_export`): the same on both arrays whichever one
//! is asked while the link is up; while it is down the serving side changes them alone and
//! the secondary refuses; when the link returns the twin gets the serving side's rules.
//!
//! site-a dials site-b through a TCP relay of this test, which can cut the link (its
//! connections dropped, new ones refused) and heal it, so both metro modules keep running.

use crate::{free_addr, site, Site};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrofs_core::{Cidr, ExportRules, FsId};
use metrofs_metro::engine::PairState;
use metrofs_metro::{ArrayError, MetroError};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A relay from a local address to `target` that can be cut and healed.
struct Relay {
    addr: SocketAddr,
    /// Whether it is cut, and the connections it carries (aborted by a cut).
    state: Arc<Mutex<(bool, Vec<JoinHandle<()>>)>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let state: Arc<Mutex<(bool, Vec<JoinHandle<()>>)>> = Arc::default();
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut from, _)) = listener.accept().await {
                let mut s = st.lock().expect("relay state");
                if s.0 {
                    continue; // cut: the connection is dropped at once
                }
                s.1.push(tokio::spawn(async move {
                    if let Ok(mut to) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
                    }
                }));
            }
        });
        Self { addr, state, accept }
    }

    fn cut(&self) {
        let mut s = self.state.lock().expect("relay state");
        s.0 = true;
        for c in s.1.drain(..) {
            c.abort();
        }
    }

    fn heal(&self) {
        self.state.lock().expect("relay state").0 = false;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}




fn rules(net: &str, read_only: bool) -> ExportRules {
    ExportRules { clients: vec![net.parse::<Cidr>().expect("cidr")], read_only, ..ExportRules::default() }
}

fn rules_of(s: &Site, fs: FsId) -> ExportRules {
    s.metro.array().store().fs_by_id(fs).expect("fs on this site").rules
}

/// Polls `ok` every 50 ms for up to 15 s.
async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn state_is(s: &Site, want: PairState) -> bool {
    s.metro.list_pairs().first().is_some_and(|p| p.state == want)
}

fn link_up(s: &Site) -> bool {
    s.metro.list_pairs().first().is_some_and(|p| p.link_up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rules_are_kept_the_same_on_both_sides() {
    let (la, lb) = (free_addr(), free_addr());
    let relay = Relay::start(lb).await;
    // site-a has the smaller name: it dials, through the relay.
    let a = site("site-a", "site-b", la, relay.addr).await;
    let b = site("site-b", "site-a", lb, la).await;
    assert!(a.metro.wait_link(Duration::from_secs(10)).await, "link up");
    assert!(b.metro.wait_link(Duration::from_secs(10)).await, "link up");

    let fs = a.metro.array().create_fs("t", rules("10.1.0.0/16", false)).expect("fs").id;
    a.metro.create_pair("t", "site-b").await.expect("pair create");
    wait_for("Normal", || state_is(&a, PairState::Normal)).await;
    assert_eq!(rules_of(&b, fs), rules("10.1.0.0/16", false), "the twin was created with the rules");

    // Link up, asked on the serving side: both have them when it answers.
    let r1 = rules("10.2.0.0/16", true);
    let info = a.metro.set_export("t", r1.clone()).await.expect("set on the serving side");
    assert_eq!(info.rules, r1);
    assert_eq!(rules_of(&b, fs), r1, "the twin has the serving side's new rules");

    // Link up, asked on the secondary: the serving side applies them on both.
    let r2 = rules("10.3.0.0/16", false);
    let info = b.metro.set_export("t", r2.clone()).await.expect("set on the secondary");
    assert_eq!(info.rules, r2, "the secondary answers with its (new) rules");
    assert_eq!(rules_of(&a, fs), r2, "the serving side took the secondary's change");
    assert_eq!(rules_of(&b, fs), r2);

    // Asked on both at once, many times: whichever wins, both end the same.
    for i in 0..10u8 {
        let (ra, rb) = (rules(&format!("10.4.{i}.0/24"), false), rules(&format!("10.5.{i}.0/24"), true));
        let (x, y) = tokio::join!(a.metro.set_export("t", ra.clone()), b.metro.set_export("t", rb.clone()));
        x.expect("set on a");
        y.expect("set on b");
        let (on_a, on_b) = (rules_of(&a, fs), rules_of(&b, fs));
        assert_eq!(on_a, on_b, "round {i}: both sides end with the same rules");
        assert!(on_a == ra || on_a == rb, "round {i}: one of the two asked: {on_a:?}");
    }

    // Not paired: this array only; a file system that does not exist is named.
    let solo = b.metro.array().create_fs("solo", ExportRules::default()).expect("solo fs").id;
    let info = b.metro.set_export("solo", rules("10.6.0.0/16", false)).await.expect("unpaired");
    assert_eq!(info.rules, rules("10.6.0.0/16", false));
    assert_eq!(rules_of(&b, solo), rules("10.6.0.0/16", false));
    assert!(a.metro.array().fs("solo").is_none(), "an unpaired fs stays on its array");
    match a.metro.set_export("nope", ExportRules::default()).await {
        Err(MetroError::Array(ArrayError::NotFound(n))) => assert_eq!(n, "nope"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // The link is cut: site-a (preferred) goes on serving alone, site-b stands down.
    relay.cut();
    wait_for("both sides to see the link down", || !link_up(&a) && !link_up(&b)).await;
    wait_for("site-a serving alone", || state_is(&a, PairState::ToBeSynchronized)).await;
    let before = rules_of(&b, fs);

    // The secondary refuses, naming the serving side; nothing changes there.
    let r5 = rules("10.7.0.0/16", false);
    match b.metro.set_export("t", r5).await {
        Err(e @ MetroError::ExportElsewhere(_)) => {
            let text = e.to_string();
            assert!(text.contains("secondary") && text.contains("site-a") && text.contains("link"), "{text}");
        }
        other => panic!("the secondary must refuse while the link is down, got {other:?}"),
    }
    assert_eq!(rules_of(&b, fs), before, "nothing changed on the secondary");

    // The serving side changes them alone.
    let r6 = rules("10.8.0.0/16", true);
    let info = a.metro.set_export("t", r6.clone()).await.expect("the serving side changes them alone");
    assert_eq!(info.rules, r6);
    assert_eq!(rules_of(&b, fs), before, "the twin cannot have them yet");

    // The link returns: the twin gets the serving side's rules, the pair becomes Normal.
    relay.heal();
    wait_for("Normal again", || state_is(&a, PairState::Normal) && state_is(&b, PairState::Normal)).await;
    wait_for("the twin to get the serving side's rules", || rules_of(&b, fs) == r6).await;
    assert_eq!(rules_of(&a, fs), r6);

    // And the secondary may change them again, through the serving side.
    let r7 = rules("10.9.0.0/16", false);
    b.metro.set_export("t", r7.clone()).await.expect("set on the secondary after the heal");
    assert_eq!((rules_of(&a, fs), rules_of(&b, fs)), (r7.clone(), r7));
}
