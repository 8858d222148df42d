//! The reliability sections of the file: the retry budget and passive ejection, each read
//! into typed values with the library's defaults.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use tower_balancer::health::{FailurePercentage, OutlierConfig};

use super::values::{duration, fraction, timeout};

/// `[balancer.retry_budget]`: how many retries of requests that may have been processed
/// the balancer allows (retries after connect failures spend none).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetSection {
    /// Retries as a fraction of recent requests (default 0.2; 0.0–1000.0).
    #[serde(default = "budget_ratio", deserialize_with = "ratio")]
    pub ratio: f32,
    /// Retries allowed every second on top (default 10).
    #[serde(default = "budget_floor")]
    pub per_second: u32,
    /// The window requests are counted over (default 10 s; 1–60 s): `per_second × window`
    /// retries may be spent in one burst.
    #[serde(default = "ten_seconds", deserialize_with = "window")]
    pub window: Duration,
}

/// `[balancer.ejection]`: passive outlier ejection (Envoy's outlier detection).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EjectionSection {
    /// Connect failures in a row that eject a member (default 3; 0 off).
    #[serde(default = "three")]
    pub connect_failures: u32,
    /// Failures of any kind in a row (timeouts, resets, 5xx) that eject one (default 5; 0 off).
    #[serde(default = "five")]
    pub consecutive_failures: u32,
    /// The first ejection's length, multiplied by how often the member was ejected
    /// (default 30 s).
    #[serde(default = "thirty_seconds", deserialize_with = "timeout")]
    pub base_time: Duration,
    /// The longest ejection (default 300 s).
    #[serde(default = "five_minutes", deserialize_with = "duration")]
    pub max_time: Duration,
    /// The most members ejected at once, as a fraction; one always may be (default 0.1).
    #[serde(default = "tenth", deserialize_with = "fraction")]
    pub max_fraction: f64,
    /// Ejects a member whose share of failed requests over `failure_percentage_interval`
    /// reaches this many percent (1–100; default 0, off: Envoy's `failure_percentage`).
    #[serde(default, deserialize_with = "percent")]
    pub failure_percentage: u8,
    /// The fewest requests a member must have had in the interval for its share to count
    /// (default 50).
    #[serde(default = "fifty")]
    pub failure_percentage_requests: u64,
    /// How often the shares are taken (default 10 s; at least 100 ms).
    #[serde(default = "ten_seconds", deserialize_with = "look_interval")]
    pub failure_percentage_interval: Duration,
}

impl Default for EjectionSection {
    fn default() -> Self {
        Self {
            connect_failures: three(),
            consecutive_failures: five(),
            base_time: thirty_seconds(),
            max_time: five_minutes(),
            max_fraction: tenth(),
            failure_percentage: 0,
            failure_percentage_requests: fifty(),
            failure_percentage_interval: ten_seconds(),
        }
    }
}

const fn budget_ratio() -> f32 {
    0.2
}
const fn budget_floor() -> u32 {
    10
}
const fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
const fn three() -> u32 {
    3
}
const fn five() -> u32 {
    5
}
const fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
const fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
const fn fifty() -> u64 {
    50
}
const fn tenth() -> f64 {
    0.1
}

impl EjectionSection {
    /// The library's outlier settings these keys describe.
    pub(crate) const fn outlier_config(&self) -> OutlierConfig {
        let config = OutlierConfig::new()
            .consecutive_connect_failures(self.connect_failures)
            .consecutive_failures(self.consecutive_failures)
            .ejection_time(self.base_time, self.max_time);
        if self.failure_percentage == 0 {
            return config;
        }
        config.failure_percentage(FailurePercentage::new(
            self.failure_percentage,
            self.failure_percentage_requests,
            self.failure_percentage_interval,
        ))
    }
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let r = f32::deserialize(d)?;
    if !(0.0..=1000.0).contains(&r) {
        return Err(de::Error::custom(format!(
            "{r} is not a ratio from 0.0 to 1000.0"
        )));
    }
    Ok(r)
}

fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let p = u64::deserialize(d)?;
    u8::try_from(p)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| de::Error::custom(format!("{p} is not a percentage from 0 (off) to 100")))
}

fn look_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = duration(d)?;
    if t < Duration::from_millis(100) {
        return Err(de::Error::custom(
            "the interval is at least 100 ms (each look reads every member's counters)",
        ));
    }
    Ok(t)
}

fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let w = duration(d)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&w) {
        return Err(de::Error::custom("the window is from 1 s to 60 s"));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tunnel_idle_timeout_is_five_minutes_unless_set() {
        let idle = |text: &str| {
            let config =
                super::super::ConfigFile::from_toml(text, std::path::Path::new("lb.toml")).unwrap();
            config.build().unwrap().lanes[0].stack.forward.tunnel_idle()
        };
        let good = super::super::tests::GOOD;
        assert_eq!(idle(good), std::time::Duration::from_secs(300));
        let set = good.replace(
            "timeout = \"30s\"\n",
            "timeout = \"30s\"\ntunnel_idle_timeout = \"1h\"\n",
        );
        assert_eq!(idle(&set), std::time::Duration::from_secs(3600));
    }

    #[test]
    fn an_interval_under_100_ms_is_refused_at_its_key() {
        let good = super::super::tests::GOOD;
        let e = super::super::tests::err(&format!(
            "{good}\n[balancer.ejection]\nfailure_percentage_interval = \"1ms\"\n"
        ));
        assert_eq!(
            e.key(),
            Some("balancer.ejection.failure_percentage_interval")
        );
        assert!(e.to_string().contains("at least 100 ms"), "{e}");
    }

    #[test]
    fn the_failure_percentage_rule_is_off_unless_set_and_built_as_written() {
        let rule = |text: &str| {
            let config =
                super::super::ConfigFile::from_toml(text, std::path::Path::new("lb.toml")).unwrap();
            let built = config.build().unwrap();
            built.lanes[0].stack.outliers.failure_percentage_rule()
        };
        let good = super::super::tests::GOOD;
        assert_eq!(rule(good), None);
        let set = format!(
            "{good}\n[balancer.ejection]\nfailure_percentage = 30\n\
             failure_percentage_requests = 20\nfailure_percentage_interval = \"5s\"\n"
        );
        assert_eq!(
            rule(&set),
            Some(tower_balancer::health::FailurePercentage::new(
                30,
                20,
                std::time::Duration::from_secs(5)
            ))
        );
        // the defaults of the other two keys are Envoy's
        let only = format!("{good}\n[balancer.ejection]\nfailure_percentage = 85\n");
        assert_eq!(
            rule(&only),
            Some(tower_balancer::health::FailurePercentage::new(
                85,
                50,
                std::time::Duration::from_secs(10)
            ))
        );
    }
}
