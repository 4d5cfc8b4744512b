//! The one reading of the wall clock. Domain code takes `now` as a
//! parameter; the edges of each service read it here. A clock before 1970
//! reads as 0 rather than failing: every expiry check then fails closed.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Unix seconds.
pub fn unix_seconds() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

/// Unix milliseconds (sliding windows).
pub fn unix_millis() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Unix seconds with a fraction (Cedar's `now` context value, log stamps).
pub fn unix_seconds_f64() -> f64 {
    since_epoch().as_secs_f64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readings_agree() {
        let (s, ms, f) = (
            super::unix_seconds(),
            super::unix_millis(),
            super::unix_seconds_f64(),
        );
        assert!(s > 1_700_000_000, "{s}");
        assert!((ms / 1000 - s).abs() <= 1);
        #[allow(clippy::cast_possible_truncation)]
        let whole = f as i64;
        assert!((whole - s).abs() <= 1);
    }
}
