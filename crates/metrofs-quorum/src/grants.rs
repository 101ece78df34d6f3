//! The grant records: one per (domain, scope), durable in a redb file `grants.redb` in the
//! server's data directory.
//!
//! # Contract
//! - [`decide_claim`] and [`decide_force`] are the rule of [`crate::proto`], as pure functions.
//! - [`GrantStore::claim`] and [`GrantStore::force`] read the record, decide and (if the
//!   record changes) write it in ONE redb write transaction, committed with
//!   `Durability::Immediate` (fsync) before they return: a grant an array was told of is on
//!   disk, and survives `kill -9` or a power cut. redb runs one write transaction at a time, so
//!   two claims for the same record are decided one after the other, never both on the same
//!   stored value.
//! - A failed commit is fatal ([`GrantStore::failure`] says why): the store refuses every
//!   later request, and the server stops. It is never retried (after a failed fsync the
//!   kernel may have dropped the dirty pages; a retry could "succeed" without them).
//! - Epochs only grow: asserted where a record is written and checked where one is read.
//!
//! The file is locked by redb while open: a second server on the same data directory is
//! refused ([`StoreError::InUse`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::StoreError;
use crate::proto::Grant;

/// The store's file, inside the data directory.
pub const GRANTS_FILE: &str = "grants.redb";
/// The layout of the records below; a store of another format is refused.
const FORMAT_VERSION: u64 = 1;

/// (domain, scope) → (epoch, holder).
const GRANTS: TableDefinition<(&str, u64), (u64, &str)> = TableDefinition::new("grants");
/// "format" → [`FORMAT_VERSION`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What the rule says about a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimDecision {
    /// A higher epoch: record it, then grant.
    Grant,
    /// The same epoch by the same array (a retry): granted already, nothing to write.
    Retry,
    /// Denied: the stored record stands.
    Deny,
}

/// The rule for `Claim { epoch, array }` against the stored record (`None`: never claimed).
#[must_use]
pub fn decide_claim(stored: Option<&Grant>, epoch: u64, array: &str) -> ClaimDecision {
    match stored {
        _ if epoch == 0 => ClaimDecision::Deny,
        None => ClaimDecision::Grant,
        Some(s) if epoch > s.epoch => ClaimDecision::Grant,
        Some(s) if epoch == s.epoch && array == s.holder => ClaimDecision::Retry,
        Some(_) => ClaimDecision::Deny,
    }
}

/// The epoch a `Force { epoch }` records: `max(epoch, stored + 1)`, at least 1; `None` when
/// the stored epoch is already `u64::MAX`.
#[must_use]
pub fn decide_force(stored: Option<&Grant>, epoch: u64) -> Option<u64> {
    let next = match stored {
        None => 1,
        Some(s) => s.epoch.checked_add(1)?,
    };
    Some(epoch.max(next))
}

/// What [`GrantStore::claim`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Granted; the record (durable) is this.
    Granted(Grant),
    /// Denied; the stored record is this. (Epoch 0 and nobody when nothing is stored.)
    Denied(Grant),
}

/// The durable grant records of every domain a server arbitrates.
pub struct GrantStore {
    path: PathBuf,
    state: Mutex<State>,
}

enum State {
    Open(Database),
    /// A commit failed: nothing more is granted until the server restarts.
    Failed(String),
    Closed,
}

impl std::fmt::Debug for GrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl GrantStore {
    /// Opens (or creates) `data_dir/grants.redb`; creates `data_dir` if it is missing.
    pub fn open(data_dir: &Path) -> Result<GrantStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_owned(),
            detail: format!("cannot create the data directory: {e}"),
        })?;
        let path = data_dir.join(GRANTS_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            other => StoreError::Open {
                path: path.clone(),
                detail: other.to_string(),
            },
        })?;
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.clone(),
            detail: e.to_string(),
        };
        let w = db.begin_write().map_err(|e| open_err(&e))?;
        {
            w.open_table(GRANTS).map_err(|e| open_err(&e))?;
            let mut meta = w.open_table(META).map_err(|e| open_err(&e))?;
            let found = meta
                .get("format")
                .map_err(|e| open_err(&e))?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert("format", FORMAT_VERSION)
                        .map_err(|e| open_err(&e))?;
                }
                Some(FORMAT_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Format {
                        path: path.clone(),
                        found: other,
                    })
                }
            }
        }
        w.commit().map_err(|e| open_err(&e))?;
        Ok(GrantStore {
            path,
            state: Mutex::new(State::Open(db)),
        })
    }

    /// The store's file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the store refuses every request, once a commit failed.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        match &*self.state() {
            State::Failed(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Closes the file (waiting for a commit in progress). Later calls fail with `Closed`.
    pub fn close(&self) {
        let mut s = self.state();
        if matches!(*s, State::Open(_)) {
            *s = State::Closed;
        }
    }

    /// Runs `f` on the open database; a commit failure inside turns the store `Failed`.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut s = self.state();
        let db = match &*s {
            State::Open(db) => db,
            State::Failed(why) => return Err(StoreError::Io(why.clone())),
            State::Closed => return Err(StoreError::Closed),
        };
        let r = f(db);
        if let Err(StoreError::Io(why)) = &r {
            tracing::error!(
                path = %self.path.display(),
                "grant store failed, refusing every request from now on: {why}"
            );
            *s = State::Failed(why.clone());
        }
        r
    }

    /// The record of (`domain`, `scope`).
    pub fn get(&self, domain: &str, scope: u64) -> Result<Option<Grant>, StoreError> {
        self.with_db(|db| {
            let r = db.begin_read().map_err(io)?;
            let t = r.open_table(GRANTS).map_err(io)?;
            read(&t, domain, scope)
        })
    }

    /// Decides `Claim { scope, epoch, array }` for `domain` and, when granted with a higher
    /// epoch, makes the record durable before returning.
    pub fn claim(
        &self,
        domain: &str,
        scope: u64,
        epoch: u64,
        array: &str,
    ) -> Result<ClaimOutcome, StoreError> {
        self.with_db(|db| {
            let w = db.begin_write().map_err(io)?;
            let outcome = {
                let mut t = w.open_table(GRANTS).map_err(io)?;
                let stored = read(&t, domain, scope)?;
                match decide_claim(stored.as_ref(), epoch, array) {
                    ClaimDecision::Deny => ClaimOutcome::Denied(stored.unwrap_or(Grant {
                        epoch: 0,
                        holder: String::new(),
                    })),
                    ClaimDecision::Retry => ClaimOutcome::Granted(Grant {
                        epoch,
                        holder: array.to_owned(),
                    }),
                    ClaimDecision::Grant => {
                        // Epochs only grow (paired with the check in `read`).
                        assert!(
                            stored.as_ref().is_none_or(|s| epoch > s.epoch),
                            "a grant must raise the epoch"
                        );
                        t.insert((domain, scope), (epoch, array)).map_err(io)?;
                        ClaimOutcome::Granted(Grant {
                            epoch,
                            holder: array.to_owned(),
                        })
                    }
                }
            };
            match outcome {
                ClaimOutcome::Granted(_) => {
                    // Durability order: the record must be on disk before the array hears it
                    // was granted (it will act on the grant; a server that forgot it after a
                    // crash could grant the same epoch to the other array). `commit` with the
                    // default `Durability::Immediate` returns after the fsync. A retry
                    // changes nothing: its record was made durable when first granted.
                    w.commit().map_err(io)?;
                }
                ClaimOutcome::Denied(_) => w.abort().map_err(io)?,
            }
            Ok(outcome)
        })
    }

    /// Records `Force { scope, epoch, array }` for `domain`: `max(epoch, stored + 1)` held by
    /// `array`, durable before returning.
    pub fn force(
        &self,
        domain: &str,
        scope: u64,
        epoch: u64,
        array: &str,
    ) -> Result<Grant, StoreError> {
        self.with_db(|db| {
            let w = db.begin_write().map_err(io)?;
            let grant = {
                let mut t = w.open_table(GRANTS).map_err(io)?;
                let stored = read(&t, domain, scope)?;
                let Some(new) = decide_force(stored.as_ref(), epoch) else {
                    return Err(StoreError::Exhausted {
                        domain: domain.to_owned(),
                        scope,
                    });
                };
                assert!(
                    stored.as_ref().is_none_or(|s| new > s.epoch),
                    "a force must raise the epoch"
                );
                t.insert((domain, scope), (new, array)).map_err(io)?;
                Grant {
                    epoch: new,
                    holder: array.to_owned(),
                }
            };
            // Durability order: as for a grant, on disk before anyone is told.
            w.commit().map_err(io)?;
            Ok(grant)
        })
    }
}

/// Reads one record and checks it (paired with the assertions where records are written).
fn read<T>(t: &T, domain: &str, scope: u64) -> Result<Option<Grant>, StoreError>
where
    T: ReadableTable<(&'static str, u64), (u64, &'static str)>,
{
    let Some(v) = t.get((domain, scope)).map_err(io)? else {
        return Ok(None);
    };
    let (epoch, holder) = v.value();
    if epoch == 0 || holder.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "the record of domain '{domain}' scope {scope:016x} is (epoch {epoch}, holder {holder:?}): epoch 0 or no holder is never written"
        )));
    }
    Ok(Some(Grant {
        epoch,
        holder: holder.to_owned(),
    }))
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(epoch: u64, holder: &str) -> Grant {
        Grant {
            epoch,
            holder: holder.into(),
        }
    }

    #[test]
    fn claim_rule() {
        use ClaimDecision::{Deny, Grant as Yes, Retry};
        assert_eq!(decide_claim(None, 1, "a"), Yes);
        assert_eq!(decide_claim(None, 0, "a"), Deny);
        assert_eq!(decide_claim(Some(&g(5, "a")), 6, "b"), Yes);
        assert_eq!(decide_claim(Some(&g(5, "a")), 5, "a"), Retry);
        assert_eq!(decide_claim(Some(&g(5, "a")), 5, "b"), Deny);
        assert_eq!(decide_claim(Some(&g(5, "a")), 4, "a"), Deny);
        assert_eq!(decide_claim(Some(&g(5, "a")), 4, "b"), Deny);
    }

    #[test]
    fn force_rule() {
        assert_eq!(decide_force(None, 0), Some(1));
        assert_eq!(decide_force(None, 9), Some(9));
        assert_eq!(decide_force(Some(&g(5, "a")), 3), Some(6));
        assert_eq!(decide_force(Some(&g(5, "a")), 5), Some(6));
        assert_eq!(decide_force(Some(&g(5, "a")), 8), Some(8));
        assert_eq!(decide_force(Some(&g(u64::MAX, "a")), 8), None);
    }

    #[test]
    fn records_survive_reopening_and_are_per_domain_and_scope() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let s = GrantStore::open(dir.path()).expect("open");
            assert_eq!(s.get("prod", 1).expect("get"), None);
            assert_eq!(
                s.claim("prod", 1, 3, "a").expect("claim"),
                ClaimOutcome::Granted(g(3, "a"))
            );
            assert_eq!(
                s.claim("prod", 1, 3, "b").expect("claim"),
                ClaimOutcome::Denied(g(3, "a"))
            );
            assert_eq!(
                s.claim("test", 1, 3, "b").expect("claim"),
                ClaimOutcome::Granted(g(3, "b"))
            );
            assert_eq!(
                s.claim("prod", 2, 1, "b").expect("claim"),
                ClaimOutcome::Granted(g(1, "b"))
            );
            assert_eq!(s.force("prod", 2, 0, "a").expect("force"), g(2, "a"));
            // A second open of the same file is refused while the first holds it.
            let e = GrantStore::open(dir.path()).expect_err("in use");
            assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");
        }
        let s = GrantStore::open(dir.path()).expect("reopen");
        assert_eq!(s.get("prod", 1).expect("get"), Some(g(3, "a")));
        assert_eq!(s.get("test", 1).expect("get"), Some(g(3, "b")));
        assert_eq!(s.get("prod", 2).expect("get"), Some(g(2, "a")));
        assert_eq!(
            s.claim("prod", 1, 3, "a").expect("retry"),
            ClaimOutcome::Granted(g(3, "a"))
        );
        assert_eq!(
            s.claim("prod", 1, 0, "a").expect("epoch 0"),
            ClaimOutcome::Denied(g(3, "a"))
        );
        assert_eq!(
            s.claim("prod", 9, 0, "a").expect("epoch 0, no record"),
            ClaimOutcome::Denied(g(0, ""))
        );
        s.close();
        assert!(matches!(s.get("prod", 1), Err(StoreError::Closed)));
        // Closed releases the file.
        GrantStore::open(dir.path()).expect("open after close");
    }

    #[test]
    fn force_at_the_last_epoch_is_an_error_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = GrantStore::open(dir.path()).expect("open");
        s.claim("prod", 1, u64::MAX, "a").expect("claim");
        assert!(matches!(
            s.force("prod", 1, 1, "b"),
            Err(StoreError::Exhausted { .. })
        ));
        assert_eq!(s.get("prod", 1).expect("get"), Some(g(u64::MAX, "a")));
        assert_eq!(s.failure(), None);
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = Database::create(dir.path().join(GRANTS_FILE)).expect("create");
            let w = db.begin_write().expect("write");
            w.open_table(META)
                .expect("meta")
                .insert("format", 99)
                .expect("insert");
            w.commit().expect("commit");
        }
        let e = GrantStore::open(dir.path()).expect_err("format 99");
        assert!(matches!(e, StoreError::Format { found: 99, .. }), "{e:?}");
        assert!(e.to_string().contains("format 99"), "{e}");
    }
}
