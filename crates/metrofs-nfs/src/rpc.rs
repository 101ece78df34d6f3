//! ONC RPC v2 (RFC 5531): the call header, credentials, and reply headers.
//!
//! [`parse_call`] reads a record's call header in the order the RFC checks it:
//! 1. xid and message type: a record too short for them, or not a CALL, cannot be answered
//!    ([`Refused::Drop`]: the connection is closed, its byte stream is not RPC);
//! 2. RPC version 2, else MSG_DENIED / RPC_MISMATCH(2, 2);
//! 3. program, version, procedure (dispatch happens later, with the arguments);
//! 4. credential: AUTH_SYS (uid, gid, up to 16 gids) or AUTH_NONE (the export's anonymous
//!    user); anything else, or a malformed AUTH_SYS body, is MSG_DENIED / AUTH_BADCRED;
//! 5. verifier: any flavor, at most 400 bytes, else AUTH_BADVERF. We never send one back.
//!
//! What is left of the record is the procedure's arguments.

use bytes::{Bytes, BytesMut};
use nfs3_types::rpc::{
    accept_stat_data, accepted_reply, auth_stat, msg_body, opaque_auth, rejected_reply, reply_body,
    rpc_msg,
};

use crate::xdr::{self, Dec, EncodeError, Garbage};

pub const RPC_VERSION: u32 = 2;
/// RFC 5531: `opaque_auth` bodies are at most 400 bytes.
pub const AUTH_BODY_BYTES_MAX: usize = 400;
/// RFC 5531 appendix A: machine names of at most 255 bytes, at most 16 groups.
pub const MACHINE_NAME_BYTES_MAX: usize = 255;
pub const GIDS_MAX: usize = 16;

const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;
const MSG_CALL: u32 = 0;

/// Who the caller says it is, before the export's squashing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cred {
    /// AUTH_NONE: the export's anonymous user.
    None,
    Sys {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
    },
}

/// A decoded call header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc: u32,
    pub cred: Cred,
}

/// Why a record is not a call we run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not answerable: close the connection.
    Drop(&'static str),
    /// Answer with this rejection.
    Denied { xid: u32, why: Denial },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    RpcMismatch,
    Auth(AuthError),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    BadCred,
    BadVerf,
}

/// Parses a call header; on success `d` is left at the first byte of the arguments.
pub fn parse_call(d: &mut Dec) -> Result<Call, Refused> {
    let xid = d
        .u32()
        .map_err(|Garbage| Refused::Drop("record shorter than an xid"))?;
    let mtype = d
        .u32()
        .map_err(|Garbage| Refused::Drop("record ends before the message type"))?;
    if mtype != MSG_CALL {
        return Err(Refused::Drop("not a CALL message"));
    }
    let rpcvers = d
        .u32()
        .map_err(|Garbage| Refused::Drop("call ends before the RPC version"))?;
    if rpcvers != RPC_VERSION {
        return Err(Refused::Denied {
            xid,
            why: Denial::RpcMismatch,
        });
    }
    let truncated = |Garbage| Refused::Drop("call header truncated");
    let prog = d.u32().map_err(truncated)?;
    let vers = d.u32().map_err(truncated)?;
    let proc = d.u32().map_err(truncated)?;
    let bad_cred = Refused::Denied {
        xid,
        why: Denial::Auth(AuthError::BadCred),
    };
    let cred_flavor = d.u32().map_err(truncated)?;
    let cred_body = d
        .opaque(AUTH_BODY_BYTES_MAX)
        .map_err(|Garbage| bad_cred.clone())?;
    let verf_flavor = d.u32().map_err(truncated);
    let verf_body = d.opaque(AUTH_BODY_BYTES_MAX);
    let cred = match cred_flavor {
        AUTH_NONE => Cred::None,
        AUTH_SYS => parse_auth_sys(cred_body).map_err(|Garbage| bad_cred.clone())?,
        _ => return Err(bad_cred),
    };
    verf_flavor?;
    verf_body.map_err(|Garbage| Refused::Denied {
        xid,
        why: Denial::Auth(AuthError::BadVerf),
    })?;
    Ok(Call {
        xid,
        prog,
        vers,
        proc,
        cred,
    })
}

/// The AUTH_SYS body: stamp, machine name, uid, gid, gids; exactly that, nothing after.
fn parse_auth_sys(body: Bytes) -> Result<Cred, Garbage> {
    let mut d = Dec::new(body);
    let _stamp = d.u32()?;
    let _machine = d.opaque(MACHINE_NAME_BYTES_MAX)?;
    let uid = d.u32()?;
    let gid = d.u32()?;
    let gids = d.u32_array(GIDS_MAX)?;
    if d.remaining() != 0 {
        return Err(Garbage);
    }
    Ok(Cred::Sys { uid, gid, gids })
}

/// Start of a successful reply (MSG_ACCEPTED, no verifier, SUCCESS); the results follow.
pub fn success(xid: u32, out: &mut BytesMut) -> Result<(), EncodeError> {
    accepted(xid, accept_stat_data::SUCCESS, out)
}

/// A whole MSG_ACCEPTED reply with a non-success status (or the start of a SUCCESS one).
pub fn accepted(xid: u32, stat: accept_stat_data, out: &mut BytesMut) -> Result<(), EncodeError> {
    let msg = rpc_msg {
        xid,
        body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
            verf: opaque_auth::default(),
            reply_data: stat,
        })),
    };
    xdr::put(out, &msg)
}

/// A whole MSG_DENIED reply.
pub fn denied(xid: u32, why: Denial, out: &mut BytesMut) -> Result<(), EncodeError> {
    let rejected = match why {
        Denial::RpcMismatch => rejected_reply::RPC_MISMATCH {
            low: RPC_VERSION,
            high: RPC_VERSION,
        },
        Denial::Auth(AuthError::BadCred) => rejected_reply::AUTH_ERROR(auth_stat::AUTH_BADCRED),
        Denial::Auth(AuthError::BadVerf) => rejected_reply::AUTH_ERROR(auth_stat::AUTH_BADVERF),
    };
    let msg = rpc_msg {
        xid,
        body: msg_body::REPLY(reply_body::MSG_DENIED(rejected)),
    };
    xdr::put(out, &msg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call header, for tests: AUTH_SYS when `uid` is given.
    pub fn call_header(
        xid: u32,
        rpcvers: u32,
        prog: u32,
        vers: u32,
        proc: u32,
        uid: Option<u32>,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [xid, 0, rpcvers, prog, vers, proc] {
            v.extend(w.to_be_bytes());
        }
        match uid {
            None => v.extend([0u8; 8]),
            Some(uid) => {
                let mut body = Vec::new();
                for w in [1u32, 4] {
                    body.extend(w.to_be_bytes());
                }
                body.extend(b"host");
                for w in [uid, 100, 2, 100, 200] {
                    body.extend(w.to_be_bytes());
                }
                v.extend(AUTH_SYS.to_be_bytes());
                v.extend(u32::try_from(body.len()).expect("small").to_be_bytes());
                v.extend(body);
            }
        }
        v.extend([0u8; 8]);
        v
    }

    fn parse(b: Vec<u8>) -> (Result<Call, Refused>, usize) {
        let mut d = Dec::new(Bytes::from(b));
        let r = parse_call(&mut d);
        (r, d.remaining())
    }

    #[test]
    fn parses_auth_sys_and_leaves_the_arguments() {
        let mut b = call_header(9, 2, 100_003, 3, 1, Some(1000));
        b.extend([1, 2, 3, 4]);
        let (r, left) = parse(b);
        assert_eq!(
            r,
            Ok(Call {
                xid: 9,
                prog: 100_003,
                vers: 3,
                proc: 1,
                cred: Cred::Sys {
                    uid: 1000,
                    gid: 100,
                    gids: vec![100, 200]
                }
            })
        );
        assert_eq!(left, 4);
        let (r, _) = parse(call_header(9, 2, 100_005, 3, 0, None));
        assert_eq!(r.map(|c| c.cred), Ok(Cred::None));
    }

    #[test]
    fn refusals() {
        assert!(matches!(parse(vec![0, 0]).0, Err(Refused::Drop(_))));
        let mut reply = call_header(3, 2, 100_003, 3, 0, None);
        reply[7] = 1; // a REPLY, not a CALL
        assert!(matches!(parse(reply).0, Err(Refused::Drop(_))));
        assert_eq!(
            parse(call_header(3, 3, 100_003, 3, 0, None)).0,
            Err(Refused::Denied {
                xid: 3,
                why: Denial::RpcMismatch
            })
        );
        let mut trunc = call_header(3, 2, 100_003, 3, 0, None);
        trunc.truncate(20);
        assert!(matches!(parse(trunc).0, Err(Refused::Drop(_))));
    }

    #[test]
    fn bad_credentials() {
        let bad = Err(Refused::Denied {
            xid: 4,
            why: Denial::Auth(AuthError::BadCred),
        });
        // Unknown flavor (RPCSEC_GSS).
        let mut b = call_header(4, 2, 100_003, 3, 0, None);
        b[27] = 6;
        assert_eq!(parse(b).0, bad);
        // AUTH_SYS body with 17 gids.
        let mut b = call_header(4, 2, 100_003, 3, 0, Some(0));
        let gids_at = 24 + 8 + 12 + 8;
        b[gids_at + 3] = 17;
        assert_eq!(parse(b).0, bad);
        // AUTH_SYS body too long for its own fields.
        let mut b = call_header(4, 2, 100_003, 3, 0, Some(0));
        b[24 + 7] += 4;
        b.splice(24 + 8 + 32..24 + 8 + 32, [0u8; 4]);
        assert_eq!(parse(b).0, bad);
        // Credential body over 400 bytes.
        let mut b = call_header(4, 2, 100_003, 3, 0, None);
        b[24 + 6] = 2;
        assert_eq!(parse(b).0, bad);
        // Verifier body over 400 bytes.
        let mut b = call_header(4, 2, 100_003, 3, 0, None);
        b[32 + 6] = 2;
        assert_eq!(
            parse(b).0,
            Err(Refused::Denied {
                xid: 4,
                why: Denial::Auth(AuthError::BadVerf)
            })
        );
    }

    #[test]
    fn reply_headers() {
        let mut out = BytesMut::new();
        success(7, &mut out).expect("pack");
        assert_eq!(
            &out[..],
            &[0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut out = BytesMut::new();
        accepted(
            7,
            accept_stat_data::PROG_MISMATCH { low: 3, high: 3 },
            &mut out,
        )
        .expect("pack");
        assert_eq!(&out[20..], &[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3]);
        let mut out = BytesMut::new();
        denied(7, Denial::Auth(AuthError::BadCred), &mut out).expect("pack");
        assert_eq!(
            &out[..],
            &[0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
        );
        let mut out = BytesMut::new();
        denied(7, Denial::RpcMismatch, &mut out).expect("pack");
        assert_eq!(&out[8..], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2]);
    }
}
