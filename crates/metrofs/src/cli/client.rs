//! A small blocking HTTP client of the management API (ureq, plain HTTP, no TLS stack).
//!
//! Every request names the client (`x-metrofs-client: cli:USER`, for the event log) and
//! carries the bearer token when one is known ([`super::auth::TokenSource`]): changing calls
//! need it, reads need it from outside the array's `read_open_to` networks. Changing calls
//! carry the operator's `--reason` (`x-metrofs-reason`), recorded with the action.

use std::cell::RefCell;
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
    /// The CLI could not find the token a call needs.
    #[error("{0}")]
    NoToken(String),
    #[error("unexpected answer from {url}: {detail}\nhint: is this the address of a metrofs API?")]
    Protocol { url: String, detail: String },
}

pub struct ApiClient {
    base: String,
    agent: ureq::Agent,
    /// Where the token comes from; resolved at the first call that needs it.
    tokens: super::auth::TokenSource,
    /// The token once looked for: found, or why not.
    token: RefCell<Option<Result<String, String>>>,
    client: String,
    /// `--reason`, sent with changing calls.
    reason: Option<String>,
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
        Ok(Self {
            base,
            agent,
            tokens: super::auth::TokenSource::default(),
            token: RefCell::new(None),
            client: format!("cli:{}", super::auth::user_name()),
            reason: None,
        })
    }

    /// The reason sent with changing calls (`--reason`).
    #[must_use]
    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    /// Where this client takes its token from.
    #[must_use]
    pub fn with_tokens(mut self, tokens: super::auth::TokenSource) -> Self {
        self.tokens = tokens;
        self
    }

    /// The token, looked for once (changing calls need it; reads only when the array asks).
    fn token(&self) -> Result<String, ClientError> {
        if self.token.borrow().is_none() {
            let found = self.tokens.resolve(|| {
                self.get_raw::<crate::api::model::Health>("/api/health", None)
                    .ok()
                    .and_then(|h| h.token_file)
            });
            *self.token.borrow_mut() = Some(found);
        }
        match self.token.borrow().as_ref() {
            Some(Ok(t)) => Ok(t.clone()),
            Some(Err(why)) => Err(ClientError::NoToken(why.clone())),
            None => Err(ClientError::NoToken("no token".into())),
        }
    }

    /// The token if it was looked for and found already.
    fn known_token(&self) -> Option<String> {
        match self.token.borrow().as_ref() {
            Some(Ok(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut b = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            "DELETE" => self.agent.delete(url).force_send_body(),
            _ => self.agent.get(url).force_send_body(),
        };
        b = b.header(crate::api::auth::CLIENT_HEADER, self.client.as_str());
        if let (Some(r), true) = (&self.reason, method != "GET") {
            b = b.header(crate::api::auth::REASON_HEADER, r.as_str());
        }
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b
    }

    fn get_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.request("GET", &url, token).send_empty();
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    /// A read: without a token when none can be found (loopback reads need none); a 401
    /// means the token is needed after all, and says where it is.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let token = self.known_token();
        match self.get_raw(path, token.as_deref()) {
            // Reads from outside the array's open networks need the token after all.
            Err(ClientError::Refused { status: 401, .. }) if token.is_none() => {
                let token = self.token()?;
                self.get_raw(path, Some(&token))
            }
            r => r,
        }
    }

    /// A read whose body is text (`/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let token = self.known_token();
        match self.get_text_raw(path, token.as_deref()) {
            Err(ClientError::Refused { status: 401, .. }) if token.is_none() => {
                let token = self.token()?;
                self.get_text_raw(path, Some(&token))
            }
            r => r,
        }
    }

    fn get_text_raw(&self, path: &str, token: Option<&str>) -> Result<String, ClientError> {
        let url = self.url(path);
        let resp = self.request("GET", &url, token).send_empty();
        let mut resp = self.transport(&url, resp)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(self.refusal(&url, status, &text))
        }
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let token = Some(self.token()?);
        let url = self.url(path);
        let resp = self.request("POST", &url, token.as_deref()).send_json(body);
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    /// `POST` without a body (actions on a resource).
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let token = Some(self.token()?);
        let url = self.url(path);
        let resp = self.request("POST", &url, token.as_deref()).send_empty();
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let token = Some(self.token()?);
        let url = self.url(path);
        let resp = self.request("PUT", &url, token.as_deref()).send_json(body);
        self.answer(&url, resp, true)?
            .ok_or_else(|| self.no_body(&url))
    }

    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        let token = Some(self.token()?);
        let url = self.url(path);
        let resp = self.request("DELETE", &url, token.as_deref()).send_empty();
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

    fn transport(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        resp.map_err(|e| match e {
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
        })
    }

    fn refusal(&self, url: &str, status: u16, text: &str) -> ClientError {
        match serde_json::from_str::<ErrorBody>(text) {
            Ok(body) => ClientError::Refused { status, body },
            Err(_) => ClientError::Protocol {
                url: url.to_owned(),
                detail: format!(
                    "HTTP {status} without a metrofs error body: {}",
                    text.chars().take(200).collect::<String>()
                ),
            },
        }
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        want_body: bool,
    ) -> Result<Option<T>, ClientError> {
        let mut resp = self.transport(url, resp)?;
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
        Err(self.refusal(url, status, &text))
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
