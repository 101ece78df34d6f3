//! Changes kept aside after a force start (DESIGN.md: "when the other returns, its changes
//! since the split are not silently dropped").
//!
//! A side that served alone and comes back to find that the other was force-started at a later
//! epoch is about to be resynchronised from it: everything it changed since the split would be
//! overwritten. Before it accepts that, it copies the files its DCL names (the changes the
//! other never saw) to `data_dir/metro/conflicts/<fs>-<pair>-e<epoch>/`, with the paths they
//! had, plus `MANIFEST.txt` listing them and the directories whose entries changed. Once the
//! link is up it also sends each file to the serving side, which writes it under
//! `.metrofs-conflicts/<fs>-e<epoch>/` on the file system itself, where hosts see it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use metrofs_core::{FileType, FsError, FsId, Ino, ROOT_INO};
use metrofs_store::Store;

use crate::dcl::{DclKey, DclSnapshot};

/// Largest file copied aside in full (a bigger one is named in the manifest only).
pub const KEEP_FILE_BYTES_MAX: u64 = 256 << 20;
/// Entries walked at most to find the paths.
const WALK_ENTRIES_MAX: usize = 2_000_000;
/// Name of the directory on the fs.
pub const ON_FS_DIR: &[u8] = b".metrofs-conflicts";

/// One file kept aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Path components from the fs root.
    pub path: Vec<Vec<u8>>,
    pub mode: u32,
    /// Where the copy is on this array's disk.
    pub local: PathBuf,
}

/// What [`keep_aside`] did.
#[derive(Clone, Debug, Default)]
pub struct KeptAside {
    pub dir: PathBuf,
    pub files: Vec<Kept>,
    pub manifest: String,
}

fn display(path: &[Vec<u8>]) -> String {
    let parts: Vec<String> = path.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    format!("/{}", parts.join("/"))
}

/// Copies what `snap` names on `fs` into `dir` (created). Returns the files and the manifest.
pub fn keep_aside(store: &Store, fs: FsId, snap: &DclSnapshot, dir: &Path) -> Result<KeptAside, FsError> {
    let io = |e: std::io::Error| FsError::Io(format!("keeping changes aside in {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut wanted: HashSet<Ino> = HashSet::new();
    let mut dirs: HashSet<Ino> = HashSet::new();
    for (k, _) in &snap.keys {
        match *k {
            DclKey::Inode(i) => {
                wanted.insert(i);
            }
            DclKey::Chunk { ino, .. } => {
                wanted.insert(ino);
            }
            DclKey::Dir(i) => {
                dirs.insert(i);
            }
        }
    }
    let everything = snap.full.is_some();
    // Paths of every inode of interest, by a walk from the root.
    let mut paths: HashMap<Ino, Vec<Vec<u8>>> = HashMap::new();
    paths.insert(ROOT_INO, Vec::new());
    let mut queue = VecDeque::from([ROOT_INO]);
    let mut walked = 0usize;
    let mut files: Vec<(Ino, Vec<Vec<u8>>)> = Vec::new();
    while let Some(d) = queue.pop_front() {
        let Ok(entries) = store.entries(fs, d) else { continue };
        let base = paths.get(&d).cloned().unwrap_or_default();
        for (name, ino) in entries {
            walked += 1;
            if walked > WALK_ENTRIES_MAX {
                break;
            }
            if name == ON_FS_DIR && d == ROOT_INO {
                continue;
            }
            let mut p = base.clone();
            p.push(name);
            let Ok(Some((attr, _))) = store.inode(fs, ino) else { continue };
            match attr.ftype {
                FileType::Directory => {
                    if let std::collections::hash_map::Entry::Vacant(e) = paths.entry(ino) {
                        e.insert(p);
                        queue.push_back(ino);
                    }
                }
                FileType::Regular if everything || wanted.contains(&ino) => files.push((ino, p)),
                _ => {}
            }
        }
    }
    let mut out = KeptAside { dir: dir.to_owned(), ..KeptAside::default() };
    let mut manifest = String::from("# Files this array changed while it served alone, kept aside before it was resynchronised\n# from the side that was force-started. Paths are as they were here.\n");
    for (ino, path) in files {
        let attr = store.getattr(fs, ino)?;
        if attr.size > KEEP_FILE_BYTES_MAX {
            manifest.push_str(&format!("too large to copy ({} bytes): {}\n", attr.size, display(&path)));
            continue;
        }
        let local = dir.join(format!("ino-{}", ino.0));
        let mut f = std::fs::File::create(&local).map_err(io)?;
        let mut off = 0u64;
        while off < attr.size {
            let r = store.read(fs, ino, off, 1 << 20)?;
            if r.data.is_empty() {
                break;
            }
            f.write_all(&r.data).map_err(io)?;
            off += r.data.len() as u64;
        }
        f.sync_all().map_err(io)?;
        manifest.push_str(&format!("{} -> {}\n", display(&path), local.display()));
        out.files.push(Kept { path, mode: attr.mode, local });
    }
    for d in dirs {
        if let Some(p) = paths.get(&d) {
            manifest.push_str(&format!("entries changed in directory {}\n", display(p)));
        }
    }
    std::fs::write(dir.join("MANIFEST.txt"), &manifest).map_err(io)?;
    out.manifest = manifest;
    Ok(out)
}
