//! The inode record as stored in the `inodes` table, and its byte encoding.
//!
//! One record per live inode: the attributes NFS reports (except `used`, which is the data
//! file's real allocation and is read from the local file system when asked), plus what only
//! one kind of inode has: a directory's parent and readdir slot counter, a symlink's target, a
//! regular file's exclusive-create verifier.
//!
//! Encoding (little endian), version 1:
//! `[1, kind, gen u64, mode u32, nlink u32, uid u32, gid u32, size u64, atime, mtime, ctime
//! (sec u32, nsec u32 each)]` then, by kind: file `[has_verf u8, verf 8]`, dir `[parent u64,
//! next_slot u64]`, symlink `[target ..]`. The decoder checks every length and tag, and a record
//! that does not decode is corruption (never guessed at).

use metrofs_core::{Attr, FileType, Gen, Ino, Time};

const VERSION: u8 = 1;
const HEADER_BYTES: usize = 2 + 8 + 4 * 4 + 8 + 3 * 8;

/// What kind of inode, with what only that kind stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File { verifier: Option<[u8; 8]> },
    Dir { parent: Ino, next_slot: u64 },
    Symlink { target: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inode {
    pub gen: Gen,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub kind: Kind,
}

impl Inode {
    pub fn ftype(&self) -> FileType {
        match self.kind {
            Kind::File { .. } => FileType::Regular,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink { .. } => FileType::Symlink,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }

    pub fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File { .. })
    }

    /// The attributes as NFS reports them; `used` comes from the caller (data file allocation).
    pub fn attr(&self, ino: Ino, used: u64) -> Attr {
        Attr {
            ino,
            gen: self.gen,
            ftype: self.ftype(),
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            used,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + 17);
        out.push(VERSION);
        out.push(match self.kind {
            Kind::File { .. } => 1,
            Kind::Dir { .. } => 2,
            Kind::Symlink { .. } => 3,
        });
        out.extend_from_slice(&self.gen.0.to_le_bytes());
        for v in [self.mode, self.nlink, self.uid, self.gid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.size.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime] {
            out.extend_from_slice(&t.sec.to_le_bytes());
            out.extend_from_slice(&t.nsec.to_le_bytes());
        }
        match &self.kind {
            Kind::File { verifier } => match verifier {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            },
            Kind::Dir { parent, next_slot } => {
                out.extend_from_slice(&parent.0.to_le_bytes());
                out.extend_from_slice(&next_slot.to_le_bytes());
            }
            Kind::Symlink { target } => out.extend_from_slice(target),
        }
        out
    }

    /// Decodes a record; `Err` names what is wrong (the caller reports it as corruption).
    pub fn decode(b: &[u8]) -> Result<Inode, String> {
        if b.len() < HEADER_BYTES {
            return Err(format!(
                "inode record of {} bytes, shorter than its {HEADER_BYTES}-byte header",
                b.len()
            ));
        }
        if b[0] != VERSION {
            return Err(format!(
                "inode record version {} (this build reads {VERSION})",
                b[0]
            ));
        }
        let mut r = Reader { b, at: 2 };
        let gen = Gen(r.u64());
        let mode = r.u32();
        let nlink = r.u32();
        let uid = r.u32();
        let gid = r.u32();
        let size = r.u64();
        let mut times = [Time::default(); 3];
        for t in &mut times {
            let sec = r.u32();
            let nsec = r.u32();
            *t = Time { sec, nsec };
        }
        debug_assert_eq!(r.at, HEADER_BYTES);
        let tail = &b[HEADER_BYTES..];
        let kind = match b[1] {
            1 => match tail {
                [0] => Kind::File { verifier: None },
                [1, v @ ..] if v.len() == 8 => {
                    let mut verf = [0u8; 8];
                    verf.copy_from_slice(v);
                    Kind::File {
                        verifier: Some(verf),
                    }
                }
                _ => return Err(format!("file inode record with a {}-byte tail", tail.len())),
            },
            2 => {
                if tail.len() != 16 {
                    return Err(format!(
                        "directory inode record with a {}-byte tail",
                        tail.len()
                    ));
                }
                let mut r = Reader { b: tail, at: 0 };
                Kind::Dir {
                    parent: Ino(r.u64()),
                    next_slot: r.u64(),
                }
            }
            3 => Kind::Symlink {
                target: tail.to_vec(),
            },
            k => return Err(format!("inode record of unknown kind {k}")),
        };
        Ok(Inode {
            gen,
            mode,
            nlink,
            uid,
            gid,
            size,
            atime: times[0],
            mtime: times[1],
            ctime: times[2],
            kind,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.b[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(a)
    }
    fn u32(&mut self) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.b[self.at..self.at + 4]);
        self.at += 4;
        u32::from_le_bytes(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: Kind) -> Inode {
        Inode {
            gen: Gen(7),
            mode: 0o644,
            nlink: 3,
            uid: 1000,
            gid: 100,
            size: 1 << 40,
            atime: Time::new(1, 2),
            mtime: Time::new(3, 4),
            ctime: Time::new(5, 999_999_999),
            kind,
        }
    }

    #[test]
    fn records_round_trip() {
        for kind in [
            Kind::File { verifier: None },
            Kind::File {
                verifier: Some(*b"verifier"),
            },
            Kind::Dir {
                parent: Ino(9),
                next_slot: 12345,
            },
            Kind::Symlink {
                target: b"../some/where".to_vec(),
            },
            Kind::Symlink { target: Vec::new() },
        ] {
            let i = sample(kind);
            assert_eq!(Inode::decode(&i.encode()).expect("decodes"), i);
        }
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = sample(Kind::Dir {
            parent: Ino(1),
            next_slot: 3,
        })
        .encode();
        assert!(Inode::decode(&good[..good.len() - 1]).is_err());
        assert!(Inode::decode(&good[..10]).is_err());
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(Inode::decode(&bad).is_err());
        let mut bad = good;
        bad[1] = 77;
        assert!(Inode::decode(&bad).is_err());
        let mut file = sample(Kind::File { verifier: None }).encode();
        file.push(0);
        assert!(Inode::decode(&file).is_err());
    }
}
