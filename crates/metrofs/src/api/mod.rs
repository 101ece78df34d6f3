//! The management API: HTTP + JSON on its own address (config key `api_listen`), the
//! Prometheus metrics and the dashboard.
//!
//! # Layout
//! - [`model`]: request and response bodies (shared with the CLI, which is a client of this
//!   API), each with its OpenAPI schema.
//! - [`error`]: [`error::ApiError`], the `{"code","message","hint"}` answer and its one mapping
//!   to an HTTP status.
//! - [`auth`]: bearer token of changing calls, reads open to loopback (configurable).
//! - [`handlers`]: one function per endpoint, each with its OpenAPI description.
//! - [`metrics`]: `GET /metrics`.
//! - [`dashboard`]: `GET /`, the live dashboard (HTML/JS/CSS compiled into the binary).
//!
//! The OpenAPI document (`GET /api/openapi.json`) is generated from the handlers' annotations
//! by the same calls that build the router ([`router`]), so a route cannot be served without
//! being described. docs/api.md has examples.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod model;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as OpenApiDoc, Ref, Required, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use handlers::AppState;

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "metrofs management API",
        description = "One array of a metrofs domain: its file systems and exports, the metro pairs and every operator action on them, the domain (arrays, link, quorum servers), alarms and the durable event log.\n\nChanging calls (POST, PUT, DELETE) need `Authorization: Bearer TOKEN`, TOKEN being the content of the array's token file (`[api] token_file`, default `DATA_DIR/api.token`). Read calls need it too except from the networks of `[api] read_open_to` (loopback by default). Every error answers `{code, message, hint}`; `code` is stable."
    ),
    tags(
        (name = "array", description = "This array, its domain, everything at a glance"),
        (name = "fs", description = "File systems and their exports"),
        (name = "pairs", description = "Metro pairs and the operator actions on them"),
        (name = "events", description = "The durable event log and the active alarms"),
        (name = "metrics", description = "Prometheus exposition"),
    )
)]
struct ApiDoc;

/// `GET /metrics` as the document describes it (the handler is [`metrics::scrape`]).
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "OpenMetrics text: pair state, link, dual-write latency histograms, LOG, DCL, resync, arbitrations, NFS operations, errors, alarms",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn metrics_doc(state: axum::extract::State<AppState>) -> axum::response::Response {
    metrics::scrape(state).await
}

/// The routes described in the document, and the document.
fn described() -> (Router<AppState>, OpenApiDoc) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::health))
        .routes(routes!(handlers::status))
        .routes(routes!(handlers::domain))
        .routes(routes!(handlers::arrays))
        .routes(routes!(handlers::events))
        .routes(routes!(handlers::alarms))
        .routes(routes!(handlers::list_fs, handlers::create_fs))
        .routes(routes!(handlers::get_fs, handlers::delete_fs))
        .routes(routes!(handlers::list_exports))
        .routes(routes!(handlers::get_export, handlers::set_export))
        .routes(routes!(handlers::list_pairs, handlers::create_pair))
        .routes(routes!(handlers::get_pair, handlers::delete_pair))
        .routes(routes!(handlers::pause_pair))
        .routes(routes!(handlers::resume_pair))
        .routes(routes!(handlers::swap_pair))
        .routes(routes!(handlers::force_start_pair))
        .routes(routes!(handlers::verify_pair))
        .routes(routes!(metrics_doc))
        .split_for_parts();
    secure(&mut doc);
    (router, doc)
}

/// The optional `x-metrofs-reason` header of changing calls.
fn reason_header() -> Parameter {
    ParameterBuilder::new()
        .name(auth::REASON_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(format!(
            "why the caller makes this change, recorded with the action in the event log (control characters become spaces; cut at {} characters)",
            auth::REASON_CHARS_MAX
        )))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// Adds the bearer scheme, each operation's requirement (changing calls: the token; reads:
/// none, or the token from outside `read_open_to`), its 401 answer, and the reason header of
/// changing calls.
fn secure(doc: &mut OpenApiDoc) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "the content of the array's token file ([api] token_file, default DATA_DIR/api.token)",
                ))
                .build(),
        ),
    );
    let unauthorized = ResponseBuilder::new()
        .description("no token, or a wrong one (reads from outside [api] read_open_to need it too)")
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (true, &mut item.get),
            (true, &mut item.head),
            (false, &mut item.post),
            (false, &mut item.put),
            (false, &mut item.delete),
            (false, &mut item.patch),
        ];
        for (read, op) in ops {
            let Some(op) = op.as_mut() else { continue };
            let token = SecurityRequirement::new(BEARER, Vec::<String>::new());
            op.security = Some(if read {
                vec![SecurityRequirement::default(), token]
            } else {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(reason_header().into());
                vec![token]
            });
            op.responses
                .responses
                .entry("401".into())
                .or_insert_with(|| unauthorized.clone().into());
        }
    }
}

/// The OpenAPI document, as served.
#[cfg(test)]
#[must_use]
pub fn openapi() -> OpenApiDoc {
    described().1
}

/// The API's routes, the document, the metrics and the dashboard, behind the access rules.
pub fn router(state: AppState) -> Router {
    let (router, doc) = described();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    router
        .route(
            "/api/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.to_string(),
                    )
                        .into_response()
                }
            }),
        )
        .merge(dashboard::routes())
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, and runs the alarm worker.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::spawn(state.alarms.clone().run(state.stop.clone()));
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_with_its_security() {
        let doc = openapi();
        let v: serde_json::Value =
            serde_json::from_str(&doc.to_json().expect("json")).expect("parses");
        let paths = v["paths"].as_object().expect("paths");
        for (path, methods) in [
            ("/api/health", &["get"][..]),
            ("/api/status", &["get"]),
            ("/api/domain", &["get"]),
            ("/api/arrays", &["get"]),
            ("/api/events", &["get"]),
            ("/api/alarms", &["get"]),
            ("/api/fs", &["get", "post"]),
            ("/api/fs/{name}", &["get", "delete"]),
            ("/api/exports", &["get"]),
            ("/api/fs/{name}/export", &["get", "put"]),
            ("/api/pairs", &["get", "post"]),
            ("/api/pairs/{id}", &["get", "delete"]),
            ("/api/pairs/{id}/pause", &["post"]),
            ("/api/pairs/{id}/resume", &["post"]),
            ("/api/pairs/{id}/swap", &["post"]),
            ("/api/pairs/{id}/force-start", &["post"]),
            ("/api/pairs/{id}/verify", &["post"]),
            ("/metrics", &["get"]),
        ] {
            for m in methods {
                let op = &paths[path][m];
                assert!(op.is_object(), "{m} {path} missing");
                assert!(op["responses"]["401"].is_object(), "{m} {path}: no 401");
                let sec = op["security"].as_array().expect("security");
                let reason = op["parameters"].as_array().and_then(|ps| {
                    ps.iter()
                        .find(|p| p["name"] == "x-metrofs-reason" && p["in"] == "header")
                });
                if *m == "get" {
                    assert_eq!(sec.len(), 2, "{m} {path}: optional token");
                    assert!(reason.is_none(), "{m} {path}: a read has no reason");
                } else {
                    assert_eq!(sec, &vec![serde_json::json!({"bearer": []})], "{m} {path}");
                    assert_eq!(
                        reason.map(|r| &r["required"]),
                        Some(&serde_json::json!(false)),
                        "{m} {path}: optional reason header"
                    );
                }
            }
        }
        assert_eq!(
            v["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for schema in [
            "PairView",
            "ErrorBody",
            "StatusView",
            "EventView",
            "AlarmView",
            "VerifyProgressView",
        ] {
            assert!(
                v["components"]["schemas"][schema].is_object(),
                "{schema} missing"
            );
        }
        // The pair view carries the verify's progress, and it is optional.
        let pair = &v["components"]["schemas"]["PairView"];
        assert!(pair["properties"]["verify"].is_object(), "{pair:#}");
        assert!(
            !pair["required"]
                .as_array()
                .expect("required")
                .contains(&serde_json::json!("verify")),
            "{pair:#}"
        );
    }
}
