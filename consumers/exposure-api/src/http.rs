//! The HTTP API: routes, handlers, JSON errors and the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::BoxError;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tracing::{debug, warn};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::{Auth, Principal};
use crate::cursor::Cursor;
use crate::event::{validate, validate_batch, Invalid, NewExposure};
use crate::metrics::Metrics;
use crate::producer::{Kafka, NotAcked};
use crate::warehouse::{By, Page, StoredExposure, Warehouse};

/// Default and largest `?limit=` of the read endpoints.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub struct AppState {
    pub kafka: Kafka,
    pub warehouse: Option<Warehouse>,
    pub metrics: Metrics,
    pub auth: Auth,
    pub max_batch: usize,
    /// The producer's `message.max.bytes`: a larger event is answered 413.
    pub message_max_bytes: usize,
    /// The producer queue's high-water mark: writes that would pass it are answered 503.
    pub shed_queue_messages: usize,
    pub openapi: String,
}

pub type Shared = Arc<AppState>;

/// The limits of the `/exposure*` routes.
pub struct Limits {
    pub max_body_bytes: usize,
    /// Requests handled at once; one more is answered 503 at once, not queued.
    pub max_concurrency: usize,
    /// A request not answered by then is answered 503.
    pub request_timeout: Duration,
}

pub fn router(state: Shared, limits: Limits) -> Router {
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_concurrency))
        .timeout(limits.request_timeout);
    let api = Router::new()
        .route("/exposure", post(post_exposure))
        .route("/exposures", post(post_exposures))
        .route("/exposures/{user_id}", get(get_by_user))
        .route(
            "/exposures/experiment/{experiment_id}",
            get(get_by_experiment),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth))
        // Outside authentication: an overloaded API sheds before doing any work.
        .route_layer(overload);
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        // Applied to each route above, so the middleware sees the matched route.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .fallback(not_found)
        .with_state(state)
}

// ---- errors ------------------------------------------------------------------------------

/// Every error answer: `{"error": "...", "field": "..."}` (`field` only when one is at fault).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
            },
        }
    }

    fn field(mut self, field: impl Into<String>) -> ApiError {
        self.body.field = Some(field.into());
        self
    }

    fn invalid(inv: Invalid) -> ApiError {
        let status = if inv.too_large {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::new(status, format!("{} {}", inv.field, inv.message)).field(inv.field)
    }

    fn unavailable(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        let headers = resp.headers_mut();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"exposure-api\""),
                );
            }
            _ => {}
        }
        resp
    }
}

/// What the overload layers say: too many requests at once, or one took too long.
async fn overloaded(e: BoxError) -> ApiError {
    if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::unavailable("too many requests in progress (MAX_CONCURRENCY); retry later")
    } else if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::unavailable(
            "the request was not answered within REQUEST_TIMEOUT_MS; retry later (with the same \
             Idempotency-Key, a retry cannot duplicate events)",
        )
    } else {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// A body that could not be read: over the limit (413) or broken off (400).
fn body_error(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than MAX_BODY_BYTES",
        )
        .field("body")
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {r}"),
        )
        .field("body")
    }
}

fn parse_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(body_error)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")).field("body")
    })
}

// ---- middleware --------------------------------------------------------------------------

async fn require_auth(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let write = req.method() == Method::POST;
    match s.auth.check(req.headers(), write) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(why) => {
            if req.method() == Method::POST {
                s.metrics.rejected("unauthorized", 1);
            }
            ApiError::new(StatusCode::UNAUTHORIZED, why).into_response()
        }
    }
}

async fn count_requests(
    State(s): State<Shared>,
    path: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = path
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // Bounded label values: unknown methods are counted together.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let resp = next.run(req).await;
    s.metrics.request(&route, method, resp.status().as_u16());
    resp
}

async fn not_found(State(s): State<Shared>, req: Request) -> ApiError {
    s.metrics.request("unmatched", "any", 404);
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

// ---- writes ------------------------------------------------------------------------------

/// An exposure event as clients send it.
#[allow(dead_code)] // documentation only: bodies are validated by crate::event
#[derive(Deserialize, ToSchema)]
pub struct ExposureIn {
    /// The client's own id, a UUID: a retry with the same id is the same event (one row).
    /// Default: derived from the `Idempotency-Key` header, or a new UUIDv4.
    exposure_id: Option<String>,
    /// Non-empty, at most 256 bytes of UTF-8, no control characters; the Kafka key.
    ds_user_id: String,
    /// Non-empty, at most 256 bytes of UTF-8, no control characters.
    experiment_id: String,
    /// Non-empty, at most 256 bytes of UTF-8, no control characters.
    variation_id: String,
    /// A JSON object; default `{}`. No NUL characters, at most 32 levels deep, at most
    /// 65,535 bytes as JSON.
    #[schema(value_type = Option<Object>)]
    attributes: Option<Value>,
    /// Non-empty, at most 256 bytes of UTF-8, no control characters.
    source: String,
    /// RFC 3339 date-time, normalised to UTC milliseconds, year 1 to 9999 in UTC; default:
    /// when the request arrived.
    timestamp: Option<String>,
}

/// A batch: this object, or a bare JSON array of exposures.
#[allow(dead_code)] // documentation only
#[derive(Deserialize, ToSchema)]
pub struct BatchIn {
    /// 1 to MAX_BATCH (default 1000) events; more is answered 413.
    exposures: Vec<ExposureIn>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    #[schema(value_type = String)]
    status: &'static str,
    exposure_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct BatchAccepted {
    /// Always `accepted`.
    #[schema(value_type = String)]
    status: &'static str,
    /// In the order of the request.
    exposure_ids: Vec<String>,
}

/// Produces the events; `Ok` only when the broker acknowledged every one. `accepted_at` is
/// the instant the request was taken, the default `timestamp` of its events too.
async fn produce(
    s: &AppState,
    events: Vec<NewExposure>,
    key: Option<&str>,
    principal: &Principal,
    accepted_at: DateTime<Utc>,
    batch: bool,
) -> Result<Vec<String>, ApiError> {
    let events: Vec<_> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let id = match key {
                Some(key) => exposure_event::idempotent_id(&principal.0, key, i),
                None => Uuid::new_v4(),
            };
            e.assign(id, accepted_at)
        })
        .collect();
    let messages: Vec<(&str, Vec<u8>)> = events.iter().map(|e| (e.key(), e.to_wire())).collect();
    // The event at index `i`, as a 413 names it.
    let field = |i: usize| {
        if batch {
            format!("exposures[{i}]")
        } else {
            "body".to_string()
        }
    };
    let limit = s.message_max_bytes - crate::config::MESSAGE_OVERHEAD_BYTES;
    if let Some((i, size)) = messages
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .enumerate()
        .find(|(_, size)| *size > limit)
    {
        s.metrics.rejected("too_large", events.len());
        let field = field(i);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{field} is {size} bytes as a Kafka message, more than the {limit} the producer's \
                 message.max.bytes ({}) leaves for one event",
                s.message_max_bytes
            ),
        )
        .field(field));
    }
    let queued = s.kafka.queued();
    if queued + messages.len() > s.shed_queue_messages {
        s.metrics.rejected("overloaded", events.len());
        return Err(ApiError::unavailable(format!(
            "the producer queue holds {queued} events, past its high-water mark \
             (SHED_QUEUE_MESSAGES={}); retry later",
            s.shed_queue_messages
        )));
    }
    match s.kafka.produce(&messages, &s.metrics).await {
        Ok(()) => {
            s.metrics.accepted(events.len());
            Ok(events.into_iter().map(|e| e.exposure_id).collect())
        }
        Err(NotAcked::TooLarge(i)) => {
            s.metrics.rejected("too_large", events.len());
            let field = field(i);
            warn!(
                field,
                "the broker refused an event as too large: the topic's max.message.bytes (or the \
                 broker's message.max.bytes) is below RDKAFKA_MESSAGE_MAX_BYTES; lower it to match"
            );
            let others = if batch {
                "; the other events of the batch may have been written"
            } else {
                ""
            };
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{field} was refused by the broker as too large for the topic (its \
                     max.message.bytes is below the producer's message.max.bytes, {}){others}",
                    s.message_max_bytes
                ),
            )
            .field(field))
        }
        Err(e) => {
            s.metrics.rejected("not_acked", events.len());
            warn!(events = events.len(), error = %e, "events not acknowledged");
            Err(ApiError::unavailable(match e {
                NotAcked::Failed(_) => e.to_string(),
                _ => format!("{e}; retry later"),
            }))
        }
    }
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(s: &AppState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_string())),
        _ => {
            s.metrics.rejected("invalid", 1);
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .field("Idempotency-Key"))
        }
    }
}

fn reject(s: &AppState, inv: Invalid, events: usize) -> ApiError {
    s.metrics.rejected(
        if inv.too_large {
            "too_large"
        } else {
            "invalid"
        },
        events,
    );
    debug!(field = %inv.field, problem = %inv.message, "invalid exposure");
    ApiError::invalid(inv)
}

/// The header a client retries under, on both POST routes. `idempotency_key` reads it; this
/// type only describes it in the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
#[allow(
    dead_code,
    reason = "never built: it describes a header for the OpenAPI document"
)]
struct IdempotencyKeyHeader(
    /// 1 to 255 visible ASCII characters: a retry with the same key (and the same credentials)
    /// gets the same exposure ids, so it writes each event once. An event's own `exposure_id`
    /// wins over the key.
    Option<String>,
);

/// What both POST routes read first: the `Idempotency-Key`, then the JSON body (a malformed
/// one counts as a rejected event); with the time the request is taken at, which a missing
/// `timestamp` defaults to.
fn read_post(
    s: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Option<String>, Value, DateTime<Utc>), ApiError> {
    let key = idempotency_key(s, headers)?;
    let value = parse_json(body).inspect_err(|_| s.metrics.rejected("invalid", 1))?;
    Ok((key, value, Utc::now()))
}

/// Accepts one exposure; answers 202 only after the broker acknowledged it.
#[utoipa::path(post, path = "/exposure", request_body = ExposureIn, params(IdempotencyKeyHeader), responses(
    (status = 202, description = "The broker acknowledged the event", body = Accepted),
    (status = 400, description = "Malformed JSON", body = ErrorBody),
    (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
    (status = 413, description = "Body over MAX_BODY_BYTES, or the event's Kafka message over the producer's message.max.bytes or refused by the broker as too large", body = ErrorBody),
    (status = 422, description = "A field is missing, empty, too long, of the wrong type or holds a character it may not, or a bad Idempotency-Key; `field` names it", body = ErrorBody),
    (status = 503, description = "Not acknowledged within PRODUCE_TIMEOUT_MS, the queue is full or past SHED_QUEUE_MESSAGES, more than MAX_CONCURRENCY requests in progress, or not answered within REQUEST_TIMEOUT_MS; `Retry-After: 1`", body = ErrorBody),
))]
async fn post_exposure(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let (key, value, now) = read_post(&s, &headers, body)?;
    let event = validate(&value, now).map_err(|inv| reject(&s, inv, 1))?;
    let ids = produce(&s, vec![event], key.as_deref(), &principal, now, false).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "accepted",
            exposure_id: ids.into_iter().next().unwrap_or_default(),
        }),
    ))
}

/// Accepts a batch: every event is validated before any is produced; 202 only after the broker
/// acknowledged all of them.
#[utoipa::path(post, path = "/exposures", request_body = BatchIn, params(IdempotencyKeyHeader), responses(
    (status = 202, description = "The broker acknowledged every event", body = BatchAccepted),
    (status = 400, description = "Malformed JSON", body = ErrorBody),
    (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
    (status = 413, description = "Body over MAX_BODY_BYTES, more than MAX_BATCH events (`field`: `exposures`), or an event's Kafka message over the producer's message.max.bytes or refused by the broker as too large (`field`: `exposures[3]`)", body = ErrorBody),
    (status = 422, description = "An event is invalid, or a bad Idempotency-Key; `field` names it, e.g. `exposures[3].ds_user_id`", body = ErrorBody),
    (status = 503, description = "Some event was not acknowledged in time, or the API is overloaded (as for POST /exposure); `Retry-After: 1`. Retry with the same Idempotency-Key", body = ErrorBody),
))]
async fn post_exposures(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let (key, value, now) = read_post(&s, &headers, body)?;
    let events = validate_batch(&value, s.max_batch, now).map_err(|inv| {
        let n = match &value {
            Value::Array(a) => a.len(),
            v => v
                .get("exposures")
                .and_then(Value::as_array)
                .map_or(1, Vec::len),
        };
        reject(&s, inv, n.max(1))
    })?;
    let exposure_ids = produce(&s, events, key.as_deref(), &principal, now, true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            status: "accepted",
            exposure_ids,
        }),
    ))
}

// ---- reads -------------------------------------------------------------------------------

/// A page's query: how many exposures, and where the previous page ended.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 1000, default 100.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

async fn read(
    s: &AppState,
    by: By<'_>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed query string: {e}"),
        )
    })?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
                .field("limit"))
            }
        },
    };
    let cursor = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cursor is not one this API returned",
            )
            .field("cursor")
        })?),
    };
    let Some(warehouse) = &s.warehouse else {
        return Err(ApiError::unavailable(
            "reads are not available: DATABASE_URL is not set",
        ));
    };
    let page = warehouse
        .page(by, limit, cursor.as_ref())
        .await
        .map_err(|e| {
            warn!(error = %e, "warehouse read failed");
            ApiError::unavailable(format!("the warehouse is unavailable: {e}"))
        })?;
    Ok(Json(page))
}

/// A user's exposures, newest first.
#[utoipa::path(get, path = "/exposures/{user_id}", params(
    ("user_id" = String, Path, description = "ds_user_id"),
    PageParams,
), responses(
    (status = 200, body = Page),
    (status = 401, body = ErrorBody),
    (status = 422, description = "Bad limit or cursor", body = ErrorBody),
    (status = 503, description = "DATABASE_URL unset or the warehouse is down", body = ErrorBody),
))]
async fn get_by_user(
    State(s): State<Shared>,
    Path(user_id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    read(&s, By::User(&user_id), params).await
}

/// An experiment's exposures, newest first.
#[utoipa::path(get, path = "/exposures/experiment/{experiment_id}", params(
    ("experiment_id" = String, Path, description = "experiment_id"),
    PageParams,
), responses(
    (status = 200, body = Page),
    (status = 401, body = ErrorBody),
    (status = 422, description = "Bad limit or cursor", body = ErrorBody),
    (status = 503, description = "DATABASE_URL unset or the warehouse is down", body = ErrorBody),
))]
async fn get_by_experiment(
    State(s): State<Shared>,
    Path(experiment_id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    read(&s, By::Experiment(&experiment_id), params).await
}

// ---- operations --------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    #[schema(value_type = String)]
    status: &'static str,
    /// `reachable` or `unreachable`.
    #[schema(value_type = String)]
    broker: &'static str,
}

/// 200 when a broker answered a metadata request within about a second (cached for 1 s).
#[utoipa::path(get, path = "/health", responses(
    (status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(s): State<Shared>) -> (StatusCode, Json<Health>) {
    if s.kafka.broker_reachable().await {
        (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                broker: "reachable",
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "degraded",
                broker: "unreachable",
            }),
        )
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        s.metrics.render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.clone(),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "exposure-api",
        description = "Accepts experiment exposure events over HTTP and produces them to Kafka \
            (202 only after the broker acknowledged them); reads stored exposures from the \
            warehouse. The /exposure* routes need `X-API-Key: <key>` or \
            `Authorization: Bearer <key or HS256 JWT>` (API_KEYS, JWT_SECRET); with AUTH=none \
            the writes do not."
    ),
    paths(
        post_exposure,
        post_exposures,
        get_by_user,
        get_by_experiment,
        health,
        metrics,
        openapi
    ),
    components(schemas(
        ExposureIn,
        BatchIn,
        Accepted,
        BatchAccepted,
        ErrorBody,
        Page,
        StoredExposure,
        Health
    ))
)]
pub struct ApiDoc;

pub fn openapi_json() -> String {
    ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_names_every_route() {
        let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
        for path in [
            "/exposure",
            "/exposures",
            "/exposures/{user_id}",
            "/exposures/experiment/{experiment_id}",
            "/health",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        for path in ["/exposure", "/exposures"] {
            let params = &doc["paths"][path]["post"]["parameters"];
            assert_eq!(params[0]["name"], "Idempotency-Key", "{path}: {params}");
            assert_eq!(params[0]["in"], "header", "{path}: {params}");
            assert_eq!(params[0]["required"], false, "{path}: {params}");
            let about = params[0]["description"].as_str().unwrap_or_default();
            assert!(about.contains("visible ASCII"), "{path}: {params}");
        }
        for path in [
            "/exposures/{user_id}",
            "/exposures/experiment/{experiment_id}",
        ] {
            let params = &doc["paths"][path]["get"]["parameters"];
            let names: Vec<(&str, &str)> = params
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            assert_eq!(
                names[1..],
                [("limit", "query"), ("cursor", "query")],
                "{path}: {params}"
            );
        }
    }
}
