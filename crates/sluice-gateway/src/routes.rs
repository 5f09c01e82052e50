//! The HTTP surface: `POST /v1/streams/{stream}/events`, `/healthz`, `/readyz`, `/metrics`.
//!
//! An ingest request is checked in the order that costs least first: a place among the
//! requests served at once (503 beyond `max_concurrent`), API key (401), stream (404) and scope
//! (403), content type and encoding (415), declared size (413), rate (429), then the body is
//! read within its limit and time (408), decompressed within its limit and split into records,
//! and each record is checked on its own. Accepted records are delivered; the answer lists the
//! rejected ones by index, like Firehose's PutRecordBatch:
//!
//! | status | when |
//! |---|---|
//! | 200 | every record is in Kafka |
//! | 202 | every record is accepted, and some wait in the spool (durable on local disk) |
//! | 207 | some records were rejected (`errors`); the others are accepted as above |
//! | 422 | every record was rejected |
//! | 502 | Kafka refused every record for good |
//! | 503 | Kafka is down and the spool is full, or `max_concurrent` requests are being served |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;
use sluice_core::config::{ApiKey, GatewayLimits};

use crate::auth::{AuthError, Keys};
use crate::body;
use crate::delivery::Delivery;
use crate::events::{RecordsTaken, RequestAnswered};
use crate::idempotency::{Idempotency, Lookup, StoredAnswer};
use crate::metrics::Metrics;
use crate::rate::RateLimits;
use crate::records::StreamChecks;
use crate::spool::SpoolError;

/// The longest Idempotency-Key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The answer header of a replayed request.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// What every handler shares.
pub(crate) struct AppState {
    pub keys: Keys,
    pub streams: HashMap<String, StreamChecks>,
    pub limits: GatewayLimits,
    pub rate: Option<RateLimits>,
    pub idempotency: Idempotency,
    pub delivery: Arc<Delivery>,
    pub metrics: Arc<Metrics>,
    pub kafka_up: AtomicBool,
    /// One permit per ingest request being served (`limits.max_concurrent`).
    pub in_flight: tokio::sync::Semaphore,
    /// Whether `/metrics` asks for an API key.
    pub require_key_for_metrics: bool,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/streams/{stream}/events", post(ingest))
        .route(
            "/healthz",
            get(|| async { Answer::json(StatusCode::OK, json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// An answer: status, JSON body and extra headers.
struct Answer {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            body: Bytes::from(body.to_string()),
            headers: Vec::new(),
        }
    }

    fn error(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self::json(status, json!({ "error": message.to_string() }))
    }

    fn with(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.into()) {
            self.headers.push((name, value));
        }
        self
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let answer = answer(&state, &stream, &headers, body).await;
    let known = state.streams.contains_key(&stream);
    state.metrics.emit(RequestAnswered {
        stream: if known { &stream } else { "(unknown)" },
        status: answer.status.as_u16(),
        took: started.elapsed(),
    });
    answer.into_response()
}

async fn answer(state: &AppState, stream: &str, headers: &HeaderMap, body: Body) -> Answer {
    let Ok(_serving) = state.in_flight.try_acquire() else {
        return Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the gateway is serving its limit of {} requests at once; retry shortly",
                state.limits.max_concurrent
            ),
        )
        .with(header::RETRY_AFTER, "1");
    };
    let key = match authenticate(state, headers) {
        Ok(key) => key,
        Err(unauthorized) => return unauthorized,
    };
    let Some(checks) = state.streams.get(stream) else {
        return Answer::error(
            StatusCode::NOT_FOUND,
            format!("no stream is named {stream:?}"),
        );
    };
    if !key.allows(stream) {
        return Answer::error(
            StatusCode::FORBIDDEN,
            format!(
                "the API key {:?} may not send to stream {stream:?}",
                key.name
            ),
        );
    }
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let layout = match body::layout(text(&header::CONTENT_TYPE)) {
        Ok(layout) => layout,
        Err(err) => return body_error(&err),
    };
    let declared = text(&header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.limits.max_body) {
        return body_error(&body::BodyError::TooLarge {
            limit: state.limits.max_body,
        });
    }
    if let Some(rate) = &state.rate
        && let Err(wait) = rate.admit(&key.name, Instant::now())
    {
        return Answer::error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the API key {:?} is over its rate limit; retry in {} s",
                key.name,
                wait.as_secs()
            ),
        )
        .with(header::RETRY_AFTER, wait.as_secs().to_string());
    }
    let reading = axum::body::to_bytes(body, state.limits.max_body);
    let raw = match tokio::time::timeout(state.limits.body_timeout, reading).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(_)) => {
            return body_error(&body::BodyError::TooLarge {
                limit: state.limits.max_body,
            });
        }
        Err(_) => {
            return Answer::error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {:?}; nothing was accepted",
                    state.limits.body_timeout
                ),
            )
            .with(header::CONNECTION, "close");
        }
    };
    let claim = match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(id)) if !id.is_empty() && id.len() <= MAX_IDEMPOTENCY_KEY => {
            match state
                .idempotency
                .lookup(&key.name, id, stream, &raw, Instant::now())
            {
                Lookup::New(claim) => Some(claim),
                Lookup::Replay(stored) => {
                    return Answer {
                        status: StatusCode::from_u16(stored.status).expect("a stored status"),
                        body: stored.body,
                        headers: Vec::new(),
                    }
                    .with(REPLAYED, "true");
                }
                Lookup::InProgress => {
                    return Answer::error(
                        StatusCode::CONFLICT,
                        "a request with this Idempotency-Key is still running; retry when it has been answered",
                    );
                }
                Lookup::Mismatch => {
                    return Answer::error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "this Idempotency-Key was used for a different request",
                    );
                }
            }
        }
        Some(_) => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                format!(
                    "an Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            );
        }
    };
    let answer = ingest_body(state, stream, checks, &key.name, headers, raw, layout).await;
    if let Some(claim) = claim {
        claim.finish(
            &StoredAnswer {
                status: answer.status.as_u16(),
                body: answer.body.clone(),
            },
            Instant::now(),
        );
    }
    answer
}

async fn ingest_body(
    state: &AppState,
    stream: &str,
    checks: &StreamChecks,
    key_name: &str,
    headers: &HeaderMap,
    raw: Bytes,
    layout: body::Layout,
) -> Answer {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let texts = match body::decompress(encoding, raw, state.limits.max_decompressed_body)
        .and_then(|body| body::split(layout, &body, &state.limits))
    {
        Ok(texts) => texts,
        Err(err) => return body_error(&err),
    };
    if let Some(rate) = &state.rate {
        rate.charge(key_name, texts.len(), Instant::now());
    }
    let total = texts.len();
    let mut accepted = Vec::with_capacity(total);
    let mut positions = Vec::with_capacity(total);
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (index, text) in texts.into_iter().enumerate() {
        match checks.check(text) {
            Ok(record) => {
                accepted.push(record);
                positions.push(index);
            }
            Err(err) => errors.push((index, err)),
        }
    }
    let mut spooled = 0;
    let mut refused_by_kafka = 0;
    if !accepted.is_empty() {
        match state.delivery.deliver(checks.topic(), accepted).await {
            Ok(delivered) => {
                spooled = delivered.spooled;
                refused_by_kafka = delivered.refused.len();
                errors.extend(
                    delivered
                        .refused
                        .into_iter()
                        .map(|(i, err)| (positions[i], format!("Kafka refused the record: {err}"))),
                );
                errors.sort_unstable_by_key(|(i, _)| *i);
            }
            Err(err @ SpoolError::Full { .. }) => {
                return Answer::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Kafka is not taking records and {err}; nothing was accepted"),
                )
                .with(header::RETRY_AFTER, "5");
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "the spool failed");
                return Answer::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the spool failed ({err}); nothing was accepted"),
                );
            }
        }
    }
    let rejected = errors.len();
    let accepted = total - rejected;
    state.metrics.emit(RecordsTaken {
        stream,
        to_kafka: accepted - spooled,
        spooled,
        rejected,
    });
    let status = match (accepted, rejected) {
        (_, 0) if spooled > 0 => StatusCode::ACCEPTED,
        (_, 0) => StatusCode::OK,
        (0, _) if refused_by_kafka == rejected => StatusCode::BAD_GATEWAY,
        (0, _) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::MULTI_STATUS,
    };
    let errors: Vec<serde_json::Value> = errors
        .into_iter()
        .map(|(index, error)| json!({ "index": index, "error": error }))
        .collect();
    Answer::json(
        status,
        json!({ "accepted": accepted, "spooled": spooled, "rejected": rejected, "errors": errors }),
    )
}

/// The API key the request presents, or the 401 to answer.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<ApiKey>, Answer> {
    state
        .keys
        .authenticate(
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
        .map_err(|err @ (AuthError::Missing | AuthError::Unknown)| {
            Answer::error(StatusCode::UNAUTHORIZED, err).with(header::WWW_AUTHENTICATE, "Bearer")
        })
}

fn body_error(err: &body::BodyError) -> Answer {
    Answer::error(
        StatusCode::from_u16(err.status()).expect("a valid status"),
        err,
    )
}

/// Ready while requests can be accepted: with room in the spool they are, whether Kafka answers
/// or not (the spool is there for Kafka's outages, so an outage must not take the gateway out
/// of its load balancer). A full spool is 503, as its requests are.
async fn readyz(State(state): State<Arc<AppState>>) -> Answer {
    let kafka = state.kafka_up.load(Ordering::Relaxed);
    let spool = state.delivery.spool_has_room();
    let status = if spool {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Answer::json(
        status,
        json!({ "kafka_reachable": kafka, "spool_has_room": spool }),
    )
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if state.require_key_for_metrics
        && let Err(unauthorized) = authenticate(&state, &headers)
    {
        return unauthorized.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
