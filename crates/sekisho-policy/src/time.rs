//! Wall-clock timestamps passed in by the caller, and parsing of `expires`.

use time::format_description::well_known::Rfc3339;
use time::macros::{format_description, offset};
use time::{Date, OffsetDateTime, Time};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Nanoseconds since the Unix epoch (wall clock), passed in by the caller.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The moment in Japan time, RFC 3339 with microseconds
    /// (`2027-03-31T23:59:59.500000+09:00`).
    pub fn to_jst(self) -> String {
        let t = jst(self);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+09:00",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }

    /// An exception's expiry as people write it: the last valid day (`2027-03-31`) when
    /// the moment is the end of a day in Japan time, otherwise the RFC 3339 time in
    /// Japan time (`2027-03-31T18:00:00+09:00`).
    pub fn expiry_text(self) -> String {
        let t = jst(self);
        if t.time() == Time::MIDNIGHT {
            let day = t.date().previous_day().unwrap_or(t.date());
            return format!("{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day());
        }
        let frac = if t.nanosecond() == 0 { String::new() } else { format!(".{:09}", t.nanosecond()) };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}+09:00",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// The moment as a date-time at UTC+09:00.
fn jst(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset!(+9))
}

/// Parse an exception's `expires`: a date (valid through the end of that day in
/// Japan time, UTC+09:00) or an RFC 3339 date-time with an offset.
pub(crate) fn parse_expires(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "`expires` {text:?} is neither a date (\"2027-03-31\": valid through the end of that \
             day, Japan time) nor an RFC 3339 date-time with an offset (\"2027-03-31T18:00:00+09:00\")"
        )
    };
    let moment = match Date::parse(text, format_description!("[year]-[month]-[day]")) {
        Ok(date) => date.next_day().ok_or_else(bad)?.with_time(Time::MIDNIGHT).assume_offset(offset!(+9)),
        Err(_) => OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?,
    };
    let nanos = moment.unix_timestamp_nanos();
    u64::try_from(nanos)
        .map(Timestamp)
        .map_err(|_| format!("`expires` {text:?} lies before 1970 or after 2554; give a realistic date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_means_end_of_day_in_japan() {
        // 2027-04-01T00:00:00+09:00 == 2027-03-31T15:00:00Z
        let t = parse_expires("2027-03-31").unwrap();
        let expect = OffsetDateTime::parse("2027-03-31T15:00:00Z", &Rfc3339).unwrap();
        assert_eq!(i128::from(t.0), expect.unix_timestamp_nanos());
    }

    #[test]
    fn rfc3339_accepted() {
        let t = parse_expires("2027-03-31T18:00:00+09:00").unwrap();
        assert_eq!(t.as_secs(), 1_806_483_600);
        assert!(parse_expires("2027-03-31T18:00:00").is_err());
        assert!(parse_expires("2027-02-30").is_err());
        assert!(parse_expires("1969-12-31").is_err());
        assert!(parse_expires("tomorrow").is_err());
    }

    #[test]
    fn japan_time_text() {
        let end = parse_expires("2027-03-31").unwrap();
        assert_eq!(end.expiry_text(), "2027-03-31");
        assert_eq!(end.to_jst(), "2027-04-01T00:00:00.000000+09:00");
        let t = parse_expires("2027-03-31T18:00:00+09:00").unwrap();
        assert_eq!(t.expiry_text(), "2027-03-31T18:00:00+09:00");
        assert_eq!(Timestamp(t.0 + 1_500).to_jst(), "2027-03-31T18:00:00.000001+09:00");
        assert_eq!(Timestamp(1_362_692_526_939_084_000).to_jst(), "2013-03-08T06:42:06.939084+09:00");
    }

    #[test]
    fn secs_roundtrip() {
        assert_eq!(Timestamp::from_secs(12).as_secs(), 12);
        assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp(u64::MAX));
    }
}
