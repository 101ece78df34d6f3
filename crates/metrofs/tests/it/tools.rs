//! Debian's libnfs tools (package libnfs-utils): `nfs-cp`, `nfs-ls`, `nfs-cat`. A client
//! nobody here wrote. Missing tools fail the test (scripts/test.sh installs them).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// The tool's path; panics with what to install when it is missing.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found: install Debian's libnfs-utils (scripts/test.sh does: apt-get install -y libnfs-utils)");
}

/// How long one run of a libnfs tool may take in a test. libnfs (4.0, Debian 12) has no RPC
/// timeout by default: a client whose connection died without a close reaching it waits for
/// its reply for ever, so an unbounded run would hang the test instead of failing it.
pub const TOOL_LIMIT: Duration = Duration::from_secs(180);

/// Runs a libnfs tool for at most [`TOOL_LIMIT`]; stdout and stderr captured. Panics when
/// it hangs.
pub fn run(name: &str, args: &[&str]) -> Output {
    crate::harness::output_within(Command::new(tool(name)).args(args), TOOL_LIMIT)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs libnfs tool `name` inside network namespace `ns` for at most `limit`; an error when it
/// had to be killed ([`crate::harness::output_within`]).
pub fn run_in(ns: &str, name: &str, args: &[&str], limit: Duration) -> Result<Output, String> {
    crate::harness::output_within(&mut crate::netns::in_ns(ns, &tool(name), args), limit)
}

/// Runs a libnfs tool and insists on success.
pub fn run_ok(name: &str, args: &[&str]) -> Output {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        crate::harness::text(&out)
    );
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), `seed` picks the stream.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).expect("open for sha256");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read for sha256");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
