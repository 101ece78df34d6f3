//! The management API's handlers, one function per endpoint.
//!
//! Catalog calls into the array touch the store (redb, fsync), so they run on blocking threads
//! ([`blocking`]). Handlers stay thin: check the request, call the array, shape the answer.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::Json;
use metrofs_core::ExportRules;
use metrofs_metro::{Array, ArrayError};

use super::error::ApiError;
use super::model::{CreateFs, FsView, Health, SetExport};
use crate::stop::Stop;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub array: Arc<Array>,
    /// The array's name (config key `name`).
    pub name: String,
    pub nfs_listen: String,
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
    Json(Health {
        status: "ok".into(),
        array: s.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        nfs_listen: s.nfs_listen.clone(),
        file_systems: s.array.list_fs().len(),
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

/// Any other path.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
