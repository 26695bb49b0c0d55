//! `agentid_gateway_revocation_feed_version{issuer}` and
//! `agentid_gateway_revocation_feed_age_seconds{issuer}` (since the last verified refresh),
//! read from the pollers when scraped (docs/gateway.md §19.4).

use super::Feeds;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;

pub struct FeedFigures(pub Arc<Feeds>);

impl std::fmt::Debug for FeedFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedFigures")
    }
}

impl Collector for FeedFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.statuses();
        {
            let mut family = encoder.encode_descriptor(
                "agentid_gateway_revocation_feed_version",
                "Revocation feed version held (-1 before the first).",
                None,
                MetricType::Gauge,
            )?;
            for s in &all {
                let v = s.version.unwrap_or(-1);
                ConstGauge::new(v)
                    .encode(family.encode_family(&[("issuer", s.issuer.as_str())])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "agentid_gateway_revocation_feed_age_seconds",
                "Seconds since the last verified revocation feed (-1 before the first).",
                None,
                MetricType::Gauge,
            )?;
            for s in &all {
                let age = s.last_success_age.map_or(-1.0, |a| a.as_secs_f64());
                ConstGauge::new(age)
                    .encode(family.encode_family(&[("issuer", s.issuer.as_str())])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "agentid_gateway_revocation_feed_failures",
            "Revocation feed refreshes that failed.",
            None,
            MetricType::Counter,
        )?;
        for s in &all {
            ConstCounter::new(s.failures)
                .encode(family.encode_family(&[("issuer", s.issuer.as_str())])?)?;
        }
        Ok(())
    }
}
