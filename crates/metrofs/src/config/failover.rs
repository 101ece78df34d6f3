//! The `[quorum]` and `[service]` sections: how an array of a pair takes part in arbitration,
//! and the floating service address the serving array holds.
//!
//! Both only make sense with a `[peer]`; either without one is refused. `[quorum]` without
//! servers is refused too (leave the section out for static priority).

use metrofs_metro::{OnQuorumLoss, Recovery};
use serde::Deserialize;

use super::ConfigError;

/// `[quorum]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuorum {
    /// `HOST:PORT` of each `metrofs quorum` server (one, or three for a majority).
    pub servers: Option<Vec<String>>,
    /// `"static-priority"` (default) or `"stop"`.
    pub on_quorum_loss: Option<String>,
    /// How long the non-preferred array waits before it claims (default 500).
    pub head_start_ms: Option<u64>,
    /// How long one claim may take before the quorum counts as unreachable (default 1000).
    pub claim_timeout_ms: Option<u64>,
}

/// `[service]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// `ADDRESS/PREFIX` hosts mount, held by the serving array.
    pub address: Option<String>,
    /// The interface it goes on.
    pub interface: Option<String>,
}

/// The validated `[quorum]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSettings {
    pub servers: Vec<String>,
    pub on_quorum_loss: OnQuorumLoss,
    pub head_start_ms: u64,
    pub claim_timeout_ms: u64,
}

/// The validated `[service]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    pub address: String,
    pub interface: String,
}

fn invalid(key: &'static str, value: impl Into<String>, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, value: value.into(), expected: expected.into() }
}

/// `[domain] recovery`.
pub fn recovery(value: Option<&str>) -> Result<Recovery, ConfigError> {
    match value {
        None | Some("automatic") => Ok(Recovery::Automatic),
        Some("manual") => Ok(Recovery::Manual),
        Some(other) => Err(invalid("domain.recovery", other, "\"automatic\" (the service moves back to the preferred site once it is resynchronised) or \"manual\"")),
    }
}

/// Stage 2 of `[quorum]`; `has_peer` tells whether a `[peer]` is configured.
pub fn quorum(raw: Option<RawQuorum>, has_peer: bool) -> Result<Option<QuorumSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if !has_peer {
        return Err(ConfigError::Missing { key: "peer", expected: "a [peer] section: [quorum] arbitrates a pair; remove it for an array on its own" });
    }
    let servers = raw.servers.unwrap_or_default();
    if servers.is_empty() {
        return Err(ConfigError::Missing {
            key: "quorum.servers",
            expected: "one or more HOST:PORT of `metrofs quorum` servers, e.g. servers = [\"10.0.3.1:7300\"]; leave [quorum] out for static priority",
        });
    }
    for s in &servers {
        let ok = s.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(invalid("quorum.servers", s.clone(), "HOST:PORT of a `metrofs quorum --listen` address, e.g. 10.0.3.1:7300"));
        }
    }
    let on_quorum_loss = match raw.on_quorum_loss.as_deref() {
        None | Some("static-priority") => OnQuorumLoss::StaticPriority,
        Some("stop") => OnQuorumLoss::Stop,
        Some(other) => {
            return Err(invalid(
                "quorum.on_quorum_loss",
                other,
                "\"static-priority\" (the preferred site goes on when neither array reaches the quorum) or \"stop\" (both stop)",
            ))
        }
    };
    let head_start_ms = raw.head_start_ms.unwrap_or(metrofs_metro::arbiter::DEFAULT_HEAD_START_MS);
    if head_start_ms > 60_000 {
        return Err(invalid("quorum.head_start_ms", head_start_ms.to_string(), "at most 60000 (it adds to the time a takeover by the other site takes)"));
    }
    let claim_timeout_ms = raw.claim_timeout_ms.unwrap_or(1000);
    if !(50..=60_000).contains(&claim_timeout_ms) {
        return Err(invalid("quorum.claim_timeout_ms", claim_timeout_ms.to_string(), "50 to 60000"));
    }
    Ok(Some(QuorumSettings { servers, on_quorum_loss, head_start_ms, claim_timeout_ms }))
}

/// Stage 2 of `[service]`.
pub fn service(raw: Option<RawService>, has_peer: bool) -> Result<Option<ServiceSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if !has_peer {
        return Err(ConfigError::Missing { key: "peer", expected: "a [peer] section: the service address moves between the arrays of a pair" });
    }
    let address = raw.address.ok_or(ConfigError::Missing { key: "service.address", expected: "ADDRESS/PREFIX hosts mount, e.g. address = \"10.0.0.100/24\"" })?;
    let ok = address.split_once('/').is_some_and(|(a, p)| {
        let max = if a.contains(':') { 128 } else { 32 };
        a.parse::<std::net::IpAddr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= max)
    });
    if !ok {
        return Err(invalid("service.address", address, "ADDRESS/PREFIX, e.g. 10.0.0.100/24"));
    }
    let interface = raw.interface.ok_or(ConfigError::Missing { key: "service.interface", expected: "the interface the address goes on, e.g. interface = \"eth0\"" })?;
    if interface.is_empty() || interface.len() > 15 || interface.contains('/') || interface.contains(char::is_whitespace) {
        return Err(invalid("service.interface", interface, "an interface name of 1 to 15 characters, as `ip link` shows"));
    }
    Ok(Some(ServiceSettings { address, interface }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_defaults_and_errors() {
        let q = quorum(Some(RawQuorum { servers: Some(vec!["10.0.0.4:7300".into()]), ..RawQuorum::default() }), true).expect("valid").expect("some");
        assert_eq!(q.on_quorum_loss, OnQuorumLoss::StaticPriority);
        assert_eq!(q.head_start_ms, 500);
        let e = quorum(Some(RawQuorum::default()), true).expect_err("no servers").to_string();
        assert!(e.contains("quorum.servers"), "{e}");
        let e = quorum(Some(RawQuorum { servers: Some(vec!["nope".into()]), ..RawQuorum::default() }), true).expect_err("bad").to_string();
        assert!(e.contains("quorum.servers"), "{e}");
        let e = quorum(Some(RawQuorum { servers: Some(vec!["a:1".into()]), on_quorum_loss: Some("maybe".into()), ..RawQuorum::default() }), true)
            .expect_err("bad")
            .to_string();
        assert!(e.contains("on_quorum_loss"), "{e}");
        assert!(quorum(Some(RawQuorum { servers: Some(vec!["a:1".into()]), ..RawQuorum::default() }), false).is_err());
    }

    #[test]
    fn service_address_is_checked() {
        let ok = service(Some(RawService { address: Some("10.0.0.100/24".into()), interface: Some("eth0".into()) }), true).expect("valid");
        assert_eq!(ok.expect("some").interface, "eth0");
        for bad in ["10.0.0.100", "10.0.0.300/24", "10.0.0.1/33"] {
            let e = service(Some(RawService { address: Some(bad.into()), interface: Some("eth0".into()) }), true).expect_err(bad).to_string();
            assert!(e.contains("service.address"), "{e}");
        }
        assert!(recovery(Some("sometimes")).is_err());
        assert_eq!(recovery(Some("manual")).expect("ok"), Recovery::Manual);
    }
}
