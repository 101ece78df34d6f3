//! The management API's handlers, one function per endpoint.
//!
//! Catalog calls into the array touch the store (redb, fsync), so they run on blocking threads
//! ([`blocking`]). Handlers stay thin: check the request, call the array (or its metro module,
//! for pairs), shape the answer.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::Json;
use metrofs_core::ExportRules;
use metrofs_metro::proto::PairId;
use metrofs_metro::{Array, ArrayError, Metro};

use super::error::ApiError;
use super::model::{CreateFs, CreatePair, FsView, Health, PairView, SetExport, VerifyView};
use crate::stop::Stop;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub array: Arc<Array>,
    /// The metro module over `array`: pairs and their actions.
    pub metro: Arc<Metro>,
    /// The array's name (config key `name`).
    pub name: String,
    pub nfs_listen: String,
    /// The peer array's name (`[peer] name`), if any.
    pub peer: Option<String>,
    /// Whether this array is its domain's preferred site.
    pub preferred: bool,
    pub stop: Stop,
}

/// `axum::Json`, but a body that does not parse answers our JSON error (`bad_request`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Runs a catalog call on a blocking thread and maps its error. A fatal error (local I/O)
/// also stops the array.
async fn blocking<T: Send + 'static>(
    s: &AppState,
    fs_name: &str,
    f: impl FnOnce(&Array) -> Result<T, ArrayError> + Send + 'static,
) -> Result<T, ApiError> {
    let array = s.array.clone();
    let result = tokio::task::spawn_blocking(move || f(&array))
        .await
        .map_err(|e| ApiError::Internal(format!("catalog task failed: {e}")))?;
    result.map_err(|e| {
        let e = ApiError::from_array(e, fs_name);
        if e.is_fatal() {
            s.stop.fatal(format!("management API: {e}"));
        }
        e
    })
}

/// `GET /api/health`
pub async fn health(State(s): State<AppState>) -> Json<Health> {
    let peer = s.peer.clone();
    let link = if peer.is_some() {
        let up = s.metro.wait_link(std::time::Duration::ZERO).await;
        Some(if up { "Up" } else { "Down" }.to_owned())
    } else {
        None
    };
    Json(Health {
        status: "ok".into(),
        array: s.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        nfs_listen: s.nfs_listen.clone(),
        file_systems: s.array.list_fs().len(),
        peer,
        link,
        preferred: s.preferred,
    })
}

/// `GET /api/fs`
pub async fn list_fs(State(s): State<AppState>) -> Json<Vec<FsView>> {
    let mut all: Vec<FsView> = s.array.list_fs().iter().map(FsView::from).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Json(all)
}

/// `POST /api/fs` `{"name": ..}`: 201 with the new fs, exported with the default rules
/// (loopback only, read-write, root squashed).
pub async fn create_fs(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreateFs>,
) -> Result<(StatusCode, Json<FsView>), ApiError> {
    // The store checks the name (and that it is free) and answers why not.
    let name = body.name.clone();
    let info = blocking(&s, &body.name, move |a| {
        a.create_fs(&name, ExportRules::default())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(FsView::from(&info))))
}

/// `GET /api/fs/{name}`
pub async fn get_fs(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FsView>, ApiError> {
    s.array
        .fs(&name)
        .map(|i| Json(FsView::from(&i)))
        .ok_or(ApiError::FsNotFound(name))
}

/// `DELETE /api/fs/{name}`: 204. Removes the fs and all its files.
pub async fn delete_fs(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Deleting one side of a pair would leave its twin paired with nothing.
    if s.metro.pair_of_fs(&name).is_some() {
        return Err(ApiError::FsPaired(name));
    }
    let n = name.clone();
    blocking(&s, &name, move |a| a.delete_fs(&n)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/fs/{name}/export` `{"clients": [..], "read_only": .., "root_squash": ..}`:
/// replaces the export rules; they apply to the next call of every client.
pub async fn set_export(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetExport>,
) -> Result<Json<FsView>, ApiError> {
    let rules = body.to_rules().map_err(ApiError::InvalidCidr)?;
    let n = name.clone();
    let info = blocking(&s, &name, move |a| a.set_export(&n, rules)).await?;
    Ok(Json(FsView::from(&info)))
}

fn pair_id(id: &str) -> Result<PairId, ApiError> {
    id.parse().map_err(ApiError::InvalidPairId)
}

/// `GET /api/pairs`
pub async fn list_pairs(State(s): State<AppState>) -> Json<Vec<PairView>> {
    Json(
        s.metro
            .list_pairs()
            .iter()
            .map(|p| PairView::from_metro(p, &s.name))
            .collect(),
    )
}

/// `POST /api/pairs` `{"fs": .., "remote": ..}`: 201 with the new pair (Synchronizing: the
/// initial full sync runs while hosts keep writing).
pub async fn create_pair(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreatePair>,
) -> Result<(StatusCode, Json<PairView>), ApiError> {
    let p = s.metro.create_pair(&body.fs, &body.remote).await?;
    Ok((StatusCode::CREATED, Json(PairView::from_metro(&p, &s.name))))
}

/// `GET /api/pairs/{id}`
pub async fn get_pair(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PairView>, ApiError> {
    let p = s.metro.show(pair_id(&id)?)?;
    Ok(Json(PairView::from_metro(&p, &s.name)))
}

/// Runs a pair action that persists the pair record (redb, fsync) on a blocking thread.
async fn pair_action(
    s: &AppState,
    id: &str,
    f: impl FnOnce(&Arc<Metro>, PairId) -> Result<metrofs_metro::PairView, metrofs_metro::MetroError>
        + Send
        + 'static,
) -> Result<Json<PairView>, ApiError> {
    let id = pair_id(id)?;
    let metro = s.metro.clone();
    let p = tokio::task::spawn_blocking(move || f(&metro, id))
        .await
        .map_err(|e| ApiError::Internal(format!("pair action task failed: {e}")))??;
    Ok(Json(PairView::from_metro(&p, &s.name)))
}

/// `POST /api/pairs/{id}/pause`: stop replicating on purpose; the DCL records what changes.
pub async fn pause_pair(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PairView>, ApiError> {
    pair_action(&s, &id, |m, id| m.pause(id)).await
}

/// `POST /api/pairs/{id}/resume`: resynchronise what the DCL names, then Normal.
pub async fn resume_pair(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PairView>, ApiError> {
    pair_action(&s, &id, |m, id| m.resume(id)).await
}

/// `POST /api/pairs/{id}/verify`: compare both sides (attributes, entries, chunk digests).
pub async fn verify_pair(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VerifyView>, ApiError> {
    let id = pair_id(&id)?;
    let r = s.metro.verify(id).await?;
    Ok(Json(VerifyView {
        pair: id.to_string(),
        inodes_compared: r.inodes_compared,
        bytes_compared: r.bytes_compared,
        differences: r.differences,
    }))
}

/// `DELETE /api/pairs/{id}`: 204. Unpairs; both copies stay as independent file systems.
pub async fn delete_pair(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.metro.delete_pair(pair_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Any other path.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
