//! The management API: HTTP + JSON on its own address (config key `api_listen`).
//!
//! # Layout
//! - [`model`]: request and response bodies (shared with the CLI, which is a client of this API).
//! - [`error`]: [`ApiError`], the `{"code","message","hint"}` answer and its one mapping to an
//!   HTTP status.
//! - [`handlers`]: one function per endpoint.
//!
//! Endpoints (docs/operations.md has examples):
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | GET | /api/health | the array answers; its name and version |
//! | GET | /api/fs | every file system |
//! | POST | /api/fs | create a file system `{"name"}` |
//! | GET | /api/fs/{name} | one file system |
//! | DELETE | /api/fs/{name} | delete a file system and its files |
//! | PUT | /api/fs/{name}/export | replace its export rules |
//!
//! Authentication (bearer tokens) and an OpenAPI description come with a later issue: the
//! former as a layer on [`router`], the latter from the types in [`model`] and the handlers'
//! doc comments.

pub mod error;
pub mod handlers;
pub mod model;

use axum::routing::get;
use axum::Router;

pub use handlers::AppState;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(handlers::health))
        .route("/api/fs", get(handlers::list_fs).post(handlers::create_fs))
        .route(
            "/api/fs/{name}",
            get(handlers::get_fs).delete(handlers::delete_fs),
        )
        .route(
            "/api/fs/{name}/export",
            axum::routing::put(handlers::set_export),
        )
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
