//! A small blocking HTTP client of the management API (ureq, plain HTTP, no TLS stack).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::model::ErrorBody;

/// Time to establish the TCP connection to the API.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Whole-request limit; deleting a large file system is the slowest call.
const REQUEST_TIMEOUT_MS: u64 = 300_000;

/// Why a call failed, in the order an operator would check.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --api URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot reach the metrofs API at {url}: {detail}\nhint: is `metrofs array` (or `metrofs demo`) running there? Pass its address with --api http://HOST:PORT")]
    Unreachable { url: String, detail: String },
    /// The array answered with an error.
    #[error("{}\nhint: {}", .body.message, .body.hint)]
    Refused { status: u16, body: ErrorBody },
    #[error("unexpected answer from {url}: {detail}\nhint: is this the address of a metrofs API?")]
    Protocol { url: String, detail: String },
}

pub struct ApiClient {
    base: String,
    agent: ureq::Agent,
}

impl ApiClient {
    /// `url` is `http://HOST:PORT` (a trailing `/` is fine).
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_owned();
        let rest = base.strip_prefix("http://").ok_or_else(|| ClientError::BadUrl {
            url: url.to_owned(),
            why: if base.starts_with("https://") {
                "https is not supported yet: the API serves plain HTTP, bind it to loopback or a management network".into()
            } else {
                "expected http://HOST:PORT, e.g. http://127.0.0.1:7049".into()
            },
        })?;
        if rest.is_empty() || rest.contains('/') {
            return Err(ClientError::BadUrl {
                url: url.to_owned(),
                why: "expected http://HOST:PORT with no path, e.g. http://127.0.0.1:7049".into(),
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
            .timeout_global(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
            .build()
            .into();
        Ok(Self { base, agent })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.agent.get(&url).call();
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.agent.post(&url).send_json(body);
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    /// `POST` without a body (actions on a resource).
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.agent.post(&url).send_empty();
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.agent.put(&url).send_json(body);
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        let resp = self.agent.delete(&url).call();
        self.answer::<serde_json::Value>(&url, resp, false)
            .map(|_| ())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn no_body(&self, url: &str) -> ClientError {
        ClientError::Protocol {
            url: url.to_owned(),
            detail: "success without a body".into(),
        }
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        want_body: bool,
    ) -> Result<Option<T>, ClientError> {
        let mut resp = resp.map_err(|e| match e {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => ClientError::Unreachable {
                url: self.base.clone(),
                detail: e.to_string(),
            },
            other => ClientError::Protocol {
                url: url.to_owned(),
                detail: other.to_string(),
            },
        })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            if !want_body {
                return Ok(None);
            }
            return resp
                .body_mut()
                .read_json::<T>()
                .map(Some)
                .map_err(|e| ClientError::Protocol {
                    url: url.to_owned(),
                    detail: format!("HTTP {status}: {e}"),
                });
        }
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Refused { status, body }),
            Err(_) => Err(ClientError::Protocol {
                url: url.to_owned(),
                detail: format!(
                    "HTTP {status} without a metrofs error body: {}",
                    text.chars().take(200).collect::<String>()
                ),
            }),
        }
    }
}

/// Percent-encodes one path segment (names are restricted, but never trust input).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(ApiClient::new("http://127.0.0.1:7049/").is_ok());
        assert!(matches!(
            ApiClient::new("https://x:1"),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            ApiClient::new("127.0.0.1:7049"),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            ApiClient::new("http://x:1/api"),
            Err(ClientError::BadUrl { .. })
        ));
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
