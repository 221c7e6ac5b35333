//! The machine-readable output: one `figure k=v ... metric=M value=V` line per measured value.

use crate::stats::Latencies;

/// Prints figures that share a workload name, its parameters and user tags.
pub struct Figures {
    prefix: String,
}

impl Figures {
    /// `params` describe the run (clients, pipeline, ...); `tags` are the user's `k=v` labels.
    pub fn new(workload: &str, params: &[(&str, String)], tags: &[String]) -> Figures {
        let mut prefix = format!("figure workload={workload}");
        for (k, v) in params {
            prefix.push_str(&format!(" {k}={v}"));
        }
        for tag in tags {
            prefix.push(' ');
            prefix.push_str(tag);
        }
        Figures { prefix }
    }

    /// The line for one figure (whole numbers without decimals, others with two).
    pub fn line(&self, metric: &str, value: f64) -> String {
        if value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{} metric={metric} value={}", self.prefix, value as i64)
        } else {
            format!("{} metric={metric} value={value:.2}", self.prefix)
        }
    }

    pub fn emit(&self, metric: &str, value: f64) {
        println!("{}", self.line(metric, value));
    }

    /// Emits `<name>_p50_us`, `_p99_us`, `_p999_us` and `_max_us` (nothing when empty).
    pub fn latencies(&self, name: &str, lat: &Latencies) {
        if lat.count() == 0 {
            return;
        }
        self.emit(&format!("{name}_p50_us"), lat.percentile_us(50.0));
        self.emit(&format!("{name}_p99_us"), lat.percentile_us(99.0));
        self.emit(&format!("{name}_p999_us"), lat.percentile_us(99.9));
        self.emit(&format!("{name}_max_us"), lat.max_us());
    }
}

/// Checks a user tag is a single `key=value` word, so lines stay parseable.
pub fn valid_tag(tag: &str) -> bool {
    let mut parts = tag.splitn(2, '=');
    let key = parts.next().unwrap_or("");
    let value = parts.next();
    !key.is_empty()
        && value.is_some()
        && !tag.chars().any(char::is_whitespace)
        && !matches!(key, "metric" | "value" | "workload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_params_tags_metric_and_value() {
        let f = Figures::new(
            "xadd",
            &[("clients", "50".into())],
            &["server=redis".into()],
        );
        assert_eq!(
            f.line("ops_per_sec", 1234.0),
            "figure workload=xadd clients=50 server=redis metric=ops_per_sec value=1234"
        );
        assert!(f.line("p50_us", 12.345).ends_with("value=12.35"));
        assert!(valid_tag("mode=always"));
        assert!(!valid_tag("mode"));
        assert!(!valid_tag("a=b c"));
        assert!(!valid_tag("metric=x"));
    }
}
