//! The `[api]` and `[alarms]` sections: who may call the management API, and when an alarm
//! is raised.
//!
//! `[api]`:
//! - `token_file`: the bearer token every changing call (POST, PUT, DELETE) must present,
//!   `Authorization: Bearer TOKEN`. Default `DATA_DIR/api.token`. When the file does not exist
//!   at start, the array makes it (64 random hex digits, mode 600), so an array needs nothing
//!   configured; the CLI on the same machine finds it (see `cli::auth`).
//! - `read_open_to`: networks whose read calls (GET) need no token. Default loopback only
//!   (`127.0.0.0/8`, `::1/128`); `[]` makes every call need the token.
//!
//! `[alarms]`: thresholds of the alarms the array raises (see `alarms.rs`).

use std::path::{Path, PathBuf};

use metrofs_core::Cidr;
use serde::Deserialize;

use super::ConfigError;

/// Networks whose reads need no token by default: loopback.
pub const DEFAULT_READ_OPEN_TO: [&str; 2] = ["127.0.0.0/8", "::1/128"];
/// The token file's name in the data directory when `token_file` is not set.
pub const DEFAULT_TOKEN_FILE: &str = "api.token";

pub const DEFAULT_NOT_NORMAL_S_MAX: u64 = 60;
pub const DEFAULT_DCL_GROWTH_WINDOW_S: u64 = 60;
pub const DEFAULT_DCL_GROWTH_BYTES_MAX: u64 = 64 << 20;
pub const DEFAULT_LINK_RTT_US_MAX: u64 = 10_000;
/// Bounds of the thresholds: at least one unit, at most a week (or 10 s of RTT).
const SECONDS_MAX: u64 = 7 * 86_400;
const RTT_US_MAX: u64 = 10_000_000;

/// `[api]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// File holding the bearer token of changing calls. Default `DATA_DIR/api.token`, made
    /// (random, mode 600) at start when it does not exist.
    pub token_file: Option<PathBuf>,
    /// Networks (`ADDR/PREFIX`) whose read calls need no token. Default loopback; `[]`: none.
    pub read_open_to: Option<Vec<String>>,
}

/// `[alarms]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlarms {
    /// A pair that is not Normal for longer than this raises an alarm (seconds, default 60).
    pub not_normal_s_max: Option<u64>,
    /// Window over which DCL growth is measured (seconds, default 60).
    pub dcl_growth_window_s: Option<u64>,
    /// A DCL that grew by more than this within the window raises an alarm (bytes, default
    /// 64 MiB).
    pub dcl_growth_bytes_max: Option<u64>,
    /// A link round trip above this raises an alarm (microseconds, default 10000).
    pub link_rtt_us_max: Option<u64>,
}

/// Alarm thresholds, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmThresholds {
    pub not_normal_s_max: u64,
    pub dcl_growth_window_s: u64,
    pub dcl_growth_bytes_max: u64,
    pub link_rtt_us_max: u64,
}

impl Default for AlarmThresholds {
    fn default() -> Self {
        Self {
            not_normal_s_max: DEFAULT_NOT_NORMAL_S_MAX,
            dcl_growth_window_s: DEFAULT_DCL_GROWTH_WINDOW_S,
            dcl_growth_bytes_max: DEFAULT_DCL_GROWTH_BYTES_MAX,
            link_rtt_us_max: DEFAULT_LINK_RTT_US_MAX,
        }
    }
}

/// The validated `[api]` and `[alarms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `None`: `DATA_DIR/api.token` (see [`ApiSettings::token_file`]).
    pub token_file: Option<PathBuf>,
    pub read_open_to: Vec<Cidr>,
    pub alarms: AlarmThresholds,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            token_file: None,
            read_open_to: DEFAULT_READ_OPEN_TO
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            alarms: AlarmThresholds::default(),
        }
    }
}

impl ApiSettings {
    /// The token file of an array whose data directory is `data_dir`.
    #[must_use]
    pub fn token_file(&self, data_dir: &Path) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_TOKEN_FILE))
    }
}

fn seconds(key: &'static str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    if (1..=SECONDS_MAX).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            expected: format!("seconds from 1 to {SECONDS_MAX}"),
        })
    }
}

/// Stage 2 of `[api]` and `[alarms]`.
pub fn validate(
    api: Option<RawApi>,
    alarms: Option<RawAlarms>,
) -> Result<ApiSettings, ConfigError> {
    let api = api.unwrap_or_default();
    let mut out = ApiSettings::default();
    if let Some(f) = api.token_file {
        if f.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "api.token_file",
                value: String::new(),
                expected: "a file path (leave the key out for DATA_DIR/api.token)".into(),
            });
        }
        out.token_file = Some(f);
    }
    if let Some(nets) = api.read_open_to {
        out.read_open_to = nets
            .iter()
            .map(|n| {
                n.trim().parse::<Cidr>().map_err(|why| ConfigError::Invalid {
                    key: "api.read_open_to",
                    value: n.clone(),
                    expected: format!("networks as ADDR/PREFIX, e.g. [\"127.0.0.0/8\", \"10.0.0.0/8\"] ({why})"),
                })
            })
            .collect::<Result<_, _>>()?;
    }
    let a = alarms.unwrap_or_default();
    out.alarms = AlarmThresholds {
        not_normal_s_max: seconds(
            "alarms.not_normal_s_max",
            a.not_normal_s_max,
            DEFAULT_NOT_NORMAL_S_MAX,
        )?,
        dcl_growth_window_s: seconds(
            "alarms.dcl_growth_window_s",
            a.dcl_growth_window_s,
            DEFAULT_DCL_GROWTH_WINDOW_S,
        )?,
        dcl_growth_bytes_max: a
            .dcl_growth_bytes_max
            .unwrap_or(DEFAULT_DCL_GROWTH_BYTES_MAX),
        link_rtt_us_max: {
            let v = a.link_rtt_us_max.unwrap_or(DEFAULT_LINK_RTT_US_MAX);
            if !(1..=RTT_US_MAX).contains(&v) {
                return Err(ConfigError::Invalid {
                    key: "alarms.link_rtt_us_max",
                    value: v.to_string(),
                    expected: format!("microseconds from 1 to {RTT_US_MAX}"),
                });
            }
            v
        },
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ApiSettings, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            api: Option<RawApi>,
            alarms: Option<RawAlarms>,
        }
        let t: T = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(t.api, t.alarms).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let s = parse("").expect("valid");
        assert_eq!(s, ApiSettings::default());
        assert_eq!(s.token_file(Path::new("/d")), PathBuf::from("/d/api.token"));
        assert!(s
            .read_open_to
            .iter()
            .any(|c| c.contains([127, 0, 0, 1].into())));
        assert!(s
            .read_open_to
            .iter()
            .any(|c| c.contains(std::net::Ipv6Addr::LOCALHOST.into())));
        assert!(!s
            .read_open_to
            .iter()
            .any(|c| c.contains([10, 0, 0, 1].into())));
        assert_eq!(s.alarms.not_normal_s_max, 60);
    }

    #[test]
    fn values_and_errors() {
        let s = parse(
            "[api]\ntoken_file = \"/etc/metrofs/t\"\nread_open_to = []\n[alarms]\nnot_normal_s_max = 5\nlink_rtt_us_max = 1\ndcl_growth_bytes_max = 0\n",
        )
        .expect("valid");
        assert_eq!(
            s.token_file(Path::new("/d")),
            PathBuf::from("/etc/metrofs/t")
        );
        assert!(s.read_open_to.is_empty());
        assert_eq!(
            (
                s.alarms.not_normal_s_max,
                s.alarms.link_rtt_us_max,
                s.alarms.dcl_growth_bytes_max
            ),
            (5, 1, 0)
        );
        for (text, key) in [
            (
                "[api]\nread_open_to = [\"10.0.0.0/33\"]\n",
                "api.read_open_to",
            ),
            ("[api]\ntoken_file = \"\"\n", "api.token_file"),
            ("[api]\ntokenfile = \"x\"\n", "tokenfile"),
            (
                "[alarms]\nnot_normal_s_max = 0\n",
                "alarms.not_normal_s_max",
            ),
            (
                "[alarms]\ndcl_growth_window_s = 99999999\n",
                "alarms.dcl_growth_window_s",
            ),
            ("[alarms]\nlink_rtt_us_max = 0\n", "alarms.link_rtt_us_max"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(key), "{text:?} -> {e}");
        }
    }
}
