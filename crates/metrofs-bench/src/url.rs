//! libnfs-style NFS URLs: `nfs://HOST[:NFSPORT]/EXPORT[?KEY=VALUE&...]`.
//!
//! The whole path names the export to MOUNT (`/export`, `/demo`, `/srv/nfs`; a trailing `/` is
//! dropped). The host is an IP
//! literal (`127.0.0.1`, `[::1]`) or a name. Query keys, as libnfs spells them:
//!
//! | key | meaning |
//! | --- | --- |
//! | `nfsport` | TCP port of the NFSv3 service (no portmapper lookup for it) |
//! | `mountport` | TCP port of the MOUNT service |
//! | `version` | must be `3` |
//! | `uid`, `gid` | AUTH_SYS identity of every call (default 0, 0) |
//!
//! A port in the authority (`nfs://HOST:2049/...`) is the NFS port, as in libnfs. Ports not given
//! are asked of the portmapper on port 111. Anything else is refused with a message that says
//! what was expected.

use std::fmt;

/// A parsed `nfs://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsUrl {
    /// Host as written (brackets of an IPv6 literal removed).
    pub host: String,
    /// Export path to MOUNT, starting with `/`, percent-decoded.
    pub export: String,
    pub nfs_port: Option<u16>,
    pub mount_port: Option<u16>,
    pub uid: u32,
    pub gid: u32,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    url: String,
    reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad NFS URL {:?}: {} (expected nfs://HOST[:PORT]/EXPORT[?nfsport=P&mountport=P&version=3])",
            self.url, self.reason
        )
    }
}

impl std::error::Error for UrlError {}

const KNOWN_KEYS: &str = "nfsport, mountport, version, uid, gid";

impl NfsUrl {
    /// Parses `nfs://HOST[:PORT]/EXPORT[?query]`.
    ///
    /// # Errors
    /// Names the part of the URL that is wrong: scheme, host, port, path, or query key/value.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let err = |reason: String| UrlError {
            url: url.to_string(),
            reason,
        };

        let scheme_end = url
            .find("://")
            .ok_or_else(|| err("missing scheme, the URL must start with nfs://".into()))?;
        let scheme = &url[..scheme_end];
        if !scheme.eq_ignore_ascii_case("nfs") {
            return Err(err(format!("scheme {scheme:?} is not nfs")));
        }
        let rest = &url[scheme_end + 3..];
        if rest.contains('#') {
            return Err(err("fragments (#...) are not supported".into()));
        }

        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i..]),
            None => (before_query, ""),
        };

        let (host, authority_port) = parse_authority(authority).map_err(err)?;

        if path.is_empty() {
            return Err(err(
                "no export path after the host (e.g. nfs://HOST/export)".into(),
            ));
        }
        let mut export = percent_decode(path).map_err(err)?;
        // `nfs://h/demo/` names the same export as `nfs://h/demo` (libnfs prints the former).
        while export.len() > 1 && export.ends_with('/') {
            export.pop();
        }
        if export.contains('\0') {
            return Err(err("the export path contains a NUL byte".into()));
        }

        let mut parsed = Self {
            host,
            export,
            nfs_port: authority_port,
            mount_port: None,
            uid: 0,
            gid: 0,
        };
        let mut seen: Vec<String> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                err(format!(
                    "query item {pair:?} has no '=' (expected KEY=VALUE)"
                ))
            })?;
            let key = key.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(err(format!("query key {key:?} given twice")));
            }
            seen.push(key.clone());
            match key.as_str() {
                "nfsport" => {
                    let port = parse_port(value).map_err(|r| err(format!("nfsport: {r}")))?;
                    if let Some(p) = authority_port {
                        if p != port {
                            return Err(err(format!(
                                "port {p} in the host part and nfsport={port} disagree"
                            )));
                        }
                    }
                    parsed.nfs_port = Some(port);
                }
                "mountport" => {
                    parsed.mount_port =
                        Some(parse_port(value).map_err(|r| err(format!("mountport: {r}")))?);
                }
                "version" => {
                    if value != "3" {
                        return Err(err(format!(
                            "version={value}: only NFS version 3 is supported"
                        )));
                    }
                }
                "uid" => {
                    parsed.uid = value.parse().map_err(|_| {
                        err(format!("uid={value:?} is not a number 0..=4294967295"))
                    })?;
                }
                "gid" => {
                    parsed.gid = value.parse().map_err(|_| {
                        err(format!("gid={value:?} is not a number 0..=4294967295"))
                    })?;
                }
                other => {
                    return Err(err(format!(
                        "unknown query key {other:?} (supported: {KNOWN_KEYS})"
                    )))
                }
            }
        }
        Ok(parsed)
    }
}

impl fmt::Display for NfsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "nfs://{host}{}", self.export)?;
        let mut sep = '?';
        if let Some(p) = self.nfs_port {
            write!(f, "{sep}nfsport={p}")?;
            sep = '&';
        }
        if let Some(p) = self.mount_port {
            write!(f, "{sep}mountport={p}")?;
            sep = '&';
        }
        write!(f, "{sep}version=3")
    }
}

fn parse_authority(authority: &str) -> Result<(String, Option<u16>), String> {
    if authority.is_empty() {
        return Err("no host after nfs://".into());
    }
    if authority.contains('@') {
        return Err("user information (user@host) is not supported; use ?uid=&gid=".into());
    }
    if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| "IPv6 literal is missing its closing ']'".to_string())?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("[{host}] is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after ']'"))?,
            )?),
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => {
            if p.contains(':') {
                return Err(
                    "IPv6 addresses must be written in brackets: nfs://[::1]/export".into(),
                );
            }
            (h, Some(parse_port(p)?))
        }
        None => (authority, None),
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return Err(format!(
            "host {host:?} has characters a host name cannot have"
        ));
    }
    Ok((host.to_string(), port))
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("{s:?} is not a port number 1..=65535")),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of the path"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the path is not UTF-8 after percent-decoding".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> NfsUrl {
        NfsUrl::parse(s).expect("URL should parse")
    }

    fn bad(s: &str) -> String {
        NfsUrl::parse(s)
            .expect_err("URL should be refused")
            .to_string()
    }

    #[test]
    fn full_libnfs_url() {
        let u = ok("nfs://127.0.0.1/export?nfsport=20490&mountport=20048&version=3");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.export, "/export");
        assert_eq!(u.nfs_port, Some(20490));
        assert_eq!(u.mount_port, Some(20048));
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn defaults_leave_ports_to_the_portmapper() {
        let u = ok("nfs://localhost/srv/nfs/data");
        assert_eq!(u.host, "localhost");
        assert_eq!(u.export, "/srv/nfs/data");
        assert_eq!(u.nfs_port, None);
        assert_eq!(u.mount_port, None);
    }

    #[test]
    fn authority_port_is_the_nfs_port() {
        let u = ok("nfs://10.0.0.1:2049/demo?mountport=635");
        assert_eq!(u.nfs_port, Some(2049));
        assert_eq!(u.mount_port, Some(635));
        // Same port twice is fine, two different ones are not.
        assert_eq!(ok("nfs://h:2049/x?nfsport=2049").nfs_port, Some(2049));
        assert!(bad("nfs://h:2049/x?nfsport=2050").contains("disagree"));
    }

    #[test]
    fn ipv6_in_brackets() {
        let u = ok("nfs://[::1]:2049/e?uid=1000&gid=100");
        assert_eq!(u.host, "::1");
        assert_eq!(u.nfs_port, Some(2049));
        assert_eq!((u.uid, u.gid), (1000, 100));
        assert!(bad("nfs://::1/e").contains("brackets"));
        assert!(bad("nfs://[::1/e").contains("closing"));
        assert!(bad("nfs://[zz]/e").contains("IPv6"));
    }

    #[test]
    fn trailing_slash_is_the_same_export() {
        assert_eq!(
            ok("nfs://127.0.0.1/demo/?nfsport=20490&mountport=20490&version=3").export,
            "/demo"
        );
        assert_eq!(ok("nfs://h/a/b//").export, "/a/b");
        assert_eq!(ok("nfs://h/").export, "/");
    }

    #[test]
    fn scheme_and_case() {
        assert_eq!(ok("NFS://h/e?NFSPORT=7&Version=3").nfs_port, Some(7));
        assert!(bad("http://h/e").contains("not nfs"));
        assert!(bad("h/e").contains("scheme"));
    }

    #[test]
    fn percent_decoding_of_the_path() {
        assert_eq!(ok("nfs://h/my%20export").export, "/my export");
        assert!(bad("nfs://h/a%2").contains("percent"));
        assert!(bad("nfs://h/a%zz").contains("percent"));
        assert!(bad("nfs://h/a%00").contains("NUL"));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(bad("nfs://").contains("no host"));
        assert!(bad("nfs://h").contains("no export path"));
        assert!(bad("nfs://h?nfsport=1").contains("no export path"));
        assert!(bad("nfs://h/e?version=4").contains("only NFS version 3"));
        assert!(bad("nfs://h/e?nfsport=0").contains("port 0"));
        assert!(bad("nfs://h/e?nfsport=70000").contains("nfsport"));
        assert!(bad("nfs://h/e?mountport=x").contains("mountport"));
        assert!(bad("nfs://h/e?readahead=1").contains("unknown query key"));
        assert!(bad("nfs://h/e?nfsport").contains("no '='"));
        assert!(bad("nfs://h/e?uid=-1").contains("uid"));
        assert!(bad("nfs://h/e?nfsport=1&nfsport=2").contains("twice"));
        assert!(bad("nfs://u@h/e").contains("user"));
        assert!(bad("nfs://h:abc/e").contains("port number"));
        assert!(bad("nfs://h o/e").contains("host"));
        assert!(bad("nfs://h/e#frag").contains("fragment"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "nfs://127.0.0.1/export?nfsport=2049&mountport=20048&version=3",
            "nfs://[::1]/e?version=3",
        ] {
            let u = ok(s);
            assert_eq!(u.to_string(), s);
            assert_eq!(ok(&u.to_string()), u);
        }
    }
}
