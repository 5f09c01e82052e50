//! `[[alerts]]`: rules whose SQL condition is checked against every event of a stream.

use std::collections::HashSet;

use super::{Problems, Stream, check_name_and_topic, check_stream_named, check_unique, entry_path};
use crate::config::file::AlertSection;
use crate::expressions::Predicate;

/// A validated alert rule.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The rule's name.
    pub name: String,
    /// The stream it checks.
    pub from: String,
    /// The condition, compiled against the stream's table schema.
    pub when: Predicate,
    /// The topic its alerts go to.
    pub topic: String,
}

pub(super) fn validate(
    raw: &[AlertSection],
    streams: &[Stream],
    stream_names: &HashSet<&str>,
    problems: &mut Problems,
) -> Vec<Alert> {
    let alerts = raw
        .iter()
        .enumerate()
        .filter_map(|(index, alert)| validate_one(index, alert, streams, stream_names, problems))
        .collect();
    check_unique("alerts", raw.iter().map(|a| a.name.as_str()), problems);
    alerts
}

fn validate_one(
    index: usize,
    raw: &AlertSection,
    streams: &[Stream],
    stream_names: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<Alert> {
    let at = entry_path("alerts", index, &raw.name);
    check_name_and_topic(&at, &raw.name, &raw.topic, problems);
    check_stream_named(&at, &raw.from, stream_names, problems);
    // A stream that failed its own validation is reported there.
    let stream = streams.iter().find(|s| s.name == raw.from)?;
    if raw.topic == stream.topic {
        problems.add(
            format!("{at}.topic"),
            "expected a topic other than the stream's own (alerts would be read back as events)",
        );
    }
    let when = Predicate::compile(&raw.when, &stream.schema.table_schema())
        .map_err(|err| problems.add(format!("{at}.when"), err))
        .ok()?;
    Some(Alert {
        name: raw.name.clone(),
        from: raw.from.clone(),
        when,
        topic: raw.topic.clone(),
    })
}
