//! RFC 3339 instants, as SCIM writes `meta` dates and filters compare
//! them, to and from Unix seconds (UTC, proleptic Gregorian).

/// RFC 3339 of Unix seconds, UTC.
pub fn rfc3339(at: i64) -> String {
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// An RFC 3339 instant as Unix seconds.
pub fn unix_seconds(text: &str) -> Option<i64> {
    let t = text.trim();
    let (date, time) = t.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, "Z"),
    };
    let mut c = clock.split(':');
    let (hh, mm): (i64, i64) = (c.next()?.parse().ok()?, c.next()?.parse().ok()?);
    let ss: f64 = c.next().unwrap_or("0").parse().ok()?;
    let offset_secs = match offset.chars().next()? {
        'Z' | 'z' => 0,
        sign => {
            let (oh, om) = offset[1..].split_once(':')?;
            let secs = oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60;
            if sign == '-' { -secs } else { secs }
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 {
        return None;
    }
    // Days from civil (proleptic Gregorian).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "whole seconds of a time of day"
    )]
    let whole = ss as i64;
    Some(days * 86_400 + hh * 3600 + mm * 60 + whole - offset_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_instants() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2011-05-13T04:42:34Z"), Some(1_305_261_754));
        assert_eq!(
            unix_seconds("2011-05-13T06:42:34+02:00"),
            Some(1_305_261_754)
        );
        assert_eq!(unix_seconds("2011-05-13T04:42:34.5Z"), Some(1_305_261_754));
        assert_eq!(unix_seconds("2011-13-13T04:42:34Z"), None);
    }

    #[test]
    fn instants_round_trip() {
        for at in [0, 86_399, 1_305_261_754, 1_800_000_000] {
            assert_eq!(unix_seconds(&rfc3339(at)), Some(at));
        }
    }
}
