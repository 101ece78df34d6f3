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
//! | GET | /api/pairs | every pair of this array |
//! | POST | /api/pairs | pair a file system with its twin on the peer `{"fs", "remote"}` |
//! | GET | /api/pairs/{id} | one pair: state, data status, link, DCL, resync progress, events |
//! | POST | /api/pairs/{id}/pause | stop replicating on purpose (the DCL records) |
//! | POST | /api/pairs/{id}/resume | resynchronise what the DCL names, then Normal |
//! | POST | /api/pairs/{id}/verify | compare both sides and list the differences |
//! | DELETE | /api/pairs/{id} | unpair; both copies stay as independent file systems |
//!
//! Authentication (bearer tokens) and an OpenAPI description come with a later issue: the
//! former as a layer on [`router`], the latter from the types in [`model`] and the handlers'
//! doc comments.

pub mod error;
pub mod handlers;
pub mod model;

use axum::routing::{get, post};
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
        .route(
            "/api/pairs",
            get(handlers::list_pairs).post(handlers::create_pair),
        )
        .route(
            "/api/pairs/{id}",
            get(handlers::get_pair).delete(handlers::delete_pair),
        )
        .route("/api/pairs/{id}/pause", post(handlers::pause_pair))
        .route("/api/pairs/{id}/resume", post(handlers::resume_pair))
        .route("/api/pairs/{id}/verify", post(handlers::verify_pair))
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
