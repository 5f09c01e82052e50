//! What an orchestrator and Prometheus ask a stream process, over HTTP: `/metrics` (the
//! [`events`](crate::events) in the OpenMetrics text format when the scraper asks for it, as
//! Prometheus does, else in the Prometheus text format 0.0.4), `/healthz` (liveness: the loop
//! keeps turning) and `/readyz` (readiness: the member holds partitions and its commits
//! succeed). Answers come from atomics the loop updates, so a scrape during a rebalance or a
//! refused commit answers at once and never waits for the loop.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::events::Metrics;

/// The address `--metrics-listen` defaults to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// Binds `listen` before anything connects, so a taken port fails the start with its address.
pub async fn bind(listen: &str) -> Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!(
            "metrics cannot listen on {listen} (--metrics-listen or SLUICE_METRICS_LISTEN moves it)"
        )
    })
}

/// Serves the three endpoints on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "Serving /metrics, /healthz and /readyz.");
    axum::serve(listener, routes(metrics))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .with_context(|| format!("serving metrics on {address}"))
}

fn routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = metrics.render();
    if accept.is_some_and(|accept| accept.contains("application/openmetrics-text")) {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        return ([(header::CONTENT_TYPE, content_type)], openmetrics).into_response();
    }
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let text = prometheus_text(&openmetrics);
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// The OpenMetrics exposition `openmetrics` in the Prometheus text format 0.0.4: a counter
/// family is named with its samples' `_total` suffix, and there is no `# EOF` line. The
/// samples are the same.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 8 * counters.len());
    for line in openmetrics.lines().filter(|line| *line != "# EOF") {
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let name = rest.split(' ').next().unwrap_or_default();
                let suffix = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                text.push_str(prefix);
                text.push_str(name);
                text.push_str(suffix);
                text.push_str(&rest[name.len()..]);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.live() {
        true => (StatusCode::OK, "ok\n").into_response(),
        false => {
            let limit = crate::events::LIVENESS_LIMIT;
            let why = format!("the stream loop has not turned for over {limit:?}\n");
            (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
        }
    }
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.ready() {
        true => (StatusCode::OK, "ready\n").into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no partitions assigned, or commits failing\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::prometheus_text;

    #[test]
    fn counters_take_their_total_suffix_and_the_eof_line_goes() {
        let openmetrics = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n\
                           # HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
