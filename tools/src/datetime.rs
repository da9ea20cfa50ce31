//! Timestamps on the command line and in tables: milliseconds since the Unix epoch, parsed from
//! either a number or an ISO-8601 date-time, and formatted back as ISO-8601 UTC.
//!
//! Accepted forms: `1700000000000` (ms), `2024-05-01`, `2024-05-01T12:30`, `2024-05-01T12:30:15`,
//! `2024-05-01T12:30:15.250`, each optionally followed by `Z` or an offset `+02:00` / `-0500`; a
//! space may replace the `T`. Without an offset the time is UTC. Dates use the proleptic
//! Gregorian calendar (days-from-civil arithmetic). Pure functions.

use anyhow::{Context, Result, bail};

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_DAY: i64 = 86_400 * MS_PER_SECOND;

/// Parses a timestamp argument into milliseconds since the epoch.
///
/// # Errors
/// When `text` is neither a number nor a date-time of the accepted forms.
pub(crate) fn parse_timestamp_ms(text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    parse_iso(text).with_context(|| {
        format!("invalid timestamp {text:?}: expected milliseconds or a date-time like 2024-05-01T12:30:00Z")
    })
}

fn parse_iso(text: &str) -> Result<i64> {
    let (date, rest) = text.split_at(text.find(['T', 't', ' ']).unwrap_or(text.len()));
    let days = parse_date(date)?;
    let rest = rest.get(1..).unwrap_or("");
    let (time, offset_ms) = split_offset(rest)?;
    let time_ms = if time.is_empty() { 0 } else { parse_time(time)? };
    Ok(days * MS_PER_DAY + time_ms - offset_ms)
}

fn parse_date(date: &str) -> Result<i64> {
    let fields: Vec<&str> = date.split('-').collect();
    let [year, month, day] = fields.as_slice() else { bail!("date must be YYYY-MM-DD") };
    let year: i64 = number(year, 4)?;
    let month: i64 = number(month, 2)?;
    let day: i64 = number(day, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        bail!("no such date {date}");
    }
    Ok(days_from_civil(year, month, day))
}

/// Splits `12:30:00+02:00` into the time and the offset in ms (east of UTC is positive).
fn split_offset(rest: &str) -> Result<(&str, i64)> {
    if let Some(time) = rest.strip_suffix(['Z', 'z']) {
        return Ok((time, 0));
    }
    let Some(position) = rest.rfind(['+', '-']) else { return Ok((rest, 0)) };
    let (time, offset) = rest.split_at(position);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits: String = offset[1..].chars().filter(|character| *character != ':').collect();
    if digits.len() != 4 && digits.len() != 2 {
        bail!("offset must be +HH:MM");
    }
    let hours: i64 = number(&digits[..2], 2)?;
    let minutes: i64 = if digits.len() == 4 { number(&digits[2..], 2)? } else { 0 };
    if hours > 23 || minutes > 59 {
        bail!("offset {offset} out of range");
    }
    Ok((time, sign * (hours * 60 + minutes) * 60 * MS_PER_SECOND))
}

fn parse_time(time: &str) -> Result<i64> {
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let fields: Vec<&str> = clock.split(':').collect();
    let (hour, minute, second) = match fields.as_slice() {
        [hour, minute] => (number(hour, 2)?, number(minute, 2)?, 0),
        [hour, minute, second] => (number(hour, 2)?, number(minute, 2)?, number(second, 2)?),
        _ => bail!("time must be HH:MM[:SS[.fff]]"),
    };
    if hour > 23 || minute > 59 || second > 60 {
        bail!("time {time} out of range");
    }
    let mut fraction_ms = 0;
    if !fraction.is_empty() {
        if !fraction.chars().all(|character| character.is_ascii_digit()) {
            bail!("fraction of a second must be digits");
        }
        // Keep milliseconds: pad or cut the fraction to three digits.
        let millis: String = fraction.chars().chain(std::iter::repeat('0')).take(3).collect();
        fraction_ms = millis.parse::<i64>()?;
    }
    Ok(((hour * 60 + minute) * 60 + second) * MS_PER_SECOND + fraction_ms)
}

fn number(text: &str, digits: usize) -> Result<i64> {
    if text.len() != digits || !text.chars().all(|character| character.is_ascii_digit()) {
        bail!("expected {digits} digits, got {text:?}");
    }
    Ok(text.parse()?)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The Gregorian date of a day count since 1970-01-01 (the inverse, `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The wall clock in milliseconds since the epoch, for record timestamps and lag reports.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Formats milliseconds since the epoch as `2024-05-01T12:30:15.250Z`; negative values (Kafka's
/// "no timestamp") as `-`.
pub(crate) fn format_timestamp_ms(ms: i64) -> String {
    if ms < 0 {
        return "-".to_owned();
    }
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let of_day = ms.rem_euclid(MS_PER_DAY);
    let (hour, minute) = (of_day / 3_600_000, of_day / 60_000 % 60);
    let (second, millis) = (of_day / 1_000 % 60, of_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_milliseconds() {
        assert_eq!(parse_timestamp_ms("1700000000000").expect("parses"), 1_700_000_000_000);
    }

    #[test]
    fn iso_forms_agree() {
        let expected = 1_714_566_615_250; // 2024-05-01T12:30:15.250Z
        for text in [
            "2024-05-01T12:30:15.250Z",
            "2024-05-01T12:30:15.25",
            "2024-05-01 12:30:15.250",
            "2024-05-01T14:30:15.250+02:00",
            "2024-05-01T07:30:15.250-0500",
        ] {
            assert_eq!(parse_timestamp_ms(text).expect(text), expected, "{text}");
        }
        assert_eq!(parse_timestamp_ms("2024-05-01").expect("date"), 1_714_521_600_000);
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00").expect("epoch"), 0);
    }

    #[test]
    fn invalid_dates_are_rejected() {
        for text in ["2023-02-29", "2024-13-01", "2024-05-01T25:00", "yesterday", "2024-5-1"] {
            assert!(parse_timestamp_ms(text).is_err(), "{text}");
        }
        assert!(parse_timestamp_ms("2024-02-29").is_ok());
    }

    #[test]
    fn formatting_inverts_parsing() {
        for ms in [0, 1_714_566_615_250, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_timestamp_ms(&format_timestamp_ms(ms)).expect("round trip"), ms);
        }
        assert_eq!(format_timestamp_ms(1_714_566_615_250), "2024-05-01T12:30:15.250Z");
        assert_eq!(format_timestamp_ms(-1), "-");
    }
}
