//! The Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics.
//!
//! prometheus-client writes OpenMetrics only; the two differ in a few rules, which
//! [`to_prometheus`] rewrites: a counter's `# TYPE`/`# HELP` name its `_total` samples, an
//! `info` metric is a gauge named `<name>_info`, `unknown` is `untyped`, and `# UNIT`,
//! `# EOF` and exemplars do not exist.

/// The content type of [`to_prometheus`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's `Accept` header asks for OpenMetrics (with a non-zero quality).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// Rewrites an OpenMetrics exposition (as prometheus-client encodes it) into the
/// Prometheus text format 0.0.4.
pub fn to_prometheus(openmetrics: &str) -> String {
    // Families' types first: a family's HELP line comes before its TYPE line.
    let mut types = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name.to_string(), kind.trim().to_string());
        }
    }
    let renamed = |name: &str| -> String {
        match types.get(name).map(String::as_str) {
            Some("counter") if !name.ends_with("_total") => format!("{name}_total"),
            Some("info") => format!("{name}_info"),
            _ => name.to_string(),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let kind = match kind.trim() {
                "info" | "stateset" => "gauge",
                "gaugehistogram" => "histogram",
                "unknown" => "untyped",
                other => other,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
        } else if line.starts_with('#') {
            continue;
        } else {
            // A sample; an exemplar (` # {...} value`) follows the value in OpenMetrics.
            let sample = line.split(" # ").next().unwrap_or(line);
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "\
# HELP appliance_http_requests HTTP requests answered.
# TYPE appliance_http_requests counter
appliance_http_requests_total{route=\"healthz\",status=\"200\"} 2
# HELP process_cpu_seconds User and system CPU time spent.
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
process_cpu_seconds_total 0.5 # {trace=\"x\"} 1.0
# HELP appliance_build Build information.
# TYPE appliance_build info
appliance_build_info{version=\"0.1.0\"} 1
# HELP appliance_calls_active Calls in progress.
# TYPE appliance_calls_active gauge
appliance_calls_active 0
# HELP appliance_latency_seconds Latency.
# TYPE appliance_latency_seconds histogram
appliance_latency_seconds_sum 0.0
appliance_latency_seconds_count 0
appliance_latency_seconds_bucket{le=\"+Inf\"} 0
# EOF
";

    #[test]
    fn openmetrics_becomes_the_0_0_4_text_format() {
        let text = to_prometheus(OPENMETRICS);
        // Gauges and histograms are the same in both formats.
        let same = &OPENMETRICS[OPENMETRICS.find("# HELP appliance_calls_active").unwrap()..];
        let expected = format!(
            "\
# HELP appliance_http_requests_total HTTP requests answered.
# TYPE appliance_http_requests_total counter
appliance_http_requests_total{{route=\"healthz\",status=\"200\"}} 2
# HELP process_cpu_seconds_total User and system CPU time spent.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 0.5
# HELP appliance_build_info Build information.
# TYPE appliance_build_info gauge
appliance_build_info{{version=\"0.1.0\"}} 1
{}",
            same.strip_suffix("# EOF\n").unwrap()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0, text/plain"
        )));
    }
}
