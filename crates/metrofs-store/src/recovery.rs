//! Recovery after a crash: make the data files follow the metadata.
//!
//! After `kill -9` (or a power loss) redb reopens at its last durable commit, while the data
//! files may be newer. For every fs in the catalog:
//! 1. trash `<ino>.<gen>` whose inode is still live with that generation (its removal never
//!    became durable) goes back to its data path, replacing whatever a later incarnation of the
//!    number wrote there; other trash is deleted;
//! 2. a data file without a live regular inode is deleted (made after the last durable commit);
//! 3. a data file longer than its inode's size is cut to it (UNSTABLE writes past the durable
//!    size), and fsync'd so the cut outlives a power loss before the size is extended again.
//!
//! Data directories of file systems not in the catalog (a delete cut short) are removed.
//! Running it twice is harmless: each step leaves what the next run would leave.

use std::collections::HashMap;
use std::path::Path;

use metrofs_core::{FsId, Gen, Ino};
use redb::ReadableDatabase;

use crate::data::{self, BUCKETS};
use crate::rec::{Inode, Kind};
use crate::store::{Store, INODES};
use crate::StoreError;

fn io(what: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Io {
        context: what,
        source,
    }
}

/// What recovery did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub restored_from_trash: u64,
    pub trash_deleted: u64,
    pub orphans_deleted: u64,
    pub truncated: u64,
    pub fs_dirs_removed: u64,
    /// Journal records replayed (changes applied after the last durable commit).
    pub journal_replayed: u64,
    /// Journal records the replay refused, one line each (should never happen: a record is
    /// written only for a change that succeeded).
    pub journal_refused: Vec<String>,
}

fn entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(StoreError::Io {
                context: format!("listing {}", dir.display()),
                source: e,
            })
        }
    };
    for e in rd {
        let e = e.map_err(io(format!("listing {}", dir.display())))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    Ok(out)
}

fn remove(p: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io {
            context: format!("removing {}", p.display()),
            source: e,
        }),
    }
}

pub(crate) fn recover(store: &Store) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    let root = store.root.clone();
    let ids: Vec<FsId> = store.list_fs().iter().map(|f| f.id).collect();
    for (name, path) in entries(&root.join("data"))? {
        let known = u64::from_str_radix(&name, 16)
            .ok()
            .is_some_and(|id| ids.contains(&FsId(id)));
        if !known && name.len() == 16 && path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io(format!("removing {}", path.display())))?;
            report.fs_dirs_removed += 1;
        }
    }
    let r = store
        .db
        .begin_read()
        .map_err(|e| StoreError::Db(e.to_string()))?;
    let t = r
        .open_table(INODES)
        .map_err(|e| StoreError::Db(e.to_string()))?;
    for fs in ids {
        let mut files: HashMap<u64, (Gen, u64)> = HashMap::new();
        for row in t
            .range((fs.0, 0)..=(fs.0, u64::MAX))
            .map_err(|e| StoreError::Db(e.to_string()))?
        {
            let (k, v) = row.map_err(|e| StoreError::Db(e.to_string()))?;
            let ino = k.value().1;
            let i = Inode::decode(v.value())
                .map_err(|e| StoreError::Corrupt(format!("inode {fs}/{ino}: {e}")))?;
            if let Kind::File { .. } = i.kind {
                files.insert(ino, (i.gen, i.size));
            }
        }
        for (name, path) in entries(&data::trash_dir(&root, fs))? {
            let parsed = name
                .split_once('.')
                .and_then(|(i, g)| Some((i.parse::<u64>().ok()?, g.parse::<u64>().ok()?)));
            match parsed {
                Some((ino, gen)) if files.get(&ino).is_some_and(|(g, _)| g.0 == gen) => {
                    let to = data::data_path(&root, fs, Ino(ino));
                    std::fs::rename(&path, &to).map_err(io(format!(
                        "restoring {} to {}",
                        path.display(),
                        to.display()
                    )))?;
                    report.restored_from_trash += 1;
                }
                _ => {
                    remove(&path)?;
                    report.trash_deleted += 1;
                }
            }
        }
        for b in 0..BUCKETS {
            let dir = data::bucket_path(&root, fs, b);
            let mut touched = false;
            for (name, path) in entries(&dir)? {
                let live = name
                    .parse::<u64>()
                    .ok()
                    .filter(|ino| data::bucket_of(Ino(*ino)) == b)
                    .and_then(|ino| files.get(&ino));
                match live {
                    Some(&(_, size)) => {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io(format!("opening {}", path.display())))?;
                        let len = f
                            .metadata()
                            .map_err(io(format!("stat of {}", path.display())))?
                            .len();
                        if len > size {
                            f.set_len(size)
                                .map_err(io(format!("truncating {}", path.display())))?;
                            f.sync_all()
                                .map_err(io(format!("fsync of {}", path.display())))?;
                            report.truncated += 1;
                        }
                    }
                    None => {
                        remove(&path)?;
                        report.orphans_deleted += 1;
                        touched = true;
                    }
                }
            }
            if touched {
                // A deleted orphan must stay deleted: its number may name a new file later.
                data::fsync_dir(&dir).map_err(|e| StoreError::Db(e.to_string()))?;
            }
        }
        let trash = data::trash_dir(&root, fs);
        std::fs::create_dir_all(&trash).map_err(io(format!("creating {}", trash.display())))?;
        data::fsync_dir(&trash).map_err(|e| StoreError::Db(e.to_string()))?;
    }
    Ok(report)
}
