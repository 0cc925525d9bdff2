//! The heartbeat's `/rate` admin API, which drives the pipeline without the gateway in the path.

use serde_json::json;
use std::time::Duration;

pub struct Heartbeat {
    http: reqwest::Client,
    url: String,
}

impl Heartbeat {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build()?;
        Ok(Self { http, url: format!("{}/rate", base.trim_end_matches('/')) })
    }

    pub async fn rate(&self) -> anyhow::Result<u64> {
        let v: serde_json::Value = self.http.get(&self.url).send().await?.error_for_status()?.json().await?;
        v["beats_per_second"].as_u64().ok_or_else(|| anyhow::anyhow!("heartbeat answered {v} for its rate"))
    }

    pub async fn set(&self, beats_per_second: u64) -> anyhow::Result<()> {
        self.http
            .put(&self.url)
            .json(&json!({ "beats_per_second": beats_per_second }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}
