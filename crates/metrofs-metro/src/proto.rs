//! What metro modules say to each other over the link.
//!
//! The link carries a typed header ([`Request`] / [`Response`], postcard) and a raw body. Bulk
//! data never travels in the header: a WRITE's data and a resync's segments go in the body
//! ([`split_data`] / [`join_data`]), so a 1 MiB write is not re-encoded.

use bytes::Bytes;
use metrofs_core::{Attr, Epoch, ExportRules, FsError, FsId, FsOp, Ino, OpBody, OpReply, ReplyKey, Seq, SyncOp, Time};
use serde::{Deserialize, Serialize};

use crate::arbiter::Mode;
use crate::dcl::DclKey;
use crate::engine::PairState;

/// A pair's identity: random at creation, the same on both sides.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairId(pub u64);

impl std::fmt::Display for PairId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for PairId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        u64::from_str_radix(s, 16)
            .map(PairId)
            .map_err(|_| format!("'{s}' is not a pair id: expected 16 hex digits as `metrofs pair list` shows"))
    }
}

/// A pair as both sides record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    pub id: PairId,
    pub fs: FsId,
    pub fs_name: String,
    /// The array that serves the fs now.
    pub primary: String,
    /// The other one.
    pub secondary: String,
    pub state: PairState,
    pub epoch: Epoch,
    pub created: Time,
    /// The serving side got its epoch by an operator's force start (not by arbitration).
    #[serde(default)]
    pub forced: bool,
}

/// The place of a namespace op in its pair's order on one link session of its sender: the
/// serving side numbers them 0, 1, 2 … under its namespace order lock (the order of its local
/// applies) and the twin applies them in that order, so they can be in flight together.
/// `link` is the sender's link session: a new link starts again at 0.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub link: u64,
    pub n: u64,
}

/// Requests from one metro module to the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First words on a new link: the sender's pairs as it records them.
    Hello { array: String, pairs: Vec<PairRecord> },
    /// Create the twin of an fs: same id and name, an empty root with these attributes.
    CreateTwin { pair: PairRecord, rules: ExportRules, root: Attr },
    /// The pair record changed (state, epoch, roles): the receiver stores it.
    Record { pair: PairRecord },
    /// Step 3 of the write I/O process, remote half: apply this op. `session` + `seq` make
    /// it idempotent; `epoch` fences an old primary. A WRITE's data is in the body.
    /// `reply_key` names the host request it answers (the replica keeps its result under it,
    /// so a retransmission after a failover gets the same answer). `order` numbers a
    /// namespace op: the receiver applies them in that order (see [`Order`]).
    Replicate { pair: PairId, epoch: Epoch, session: u64, seq: Seq, op: FsOp, reply_key: Option<ReplyKey>, order: Option<Order> },
    /// Resync steps, applied in order. `PutData` segments are in the body, in order.
    Sync { pair: PairId, epoch: Epoch, ops: Vec<SyncOp> },
    /// Make everything applied so far durable.
    Flush { pair: PairId },
    /// The entries of a directory, by name, after `after` (a page that fits a header).
    ListDir { pair: PairId, dir: Ino, after: Option<Vec<u8>> },
    /// An inode as resync compares it (attributes and symlink target).
    GetInode { pair: PairId, ino: Ino },
    /// Digests of `ino`'s data in `chunk_bytes` chunks (verify).
    Digests { pair: PairId, ino: Ino, chunk_bytes: u64 },
    /// The inode numbers in use above `after`, ascending (a page that fits a header; verify).
    Inodes { pair: PairId, after: Option<Ino> },
    /// Unpair: the receiver forgets the pair and keeps its copy as an independent fs.
    Delete { pair: PairId },
    /// From a side that became the secondary: what it changed that the serving side may not
    /// have (changes it applied but never acknowledged, or acknowledged after a split). The
    /// serving side adds them to its DCL, so the resync overwrites them.
    MergeDcl { pair: PairId, keys: Vec<DclKey>, full: bool },
    /// Planned swap, from the serving side once its changes are drained: take over the
    /// service at `epoch` (claimed from the quorum by the receiver).
    Swap { pair: PairId, epoch: Epoch },
    /// From a secondary: please run a planned swap (an operator asked on the wrong side, or
    /// the automatic recovery policy of the preferred site).
    PleaseSwap { pair: PairId },
    /// The non-preferred array tells the preferred one whether it reaches the quorum.
    QuorumSeen { reachable: bool },
    /// The preferred array tells the other which arbitration mode to record (see
    /// `arbiter.rs`: the other records it before answering).
    SetMode { mode: Mode },
    /// A file a superseded side kept aside (its changes since the split): the serving side
    /// writes it under `.metrofs-conflicts/` on the fs. Data in the body.
    KeepAside { pair: PairId, path: Vec<Vec<u8>>, mode: u32 },
    /// The export rules of a pair's fs (see `Metro::set_export`), answered `Done` or
    /// `Refused`. `serving` is the array the sender records as the pair's serving side: the
    /// sender itself when it sends its rules to the twin (after its own change, or at a new
    /// link), which stores them; the receiver when a secondary hands an operator's change to
    /// the serving side, which applies it on both. `epoch` fences an old serving side.
    SetExport { pair: PairId, epoch: Epoch, serving: String, rules: ExportRules },
}

/// Answers, one per request kind. Errors are values, so the sender can compare them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "`Applied` is the answer to nearly every request; boxing it would cost an allocation per replicated change to save stack space in the few others"
)]
pub enum Response {
    Hello { array: String, pairs: Vec<PairRecord> },
    Done,
    Applied(Result<OpReply, FsError>),
    /// A page of entries; `more`: ask again after the last one.
    Entries { entries: Vec<(Vec<u8>, Ino)>, more: bool },
    Inode(Option<(Attr, Option<Vec<u8>>)>),
    Digests(Vec<u64>),
    /// A page of inode numbers; `more`: ask again after the last one.
    Inodes { inodes: Vec<Ino>, more: bool },
    /// The request was refused (wrong epoch, unknown pair, not the secondary...), with why.
    Refused(String),
}

/// Whether an encoded request header is a [`Request::Replicate`], read from its first byte (a
/// postcard enum starts with its variant's index as a varint; Replicate's is 3, one byte).
/// The link runs these on its reader ([`metrofs_link::Handler::inline`]): a replicated op that
/// waits for the disk does so on a blocking thread, the others touch memory and the page cache
/// (a namespace op may wait for a durable commit of the store in progress: one fsync at most).
#[must_use]
pub fn is_replicate(header: &[u8]) -> bool {
    header.first() == Some(&3)
}

/// Moves a WRITE's data out of the op (for the body).
#[must_use]
pub fn split_data(mut op: FsOp) -> (FsOp, Bytes) {
    if let OpBody::Write { data, .. } = &mut op.body {
        let d = std::mem::take(data);
        return (op, d);
    }
    (op, Bytes::new())
}

/// Puts a WRITE's data back from the body.
#[must_use]
pub fn join_data(mut op: FsOp, body: Bytes) -> FsOp {
    if let OpBody::Write { data, .. } = &mut op.body {
        *data = body;
    }
    op
}

/// Moves `PutData` segments out of sync ops (for the body).
#[must_use]
pub fn split_segments(mut ops: Vec<SyncOp>) -> (Vec<SyncOp>, Bytes) {
    let total: usize = ops
        .iter()
        .map(|o| match o {
            SyncOp::PutData { segments, .. } => segments.iter().map(|s| s.1.len()).sum(),
            _ => 0,
        })
        .sum();
    let mut body = bytes::BytesMut::with_capacity(total);
    for o in &mut ops {
        if let SyncOp::PutData { segments, .. } = o {
            for (_, data) in segments.iter_mut() {
                body.extend_from_slice(data);
                // The header keeps the length as an empty placeholder's position: see join.
                *data = Bytes::from(data.len().to_le_bytes().to_vec());
            }
        }
    }
    (ops, body.freeze())
}

/// Puts `PutData` segments back from the body; `None` when the body does not match.
#[must_use]
pub fn join_segments(mut ops: Vec<SyncOp>, mut body: Bytes) -> Option<Vec<SyncOp>> {
    for o in &mut ops {
        if let SyncOp::PutData { segments, .. } = o {
            for (_, data) in segments.iter_mut() {
                let len = usize::from_le_bytes(data.as_ref().try_into().ok()?);
                if len > body.len() {
                    return None;
                }
                *data = body.split_to(len);
            }
        }
    }
    body.is_empty().then_some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_core::Stability;

    #[test]
    fn replicate_is_told_from_its_first_byte() {
        let op = FsOp { fs: FsId(1), time: Time::new(1, 2), new_inode: None, body: OpBody::Commit { ino: Ino(3) } };
        let replicate = Request::Replicate { pair: PairId(7), epoch: Epoch(1), session: 9, seq: Seq(1), op, reply_key: None, order: None };
        assert!(is_replicate(&metrofs_link::encode_header(&replicate).expect("encode")));
        for other in [
            Request::Hello { array: "a".into(), pairs: vec![] },
            Request::Flush { pair: PairId(7) },
            Request::QuorumSeen { reachable: true },
            Request::Swap { pair: PairId(7), epoch: Epoch(2) },
        ] {
            assert!(!is_replicate(&metrofs_link::encode_header(&other).expect("encode")), "{other:?}");
        }
        assert!(!is_replicate(&[]));
    }

    #[test]
    fn write_data_travels_in_the_body() {
        let op = FsOp {
            fs: FsId(1),
            time: Time::new(1, 2),
            new_inode: None,
            body: OpBody::Write { ino: Ino(3), offset: 4, data: Bytes::from_static(b"hello"), stable: Stability::Unstable },
        };
        let (head, body) = split_data(op.clone());
        assert_eq!(body, Bytes::from_static(b"hello"));
        assert_eq!(join_data(head, body), op);
    }

    #[test]
    fn segments_travel_in_the_body() {
        let ops = vec![
            SyncOp::Unlink { dir: Ino(1), name: b"x".to_vec() },
            SyncOp::PutData {
                ino: Ino(2),
                offset: 0,
                len: 100,
                segments: vec![(0, Bytes::from_static(b"abc")), (50, Bytes::from_static(b"de"))],
            },
        ];
        let (head, body) = split_segments(ops.clone());
        assert_eq!(body.len(), 5);
        assert_eq!(join_segments(head.clone(), body), Some(ops));
        assert_eq!(join_segments(head, Bytes::from_static(b"abcd")), None);
    }

    #[test]
    fn pair_ids_parse_as_listed() {
        let id = PairId(0xabc);
        assert_eq!(id.to_string().parse::<PairId>(), Ok(id));
        assert!("zz".parse::<PairId>().is_err());
    }
}
