//! The array's configuration, in two stages (STYLE.md 5).
//!
//! 1. [`RawConfig`]: the TOML file as written, one documented field per key, unknown keys refused
//!    (`deny_unknown_fields`), so a typo is an error rather than a silently ignored setting.
//! 2. [`Config`]: validated, with every invariant holding (addresses parsed, limits in range,
//!    the data directory known). Each error names the key and says what is expected.
//!
//! Command-line flags (`--data-dir`, `--nfs-listen`, `--api-listen`) are applied between the two
//! stages, as [`Overrides`], so a flag's value is validated exactly like the file's.
//!
//! The pair's sections, `[domain]`, `[peer]` and `[link]`, are validated together in [`domain`]
//! (they come as a set); `[quorum]` and `[service]` (arbitration and the floating service
//! address) in [`failover`], and only with a `[peer]`.

pub mod api;
pub mod domain;
pub mod failover;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use domain::PeerSettings;

/// Where NFSv3 + MOUNT listen when `nfs_listen` is not set: every address, NFS's own port.
pub const DEFAULT_NFS_LISTEN: &str = "0.0.0.0:2049";
/// Where the management API listens when `api_listen` is not set: loopback only, because the
/// API has no authentication yet.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7049";
/// The CLI's default `--api`: the local array's default API address.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7049";
/// Background flush period when `sync_interval_ms` is not set.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;
/// `sync_interval_ms` bounds: below 10 ms the flusher would do little but fsync; above ten
/// minutes too much UNSTABLE data waits in the page cache.
pub const SYNC_INTERVAL_MS_MIN: u64 = 10;
pub const SYNC_INTERVAL_MS_MAX: u64 = 600_000;
/// Most `worker_threads` accepted.
pub const WORKER_THREADS_MAX: usize = 1024;
/// Longest array name, in characters.
pub const NAME_LEN_MAX: usize = 64;

/// The configuration file as written (TOML). See docs/configuration.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Name of this array (site), shown in logs and by `GET /api/health`. Required.
    pub name: Option<String>,
    /// Directory holding the store (metadata and file data). Required, here or by `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `IP:PORT` where NFSv3 and MOUNT listen (one TCP port). Default `0.0.0.0:2049`.
    pub nfs_listen: Option<String>,
    /// `IP:PORT` of the management API (HTTP + JSON). Default `127.0.0.1:7049`.
    pub api_listen: Option<String>,
    /// Period of the background flush of the store, in milliseconds (10 ..= 600000). Default 1000.
    pub sync_interval_ms: Option<u64>,
    /// Threads that run the array's network and metadata work (1 ..= 1024). Default: one per
    /// core this process may use.
    pub worker_threads: Option<usize>,
    /// `[log]` section.
    #[serde(default)]
    pub log: RawLog,
    /// `[domain]` section: the pair's domain name and whether this array is its preferred site.
    pub domain: Option<domain::RawDomain>,
    /// `[peer]` section: the other array of the pair.
    pub peer: Option<domain::RawPeer>,
    /// `[link]` section: the replication link (listen address, shared secret, timing).
    pub link: Option<domain::RawLink>,
    /// `[quorum]` section: the quorum servers and what happens without them.
    pub quorum: Option<failover::RawQuorum>,
    /// `[service]` section: the floating service address of the pair.
    pub service: Option<failover::RawService>,
    /// `[api]` section: the management API's token and who may read without it.
    pub api: Option<api::RawApi>,
    /// `[alarms]` section: alarm thresholds.
    pub alarms: Option<api::RawAlarms>,
}

/// The `[log]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// One of `error`, `warn`, `info`, `debug`, `trace`. Default `info`.
    pub level: Option<String>,
}

/// Values from the command line that take precedence over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub nfs_listen: Option<String>,
    pub api_listen: Option<String>,
}

/// The validated configuration of one array.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub nfs_listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub sync_interval_ms: u64,
    /// `None`: one per core (the runtime's default).
    pub worker_threads: Option<usize>,
    pub log_level: tracing::Level,
    /// The pair settings; `None` for an array on its own (it refuses pairs).
    pub peer: Option<PeerSettings>,
    /// Quorum servers; `None`: arbitration by static priority.
    pub quorum: Option<failover::QuorumSettings>,
    /// The floating service address this array holds while it serves.
    pub service: Option<failover::ServiceSettings>,
    /// The management API's access rules and the alarm thresholds.
    pub api: api::ApiSettings,
}

/// Why a configuration is refused. Every variant names the key (or the file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type; toml's message
    /// names the key and shows the line.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` is missing: {expected}")]
    Missing {
        key: &'static str,
        expected: &'static str,
    },
    #[error("config key `{key}` = {value:?} is invalid: expected {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: String,
    },
    /// Values of a section that do not work together; the message names the keys.
    #[error("config section [{section}]: {message}")]
    Section {
        section: &'static str,
        message: String,
    },
}

impl RawConfig {
    /// Reads and parses a file (stage 1).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text (stage 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Applies the overrides and validates (stage 2).
    pub fn validate(self, overrides: &Overrides) -> Result<Config, ConfigError> {
        let name = self.name.ok_or(ConfigError::Missing {
            key: "name",
            expected: "the array's name, e.g. name = \"site-a\"",
        })?;
        validate_name(&name)?;

        let data_dir =
            overrides
                .data_dir
                .clone()
                .or(self.data_dir)
                .ok_or(ConfigError::Missing {
                key: "data_dir",
                expected:
                    "the store's directory, e.g. data_dir = \"/var/lib/metrofs\" (or --data-dir)",
            })?;
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "data_dir",
                value: String::new(),
                expected: "a directory path".into(),
            });
        }

        let nfs_listen = listen_addr(
            "nfs_listen",
            overrides
                .nfs_listen
                .as_deref()
                .or(self.nfs_listen.as_deref())
                .unwrap_or(DEFAULT_NFS_LISTEN),
        )?;
        let api_listen = listen_addr(
            "api_listen",
            overrides
                .api_listen
                .as_deref()
                .or(self.api_listen.as_deref())
                .unwrap_or(DEFAULT_API_LISTEN),
        )?;
        // Port 0 means "any free port", so two of them do not collide.
        if nfs_listen == api_listen && nfs_listen.port() != 0 {
            return Err(ConfigError::Invalid {
                key: "api_listen",
                value: api_listen.to_string(),
                expected: "an address other than nfs_listen's".into(),
            });
        }

        let sync_interval_ms = self.sync_interval_ms.unwrap_or(DEFAULT_SYNC_INTERVAL_MS);
        if !(SYNC_INTERVAL_MS_MIN..=SYNC_INTERVAL_MS_MAX).contains(&sync_interval_ms) {
            return Err(ConfigError::Invalid {
                key: "sync_interval_ms",
                value: sync_interval_ms.to_string(),
                expected: format!(
                    "milliseconds from {SYNC_INTERVAL_MS_MIN} to {SYNC_INTERVAL_MS_MAX}"
                ),
            });
        }

        if let Some(n) = self.worker_threads {
            if !(1..=WORKER_THREADS_MAX).contains(&n) {
                return Err(ConfigError::Invalid {
                    key: "worker_threads",
                    value: n.to_string(),
                    expected: format!("a number of threads from 1 to {WORKER_THREADS_MAX}"),
                });
            }
        }

        let log_level = match self.log.level.as_deref() {
            None => tracing::Level::INFO,
            Some(l) => parse_level(l).ok_or_else(|| ConfigError::Invalid {
                key: "log.level",
                value: l.to_owned(),
                expected: "one of error, warn, info, debug, trace".into(),
            })?,
        };

        let peer = domain::validate(
            &name,
            self.domain,
            self.peer,
            self.link,
            &[("nfs_listen", nfs_listen), ("api_listen", api_listen)],
        )?;
        let quorum = failover::quorum(self.quorum, peer.is_some())?;
        let service = failover::service(self.service, peer.is_some())?;
        let api = api::validate(self.api, self.alarms)?;

        Ok(Config {
            name,
            data_dir,
            nfs_listen,
            api_listen,
            sync_interval_ms,
            worker_threads: self.worker_threads,
            log_level,
            peer,
            quorum,
            service,
            api,
        })
    }
}

impl Config {
    /// Stage 1 and 2 for a file plus flags.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        RawConfig::load(path)?.validate(overrides)
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.chars().count() <= NAME_LEN_MAX
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: "name",
            value: name.to_owned(),
            expected: format!(
                "1 to {NAME_LEN_MAX} characters from A-Z a-z 0-9 - _ . (not starting with '.')"
            ),
        })
    }
}

fn listen_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key,
        value: value.to_owned(),
        expected: "IP:PORT, e.g. 0.0.0.0:2049 or [::]:2049 (a host name is not accepted)".into(),
    })
}

/// A log level by name, case-insensitive.
pub fn parse_level(s: &str) -> Option<tracing::Level> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(tracing::Level::ERROR),
        "warn" => Some(tracing::Level::WARN),
        "info" => Some(tracing::Level::INFO),
        "debug" => Some(tracing::Level::DEBUG),
        "trace" => Some(tracing::Level::TRACE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<Config, String> {
        RawConfig::parse(text)?
            .validate(&Overrides::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = validate("name = \"a\"\ndata_dir = \"/tmp/x\"\n").expect("valid");
        assert_eq!(c.name, "a");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.nfs_listen.to_string(), DEFAULT_NFS_LISTEN);
        assert_eq!(c.api_listen.to_string(), DEFAULT_API_LISTEN);
        assert_eq!(c.sync_interval_ms, DEFAULT_SYNC_INTERVAL_MS);
        assert_eq!(c.worker_threads, None, "one per core unless set");
        assert_eq!(c.log_level, tracing::Level::INFO);
        assert_eq!(
            DEFAULT_API_URL.strip_prefix("http://"),
            Some(DEFAULT_API_LISTEN)
        );
    }

    #[test]
    fn full_file_and_overrides() {
        let raw = RawConfig::parse(
            "name = \"site-a\"\ndata_dir = \"/d\"\nnfs_listen = \"127.0.0.1:1\"\napi_listen = \"[::1]:2\"\n\
             sync_interval_ms = 50\nworker_threads = 1\n[log]\nlevel = \"DEBUG\"\n",
        )
        .expect("parses");
        let c = raw
            .validate(&Overrides {
                data_dir: Some("/other".into()),
                nfs_listen: Some("127.0.0.1:3".into()),
                api_listen: None,
            })
            .expect("valid");
        assert_eq!(c.data_dir, PathBuf::from("/other"));
        assert_eq!(c.nfs_listen.to_string(), "127.0.0.1:3");
        assert_eq!(c.api_listen.to_string(), "[::1]:2");
        assert_eq!(c.sync_interval_ms, 50);
        assert_eq!(c.worker_threads, Some(1));
        assert_eq!(c.log_level, tracing::Level::DEBUG);
        let any = RawConfig::parse("name = \"a\"\ndata_dir = \"/d\"\nnfs_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\n")
            .expect("parses")
            .validate(&Overrides::default())
            .expect("port 0 twice is fine");
        assert_eq!(any.nfs_listen.port(), 0);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = validate("name = \"a\"\ndata_dir = \"/d\"\nnfs_lisen = \"1.2.3.4:5\"\n")
            .expect_err("refused");
        assert!(e.contains("nfs_lisen"), "{e}");
        let e = validate("name = \"a\"\ndata_dir = \"/d\"\n[log]\nlevl = \"info\"\n")
            .expect_err("refused");
        assert!(e.contains("levl"), "{e}");
        // Sections of later issues are not accepted before they do something.
        let e = validate("name = \"a\"\ndata_dir = \"/d\"\n[quorum]\naddress = \"1.2.3.4:5\"\n")
            .expect_err("refused");
        assert!(e.contains("quorum"), "{e}");
        let e = validate("name = \"a\"\ndata_dir = \"/d\"\n[peer]\naddr = \"1.2.3.4:5\"\n")
            .expect_err("refused");
        assert!(e.contains("addr"), "{e}");
    }

    #[test]
    fn missing_keys_are_named() {
        let e = validate("data_dir = \"/d\"\n").expect_err("refused");
        assert!(e.contains("`name`"), "{e}");
        let e = validate("name = \"a\"\n").expect_err("refused");
        assert!(e.contains("`data_dir`"), "{e}");
        let c = RawConfig::parse("name = \"a\"\n")
            .expect("parses")
            .validate(&Overrides {
                data_dir: Some("/d".into()),
                ..Overrides::default()
            })
            .expect("--data-dir supplies it");
        assert_eq!(c.data_dir, PathBuf::from("/d"));
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("name = \"a\"\ndata_dir = \"/d\"\nnfs_listen = \"localhost:2049\"\n", "nfs_listen"),
            ("name = \"a\"\ndata_dir = \"/d\"\napi_listen = \"127.0.0.1\"\n", "api_listen"),
            ("name = \"a\"\ndata_dir = \"/d\"\nnfs_listen = \"127.0.0.1:9\"\napi_listen = \"127.0.0.1:9\"\n", "api_listen"),
            ("name = \"a\"\ndata_dir = \"/d\"\nsync_interval_ms = 0\n", "sync_interval_ms"),
            ("name = \"a\"\ndata_dir = \"/d\"\n[log]\nlevel = \"loud\"\n", "log.level"),
            ("name = \"a b\"\ndata_dir = \"/d\"\n", "name"),
            ("name = \"\"\ndata_dir = \"/d\"\n", "name"),
            ("name = 7\ndata_dir = \"/d\"\n", "name"),
            ("name = \"a\"\ndata_dir = \"/d\"\nsync_interval_ms = \"fast\"\n", "sync_interval_ms"),
            ("name = \"a\"\ndata_dir = \"/d\"\nworker_threads = 0\n", "worker_threads"),
            ("name = \"a\"\ndata_dir = \"/d\"\nworker_threads = 5000\n", "worker_threads"),
            ("name = \"a\"\ndata_dir = \"/d\"\nworker_threads = -1\n", "worker_threads"),
        ] {
            let e = validate(text).expect_err(text);
            assert!(e.contains(key), "{text:?} -> {e}");
        }
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("Warn"), Some(tracing::Level::WARN));
        assert_eq!(parse_level("verbose"), None);
    }
}
