//! Who may call what.
//!
//! - Changing calls (every method but GET and HEAD) need `Authorization: Bearer TOKEN`, TOKEN
//!   being the content of the array's token file (`[api] token_file`, default
//!   `DATA_DIR/api.token`, made at the first start). The comparison takes the same time
//!   whatever the first wrong byte ([`subtle`]). Without it, or with a wrong one: 401.
//! - Read calls (GET, HEAD) need no token from the networks of `[api] read_open_to` (loopback
//!   by default); from anywhere else they need it too.
//! - Always open, since they hold no data: the dashboard's files (`/`, `/dashboard/...`), the
//!   OpenAPI document and `/api/health` (name, version, where the token file is: the CLI on the
//!   array's machine reads the token there). The dashboard asks for the token when a call
//!   needs it.
//!
//! The middleware also names the caller for the event log ([`Actor`]): the client's word from
//! the `x-metrofs-client` header (`cli:USER`, `dashboard`; `api` when absent) and its address,
//! and the reason the caller gives for a change (`x-metrofs-reason`, `metrofs ... --reason`).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrofs_core::Cidr;
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use super::handlers::AppState;

/// Shortest token accepted from a token file, in bytes.
pub const TOKEN_BYTES_MIN: usize = 16;
/// Random bytes of a token the array makes (written as twice as many hex digits).
const TOKEN_RANDOM_BYTES: usize = 32;
/// Longest client word kept from `x-metrofs-client`.
const CLIENT_WORD_MAX: usize = 64;
/// The header a client names itself with.
pub const CLIENT_HEADER: &str = "x-metrofs-client";
/// The header a client gives the reason of a change with; recorded with the action.
pub const REASON_HEADER: &str = "x-metrofs-reason";
/// Longest reason kept, in characters (a longer one is cut).
pub const REASON_CHARS_MAX: usize = 200;

/// The access rules of one array.
pub struct Auth {
    token: Vec<u8>,
    token_file: PathBuf,
    read_open_to: Vec<Cidr>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Auth")
            .field("token_file", &self.token_file)
            .field("read_open_to", &self.read_open_to)
            .finish_non_exhaustive()
    }
}

/// Who made a request, and why, for the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `cli:root@127.0.0.1`, `dashboard@10.0.0.7`, `api@10.0.0.7`.
    pub who: String,
    /// What the caller gave as the reason (header `x-metrofs-reason`), if anything.
    pub reason: Option<String>,
}

impl Auth {
    /// Reads the token of `token_file`, making the file first (random, mode 600) when it does
    /// not exist.
    pub fn load(token_file: &Path, read_open_to: Vec<Cidr>) -> anyhow::Result<Self> {
        if !token_file.exists() {
            make_token_file(token_file)?;
        }
        let text = std::fs::read_to_string(token_file)
            .with_context(|| format!("cannot read api.token_file {}", token_file.display()))?;
        let token = text.trim().as_bytes().to_vec();
        if token.len() < TOKEN_BYTES_MIN {
            anyhow::bail!(
                "api.token_file {} holds {} bytes: a token needs at least {TOKEN_BYTES_MIN}; delete the file to have the array make one at start",
                token_file.display(),
                token.len()
            );
        }
        warn_if_readable_by_others(token_file);
        Ok(Self {
            token,
            token_file: token_file.to_owned(),
            read_open_to,
        })
    }

    /// An `Auth` with a given token (tests).
    #[cfg(test)]
    pub fn with_token(token: &str, read_open_to: Vec<Cidr>) -> Self {
        Self {
            token: token.as_bytes().to_vec(),
            token_file: PathBuf::from("/nonexistent/api.token"),
            read_open_to,
        }
    }

    #[must_use]
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    fn unauthorized(&self, why: &str) -> ApiError {
        ApiError::Unauthorized {
            why: why.to_owned(),
            token_file: self.token_file.display().to_string(),
        }
    }

    /// Whether `headers` carry this array's token: `Ok` or why not.
    fn check_token(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(self.unauthorized(
                "this call needs the array's API token (Authorization: Bearer TOKEN)",
            ));
        };
        let value = value.as_bytes();
        let scheme = b"bearer ";
        if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Err(self.unauthorized("the Authorization header must be `Bearer TOKEN`"));
        }
        let given = value[scheme.len()..].trim_ascii();
        if bool::from(given.ct_eq(&self.token)) {
            Ok(())
        } else {
            Err(self.unauthorized("wrong API token"))
        }
    }

    /// Whether reads from `ip` need no token.
    fn read_open(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.read_open_to.iter().any(|c| c.contains(ip)))
    }

    /// Decides one request: `Ok` or the 401 to answer.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        ip: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        let read = matches!(*method, Method::GET | Method::HEAD);
        if read && always_open(path) {
            return Ok(());
        }
        if read && self.read_open(ip) {
            return Ok(());
        }
        self.check_token(headers)
    }
}

/// Paths that hold no data: the dashboard's files, the API's description, and the health
/// check (the array's name, version and where its token file is, so the CLI on its machine
/// can find the token from any network).
fn always_open(path: &str) -> bool {
    path == "/"
        || path.starts_with("/dashboard/")
        || path == "/api/openapi.json"
        || path == "/api/health"
}

/// The middleware: refuses what [`Auth::decide`] refuses, and names the caller.
pub async fn layer(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Err(e) = s.auth.decide(
        req.method(),
        req.uri().path(),
        peer.map(|p| p.ip()),
        req.headers(),
    ) {
        return e.into_response();
    }
    let client = req
        .headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(clean_word)
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "api".to_owned());
    let who = match peer {
        Some(p) => format!("{client}@{}", p.ip()),
        None => client,
    };
    let reason = req
        .headers()
        .get(REASON_HEADER)
        .and_then(|v| clean_reason(&String::from_utf8_lossy(v.as_bytes())));
    req.extensions_mut().insert(Actor { who, reason });
    next.run(req).await
}

/// A reason as it is recorded: control characters as spaces, runs of spaces as one, at most
/// [`REASON_CHARS_MAX`] characters; `None` when nothing is left.
#[must_use]
pub fn clean_reason(s: &str) -> Option<String> {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined = words.join(" ");
    let cut: String = joined.chars().take(REASON_CHARS_MAX).collect();
    (!cut.is_empty()).then_some(cut)
}

/// Keeps what is safe to print of a client's word.
fn clean_word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'))
        .take(CLIENT_WORD_MAX)
        .collect()
}

/// Makes a token file: 64 random hex digits, mode 600, flushed.
fn make_token_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the directory of api.token_file {}",
                path.display()
            )
        })?;
    }
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the API token")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        // Made by another array of the same process (the demo) in between: use it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create api.token_file {}", path.display()))
        }
    };
    f.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write api.token_file {}", path.display()))?;
    tracing::info!(token_file = %path.display(), "made the API token file (changing calls need it)");
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(token_file = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the API token file is readable by others: chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Vec<Cidr> {
        vec!["127.0.0.0/8".parse().expect("cidr")]
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().expect("value"));
        }
        h
    }

    #[test]
    fn rules() {
        let a = Auth::with_token("0123456789abcdef0123", loopback());
        let lo = Some(IpAddr::from([127, 0, 0, 1]));
        let far = Some(IpAddr::from([10, 1, 2, 3]));
        let ok = headers(Some("Bearer 0123456789abcdef0123"));
        // Reads: open to loopback, token elsewhere.
        assert!(a
            .decide(&Method::GET, "/api/pairs", lo, &headers(None))
            .is_ok());
        assert!(a
            .decide(&Method::GET, "/api/pairs", far, &headers(None))
            .is_err());
        assert!(a
            .decide(&Method::GET, "/api/pairs", None, &headers(None))
            .is_err());
        assert!(a.decide(&Method::GET, "/api/pairs", far, &ok).is_ok());
        // Changes: token everywhere, scheme case-insensitive.
        assert!(a
            .decide(&Method::POST, "/api/fs", lo, &headers(None))
            .is_err());
        assert!(a.decide(&Method::POST, "/api/fs", lo, &ok).is_ok());
        assert!(a
            .decide(
                &Method::DELETE,
                "/api/fs/x",
                lo,
                &headers(Some("bearer 0123456789abcdef0123"))
            )
            .is_ok());
        for bad in [
            "Bearer 0123456789abcdef0124",
            "Bearer ",
            "Basic 0123456789abcdef0123",
            "Bearer 0123",
            "0123456789abcdef0123",
        ] {
            let e = a
                .decide(&Method::PUT, "/api/fs/x/export", lo, &headers(Some(bad)))
                .expect_err(bad);
            assert_eq!(e.code(), "unauthorized");
            assert_eq!(e.http_status().as_u16(), 401);
            assert!(e.hint().contains("/nonexistent/api.token"), "{}", e.hint());
        }
        // Static files are open to all.
        for p in ["/", "/dashboard/app.js", "/api/openapi.json", "/api/health"] {
            assert!(
                a.decide(&Method::GET, p, far, &headers(None)).is_ok(),
                "{p}"
            );
        }
        assert!(a.decide(&Method::POST, "/", far, &headers(None)).is_err());
        // No network open: every read needs the token.
        let closed = Auth::with_token("0123456789abcdef0123", vec![]);
        assert!(closed
            .decide(&Method::GET, "/metrics", lo, &headers(None))
            .is_err());
        assert!(closed.decide(&Method::GET, "/metrics", lo, &ok).is_ok());
        assert_eq!(clean_word("cli:root\n<script>"), "cli:rootscript");
    }

    #[test]
    fn reasons_are_cleaned_and_cut() {
        assert_eq!(
            clean_reason("  peer\tmaintenance\r\n CHG-42 "),
            Some("peer maintenance CHG-42".into())
        );
        assert_eq!(clean_reason(" \t\n"), None);
        assert_eq!(clean_reason("réparation"), Some("réparation".into()));
        let long = "x".repeat(REASON_CHARS_MAX + 50);
        assert_eq!(
            clean_reason(&long).map(|r| r.chars().count()),
            Some(REASON_CHARS_MAX)
        );
    }

    #[test]
    fn token_file_is_made_once_private_and_checked() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("sub").join("api.token");
        let a = Auth::load(&path, loopback()).expect("made");
        assert_eq!(a.token.len(), 2 * TOKEN_RANDOM_BYTES);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let again = Auth::load(&path, loopback()).expect("kept");
        assert_eq!(again.token, a.token);
        std::fs::write(&path, "short\n").expect("write");
        let e = Auth::load(&path, loopback()).expect_err("too short");
        assert!(e.to_string().contains("api.token_file"), "{e}");
        std::fs::write(&path, "  a-token-of-twenty-chars  \n").expect("write");
        assert_eq!(
            Auth::load(&path, loopback()).expect("trimmed").token,
            b"a-token-of-twenty-chars"
        );
    }
}
