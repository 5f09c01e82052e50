//! The console's HTTP surface: the page and its assets (`/`, `/assets/…`), and the JSON API
//! under `/api/` that the page polls. Every API answer that fails has the shape
//! `{"kind": …, "error": …}`; a source that is down is reported in its own answer, so the
//! other pages keep working.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sluice_core::Pipeline;
use sluice_kafka::{ClientOptions, admin};
use sluice_query::TableLocation;

use crate::access::Access;
use crate::assets;
use crate::sampler::History;
use crate::side::{self, SideKind};
use crate::sql::{Answer, Query, Sql};
use crate::tables;
use crate::{ConsoleOptions, Verifier};

/// How long an answer about Kafka or the tables is reused: pages poll, and the broker and the
/// store need not be asked each time.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// How long reading the side topics' tails may take before they show as down.
const SIDE_LIMIT: Duration = Duration::from_secs(60);

/// How long the overview waits for the brokers before calling them down.
const KAFKA_CHECK: Duration = Duration::from_secs(4);

/// How long one verification may take.
const VERIFY_LIMIT: Duration = Duration::from_secs(120);

/// What the handlers share.
pub(crate) struct Console {
    pipeline: Pipeline,
    client: ClientOptions,
    storage_options: HashMap<String, String>,
    locations: Vec<TableLocation>,
    history: Arc<History>,
    access: Access,
    sql: Sql,
    verify: Verifier,
    verifying: tokio::sync::Mutex<()>,
    kafka: Mutex<Option<(Instant, Value)>>,
    tables: tokio::sync::Mutex<Option<(Instant, Value)>>,
    side: tokio::sync::Mutex<HashMap<SideKind, (Instant, Value)>>,
}

impl Console {
    pub(crate) fn new(options: ConsoleOptions, history: Arc<History>) -> Self {
        let locations = TableLocation::of_pipeline(&options.pipeline);
        Self {
            sql: Sql::new(
                locations.clone(),
                options.storage_options.clone(),
                options.sql,
                options.sql_memory,
            ),
            access: options.keys.map_or(Access::Loopback, Access::Keys),
            pipeline: options.pipeline,
            client: options.client,
            storage_options: options.storage_options,
            locations,
            history,
            verify: options.verify,
            verifying: tokio::sync::Mutex::new(()),
            kafka: Mutex::default(),
            tables: tokio::sync::Mutex::default(),
            side: tokio::sync::Mutex::default(),
        }
    }
}

type Shared = State<Arc<Console>>;

/// The console's routes.
pub(crate) fn router(console: Console) -> Router {
    let console = Arc::new(console);
    let api = Router::new()
        .route("/overview", get(overview))
        .route("/metrics", get(metrics))
        .route("/tables", get(list_tables))
        .route("/tables/{name}", get(table))
        .route("/tables/{name}/verify", post(verify))
        .route("/catalog", get(catalog))
        .route("/sql", post(sql))
        .route("/side/{kind}", get(side_records))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such API call") })
        .route_layer(middleware::from_fn_with_state(console.clone(), checked));
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { asset("index.html", &headers) }))
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                asset(&path, &headers)
            }),
        )
        .nest("/api", api)
        .with_state(console)
}

fn problem(status: StatusCode, kind: &str, error: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"kind": kind, "error": error.to_string()})),
    )
        .into_response()
}

/// Lets an API call through when [`Access`] does. A POST must say it sends JSON: a page
/// elsewhere cannot post that without a preflight, which is never answered.
async fn checked(State(console): Shared, request: Request, next: Next) -> Response {
    if let Err((status, kind, message)) = console.access.check(request.headers()) {
        return problem(status, kind, message);
    }
    let json = (request.headers().get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if request.method() == axum::http::Method::POST && !json {
        let message = "send the request's body as Content-Type: application/json";
        return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "media_type", message);
    }
    next.run(request).await
}

/// An embedded file, or 304 when the page has it already.
fn asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = assets::find(path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let csp = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";
    let common = [
        (header::ETAG, asset.etag.as_str()),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == asset.etag.as_bytes());
    match matches {
        true => (StatusCode::NOT_MODIFIED, common).into_response(),
        false => (
            common,
            [(header::CONTENT_TYPE, asset.media_type)],
            asset.bytes,
        )
            .into_response(),
    }
}

async fn overview(State(console): Shared) -> Response {
    let pipeline = &console.pipeline;
    let streams: Vec<Value> = (pipeline.streams.iter())
        .map(|s| json!({"name": s.name, "topic": s.topic, "format": s.format.name(), "dead_letter_topic": s.dead_letter_topic}))
        .collect();
    let tables: Vec<Value> = (pipeline.tables.iter())
        .map(|t| json!({"name": t.name, "from": t.from, "uri": t.uri, "format": t.format.name(), "filter": t.filter.as_ref().map(|f| f.sql())}))
        .collect();
    let windows: Vec<Value> = (pipeline.windows.iter())
        .map(|w| json!({"name": w.name, "from": w.from, "uri": w.uri, "kind": w.kind().to_string(), "late_topic": w.late_topic}))
        .collect();
    let alerts: Vec<Value> = (pipeline.alerts.iter())
        .map(|a| json!({"name": a.name, "from": a.from, "topic": a.topic, "when": a.when.sql()}))
        .collect();
    let snapshot = console.history.snapshot();
    Json(json!({
        "pipeline": {"streams": streams, "tables": tables, "windows": windows, "alerts": alerts},
        "kafka": kafka_status(&console).await,
        "metrics": {"up": snapshot.up, "error": snapshot.error, "sources": snapshot.sources},
    }))
    .into_response()
}

/// Whether the brokers answer, asked at most every [`CACHE_FOR`].
async fn kafka_status(console: &Arc<Console>) -> Value {
    let cached = console.kafka.lock().expect("no panics").clone();
    if let Some((_, status)) = cached.filter(|(at, _)| at.elapsed() < CACHE_FOR) {
        return status;
    }
    let client = console.client.clone();
    let asked = tokio::task::spawn_blocking(move || admin::list_topics(&client));
    let brokers = &console.client.brokers;
    let status = match tokio::time::timeout(KAFKA_CHECK, asked).await {
        Ok(Ok(Ok(_))) => json!({"up": true, "error": null, "brokers": brokers}),
        Ok(Ok(Err(err))) => {
            json!({"up": false, "error": format!("{:#}", anyhow::Error::new(err)), "brokers": brokers})
        }
        Ok(Err(err)) => json!({"up": false, "error": err.to_string(), "brokers": brokers}),
        Err(_) => {
            json!({"up": false, "error": format!("no answer from {brokers} within {} s", KAFKA_CHECK.as_secs()), "brokers": brokers})
        }
    };
    *console.kafka.lock().expect("no panics") = Some((Instant::now(), status.clone()));
    status
}

async fn metrics(State(console): Shared) -> Response {
    Json(console.history.snapshot()).into_response()
}

/// The tables, read at most every [`CACHE_FOR`]: the lag page polls them.
async fn list_tables(State(console): Shared) -> Response {
    let mut cached = console.tables.lock().await;
    if let Some((_, tables)) = cached.as_ref().filter(|(at, _)| at.elapsed() < CACHE_FOR) {
        return Json(tables.clone()).into_response();
    }
    let tables = tables::list(&console.locations, &console.storage_options).await;
    let tables = serde_json::to_value(tables).expect("tables serialize");
    *cached = Some((Instant::now(), tables.clone()));
    Json(tables).into_response()
}

fn location<'a>(console: &'a Console, name: &str) -> Option<&'a TableLocation> {
    console.locations.iter().find(|l| l.name == name)
}

fn no_table(name: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no table {name} in the pipeline"),
    )
}

async fn table(State(console): Shared, Path(name): Path<String>) -> Response {
    let Some(location) = location(&console, &name) else {
        return no_table(&name);
    };
    let verifiable = console.pipeline.tables.iter().any(|t| t.name == name);
    match tables::detail(location, &console.storage_options, verifiable).await {
        Ok(detail) => Json(detail).into_response(),
        Err(err) => problem(StatusCode::SERVICE_UNAVAILABLE, "down", err),
    }
}

async fn verify(State(console): Shared, Path(name): Path<String>) -> Response {
    if location(&console, &name).is_none() {
        return no_table(&name);
    }
    let Ok(_running) = console.verifying.try_lock() else {
        return problem(
            StatusCode::CONFLICT,
            "busy",
            "a verification is running; wait for its verdict",
        );
    };
    match tokio::time::timeout(VERIFY_LIMIT, (console.verify)(name)).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(err)) => problem(StatusCode::SERVICE_UNAVAILABLE, "down", format!("{err:#}")),
        Err(_) => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("verify took longer than {} s", VERIFY_LIMIT.as_secs()),
        ),
    }
}

/// Tables and their columns, for the SQL editor.
async fn catalog(State(console): Shared) -> Response {
    let (lake, _unavailable) = sluice_query::Lake::open_available(
        &console.locations,
        &console.storage_options,
        sluice_query::Opening {
            table_limit: Some(tables::TABLE_LIMIT),
            memory_limit: None,
        },
    )
    .await;
    let mut tables = Vec::new();
    for summary in lake.tables() {
        let columns = match lake.schema_of(&summary.name).await {
            Some(schema) => (schema.fields().iter())
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect(),
            None => Vec::new(),
        };
        tables.push(json!({"table": summary.name, "columns": columns}));
    }
    Json(tables).into_response()
}

async fn sql(State(console): Shared, Json(query): Json<Query>) -> Response {
    match console.sql.run(query).await {
        Answer::Json(status, body) => (status, Json(body)).into_response(),
        Answer::Csv(text) => {
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response()
        }
    }
}

async fn side_records(State(console): Shared, Path(kind): Path<String>) -> Response {
    let Some(kind) = SideKind::parse(&kind) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no side topics of kind {kind} (dead_letters, alerts, late)"),
        );
    };
    // One read at a time: the others wait for it and take its answer.
    let mut cache = console.side.lock().await;
    let cached = cache.get(&kind).filter(|(at, _)| at.elapsed() < CACHE_FOR);
    if let Some((_, answer)) = cached {
        return Json(answer.clone()).into_response();
    }
    let topics = kind.topics(&console.pipeline);
    let client = console.client.clone();
    let read = {
        let topics = topics.clone();
        tokio::task::spawn_blocking(move || side::latest(&client, kind, &topics))
    };
    let down =
        |error: String| json!({"up": false, "error": error, "topics": topics, "records": []});
    let answer = match tokio::time::timeout(SIDE_LIMIT, read).await {
        Ok(Ok(Ok(records))) => {
            json!({"up": true, "error": null, "topics": topics, "records": records})
        }
        Ok(Ok(Err(err))) => down(format!("{:#}", anyhow::Error::new(err))),
        Ok(Err(err)) => down(err.to_string()),
        Err(_) => down(format!(
            "no answer from the brokers within {} s",
            SIDE_LIMIT.as_secs()
        )),
    };
    cache.insert(kind, (Instant::now(), answer.clone()));
    Json(answer).into_response()
}

#[cfg(test)]
mod tests;
