//! Identifiers. All are plain numbers wrapped in their own type so they cannot be mixed up.
//!
//! A [`FileHandle`] is built only from the fs id (random at creation, shared by the twin on the
//! other array), the inode number and the inode's generation: never a boot time or a local path,
//! so a handle taken from one array is valid on the other and across restarts.

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        pub struct $name(pub u64);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id!(
    /// A file system's identity: random at creation, identical on both arrays of a pair.
    FsId
);
id!(
    /// Inode number within one file system; allocated by the serving side, replicated as is.
    Ino
);
id!(
    /// Generation of an inode number: grows each time the number is reused, so an old handle
    /// to a removed file answers STALE even after its number names a new file.
    Gen
);
id!(
    /// Grows at every arbitration or takeover; fences the side that lost.
    Epoch
);
id!(
    /// Order of a replicated op within a pair; the replica applies each seq at most once.
    Seq
);

/// What an NFS file handle names. Its wire encoding lives in the nfs crate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileHandle {
    pub fs: FsId,
    pub ino: Ino,
    pub gen: Gen,
}

impl FileHandle {
    /// Bytes of the wire form: magic + version (4), fs (8), ino (8), gen (8).
    pub const WIRE_LEN: usize = 28;
    const MAGIC: [u8; 3] = *b"mfs";
    const VERSION: u8 = 1;

    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::WIRE_LEN] {
        let mut out = [0u8; Self::WIRE_LEN];
        out[..3].copy_from_slice(&Self::MAGIC);
        out[3] = Self::VERSION;
        out[4..12].copy_from_slice(&self.fs.0.to_be_bytes());
        out[12..20].copy_from_slice(&self.ino.0.to_be_bytes());
        out[20..28].copy_from_slice(&self.gen.0.to_be_bytes());
        out
    }

    /// Parses the wire form; `None` for anything that is not exactly a handle of ours
    /// (the caller answers BADHANDLE).
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::WIRE_LEN || b[..3] != Self::MAGIC || b[3] != Self::VERSION {
            return None;
        }
        let u = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            u64::from_be_bytes(a)
        };
        Some(Self { fs: FsId(u(4..12)), ino: Ino(u(12..20)), gen: Gen(u(20..28)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_round_trip_and_rejects_foreign_bytes() {
        let h = FileHandle { fs: FsId(0xdead_beef_0102_0304), ino: Ino(77), gen: Gen(3) };
        assert_eq!(FileHandle::from_bytes(&h.to_bytes()), Some(h));
        let mut bad = h.to_bytes();
        bad[0] = b'x';
        assert_eq!(FileHandle::from_bytes(&bad), None);
        assert_eq!(FileHandle::from_bytes(&h.to_bytes()[..27]), None);
        assert_eq!(FileHandle::from_bytes(&[]), None);
    }
}
