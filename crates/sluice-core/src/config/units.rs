//! Human-friendly units in the pipeline file: durations as "10s" and sizes as "128MiB".

use std::time::Duration;

/// Parses a duration written for people, such as "500ms", "10s" or "1m 30s".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| {
        format!("expected a duration such as \"10s\" or \"500ms\", got {text:?} ({err})")
    })
}

/// Parses a size written for people, such as "64MiB" or "512KB".
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("expected a size such as \"64MiB\", got {text:?} ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_and_bad_ones_explain_themselves() {
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_size("64MiB").unwrap(), 64 * 1024 * 1024);
        assert!(parse_duration("ten").unwrap_err().contains("\"ten\""));
        assert!(parse_size("lots").unwrap_err().contains("\"lots\""));
    }
}
