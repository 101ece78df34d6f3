//! What an array and a quorum server say to each other over the link.
//!
//! Each call is one [`Request`] header and one [`Response`] header (postcard, through
//! [`metrofs_link::Link::call_typed`]); bodies are empty. The domain is never in a request:
//! it is the one the link's handshake authenticated, so an array can only ever touch its own
//! domain's records. The `array` of a `Claim` or `Force` must be the authenticated array's
//! own name (the server refuses anything else), and is there so that a grant record names its
//! holder explicitly.
//!
//! # The rule (per domain and scope)
//! The server keeps, durably, the highest epoch granted and its holder ([`Grant`]).
//! - `Claim { epoch, array }` is granted iff `epoch > stored.epoch`, or `epoch == stored.epoch`
//!   and `array == stored.holder` (an idempotent retry, e.g. after a lost reply). Otherwise it
//!   is denied with the stored record. A grant is durable before it is answered.
//! - `Force { epoch, array }` (an operator's force-start) records
//!   `(max(epoch, stored.epoch + 1), array)` whatever is stored, and answers the new record.
//! - `Status` answers the record; `Ping` answers `Pong`.
//!
//! No record is the same as epoch 0 held by nobody; epoch 0 can never be claimed.

use serde::{Deserialize, Serialize};

/// A grant record: the highest epoch granted for one (domain, scope), and the array holding it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub epoch: u64,
    pub holder: String,
}

/// What an array asks a quorum server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Go on for `epoch` of `scope` (a pair id) as `array`.
    Claim {
        scope: u64,
        epoch: u64,
        array: String,
    },
    /// The operator's force-start: record `array` as holder of at least `epoch`, above
    /// whatever is stored.
    Force {
        scope: u64,
        epoch: u64,
        array: String,
    },
    /// The record of `scope`.
    Status { scope: u64 },
    /// Liveness (the link's heartbeats already prove the connection).
    Ping,
}

/// The server's answers. Errors are values, so the client can say why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The claim is granted (durably): the record is now this.
    Granted(Grant),
    /// The claim is denied: this record (a higher epoch, or the same epoch held by another
    /// array) stands.
    Denied(Grant),
    /// The force is recorded (durably): the record is now this.
    Forced(Grant),
    /// The record of the scope asked about; `None` if nobody ever claimed it.
    Status(Option<Grant>),
    Pong,
    /// The request was malformed or not allowed (garbage, epoch 0, another array's name);
    /// nothing was changed.
    Refused(String),
    /// The server could not read or write its grant record; nothing was granted.
    Failed(String),
}

/// A scope (pair id) as logs and messages show it: 16 hex digits, as `metrofs pair list`.
pub(crate) struct ScopeHex(pub u64);

impl std::fmt::Display for ScopeHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_link::{decode_header, encode_header};

    #[test]
    fn requests_and_responses_round_trip() {
        let reqs = [
            Request::Claim {
                scope: u64::MAX,
                epoch: 7,
                array: "site-a".into(),
            },
            Request::Force {
                scope: 1,
                epoch: 0,
                array: "site-b".into(),
            },
            Request::Status { scope: 3 },
            Request::Ping,
        ];
        for r in reqs {
            let b = encode_header(&r).expect("encode");
            assert_eq!(decode_header::<Request>(&b).expect("decode"), r);
        }
        let g = Grant {
            epoch: 9,
            holder: "site-a".into(),
        };
        for r in [
            Response::Granted(g.clone()),
            Response::Denied(g.clone()),
            Response::Forced(g),
            Response::Status(None),
            Response::Pong,
            Response::Refused("no".into()),
            Response::Failed("disk".into()),
        ] {
            let b = encode_header(&r).expect("encode");
            assert_eq!(decode_header::<Response>(&b).expect("decode"), r);
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_header::<Request>(b"\xff\xff\xff\xff garbage").is_err());
        assert!(decode_header::<Request>(b"").is_err());
        // A valid request with trailing bytes is garbage too.
        let mut b = encode_header(&Request::Ping).expect("encode").to_vec();
        b.push(0);
        assert!(decode_header::<Request>(&b).is_err());
    }
}
