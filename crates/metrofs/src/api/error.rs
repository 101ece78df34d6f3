//! The API's error type and its one mapping to HTTP (STYLE.md 8).
//!
//! Every error answer is `{"code", "message", "hint"}` ([`ErrorBody`]). `code` is stable and
//! machine-readable; [`ApiError::http_status`] is the only place that chooses a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrofs_metro::engine::Refused;
use metrofs_metro::{ArrayError, MetroError};
use metrofs_store::StoreError;

use super::model::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("file system '{0}' does not exist")]
    FsNotFound(String),
    #[error("file system '{0}' already exists")]
    FsExists(String),
    #[error("invalid file system name {name:?}: {why}")]
    InvalidName { name: String, why: String },
    #[error("invalid client network: {0}")]
    InvalidCidr(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("file system '{0}' is paired: delete the pair first (`metrofs pair delete ID`), then the file system")]
    FsPaired(String),
    #[error("{0}")]
    InvalidPairId(String),
    /// What the metro module answered to a pair action.
    #[error(transparent)]
    Metro(#[from] MetroError),
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// A local I/O error: the array stops (STYLE.md 9) and this request failed.
    #[error("the array's store failed and the array is stopping: {0}")]
    Fatal(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A call without the bearer token it needs, or with a wrong one.
    #[error("{why}")]
    Unauthorized {
        why: String,
        /// Where the token is (the array's token file).
        token_file: String,
    },
}

impl ApiError {
    /// The one mapping from error to HTTP status.
    #[must_use]
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::FsNotFound(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::FsExists(_) | Self::FsPaired(_) => StatusCode::CONFLICT,
            Self::InvalidName { .. }
            | Self::InvalidCidr(_)
            | Self::BadRequest(_)
            | Self::InvalidPairId(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Fatal(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Metro(e) => match e {
                // The action does not fit the pair's state or this array's role: nothing changed.
                MetroError::Refused(Refused::WrongState { .. } | Refused::NotPrimary)
                | MetroError::AlreadyPaired(..)
                | MetroError::NoPeer
                | MetroError::PeerRefused(_)
                | MetroError::NotNow(_)
                | MetroError::ExportElsewhere(_)
                | MetroError::ExportNotCopied { .. } => StatusCode::CONFLICT,
                MetroError::NoFs(_)
                | MetroError::NoPair(_)
                | MetroError::Array(ArrayError::NotFound(_)) => StatusCode::NOT_FOUND,
                MetroError::WrongPeer { .. } => StatusCode::BAD_REQUEST,
                // The peer cannot be reached now: retry once it can.
                MetroError::Refused(Refused::LinkDown) | MetroError::LinkDown(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                MetroError::Link(_) => StatusCode::BAD_GATEWAY,
                MetroError::Storage(_) | MetroError::Array(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::FsNotFound(_) => "fs_not_found",
            Self::FsExists(_) => "fs_exists",
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidCidr(_) => "invalid_cidr",
            Self::BadRequest(_) => "bad_request",
            Self::FsPaired(_) => "fs_paired",
            Self::InvalidPairId(_) => "invalid_pair_id",
            Self::NoRoute(_) => "no_route",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Fatal(_) => "array_stopping",
            Self::Internal(_) => "internal",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Metro(e) => match e {
                MetroError::Refused(Refused::WrongState { .. }) => "wrong_state",
                MetroError::Refused(Refused::NotPrimary) => "not_serving_side",
                MetroError::Refused(Refused::LinkDown) | MetroError::LinkDown(_) => "link_down",
                MetroError::NoFs(_) | MetroError::Array(ArrayError::NotFound(_)) => "fs_not_found",
                MetroError::AlreadyPaired(..) => "already_paired",
                MetroError::NoPair(_) => "pair_not_found",
                MetroError::NoPeer => "no_peer",
                MetroError::WrongPeer { .. } => "wrong_peer",
                MetroError::PeerRefused(_) => "peer_refused",
                MetroError::Link(_) => "link_error",
                MetroError::Storage(_) => "metro_storage",
                MetroError::NotNow(_) => "not_now",
                MetroError::ExportElsewhere(_) => "export_on_serving_side",
                MetroError::ExportNotCopied { .. } => "export_not_copied",
                // Unreachable from the handlers (they map catalog errors with the fs's
                // name, see `from_array`): the generic code.
                MetroError::Array(_) => "internal",
            },
        }
    }

    /// What the operator can do about it.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::FsNotFound(_) => {
                "list the file systems with `metrofs fs list` (GET /api/fs)".into()
            }
            Self::FsExists(_) => "choose another name, or use the existing file system".into(),
            Self::InvalidName { .. } => {
                "use 1 to 64 characters from A-Z a-z 0-9 - _ . not starting with '.'".into()
            }
            Self::InvalidCidr(_) => {
                "give networks as ADDR/PREFIX, e.g. 10.0.0.0/8 or 192.168.1.7/32".into()
            }
            Self::BadRequest(_) => "see docs/operations.md for the request bodies".into(),
            Self::NoRoute(_) | Self::MethodNotAllowed(_) => {
                "the endpoints are listed in GET /api/openapi.json and docs/api.md".into()
            }
            Self::Fatal(_) => {
                "check the array's log and its data directory's disk, then restart it".into()
            }
            Self::Internal(_) => "check the array's log".into(),
            Self::Unauthorized { token_file, .. } => format!(
                "send `Authorization: Bearer TOKEN` with the token of file {token_file} on the array (readable by its owner only); the CLI reads it by itself on that machine, or give it --token-file FILE or METROFS_TOKEN (docs/api.md)"
            ),
            Self::FsPaired(_) => "`metrofs pair list` shows the pair's id".into(),
            Self::InvalidPairId(_) => "`metrofs pair list` shows the ids".into(),
            Self::Metro(e) => Self::metro_hint(e).into(),
        }
    }

    fn metro_hint(e: &MetroError) -> &'static str {
        match e {
            MetroError::Refused(Refused::WrongState { .. }) => {
                "nothing was changed; `metrofs pair show ID` gives the pair's state, and docs/operations.md what each action needs"
            }
            MetroError::Refused(Refused::NotPrimary) => {
                "nothing was changed; run it against the serving array's API (--api), which `metrofs pair show ID` names"
            }
            MetroError::Refused(Refused::LinkDown) | MetroError::LinkDown(_) => {
                "start the peer array, or fix [peer] address / [link] listen; both arrays' logs say why a link is refused (e.g. a different secret_file)"
            }
            MetroError::NotNow(_) => "nothing was changed; the message says what the action needs",
            MetroError::NoFs(_) | MetroError::Array(ArrayError::NotFound(_)) => {
                "list the file systems with `metrofs fs list`"
            }
            MetroError::ExportElsewhere(_) => {
                "run it against the API (--api) of the array the message names, or retry once the link is up (`metrofs pair list` shows it)"
            }
            MetroError::ExportNotCopied { .. } => {
                "the rules are in force on the serving side; check the peer's log, then set them again (or wait for the link to be re-established)"
            }
            MetroError::Array(_) => "check this array's log and the disk of its data_dir",
            MetroError::AlreadyPaired(..) | MetroError::NoPair(_) => {
                "`metrofs pair list` lists the pairs of this array"
            }
            MetroError::NoPeer => {
                "add [domain], [peer] and [link] sections to this array's configuration (docs/configuration.md) and restart it"
            }
            MetroError::WrongPeer { .. } => {
                "give --remote the name in this array's [peer] section"
            }
            MetroError::PeerRefused(_) => {
                "the peer array refused; its log says more: fix what the message names there, then retry"
            }
            MetroError::Link(_) => {
                "check the peer array and the network to it (`metrofs pair list` shows the link), then retry"
            }
            MetroError::Storage(_) => {
                "check this array's log and the disk of its data_dir"
            }
        }
    }

    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().into(),
            message: self.to_string(),
            hint: self.hint(),
        }
    }

    /// Whether this error means the array must stop.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_))
    }

    /// Maps a catalog error of the array, knowing which file system `name` it was about.
    #[must_use]
    pub fn from_array(e: ArrayError, name: &str) -> Self {
        match e {
            ArrayError::NotFound(n) => Self::FsNotFound(n),
            ArrayError::Store(s) => Self::from_store(s, name),
            ArrayError::Flush(e) => Self::Fatal(e.to_string()),
        }
    }

    fn from_store(e: StoreError, name: &str) -> Self {
        match e {
            StoreError::NameExists(n) => Self::FsExists(n),
            StoreError::NotFound(_) => Self::FsNotFound(name.to_owned()),
            StoreError::InvalidName(n, why) => Self::InvalidName {
                name: n,
                why: why.to_owned(),
            },
            // The disk or the metadata database failed: the array stops (STYLE.md 9).
            e @ (StoreError::Io { .. } | StoreError::Db(_) | StoreError::Corrupt(_)) => {
                Self::Fatal(e.to_string())
            }
            e @ (StoreError::InUse(_) | StoreError::IdExists(_)) => Self::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(_) | Self::Fatal(_) | Self::Metro(MetroError::Storage(_)) = self {
            tracing::error!(error = %self, "API request failed");
        }
        metrofs_core::metrics::get().api_error(self.code());
        let mut resp = (self.http_status(), Json(self.body())).into_response();
        if let Self::Unauthorized { .. } = self {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"metrofs\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases = [
            (ApiError::FsNotFound("a".into()), 404, "fs_not_found"),
            (ApiError::FsExists("a".into()), 409, "fs_exists"),
            (
                ApiError::InvalidName {
                    name: "a b".into(),
                    why: "space".into(),
                },
                400,
                "invalid_name",
            ),
            (ApiError::InvalidCidr("x".into()), 400, "invalid_cidr"),
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (ApiError::NoRoute("x".into()), 404, "no_route"),
            (
                ApiError::MethodNotAllowed("PATCH".into()),
                405,
                "method_not_allowed",
            ),
            (ApiError::Fatal("disk".into()), 503, "array_stopping"),
            (ApiError::Internal("x".into()), 500, "internal"),
            (ApiError::FsPaired("a".into()), 409, "fs_paired"),
            (ApiError::InvalidPairId("x".into()), 400, "invalid_pair_id"),
            (
                ApiError::Unauthorized {
                    why: "no token".into(),
                    token_file: "/d/api.token".into(),
                },
                401,
                "unauthorized",
            ),
            (
                MetroError::Refused(Refused::WrongState {
                    action: "resume",
                    state: metrofs_metro::engine::PairState::Normal,
                    needs: "Paused or ToBeSynchronized",
                })
                .into(),
                409,
                "wrong_state",
            ),
            (
                MetroError::Refused(Refused::NotPrimary).into(),
                409,
                "not_serving_side",
            ),
            (
                MetroError::Refused(Refused::LinkDown).into(),
                503,
                "link_down",
            ),
            (MetroError::LinkDown("b".into()).into(), 503, "link_down"),
            (MetroError::NoFs("a".into()).into(), 404, "fs_not_found"),
            (
                MetroError::NoPair(metrofs_metro::proto::PairId(1)).into(),
                404,
                "pair_not_found",
            ),
            (
                MetroError::AlreadyPaired("a".into(), metrofs_metro::proto::PairId(1)).into(),
                409,
                "already_paired",
            ),
            (MetroError::NoPeer.into(), 409, "no_peer"),
            (
                MetroError::WrongPeer {
                    configured: "b".into(),
                    asked: "c".into(),
                }
                .into(),
                400,
                "wrong_peer",
            ),
            (
                MetroError::PeerRefused("x".into()).into(),
                409,
                "peer_refused",
            ),
            (MetroError::Link("x".into()).into(), 502, "link_error"),
            (MetroError::Storage("x".into()).into(), 500, "metro_storage"),
            (
                MetroError::ExportElsewhere("x".into()).into(),
                409,
                "export_on_serving_side",
            ),
            (
                MetroError::ExportNotCopied {
                    fs: "f".into(),
                    pair: metrofs_metro::proto::PairId(1),
                    serving: "a".into(),
                    twin: "b".into(),
                    why: "x".into(),
                }
                .into(),
                409,
                "export_not_copied",
            ),
            (
                MetroError::Array(ArrayError::NotFound("f".into())).into(),
                404,
                "fs_not_found",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.http_status().as_u16(), status, "{e}");
            let b = e.body();
            assert_eq!(b.code, code);
            assert!(!b.message.is_empty() && !b.hint.is_empty());
        }
        assert!(ApiError::from_array(ArrayError::NotFound("x".into()), "x")
            .to_string()
            .contains("'x'"));
    }
}
