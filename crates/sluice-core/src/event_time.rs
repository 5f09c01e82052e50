//! The `date` and `hour` columns tables are partitioned by, derived from each row's event time
//! (never from arrival time, so a replay lands rows in the same directories).

use arrow::array::{Date32Array, Int32Array, TimestampMicrosecondArray};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// UTC date (days since the epoch) and hour of each event time; nulls stay null.
pub fn date_and_hour(event_time: &TimestampMicrosecondArray) -> (Date32Array, Int32Array) {
    let date = event_time
        .iter()
        .map(|ts| ts.map(|us| us.div_euclid(MICROS_PER_DAY) as i32))
        .collect();
    let hour = event_time
        .iter()
        .map(|ts| ts.map(|us| (us.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR) as i32))
        .collect();
    (date, hour)
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;

    #[test]
    fn dates_and_hours_are_utc_and_floor_before_the_epoch() {
        // 2026-11-22T10:59:59.999999Z, 1970-01-01T00:00Z and 1969-12-31T23:00Z.
        let ts = TimestampMicrosecondArray::from(vec![
            Some(1_795_345_199_999_999),
            Some(0),
            Some(-MICROS_PER_HOUR),
            None,
        ]);
        let (date, hour) = date_and_hour(&ts);
        assert_eq!(date.value(0), 20_779); // days from 1970-01-01 to 2026-11-22
        assert_eq!(hour.value(0), 10);
        assert_eq!((date.value(1), hour.value(1)), (0, 0));
        assert_eq!((date.value(2), hour.value(2)), (-1, 23));
        assert!(date.is_null(3) && hour.is_null(3));
    }
}
