//! The management API's handlers, one function per endpoint, each with its OpenAPI
//! description (`#[utoipa::path]`): the router is built from these (see `mod.rs`), so the
//! document cannot miss a route.
//!
//! Catalog calls into the array touch the store (redb, fsync), so they run on blocking threads
//! ([`blocking`]). Handlers stay thin: check the request, call the array (or its metro module,
//! for pairs), record operator actions in the event log, shape the answer.
//!
//! Each operator action (done or refused) is recorded once, here, as an `operator` event with
//! the caller as its actor and the reason they gave; what it made happen (state changes,
//! swaps, takeovers) the metro module records as the array's own events.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::{Extension, Json};
use metrofs_core::{Clock, ExportRules, SystemClock};
use metrofs_metro::events::{EventKind, EventLog, EventRecord};
use metrofs_metro::proto::PairId;
use metrofs_metro::{Array, ArrayError, Metro, MetroError};

use super::auth::{Actor, Auth};
use super::error::ApiError;
use super::model::{
    AlarmView, ArrayView, CreateFs, CreatePair, DomainView, ErrorBody, EventView, EventsQuery,
    ExportEntry, ExportView, FsView, Health, IoView, LinkView, PairView, QuorumServerView,
    QuorumView, SetExport, StatusView, VerifyView,
};
use crate::alarms::AlarmWatcher;
use crate::config::Config;
use crate::stop::Stop;

/// Events listed when a request does not say how many.
const EVENTS_DEFAULT_LIMIT: u32 = 100;
/// Events `GET /api/status` carries (the dashboard's list).
const STATUS_EVENTS: usize = 20;
/// The events file, in the data directory.
pub const EVENTS_FILE: &str = "events.redb";

/// What the API knows of the domain from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub domain: Option<String>,
    pub peer_address: Option<String>,
    pub link_listen: Option<String>,
    pub recovery: Option<String>,
    pub quorum_servers: Vec<String>,
    pub service_address: Option<String>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub array: Arc<Array>,
    /// The metro module over `array`: pairs and their actions.
    pub metro: Arc<Metro>,
    /// The array's name (config key `name`).
    pub name: String,
    pub nfs_listen: String,
    pub api_listen: String,
    /// The peer array's name (`[peer] name`), if any.
    pub peer: Option<String>,
    /// Whether this array is its domain's preferred site.
    pub preferred: bool,
    pub stop: Stop,
    pub auth: Arc<Auth>,
    pub events: Arc<EventLog>,
    pub alarms: Arc<AlarmWatcher>,
    pub site: Arc<Site>,
    pub clock: Arc<dyn Clock>,
    pub started: std::time::Instant,
}

impl AppState {
    /// The API's state for the array of `cfg`: loads (or makes) the token file, opens the
    /// event log in the data directory, and prepares the alarm worker (which
    /// [`super::serve`] runs).
    pub fn new(
        cfg: &Config,
        metro: Arc<Metro>,
        nfs_addr: SocketAddr,
        api_addr: SocketAddr,
        stop: Stop,
    ) -> anyhow::Result<Self> {
        let auth = Auth::load(
            &cfg.api.token_file(&cfg.data_dir),
            cfg.api.read_open_to.clone(),
        )?;
        let events =
            EventLog::open(&cfg.data_dir.join(EVENTS_FILE)).context("cannot open the event log")?;
        metro.set_event_log(events.clone());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let peer = cfg.peer.as_ref().map(|p| p.peer_name.clone());
        let alarms = AlarmWatcher::new(
            metro.clone(),
            events.clone(),
            clock.clone(),
            cfg.api.alarms,
            peer.clone(),
        );
        let site = Site {
            domain: cfg.peer.as_ref().map(|p| p.domain.clone()),
            peer_address: cfg.peer.as_ref().map(|p| p.peer_address.clone()),
            link_listen: cfg.peer.as_ref().map(|p| p.link_listen.to_string()),
            recovery: cfg.peer.as_ref().map(|p| {
                match p.recovery {
                    metrofs_metro::Recovery::Automatic => "automatic",
                    metrofs_metro::Recovery::Manual => "manual",
                }
                .to_owned()
            }),
            quorum_servers: cfg
                .quorum
                .as_ref()
                .map(|q| q.servers.clone())
                .unwrap_or_default(),
            service_address: cfg.service.as_ref().map(|s| s.address.clone()),
        };
        Ok(Self {
            array: metro.array().clone(),
            metro,
            name: cfg.name.clone(),
            nfs_listen: nfs_addr.to_string(),
            api_listen: api_addr.to_string(),
            peer,
            preferred: cfg.peer.as_ref().is_none_or(|p| p.preferred),
            stop,
            auth: Arc::new(auth),
            events,
            alarms,
            site: Arc::new(site),
            clock,
            started: std::time::Instant::now(),
        })
    }

    /// Records an operator action: who asked (the event's actor) and, when they gave one,
    /// why (`; reason: ...` at the end of the text). A failure to record is logged and
    /// counted, and does not undo or fail the action, which is done already.
    async fn record(&self, kind: EventKind, pair: Option<String>, actor: &Actor, text: String) {
        let text = match &actor.reason {
            Some(r) => format!("{text}; reason: {r}"),
            None => text,
        };
        let ev = EventRecord::now(&*self.clock, kind, pair, actor.who.clone(), text);
        if let Err(e) = self.events.record_async(ev).await {
            metrofs_core::metrics::get().error("event_log");
            tracing::error!(error = %e, "cannot record an operator action in the event log");
        }
    }
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

/// `axum::extract::Path`, but a segment that does not decode answers our JSON error.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `axum::extract::Query`, but a query that does not parse answers our JSON error.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
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
    result.map_err(|e| array_error(s, e, fs_name))
}

/// A catalog error of `fs_name` as the API answers it; a fatal one (the store failed) also
/// stops the array.
fn array_error(s: &AppState, e: ArrayError, fs_name: &str) -> ApiError {
    let e = ApiError::from_array(e, fs_name);
    if e.is_fatal() {
        s.stop.fatal(format!("management API: {e}"));
    }
    e
}

// ------------------------------------------------------------------------------ array, domain

/// The array answers: its name, version, NFS address, link.
#[utoipa::path(get, path = "/api/health", tag = "array",
    responses((status = 200, description = "the array serves", body = Health)))]
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
        token_file: Some(s.auth.token_file().display().to_string()),
    })
}

fn api_pairs(s: &AppState) -> Vec<PairView> {
    s.metro
        .list_pairs()
        .iter()
        .map(|p| PairView::from_metro(p, &s.name))
        .collect()
}

async fn link_up(s: &AppState, pairs: &[PairView]) -> bool {
    match pairs.first() {
        Some(p) => p.link == "Up",
        None => s.peer.is_some() && s.metro.wait_link(std::time::Duration::ZERO).await,
    }
}

/// The domain as this array sees it.
async fn domain_view(s: &AppState, pairs: &[PairView]) -> DomainView {
    let up = link_up(s, pairs).await;
    let serves = |array: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|p| p.serving == array)
            .map(|p| p.fs.clone())
            .collect()
    };
    let mut arrays = vec![ArrayView {
        name: s.name.clone(),
        relation: "this".into(),
        preferred: s.preferred,
        state: "Up".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        nfs_listen: Some(s.nfs_listen.clone()),
        api_listen: Some(s.api_listen.clone()),
        link_address: s.site.link_listen.clone(),
        serves: serves(&s.name),
        uptime_s: Some(s.started.elapsed().as_secs()),
    }];
    if let Some(peer) = &s.peer {
        arrays.push(ArrayView {
            name: peer.clone(),
            relation: "peer".into(),
            preferred: !s.preferred,
            state: if up { "Up" } else { "Down" }.into(),
            version: None,
            nfs_listen: None,
            api_listen: None,
            link_address: s.site.peer_address.clone(),
            serves: serves(peer),
            uptime_s: None,
        });
    }
    // Reachability of the quorum servers is known through the pairs; without a pair the
    // configured addresses are listed as not (yet) reached.
    let servers: Vec<QuorumServerView> = match pairs.first() {
        Some(p) if !p.quorum.is_empty() => p.quorum.clone(),
        _ => s
            .site
            .quorum_servers
            .iter()
            .map(|a| QuorumServerView {
                addr: a.clone(),
                reachable: false,
                rtt_us: None,
                last_error: Some("not asked yet: no pair".into()),
            })
            .collect(),
    };
    DomainView {
        name: s.site.domain.clone(),
        preferred_site: if s.preferred {
            s.name.clone()
        } else {
            s.peer.clone().unwrap_or_default()
        },
        recovery: s.site.recovery.clone(),
        service_address: s.site.service_address.clone(),
        arrays,
        link: s.peer.as_ref().map(|peer| LinkView {
            peer: peer.clone(),
            state: if up { "Up" } else { "Down" }.into(),
            rtt_us: pairs.iter().find_map(|p| p.link_rtt_us),
        }),
        quorum: QuorumView {
            mode: if s.site.quorum_servers.is_empty() {
                "static-priority"
            } else {
                "quorum"
            }
            .into(),
            servers,
        },
    }
}

/// The domain: its arrays, the link between them, the quorum servers.
#[utoipa::path(get, path = "/api/domain", tag = "array",
    responses((status = 200, description = "the domain as this array sees it", body = DomainView)))]
pub async fn domain(State(s): State<AppState>) -> Json<DomainView> {
    let pairs = api_pairs(&s);
    Json(domain_view(&s, &pairs).await)
}

/// The arrays of the domain: this one and its peer.
#[utoipa::path(get, path = "/api/arrays", tag = "array",
    responses((status = 200, description = "this array first, then its peer", body = [ArrayView])))]
pub async fn arrays(State(s): State<AppState>) -> Json<Vec<ArrayView>> {
    let pairs = api_pairs(&s);
    Json(domain_view(&s, &pairs).await.arrays)
}

fn event_view(id: u64, e: EventRecord) -> EventView {
    EventView {
        id,
        time_ms: e.time_ms,
        kind: e.kind.to_string(),
        pair: e.pair,
        actor: e.actor,
        text: e.text,
    }
}

fn list_events(s: &AppState, after: Option<u64>, limit: usize) -> Result<Vec<EventView>, ApiError> {
    Ok(s.events
        .list(after, limit)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .into_iter()
        .map(|(id, e)| event_view(id, e))
        .collect())
}

/// Everything at a glance: domain, arrays, link, quorum, every pair, alarms, I/O totals and
/// the newest events (what `metrofs status` and the dashboard show).
#[utoipa::path(get, path = "/api/status", tag = "array",
    responses((status = 200, description = "the domain as this array sees it", body = StatusView)))]
pub async fn status(State(s): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let pairs = api_pairs(&s);
    let domain = domain_view(&s, &pairs).await;
    let (resident, active) = s.metro.log_extents();
    let events = list_events(&s, None, STATUS_EVENTS)?;
    Ok(Json(StatusView {
        array: s.name.clone(),
        time: u64::from(s.clock.now().sec),
        domain,
        file_systems: s.array.list_fs().len(),
        pairs,
        alarms: s.alarms.current(),
        log_extents_active: active,
        log_extents_resident: resident,
        io: IoView::from(metrofs_core::metrics::get().snapshot()),
        events,
    }))
}

/// The durable event log: state changes, arbitrations, failovers, swaps, force starts,
/// alarms and operator actions.
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventsQuery),
    responses(
        (status = 200, description = "oldest first", body = [EventView]),
        (status = 400, description = "a query parameter does not parse", body = ErrorBody),
    ))]
pub async fn events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let limit = q.limit.unwrap_or(EVENTS_DEFAULT_LIMIT);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit = {limit}: expected 1 to 1000"
        )));
    }
    let s2 = s.clone();
    let v = tokio::task::spawn_blocking(move || list_events(&s2, q.after, limit as usize))
        .await
        .map_err(|e| ApiError::Internal(format!("event log task failed: {e}")))??;
    Ok(Json(v))
}

/// The active alarms, critical first.
#[utoipa::path(get, path = "/api/alarms", tag = "events",
    responses((status = 200, description = "critical first, then oldest first", body = [AlarmView])))]
pub async fn alarms(State(s): State<AppState>) -> Json<Vec<AlarmView>> {
    Json(s.alarms.current())
}

// ------------------------------------------------------------------------------ fs, exports

/// Every file system of this array.
#[utoipa::path(get, path = "/api/fs", tag = "fs",
    responses((status = 200, description = "sorted by name", body = [FsView])))]
pub async fn list_fs(State(s): State<AppState>) -> Json<Vec<FsView>> {
    let mut all: Vec<FsView> = s.array.list_fs().iter().map(FsView::from).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Json(all)
}

/// Create a file system, exported as /NAME with the default rules (loopback only,
/// read-write, root squashed).
#[utoipa::path(post, path = "/api/fs", tag = "fs", request_body = CreateFs,
    responses(
        (status = 201, description = "created", body = FsView),
        (status = 400, description = "invalid name or body", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    ))]
pub async fn create_fs(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateFs>,
) -> Result<(StatusCode, Json<FsView>), ApiError> {
    // The store checks the name (and that it is free) and answers why not.
    let name = body.name.clone();
    let info = blocking(&s, &body.name, move |a| {
        a.create_fs(&name, ExportRules::default())
    })
    .await?;
    s.record(
        EventKind::Operator,
        None,
        &actor,
        format!("created file system {}", info.name),
    )
    .await;
    Ok((StatusCode::CREATED, Json(FsView::from(&info))))
}

/// One file system.
#[utoipa::path(get, path = "/api/fs/{name}", tag = "fs",
    params(("name" = String, Path, description = "the file system's name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "the file system", body = FsView),
        (status = 404, description = "no such file system", body = ErrorBody),
    ))]
pub async fn get_fs(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<FsView>, ApiError> {
    s.array
        .fs(&name)
        .map(|i| Json(FsView::from(&i)))
        .ok_or(ApiError::FsNotFound(name))
}

/// Delete a file system and every file in it (refused while it is paired).
#[utoipa::path(delete, path = "/api/fs/{name}", tag = "fs",
    params(("name" = String, Path, description = "the file system's name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such file system", body = ErrorBody),
        (status = 409, description = "the file system is paired", body = ErrorBody),
    ))]
pub async fn delete_fs(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    // Deleting one side of a pair would leave its twin paired with nothing.
    if s.metro.pair_of_fs(&name).is_some() {
        return Err(ApiError::FsPaired(name));
    }
    let n = name.clone();
    blocking(&s, &name, move |a| a.delete_fs(&n)).await?;
    s.record(
        EventKind::Operator,
        None,
        &actor,
        format!("deleted file system {name}"),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every export: each file system's MOUNT path and rules.
#[utoipa::path(get, path = "/api/exports", tag = "fs",
    responses((status = 200, description = "sorted by file system", body = [ExportEntry])))]
pub async fn list_exports(State(s): State<AppState>) -> Json<Vec<ExportEntry>> {
    let mut all: Vec<ExportEntry> = s
        .array
        .list_fs()
        .iter()
        .map(|i| {
            let v = FsView::from(i);
            ExportEntry {
                fs: v.name,
                export: v.export,
            }
        })
        .collect();
    all.sort_by(|a, b| a.fs.cmp(&b.fs));
    Json(all)
}

/// One file system's export rules.
#[utoipa::path(get, path = "/api/fs/{name}/export", tag = "fs",
    params(("name" = String, Path, description = "the file system's name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "its export", body = ExportView),
        (status = 404, description = "no such file system", body = ErrorBody),
    ))]
pub async fn get_export(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ExportView>, ApiError> {
    s.array
        .fs(&name)
        .map(|i| Json(FsView::from(&i).export))
        .ok_or(ApiError::FsNotFound(name))
}

/// Replace a file system's export rules; they apply to the next call of every client.
///
/// A paired file system keeps the same rules on both arrays: with the link up they are set
/// on both (whichever array is asked); with the link down the serving array sets them alone
/// and copies them to the other when the link returns, and the other array refuses (409).
#[utoipa::path(put, path = "/api/fs/{name}/export", tag = "fs", request_body = SetExport,
    params(("name" = String, Path, description = "the file system's name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "the file system with its new rules (paired: on both arrays, or on the serving one alone while the link is down)", body = FsView),
        (status = 400, description = "a network does not parse, or the body is wrong", body = ErrorBody),
        (status = 404, description = "no such file system", body = ErrorBody),
        (status = 409, description = "paired: this array cannot change them now (the message names the array that can; nothing changed), or the other array did not take them (they are set on the serving array)", body = ErrorBody),
        (status = 502, description = "paired, asked on the secondary: the link failed during the call", body = ErrorBody),
    ))]
pub async fn set_export(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SetExport>,
) -> Result<Json<FsView>, ApiError> {
    let rules = body.to_rules().map_err(ApiError::InvalidCidr)?;
    let info = s
        .metro
        .set_export(&name, rules)
        .await
        .map_err(|e| match e {
            MetroError::Array(e) => array_error(&s, e, &name),
            e => e.into(),
        })?;
    let v = FsView::from(&info);
    s.record(
        EventKind::Operator,
        None,
        &actor,
        format!(
            "export of {} set to {} ({}, {})",
            v.name,
            if v.export.clients.is_empty() {
                "nobody".to_owned()
            } else {
                v.export.clients.join(",")
            },
            if v.export.read_only { "ro" } else { "rw" },
            if v.export.root_squash {
                "root squashed"
            } else {
                "no root squash"
            }
        ),
    )
    .await;
    Ok(Json(v))
}

// ------------------------------------------------------------------------------ pairs

fn pair_id(id: &str) -> Result<PairId, ApiError> {
    id.parse().map_err(ApiError::InvalidPairId)
}

/// Every pair of this array.
#[utoipa::path(get, path = "/api/pairs", tag = "pairs",
    responses((status = 200, description = "sorted by file system", body = [PairView])))]
pub async fn list_pairs(State(s): State<AppState>) -> Json<Vec<PairView>> {
    Json(api_pairs(&s))
}

/// Pair a file system of this array with a twin on the peer (same fs id and inode numbers);
/// the initial full sync runs while hosts keep writing.
#[utoipa::path(post, path = "/api/pairs", tag = "pairs", request_body = CreatePair,
    responses(
        (status = 201, description = "created, Synchronizing", body = PairView),
        (status = 400, description = "wrong body or peer name", body = ErrorBody),
        (status = 404, description = "no such file system", body = ErrorBody),
        (status = 409, description = "already paired, no peer configured, or the peer refused", body = ErrorBody),
        (status = 502, description = "the link failed during the call", body = ErrorBody),
        (status = 503, description = "the link to the peer is down", body = ErrorBody),
    ))]
pub async fn create_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreatePair>,
) -> Result<(StatusCode, Json<PairView>), ApiError> {
    let p = s.metro.create_pair(&body.fs, &body.remote).await?;
    s.record(
        EventKind::Operator,
        Some(p.id.clone()),
        &actor,
        format!(
            "created pair {} of fs {} from {} to {}",
            p.id, p.fs, p.serving, p.secondary
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(PairView::from_metro(&p, &s.name))))
}

/// One pair: state (and resync progress), data status, link, DCL, epoch, who serves, quorum,
/// last arbitration, the running verify's progress (or the last verify's result), alarms,
/// recent events.
#[utoipa::path(get, path = "/api/pairs/{id}", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 200, description = "the pair", body = PairView),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
    ))]
pub async fn get_pair(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PairView>, ApiError> {
    let p = s.metro.show(pair_id(&id)?)?;
    Ok(Json(PairView::from_metro(&p, &s.name)))
}

/// Records a pair action, done or refused: the one `operator` event of the action, with who
/// asked and why. What the action made happen is the metro module's to record (actor
/// `metro`): the state change, the swap (kind `swap`, on both arrays), the force start's new
/// epoch (`force_start`) and the takeover (`failover`); the action itself is not recorded
/// again under those kinds.
async fn record_action(
    s: &AppState,
    actor: &Actor,
    id: PairId,
    what: &str,
    outcome: &Result<PairView, ApiError>,
) {
    let text = match outcome {
        Ok(p) => format!(
            "{what} of pair {id} (fs {}): done, state {}, {} serves",
            p.fs, p.state, p.serving
        ),
        // An unknown pair is not an action on a pair.
        Err(ApiError::Metro(MetroError::NoPair(_))) => return,
        Err(e) => format!("{what} of pair {id} refused: {e}"),
    };
    s.record(EventKind::Operator, Some(id.to_string()), actor, text)
        .await;
}

/// Runs a pair action that persists the pair record (redb, fsync) on a blocking thread.
async fn blocking_pair_action(
    s: &AppState,
    id: PairId,
    f: impl FnOnce(&Arc<Metro>, PairId) -> Result<metrofs_metro::PairView, MetroError> + Send + 'static,
) -> Result<PairView, ApiError> {
    let metro = s.metro.clone();
    let p = tokio::task::spawn_blocking(move || f(&metro, id))
        .await
        .map_err(|e| ApiError::Internal(format!("pair action task failed: {e}")))??;
    Ok(PairView::from_metro(&p, &s.name))
}

/// Stop replicating on purpose: the serving side goes on alone and the DCL records what
/// changes, until resume.
#[utoipa::path(post, path = "/api/pairs/{id}/pause", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 200, description = "Paused", body = PairView),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
        (status = 409, description = "the pair's state or this array's role does not allow it; nothing changed", body = ErrorBody),
    ))]
pub async fn pause_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PairView>, ApiError> {
    let id = pair_id(&id)?;
    let r = blocking_pair_action(&s, id, |m, id| m.pause(id)).await;
    record_action(&s, &actor, id, "pause", &r).await;
    r.map(Json)
}

/// Resynchronise what the DCL names (from Paused or ToBeSynchronized), then Normal.
#[utoipa::path(post, path = "/api/pairs/{id}/resume", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 200, description = "Synchronizing", body = PairView),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
        (status = 409, description = "the pair's state or this array's role does not allow it; nothing changed", body = ErrorBody),
        (status = 503, description = "the link to the peer is down", body = ErrorBody),
    ))]
pub async fn resume_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PairView>, ApiError> {
    let id = pair_id(&id)?;
    let r = blocking_pair_action(&s, id, |m, id| m.resume(id)).await;
    record_action(&s, &actor, id, "resume", &r).await;
    r.map(Json)
}

/// Planned switch of the serving side: changes in flight finish on both sides, the other side
/// takes over at the next epoch, nothing is lost; hosts reconnect through the service address.
/// Needs the pair Normal and the link up.
#[utoipa::path(post, path = "/api/pairs/{id}/swap", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 200, description = "the other side serves now", body = PairView),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
        (status = 409, description = "the pair's state does not allow it (e.g. Synchronizing), or the peer refused; nothing changed", body = ErrorBody),
        (status = 502, description = "the link failed during the swap", body = ErrorBody),
        (status = 503, description = "the link to the peer is down", body = ErrorBody),
    ))]
pub async fn swap_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PairView>, ApiError> {
    let id = pair_id(&id)?;
    let r = s
        .metro
        .swap(id)
        .await
        .map(|p| PairView::from_metro(&p, &s.name))
        .map_err(ApiError::from);
    record_action(&s, &actor, id, "swap", &r).await;
    r.map(Json)
}

/// Make this (fenced) side serve when the other is gone for good. It raises the epoch; when
/// the other side returns, what it changed since the split is kept aside, not dropped.
/// Refused while the peer is reachable (use swap).
#[utoipa::path(post, path = "/api/pairs/{id}/force-start", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 200, description = "this side serves", body = PairView),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
        (status = 409, description = "not now (the peer is reachable, or this side serves already); nothing changed", body = ErrorBody),
    ))]
pub async fn force_start_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PairView>, ApiError> {
    let id = pair_id(&id)?;
    let r = s
        .metro
        .force_start(id)
        .await
        .map(|p| PairView::from_metro(&p, &s.name))
        .map_err(ApiError::from);
    record_action(&s, &actor, id, "force start", &r).await;
    r.map(Json)
}

/// Compare both sides (inodes, attributes, entries, chunk digests) and list every difference.
/// Answers when the comparison is done; meanwhile `GET /api/pairs/{id}` shows its progress
/// (`verify`: inodes and bytes compared, percent, rate, ETA). One verify of a pair at a time.
#[utoipa::path(post, path = "/api/pairs/{id}/verify", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 200, description = "what the comparison found", body = VerifyView),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
        (status = 409, description = "not possible now (e.g. a verify of this pair runs already)", body = ErrorBody),
        (status = 502, description = "the link failed during the comparison", body = ErrorBody),
        (status = 503, description = "the link to the peer is down", body = ErrorBody),
    ))]
pub async fn verify_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<VerifyView>, ApiError> {
    let id = pair_id(&id)?;
    match s.metro.verify(id).await {
        Ok(r) => {
            s.record(
                EventKind::Operator,
                Some(id.to_string()),
                &actor,
                format!(
                    "verify of pair {id}: {} inodes and {} bytes compared, {} differences",
                    r.inodes_compared,
                    r.bytes_compared,
                    r.differences.len()
                ),
            )
            .await;
            Ok(Json(VerifyView {
                pair: id.to_string(),
                inodes_compared: r.inodes_compared,
                bytes_compared: r.bytes_compared,
                differences: r.differences,
            }))
        }
        Err(MetroError::NoPair(p)) => Err(MetroError::NoPair(p).into()),
        Err(e) => {
            let e = ApiError::from(e);
            s.record(
                EventKind::Operator,
                Some(id.to_string()),
                &actor,
                format!("verify of pair {id} failed: {e}"),
            )
            .await;
            Err(e)
        }
    }
}

/// Unpair (on the serving array): both copies stay, as independent file systems.
#[utoipa::path(delete, path = "/api/pairs/{id}", tag = "pairs",
    params(("id" = String, Path, description = "the pair's id (16 hex digits)", pattern = r"^[0-9a-fA-F]{16}$")),
    responses(
        (status = 204, description = "unpaired"),
        (status = 400, description = "not a pair id", body = ErrorBody),
        (status = 404, description = "no such pair", body = ErrorBody),
        (status = 409, description = "this array is not the serving side; nothing changed", body = ErrorBody),
    ))]
pub async fn delete_pair(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = pair_id(&id)?;
    match s.metro.delete_pair(id).await {
        Ok(()) => {
            s.record(
                EventKind::Operator,
                Some(id.to_string()),
                &actor,
                format!("deleted pair {id}: both copies are independent file systems now"),
            )
            .await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(MetroError::NoPair(p)) => Err(MetroError::NoPair(p).into()),
        Err(e) => {
            let e = ApiError::from(e);
            s.record(
                EventKind::Operator,
                Some(id.to_string()),
                &actor,
                format!("delete of pair {id} refused: {e}"),
            )
            .await;
            Err(e)
        }
    }
}

/// Any other path.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
