//! `sluice probe`: a health check for the container image, which has no curl. It asks one
//! endpoint once and says what it got.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Succeeds when `url` answers 2xx within `timeout`.
pub async fn run(url: &str, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("cannot make an HTTP client")?;
    let answer = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("no answer from {url} within {timeout:?}"))?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {}", body.trim());
    }
    println!("{url}: {status}");
    Ok(())
}
