//! The `[domain]`, `[peer]` and `[link]` sections: how this array takes part in a metro pair.
//!
//! The three come together: an array with a peer needs its domain (name, preferred site), the
//! peer (name, link address) and its own link (listen address, shared secret, timing). An
//! array with none of them is on its own: it serves its file systems and refuses pairs. One
//! section without the others is refused, naming what is missing, because a section that does
//! nothing must not look accepted.
//!
//! Stage 2 reads the secret file, so a missing, unreadable or short secret stops the array at
//! start with the key named and the command that makes one.

use std::net::SocketAddr;
use std::path::PathBuf;

use metrofs_link::{Identity, LinkConfig, Secret};
use metrofs_metro::{MetroConfig, PeerConfig};
use serde::Deserialize;

use super::ConfigError;

/// How to make a secret, in every secret error.
pub const MAKE_SECRET: &str =
    "make one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE` and copy the same file to the peer array";

/// `[domain]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    /// The domain's name, the same on both arrays (the link refuses a peer of another domain).
    pub name: Option<String>,
    /// Whether this array is the domain's preferred site (exactly one of the two should be).
    pub preferred: Option<bool>,
    /// `"automatic"` (default): once a returning preferred site is resynchronised, a planned
    /// swap moves the service back to it; `"manual"`: an operator does.
    pub recovery: Option<String>,
}

/// `[peer]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// The peer array's `name` (its handshake must say so).
    pub name: Option<String>,
    /// `HOST:PORT` of the peer's link listener (its `[link] listen`).
    pub address: Option<String>,
}

/// `[link]` as written: where this array listens for its peer, the shared secret, and the
/// link's timing and limits (`metrofs_link::LinkConfig`; each defaults to its value there).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    /// `IP:PORT` where this array accepts its peer's link.
    pub listen: Option<String>,
    /// File holding the domain's shared secret (16 to 4096 bytes), the same on both arrays.
    pub secret_file: Option<PathBuf>,
    pub heartbeat_interval_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub call_timeout_ms: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub max_incoming_in_flight: Option<usize>,
}

/// The validated pair settings of an array that has a peer.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub domain: String,
    pub preferred: bool,
    pub peer_name: String,
    /// `HOST:PORT` (a host name is resolved at each dial, so a moved peer is found again).
    pub peer_address: String,
    pub link_listen: SocketAddr,
    pub secret_file: PathBuf,
    /// This array's identity on the link (domain, name, secret), checked.
    pub identity: Identity,
    pub link: LinkConfig,
    pub recovery: metrofs_metro::Recovery,
}

impl PeerSettings {
    /// The metro module's view of it.
    #[must_use]
    pub fn metro_config(&self, name: &str) -> MetroConfig {
        MetroConfig {
            name: name.to_owned(),
            preferred: self.preferred,
            peer: Some(PeerConfig {
                listen: self.link_listen,
                addr: self.peer_address.clone(),
                name: self.peer_name.clone(),
                identity: self.identity.clone(),
                link: self.link.clone(),
            }),
            arbitration: metrofs_metro::ArbitrationConfig { recovery: self.recovery, ..Default::default() },
        }
    }
}

/// The metro configuration of an array: alone, or with its peer.
#[must_use]
pub fn metro_config(name: &str, peer: Option<&PeerSettings>) -> MetroConfig {
    match peer {
        Some(p) => p.metro_config(name),
        // Alone, an array serves everything itself: it is its own preferred site.
        None => MetroConfig {
            name: name.to_owned(),
            preferred: true,
            peer: None,
            arbitration: metrofs_metro::ArbitrationConfig::default(),
        },
    }
}

fn missing(key: &'static str, expected: &'static str) -> ConfigError {
    ConfigError::Missing { key, expected }
}

fn invalid(
    key: &'static str,
    value: impl Into<String>,
    expected: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.into(),
        expected: expected.into(),
    }
}

/// Stage 2 of the three sections. `name` is the array's (already valid) name; `taken` are the
/// other listen addresses of this array, with their keys.
pub fn validate(
    name: &str,
    domain: Option<RawDomain>,
    peer: Option<RawPeer>,
    link: Option<RawLink>,
    taken: &[(&'static str, SocketAddr)],
) -> Result<Option<PeerSettings>, ConfigError> {
    let (domain, peer, link) = match (domain, peer, link) {
        (None, None, None) => return Ok(None),
        (d, Some(p), Some(l)) => (
            d.ok_or_else(|| missing("domain", "a [domain] section with `name` (the same on both arrays) and `preferred`, since [peer] is set"))?,
            p,
            l,
        ),
        (_, None, _) => {
            return Err(missing(
                "peer",
                "a [peer] section (`name`, `address`): [domain] and [link] only make sense for an array with a peer; remove them for an array on its own",
            ))
        }
        (_, Some(_), None) => {
            return Err(missing("link", "a [link] section with `listen` and `secret_file`, since [peer] is set"))
        }
    };

    let domain_name = domain.name.ok_or_else(|| {
        missing(
            "domain.name",
            "the domain's name, the same on both arrays, e.g. name = \"metro1\"",
        )
    })?;
    let recovery = super::failover::recovery(domain.recovery.as_deref())?;
    let preferred = domain.preferred.ok_or_else(|| {
        missing(
            "domain.preferred",
            "true on the preferred site, false on the other, e.g. preferred = true",
        )
    })?;

    let peer_name = peer.name.ok_or_else(|| {
        missing(
            "peer.name",
            "the peer array's `name`, e.g. name = \"site-b\"",
        )
    })?;
    if peer_name == name {
        return Err(invalid(
            "peer.name",
            peer_name,
            format!("the other array's name, not this array's own ({name})"),
        ));
    }
    let peer_address = peer.address.ok_or_else(|| {
        missing(
            "peer.address",
            "HOST:PORT of the peer's [link] listen, e.g. address = \"10.0.2.2:7100\"",
        )
    })?;
    check_host_port(&peer_address)?;

    let listen_text = link.listen.ok_or_else(|| {
        missing(
            "link.listen",
            "IP:PORT where this array accepts its peer, e.g. listen = \"0.0.0.0:7100\"",
        )
    })?;
    let link_listen: SocketAddr = listen_text.parse().map_err(|_| {
        invalid(
            "link.listen",
            listen_text.clone(),
            "IP:PORT, e.g. 0.0.0.0:7100 (a host name is not accepted)",
        )
    })?;
    if link_listen.port() == 0 {
        return Err(invalid(
            "link.listen",
            listen_text,
            "a fixed port: the peer's [peer] address names it",
        ));
    }
    for (key, addr) in taken {
        if addr.port() == link_listen.port()
            && (addr.ip() == link_listen.ip()
                || addr.ip().is_unspecified()
                || link_listen.ip().is_unspecified())
        {
            return Err(invalid(
                "link.listen",
                listen_text,
                format!("an address other than {key}'s ({addr})"),
            ));
        }
    }

    let secret_file = link.secret_file.ok_or_else(|| missing("link.secret_file", "the file holding the domain's shared secret; make one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE`"))?;
    let secret = Secret::from_file(&secret_file).map_err(|e| {
        invalid(
            "link.secret_file",
            secret_file.display().to_string(),
            format!("a readable file of 16 to 4096 secret bytes ({e}); {MAKE_SECRET}"),
        )
    })?;

    let identity = Identity::new(domain_name.clone(), name, secret).map_err(|e| {
        invalid(
            "domain.name",
            domain_name.clone(),
            format!("1 to 64 characters among a-z A-Z 0-9 . _ - ({e})"),
        )
    })?;

    let d = LinkConfig::default();
    let cfg = LinkConfig {
        heartbeat_interval_ms: link
            .heartbeat_interval_ms
            .unwrap_or(d.heartbeat_interval_ms),
        heartbeat_timeout_ms: link.heartbeat_timeout_ms.unwrap_or(d.heartbeat_timeout_ms),
        handshake_timeout_ms: link.handshake_timeout_ms.unwrap_or(d.handshake_timeout_ms),
        connect_timeout_ms: link.connect_timeout_ms.unwrap_or(d.connect_timeout_ms),
        call_timeout_ms: link.call_timeout_ms.unwrap_or(d.call_timeout_ms),
        max_in_flight: link.max_in_flight.unwrap_or(d.max_in_flight),
        max_incoming_in_flight: link
            .max_incoming_in_flight
            .unwrap_or(d.max_incoming_in_flight),
    };
    // LinkConfig's own check names the field; it lives in [link].
    cfg.validate().map_err(|e| ConfigError::Section {
        section: "link",
        message: e.to_string(),
    })?;

    Ok(Some(PeerSettings {
        domain: domain_name,
        preferred,
        peer_name,
        peer_address,
        link_listen,
        secret_file,
        identity,
        link: cfg,
        recovery,
    }))
}

/// `HOST:PORT` with a non-empty host and a port from 1 to 65535 (`[v6]:PORT` for IPv6).
fn check_host_port(value: &str) -> Result<(), ConfigError> {
    let expected = "HOST:PORT of the peer's link listener, e.g. 10.0.2.2:7100, site-b.example:7100 or [fd00::2]:7100";
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(invalid("peer.address", value, expected));
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && !host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(invalid("peer.address", value, expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(dir: &std::path::Path, bytes: &[u8]) -> PathBuf {
        let p = dir.join("secret");
        std::fs::write(&p, bytes).expect("write secret");
        p
    }

    fn sections(text: &str) -> (Option<RawDomain>, Option<RawPeer>, Option<RawLink>) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            domain: Option<RawDomain>,
            peer: Option<RawPeer>,
            link: Option<RawLink>,
        }
        let t: T = toml::from_str(text).expect("parses");
        (t.domain, t.peer, t.link)
    }

    fn check(text: &str) -> Result<Option<PeerSettings>, String> {
        let (d, p, l) = sections(text);
        let nfs: SocketAddr = "0.0.0.0:2049".parse().expect("addr");
        validate("site-a", d, p, l, &[("nfs_listen", nfs)]).map_err(|e| e.to_string())
    }

    #[test]
    fn full_sections_and_defaults() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = secret(tmp.path(), &[7u8; 32]);
        let text = format!(
            "[domain]\nname = \"m1\"\npreferred = true\n[peer]\nname = \"site-b\"\naddress = \"site-b.example:7100\"\n\
             [link]\nlisten = \"127.0.0.1:7100\"\nsecret_file = \"{}\"\nheartbeat_interval_ms = 100\nheartbeat_timeout_ms = 600\n",
            s.display()
        );
        let p = check(&text).expect("valid").expect("a peer");
        assert_eq!(
            (p.domain.as_str(), p.preferred, p.peer_name.as_str()),
            ("m1", true, "site-b")
        );
        assert_eq!(p.link.heartbeat_interval_ms, 100);
        assert_eq!(
            p.link.call_timeout_ms,
            LinkConfig::default().call_timeout_ms
        );
        let m = p.metro_config("site-a");
        assert_eq!(m.peer.expect("peer").addr, "site-b.example:7100");
        assert!(check("").expect("alone").is_none());
        assert!(metro_config("x", None).peer.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        let good = secret(tmp.path(), &[7u8; 32]);
        let short = tmp.path().join("short");
        std::fs::write(&short, b"abc").expect("write");
        let base = |domain: &str, peer: &str, link: &str| format!("{domain}{peer}{link}");
        let d = "[domain]\nname = \"m1\"\npreferred = false\n";
        let p = "[peer]\nname = \"site-b\"\naddress = \"127.0.0.1:7101\"\n";
        let l = format!(
            "[link]\nlisten = \"127.0.0.1:7100\"\nsecret_file = \"{}\"\n",
            good.display()
        );
        assert!(check(&base(d, p, &l)).expect("valid").is_some());
        for (text, key) in [
            (base(d, "", &l), "`peer`"),
            (base(d, "", ""), "`peer`"),
            (base("", p, &l), "`domain`"),
            (base(d, p, ""), "`link`"),
            (
                base("[domain]\nname = \"m1\"\n", p, &l),
                "`domain.preferred`",
            ),
            (base("[domain]\npreferred = true\n", p, &l), "`domain.name`"),
            (
                base("[domain]\nname = \"m 1\"\npreferred = true\n", p, &l),
                "`domain.name`",
            ),
            (
                base(d, "[peer]\naddress = \"127.0.0.1:7101\"\n", &l),
                "`peer.name`",
            ),
            (
                base(
                    d,
                    "[peer]\nname = \"site-a\"\naddress = \"127.0.0.1:7101\"\n",
                    &l,
                ),
                "`peer.name`",
            ),
            (base(d, "[peer]\nname = \"site-b\"\n", &l), "`peer.address`"),
            (
                base(d, "[peer]\nname = \"site-b\"\naddress = \"nowhere\"\n", &l),
                "`peer.address`",
            ),
            (
                base(d, "[peer]\nname = \"site-b\"\naddress = \"h:0\"\n", &l),
                "`peer.address`",
            ),
            (
                base(d, p, &l.replace("127.0.0.1:7100", "127.0.0.1:0")),
                "`link.listen`",
            ),
            (
                base(d, p, &l.replace("127.0.0.1:7100", "localhost:7100")),
                "`link.listen`",
            ),
            (
                base(d, p, &l.replace("127.0.0.1:7100", "127.0.0.1:2049")),
                "nfs_listen",
            ),
            (
                base(d, p, "[link]\nlisten = \"127.0.0.1:7100\"\n"),
                "`link.secret_file`",
            ),
            (
                base(
                    d,
                    p,
                    &l.replace(&good.display().to_string(), "/nonexistent/secret"),
                ),
                "`link.secret_file`",
            ),
            (
                base(
                    d,
                    p,
                    &l.replace(&good.display().to_string(), &short.display().to_string()),
                ),
                "`link.secret_file`",
            ),
            (
                base(d, p, &format!("{l}heartbeat_interval_ms = 1000\n")),
                "heartbeat_timeout_ms",
            ),
            (
                base(d, p, &format!("{l}max_in_flight = 0\n")),
                "max_in_flight",
            ),
        ] {
            let e = check(&text).expect_err(&text);
            assert!(e.contains(key), "{text:?} -> {e}");
        }
        let e = check(&base(
            d,
            p,
            &l.replace(&good.display().to_string(), "/nonexistent/secret"),
        ))
        .expect_err("missing");
        assert!(
            e.contains("head -c 32 /dev/urandom > FILE; chmod 600 FILE"),
            "{e}"
        );
    }

    #[test]
    fn host_port_forms() {
        for ok in [
            "10.0.0.1:7100",
            "site-b.example:1",
            "[fd00::2]:7100",
            "b:65535",
        ] {
            check_host_port(ok).expect(ok);
        }
        for bad in [
            "",
            ":7100",
            "h:",
            "h:70000",
            "fd00::2:7100",
            "[zz]:1",
            "a b:1",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
