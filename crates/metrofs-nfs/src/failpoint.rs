//! A test-only hook that crashes the process between a change and its reply.
//!
//! Process tests of failover need an array that applied a change (and, in a pair, had its
//! twin apply it) but died before its reply reached the client, so that the client's
//! retransmission goes to the survivor. Setting the environment variable
//! [`ENV`] (`METROFS_FAILPOINT`) to
//!
//! ```text
//! kill-before-reply:PROC:NAME
//! ```
//!
//! makes the NFS front end kill its own process with `SIGKILL` (a real crash: no destructor,
//! no flush, no reply) right after [`metrofs_core::Backend::change`] returned for the first
//! request of procedure `PROC` whose name argument is `NAME`, before the reply is written.
//! - `PROC`: CREATE, MKDIR, SYMLINK, REMOVE, RMDIR, RENAME, LINK, SETATTR, WRITE or COMMIT
//!   (case does not matter).
//! - `NAME`: the entry's name (for RENAME the source or the target name matches), or `*` for
//!   any request of `PROC` (the only choice for SETATTR, WRITE and COMMIT, which name none).
//!   It may contain `:`.
//!
//! The variable is read once, when an [`crate::NfsServer`] is made; a value that does not
//! parse stops the server from starting (a test that set it wants it to fire). A request
//! answered from the reply cache or [`metrofs_core::Backend::replayed`] runs no change and
//! never fires. Never set it in production.

use metrofs_core::OpBody;

/// The environment variable read at startup.
pub const ENV: &str = "METROFS_FAILPOINT";

const KILL_BEFORE_REPLY: &str = "kill-before-reply";
const PROCS: [&str; 10] = [
    "CREATE", "MKDIR", "SYMLINK", "REMOVE", "RMDIR", "RENAME", "LINK", "SETATTR", "WRITE", "COMMIT",
];

/// A parsed failpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failpoint {
    /// SIGKILL this process after the change of `proc` naming `name` (`None`: any) returned.
    KillBeforeReply {
        /// Upper case, one of the procedures in the module doc.
        proc: &'static str,
        name: Option<Vec<u8>>,
    },
}

impl std::str::FromStr for Failpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected kill-before-reply:PROC:NAME (PROC one of CREATE, MKDIR, SYMLINK, \
                     REMOVE, RMDIR, RENAME, LINK, SETATTR, WRITE, COMMIT; NAME a file name or *)";
        let mut parts = s.splitn(3, ':');
        let (Some(kind), Some(proc), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("{ENV}='{s}': {usage}"));
        };
        if kind != KILL_BEFORE_REPLY {
            return Err(format!("{ENV}='{s}': unknown failpoint '{kind}'; {usage}"));
        }
        let proc = PROCS
            .iter()
            .find(|p| p.eq_ignore_ascii_case(proc))
            .copied()
            .ok_or_else(|| format!("{ENV}='{s}': unknown procedure '{proc}'; {usage}"))?;
        let name = match name {
            "" => return Err(format!("{ENV}='{s}': empty NAME; {usage}")),
            "*" => None,
            n if matches!(proc, "SETATTR" | "WRITE" | "COMMIT") => {
                return Err(format!(
                    "{ENV}='{s}': {proc} names no entry, so NAME '{n}' could never match; use *"
                ))
            }
            n => Some(n.as_bytes().to_vec()),
        };
        Ok(Self::KillBeforeReply { proc, name })
    }
}

impl Failpoint {
    /// The failpoint [`ENV`] sets, if any. Reads the environment: call once, at startup.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(ENV) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => v.parse().map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(format!("{ENV}={v:?} is not UTF-8")),
        }
    }

    /// Whether this failpoint fires for a change with this body.
    #[must_use]
    pub fn matches(&self, body: &OpBody) -> bool {
        let Self::KillBeforeReply { proc, name } = self;
        if !body.kind().eq_ignore_ascii_case(proc) {
            return false;
        }
        let Some(want) = name else { return true };
        match body {
            OpBody::Create { name, .. }
            | OpBody::Mkdir { name, .. }
            | OpBody::Symlink { name, .. }
            | OpBody::Remove { name, .. }
            | OpBody::Rmdir { name, .. }
            | OpBody::Link { name, .. } => name == want,
            OpBody::Rename {
                from_name, to_name, ..
            } => from_name == want || to_name == want,
            OpBody::Write { .. } | OpBody::SetAttr { .. } | OpBody::Commit { .. } => false,
        }
    }

    /// Kills this process with SIGKILL: the change `what` was applied, its reply not sent.
    pub fn fire(&self, what: &str) -> ! {
        // Straight to stderr (unbuffered): a log line in a buffered or non-blocking writer
        // would die with the process, and the test wants to see why it died.
        eprintln!("{ENV}: {self:?} fired after {what} was applied: killing this process with SIGKILL before the reply");
        tracing::error!(failpoint = ?self, what, "failpoint fired: SIGKILL before the reply");
        let killed =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; reaching here means the kill itself failed.
        eprintln!("{ENV}: SIGKILL failed ({killed:?}); aborting instead");
        std::process::abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_core::{CreateHow, Ino, SetAttr};

    fn create(name: &str) -> OpBody {
        OpBody::Create {
            dir: Ino(1),
            name: name.as_bytes().to_vec(),
            how: CreateHow::Guarded(SetAttr::default()),
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn parses_the_documented_form() {
        let f: Failpoint = "kill-before-reply:CREATE:victim.txt"
            .parse()
            .expect("parse");
        assert_eq!(
            f,
            Failpoint::KillBeforeReply {
                proc: "CREATE",
                name: Some(b"victim.txt".to_vec())
            }
        );
        let f: Failpoint = "kill-before-reply:remove:a:b".parse().expect("parse");
        assert_eq!(
            f,
            Failpoint::KillBeforeReply {
                proc: "REMOVE",
                name: Some(b"a:b".to_vec())
            },
            "lower case procedure, a name with a colon"
        );
        let f: Failpoint = "kill-before-reply:WRITE:*".parse().expect("parse");
        assert_eq!(
            f,
            Failpoint::KillBeforeReply {
                proc: "WRITE",
                name: None
            }
        );
    }

    #[test]
    fn refuses_what_could_never_fire() {
        for bad in [
            "",
            "kill-before-reply",
            "kill-before-reply:CREATE",
            "kill-before-reply:CREATE:",
            "kill-after-reply:CREATE:x",
            "kill-before-reply:READ:x",
            "kill-before-reply:WRITE:x",
        ] {
            let e = bad.parse::<Failpoint>().expect_err(bad);
            assert!(e.contains(ENV) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn matches_procedure_and_name() {
        let f: Failpoint = "kill-before-reply:CREATE:victim.txt"
            .parse()
            .expect("parse");
        assert!(f.matches(&create("victim.txt")));
        assert!(!f.matches(&create("other.txt")));
        assert!(!f.matches(&OpBody::Mkdir {
            dir: Ino(1),
            name: b"victim.txt".to_vec(),
            mode: 0o755,
            uid: 0,
            gid: 0
        }));
        let rename = OpBody::Rename {
            from_dir: Ino(1),
            from_name: b"a".to_vec(),
            to_dir: Ino(1),
            to_name: b"victim.txt".to_vec(),
        };
        let f: Failpoint = "kill-before-reply:RENAME:victim.txt"
            .parse()
            .expect("parse");
        assert!(f.matches(&rename), "the target name matches");
        let f: Failpoint = "kill-before-reply:RENAME:a".parse().expect("parse");
        assert!(f.matches(&rename), "the source name matches");
        let any: Failpoint = "kill-before-reply:CREATE:*".parse().expect("parse");
        assert!(any.matches(&create("anything")));
        let commit: Failpoint = "kill-before-reply:COMMIT:*".parse().expect("parse");
        assert!(commit.matches(&OpBody::Commit { ino: Ino(4) }));
        assert!(!commit.matches(&create("x")));
    }
}
