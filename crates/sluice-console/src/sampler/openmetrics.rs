//! The samples of a text exposition (OpenMetrics, or Prometheus 0.0.4): one per line
//! `name{label="value",…} value [timestamp]`, comments skipped. Histogram buckets and
//! `_created` samples are left out: the console draws none of them.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

/// The finite samples of `text`; a line that does not parse is skipped.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(sample)
        .filter(|s| !s.name.ends_with("_bucket") && !s.name.ends_with("_created"))
        .filter(|s| s.value.is_finite())
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The labels after a `{`, and what follows the closing `}`.
fn labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, after) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        text = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels_and_escapes() {
        let text = "# HELP sluice_consumer_lag Lag\n\
            # TYPE sluice_consumer_lag gauge\n\
            sluice_consumer_lag{topic=\"sensor_events\",partition=\"0\"} 12\n\
            sluice_assigned_partitions 4\n\
            sluice_records_read_total{topic=\"a\\\"b\\\\c\\nd\"} 1.5e3 1700000000\n\
            sluice_commit_seconds_bucket{table=\"t\",le=\"0.005\"} 1\n\
            sluice_commit_seconds_sum{table=\"t\"} 0.25\n\
            sluice_table_freshness_seconds{table=\"t\"} NaN\n\
            garbage{unclosed=\"x 1\n\
            # EOF\n";
        let samples = parse(text);
        let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            samples,
            vec![
                Sample {
                    name: "sluice_consumer_lag".into(),
                    labels: labels(&[("topic", "sensor_events"), ("partition", "0")]),
                    value: 12.0,
                },
                Sample {
                    name: "sluice_assigned_partitions".into(),
                    labels: Vec::new(),
                    value: 4.0,
                },
                Sample {
                    name: "sluice_records_read_total".into(),
                    labels: labels(&[("topic", "a\"b\\c\nd")]),
                    value: 1500.0,
                },
                Sample {
                    name: "sluice_commit_seconds_sum".into(),
                    labels: labels(&[("table", "t")]),
                    value: 0.25,
                },
            ]
        );
    }

    #[test]
    fn what_the_stream_renders_parses_whole() {
        let metrics = sluice_engine::events::Metrics::shared();
        let text = metrics.render();
        let samples = parse(&text);
        assert!(
            samples
                .iter()
                .any(|s| s.name == "sluice_memory_budget_bytes"),
            "{samples:?}\n{text}"
        );
    }
}
