//! The router called without a socket: the page and its caching, the access rules, and the
//! SQL answers' kinds and statuses.

use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use sha2::Digest as _;
use sluice_gateway::auth::Keys;
use tower::ServiceExt as _;

use super::*;
use crate::sampler::MetricsSource;

const PIPELINE: &str = r#"
[kafka]
brokers = "127.0.0.1:9"
group = "g"

[[streams]]
name = "s"
topic = "s"
fields = [{ name = "ts", type = "timestamp", required = true }]
event_time = "ts"

[[tables]]
name = "t"
from = "s"
uri = "/nonexistent/t"
"#;

fn router_with(keys: Option<Keys>) -> Router {
    let pipeline = Pipeline::parse(Path::new("p.toml"), PIPELINE, |name| {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            name.to_string(),
        ))
    })
    .unwrap();
    let options = ConsoleOptions {
        client: ClientOptions::new("127.0.0.1:9"),
        pipeline,
        storage_options: HashMap::new(),
        metrics: MetricsSource::None,
        verify: Arc::new(|_| Box::pin(async { Ok(json!({"clean": true})) })),
        keys,
        sql: sluice_query::read_only::Limits {
            timeout: Duration::from_secs(10),
            rows: 10,
        },
        sql_memory: 64 << 20,
    };
    let history = History::start(MetricsSource::None, Default::default());
    super::router(Console::new(options, history))
}

fn console() -> Router {
    router_with(None)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "127.0.0.1:8090")
        .body(Body::empty())
        .unwrap()
}

fn post_json(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "127.0.0.1:8090")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn answer(router: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = router.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

async fn json_answer(router: Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = answer(router, request).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_page_is_served_with_its_policy_and_not_sent_again_when_unchanged() {
    let (status, headers, body) = answer(console(), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("<title>sluice console")
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let etag = headers[header::ETAG].clone();
    let again = Request::get("/assets/app.js")
        .header(
            header::IF_NONE_MATCH,
            crate::assets::find("app.js").unwrap().etag.as_str(),
        )
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = answer(console(), again).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(
        etag,
        crate::assets::find("index.html").unwrap().etag.as_str()
    );
    let (status, _, _) = answer(console(), get("/assets/../Cargo.toml")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_calls_naming_another_host_or_without_the_key_are_refused() {
    let rebound = Request::get("/api/overview")
        .header(header::HOST, "evil.example:8090")
        .body(Body::empty())
        .unwrap();
    let (status, body) = json_answer(console(), rebound).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let keys = Keys::new(vec![sluice_core::config::ApiKey {
        name: "ops".into(),
        sha256: sha2::Sha256::digest(b"sk_ok").into(),
        streams: None,
    }]);
    let (status, _) = json_answer(router_with(Some(keys)), get("/api/catalog")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = answer(router_with(None), get("/")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_post_that_is_not_json_is_refused_before_it_runs() {
    let form = Request::post("/api/tables/t/verify")
        .header(header::HOST, "127.0.0.1:8090")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("a=1"))
        .unwrap();
    let (status, body) = json_answer(console(), form).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = json_answer(console(), post_json("/api/tables/t/verify", json!({}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"clean": true})));
    let (status, body) = json_answer(console(), post_json("/api/tables/x/verify", json!({}))).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn sql_answers_rows_refusals_and_errors_by_kind() {
    let ask = |sql: &str| post_json("/api/sql", json!({"sql": sql}));
    let (status, body) = json_answer(console(), ask("select 1 as one, 'x' as s")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([{"one": 1, "s": "x"}]));
    assert_eq!(body["columns"][0], json!({"name": "one", "type": "Int64"}));
    let (status, body) = json_answer(console(), ask("CREATE TABLE x AS SELECT 1")).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("refused"))
    );
    let (status, body) = json_answer(console(), ask("select * from t")).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sql"))
    );
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("table t could not be opened"), "{error}");
    let csv = post_json(
        "/api/sql",
        json!({"sql": "select 1 as one", "format": "csv"}),
    );
    let (status, headers, body) = answer(console(), csv).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(String::from_utf8(body).unwrap(), "one\n1\n");
}

#[tokio::test]
async fn an_unknown_call_or_side_kind_is_a_json_404() {
    let (status, body) = json_answer(console(), get("/api/nothing")).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = json_answer(console(), get("/api/side/other")).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}
