//! The common form of an RFC 3339 timestamp, read without arrow's general parser.
//!
//! Nearly every event time arrives as `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Arrow's
//! `string_to_datetime` takes many more forms and was 4 % of a load's CPU; this reads that one
//! form and leaves anything else (other separators, leap seconds, no zone, …) to arrow, so what
//! is accepted and what it means do not change. The tests compare the two.

use chrono::{Datelike, NaiveDate};

/// 1970-01-01 as chrono numbers days of the common era (0001-01-01 is day 1).
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Microseconds since the Unix epoch of `text` in the common form (fractions past
/// microseconds are cut, as arrow's are), or `None` when `text` is not in that form or names
/// no real date or time.
pub(super) fn micros(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        digits(&bytes[0..4])? as i32,
        digits(&bytes[5..7])?,
        digits(&bytes[8..10])?,
    )?;
    let (hour, minute, second) = (
        digits(&bytes[11..13])?,
        digits(&bytes[14..16])?,
        digits(&bytes[17..19])?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (fraction_us, zone) = match bytes[19] {
        b'.' => {
            let count = bytes[20..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if !(1..=9).contains(&count) {
                return None;
            }
            let fraction = &bytes[20..20 + count];
            let micros = fraction[..count.min(6)]
                .iter()
                .fold(0, |n, d| n * 10 + i64::from(d - b'0'))
                * 10_i64.pow(6 - count.min(6) as u32);
            (micros, &bytes[20 + count..])
        }
        _ => (0, &bytes[19..]),
    };
    let offset_s = match zone {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_s;
    Some(seconds * 1_000_000 + fraction_us)
}

/// The number written by `ascii` in decimal digits only.
fn digits(ascii: &[u8]) -> Option<u32> {
    ascii.iter().try_fold(0, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use arrow::compute::kernels::cast_utils::string_to_datetime;
    use proptest::prelude::*;

    use super::*;

    fn arrow_micros(text: &str) -> Option<i64> {
        string_to_datetime(&chrono::Utc, text)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn the_epoch_is_counted_from_the_common_era_as_chrono_counts() {
        assert_eq!(
            NaiveDate::from_num_days_from_ce_opt(UNIX_EPOCH_DAYS_FROM_CE as i32),
            NaiveDate::from_ymd_opt(1970, 1, 1)
        );
    }

    #[test]
    fn common_forms_are_read_here_and_agree_with_arrow() {
        for text in [
            "2026-11-22T00:00:00Z",
            "2026-11-22T00:00:00.003600Z",
            "2026-11-22T23:59:59.9Z",
            "2026-11-22T10:30:00.123456789+05:30",
            "2024-02-29T12:00:00-08:00",
            "1969-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let ours = micros(text);
            assert!(ours.is_some(), "{text} should take the fast path");
            assert_eq!(ours, arrow_micros(text), "{text}");
        }
    }

    #[test]
    fn other_forms_and_impossible_times_are_left_to_arrow() {
        for text in [
            "2026-11-22 00:00:00Z",
            "2026-11-22T00:00:00",
            "2026-11-22T00:00:00.Z",
            "2026-11-22T00:00:00.1234567890Z",
            "2026-11-22T00:00:60Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T00:00:00+24:00",
            "2026-11-22T00:00:00+0100",
            "2026-11-22T00:00:00ZZ",
            "+2026-11-22T00:00:00Z",
            "2026-1a-22T00:00:00Z",
        ] {
            assert_eq!(micros(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn real_times_in_the_common_form_are_read_here_as_arrow_reads_them(
            year in 0u32..10_000,
            month in 0u32..14,
            day in 0u32..33,
            hour in 0u32..26,
            minute in 0u32..61,
            second in 0u32..62,
            fraction in proptest::option::of("[0-9]{1,10}"),
            offset in proptest::option::of((prop_oneof![Just('+'), Just('-')], 0u32..26, 0u32..61)),
        ) {
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{}{}",
                fraction.as_ref().map(|f| format!(".{f}")).unwrap_or_default(),
                offset.map_or("Z".to_string(), |(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
            );
            let real = NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
                && hour <= 23 && minute <= 59 && second <= 59
                && fraction.as_ref().is_none_or(|f| f.len() <= 9)
                && offset.is_none_or(|(_, h, m)| h <= 23 && m <= 59);
            let ours = micros(&text);
            prop_assert_eq!(ours.is_some(), real, "{}", text);
            if ours.is_some() {
                prop_assert_eq!(ours, arrow_micros(&text), "{}", text);
            }
        }
    }
}
