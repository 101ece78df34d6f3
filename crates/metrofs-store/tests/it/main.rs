//! metrofs-store's integration tests (one binary, STYLE's layout).

mod conformance;
mod crash;
mod fx;
mod props;

use metrofs_store::Store;

#[test]
fn conformance_on_a_fresh_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).expect("open");
    conformance::run(&s, "c", true);
}

/// Everything survives a clean close and reopen exactly, and the suite passes again on the
/// reopened store beside the old file systems.
#[test]
fn a_reopened_store_is_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = {
        let s = Store::open(dir.path()).expect("open");
        conformance::run(&s, "one", false);
        s.list_fs()
            .into_iter()
            .map(|f| (f.id, s.image(f.id).expect("image")))
            .collect::<Vec<_>>()
    };
    let s = Store::open(dir.path()).expect("reopen");
    assert!(
        s.last_recovery().is_none(),
        "a clean close needs no recovery"
    );
    for (id, image) in &images {
        assert_eq!(
            &s.image(*id).expect("image"),
            image,
            "fs {id} changed across a reopen"
        );
        assert!(s.check(*id).is_empty(), "{:?}", s.check(*id));
    }
    conformance::run(&s, "two", false);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _s = Store::open(dir.path()).expect("open");
    let e = Store::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(e.to_string().contains("in use"), "{e}");
}
