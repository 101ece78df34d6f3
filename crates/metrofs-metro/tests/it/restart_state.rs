//! The pair state a serving side believes after it stopped and started again.
//!
//! Written records, not timing: each case puts a pair record (and DCL marks) into the
//! metro database exactly as a stop at the wrong moment leaves them, then opens the array.
//! A primary whose word was Synchronizing had its resync worker end with the process, and one
//! whose word was Normal over a dirty DCL was killed between the DCL mark and the state's
//! persist. Both must come back ToBeSynchronized, which the link's return turns into a resync.
//! Kept as they were, the first never resynchronised (found when `metrofs demo` came back
//! Synchronizing for good after a stop) and the second called an incomplete twin whole.

use std::path::Path;
use std::sync::Arc;

use crate::free_addr;
use metrofs_core::{Epoch, ExportRules, FsId, Ino, SystemClock};
use metrofs_link::{Identity, LinkConfig, Secret};
use metrofs_metro::dcl::{Dcl, DclKey};
use metrofs_metro::engine::{PairState, Role};
use metrofs_metro::proto::{PairId, PairRecord};
use metrofs_metro::{Array, Metro, MetroConfig, Phase, PeerConfig};
use metrofs_store::{FsInfo, Store};
use redb::{Database, TableDefinition};

/// The metro database's pair table, as `metro.rs` defines it.
const PAIRS: TableDefinition<u64, &[u8]> = TableDefinition::new("pairs");

/// Opens site-a's metro on `dir` (a peer configured, nobody listening there; the link is
/// never started).
async fn open(dir: &Path) -> Arc<Metro> {
    let store = Arc::new(Store::open(&dir.join("store")).expect("store"));
    let array = Array::new(store, Arc::new(SystemClock));
    let secret = Secret::new(b"a shared secret of enough length!".to_vec()).expect("secret");
    let identity = Identity::new("test", "site-a", secret).expect("identity");
    let cfg = MetroConfig {
        name: "site-a".into(),
        preferred: true,
        peer: Some(PeerConfig {
            listen: free_addr(),
            addr: free_addr().to_string(),
            name: "site-b".into(),
            identity,
            link: LinkConfig::default(),
        }),
        arbitration: metrofs_metro::ArbitrationConfig::default(),
    };
    Metro::open(array, &dir.join("metro"), cfg).await.expect("metro")
}

fn record(fs: &FsInfo, id: u64, primary: &str, state: PairState) -> PairRecord {
    let secondary = if primary == "site-a" { "site-b" } else { "site-a" };
    PairRecord {
        id: PairId(id),
        fs: fs.id,
        fs_name: fs.name.clone(),
        primary: primary.into(),
        secondary: secondary.into(),
        state,
        epoch: Epoch(3),
        created: fs.created,
        forced: false,
    }
}

#[tokio::test]
async fn a_restarted_primary_resynchronises_what_its_word_claimed_beyond_the_truth() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Four file systems; then the metro database is closed again before it is written.
    let fss: Vec<FsInfo> = {
        let m = open(dir).await;
        ["syncing", "dirty", "clean", "twin"]
            .iter()
            .map(|n| m.array().create_fs(n, ExportRules::default()).expect("create fs"))
            .collect()
    };
    {
        let db = Arc::new(Database::create(dir.join("metro").join("metro.redb")).expect("redb"));
        let w = db.begin_write().expect("write");
        {
            let mut t = w.open_table(PAIRS).expect("pairs");
            let recs = [
                record(&fss[0], 1, "site-a", PairState::Synchronizing),
                record(&fss[1], 2, "site-a", PairState::Normal),
                record(&fss[2], 3, "site-a", PairState::Normal),
                record(&fss[3], 4, "site-b", PairState::Synchronizing),
            ];
            for r in &recs {
                t.insert(r.id.0, serde_json::to_vec(r).expect("json").as_slice()).expect("insert");
            }
        }
        w.commit().expect("commit");
        let dcl = Dcl::open(db.clone()).expect("dcl");
        dcl.mark(fss[1].id, vec![DclKey::Chunk { ino: Ino(7), idx: 0 }]).await.expect("mark");
    }

    let m = open(dir).await;
    let views = m.list_pairs();
    let state = |fs: FsId| {
        let v = views.iter().find(|v| v.fs_id == fs).expect("pair loaded");
        (v.state, v.role, v.phase)
    };
    // The resync that ran when it stopped is to be run again.
    assert_eq!(state(fss[0].id), (PairState::ToBeSynchronized, Role::Primary, Phase::Deciding));
    // A DCL that is not empty: the twin is not whole.
    assert_eq!(state(fss[1].id), (PairState::ToBeSynchronized, Role::Primary, Phase::Deciding));
    // Normal over an empty DCL is the truth: it stays Normal (and still waits to learn
    // whether it serves).
    assert_eq!(state(fss[2].id), (PairState::Normal, Role::Primary, Phase::Deciding));
    // A secondary keeps the word its primary sent: that is what arbitration reads.
    assert_eq!(state(fss[3].id).0, PairState::Synchronizing);
    assert_eq!(state(fss[3].id).1, Role::Secondary);
    let events = &views.iter().find(|v| v.fs_id == fss[0].id).expect("pair").events;
    assert!(
        events.iter().any(|e| e.contains("Synchronizing -> ToBeSynchronized")),
        "the change is told: {events:?}"
    );
}

/// A restarted serving side that was replicating does not take the service address on its
/// old word: the other array may have taken over while it was down, and two arrays announcing
/// one address pull the hosts' connections to whichever spoke last (seen: a restarted site-a
/// held it for 15 ms while site-b served, and a libnfs client was left on a connection nobody
/// would close). One that served alone (ToBeSynchronized) holds the only whole copy: nobody
/// took over, it takes the address at once.
#[tokio::test]
async fn a_restarted_primary_takes_the_service_address_only_once_it_knows_it_serves() {
    for (state, holds) in [(PairState::Normal, false), (PairState::ToBeSynchronized, true)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let fs = open(dir).await.array().create_fs("f", ExportRules::default()).expect("create fs");
        {
            let db = Database::create(dir.join("metro").join("metro.redb")).expect("redb");
            let w = db.begin_write().expect("write");
            {
                let mut t = w.open_table(PAIRS).expect("pairs");
                let r = record(&fs, 1, "site-a", state);
                t.insert(r.id.0, serde_json::to_vec(&r).expect("json").as_slice()).expect("insert");
            }
            w.commit().expect("commit");
        }
        let m = open(dir).await;
        let service = m.service_watch().borrow().clone();
        assert_eq!(service.active, holds, "{state:?}: {service:?}");
        // Its calls wait for the answer either way: the pair is this array's to serve or decide.
        assert_eq!(service.serving, vec![fs.id], "{state:?}");
    }
}
