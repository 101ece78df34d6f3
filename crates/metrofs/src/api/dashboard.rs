//! `GET /`: the live dashboard, plain HTML, JS and CSS compiled into the binary (no build
//! step, no Node toolchain). The page polls `GET /api/status` every second and draws:
//! the topology (hosts → service address → site-a ⇄ site-b, quorum servers) with live
//! colours, each pair's state and sync progress, dual-write latency over time, alarms and
//! recent events; pause / resume / swap buttons ask for a confirmation.
//!
//! Token: read calls from loopback need none (`[api] read_open_to`). The page never receives
//! the token from the server; when a call answers 401 (an action, or reads from another
//! network) it asks for it once and keeps it in the tab's `sessionStorage` (gone when the tab
//! closes). See docs/api.md.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::handlers::AppState;

const INDEX: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
