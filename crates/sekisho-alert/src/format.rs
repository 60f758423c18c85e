//! Syslog message formats, written for the purpose: RFC 5424 (with structured data
//! under [`SD_ID`]) and RFC 3164 for old collectors, plus RFC 6587 octet counting.
//!
//! Every function here is pure: the caller passes the time and the fields.

use std::fmt::Write as _;

use sekisho_policy::{Facility, Severity, Timestamp};

/// The SD-ID of sekisho's structured data (32473 is the documentation enterprise
/// number of RFC 5612).
pub const SD_ID: &str = "sekisho@32473";

/// The APP-NAME of every message.
pub const APP_NAME: &str = "sekishod";

/// RFC 5424 field limits, in characters (all PRINTUSASCII, so also bytes).
pub const MAX_HOSTNAME: usize = 255;
/// RFC 5424 APP-NAME limit.
pub const MAX_APP_NAME: usize = 48;
/// RFC 5424 PROCID limit.
pub const MAX_PROCID: usize = 128;
/// RFC 5424 MSGID limit.
pub const MAX_MSGID: usize = 32;
/// Longest PARAM-VALUE sekisho writes, in bytes; longer values are cut at a
/// character boundary.
pub const MAX_PARAM_VALUE: usize = 512;
/// RFC 3164 says a message is at most 1024 bytes.
pub const MAX_RFC3164: usize = 1024;
/// RFC 3164 TAG limit.
const MAX_TAG: usize = 32;

const BOM: &str = "\u{feff}";

/// One message's fields, before formatting.
#[derive(Copy, Clone, Debug)]
pub struct Message<'a> {
    /// The facility (PRI = facility × 8 + severity).
    pub facility: Facility,
    /// The severity.
    pub severity: Severity,
    /// When (nanoseconds since the epoch).
    pub time: Timestamp,
    /// The offset from UTC to show the time in, in seconds (cut to whole minutes,
    /// at most ±23:59); 0 shows `Z`.
    pub utc_offset_s: i32,
    /// HOSTNAME (sanitised and cut here).
    pub hostname: &'a str,
    /// APP-NAME (sanitised and cut here).
    pub app_name: &'a str,
    /// PROCID (sanitised and cut here).
    pub procid: &'a str,
    /// MSGID (sanitised and cut here).
    pub msgid: &'a str,
    /// Structured data parameters under [`SD_ID`], in order; names must be valid
    /// SD-NAMEs (sekisho's are fixed); values are escaped here.
    pub params: &'a [(&'a str, &'a str)],
    /// The free-text message (UTF-8; control characters become spaces).
    pub text: &'a str,
}

/// A header field made safe: PRINTUSASCII only (33..=126; anything else becomes
/// `_`), at most `max` characters, and `-` (NILVALUE) when empty.
pub fn header_field(s: &str, max: usize) -> String {
    let out: String = s.chars().take(max).map(|c| if ('!'..='~').contains(&c) { c } else { '_' }).collect();
    if out.is_empty() {
        "-".to_owned()
    } else {
        out
    }
}

/// Control characters (C0, DEL, C1) become spaces: collectors and files are often
/// line-oriented, and a newline in an alert is either a mistake or an attack.
pub fn clean_text(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().map(|c| if c.is_control() { ' ' } else { c })
}

/// The PARAM-VALUE as sekisho writes it before escaping: control characters become
/// spaces and it is cut to [`MAX_PARAM_VALUE`] bytes at a character boundary. A
/// parser that undoes the escaping gets exactly this back.
pub fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_PARAM_VALUE));
    for c in clean_text(s) {
        if out.len() + c.len_utf8() > MAX_PARAM_VALUE {
            break;
        }
        out.push(c);
    }
    out
}

fn pri(m: &Message<'_>) -> u8 {
    m.facility.code() * 8 + m.severity.code()
}

/// Format as RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG`.
/// The text is cut (at a character boundary) so that the whole message fits in
/// `max_len` bytes; the header and structured data are never cut.
pub fn rfc5424(m: &Message<'_>, max_len: usize, out: &mut String) {
    let _ = write!(
        out,
        "<{}>1 {} {} {} {} {} ",
        pri(m),
        rfc3339(m.time, m.utc_offset_s),
        header_field(m.hostname, MAX_HOSTNAME),
        header_field(m.app_name, MAX_APP_NAME),
        header_field(m.procid, MAX_PROCID),
        header_field(m.msgid, MAX_MSGID),
    );
    if m.params.is_empty() {
        out.push('-');
    } else {
        out.push('[');
        out.push_str(SD_ID);
        for (name, value) in m.params {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            for c in param_value(value).chars() {
                if matches!(c, '"' | '\\' | ']') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push(']');
    }
    if !m.text.is_empty() {
        out.push(' ');
        out.push_str(BOM);
        push_cut(out, m.text, max_len);
    }
}

/// Format as RFC 3164: `<PRI>Mmm dd hh:mm:ss HOSTNAME sekishod[PROCID]: MSGID TEXT;
/// k=v k=v`. The time is local (by `utc_offset_s`) without a zone, as RFC 3164 has
/// it; values with spaces, quotes, `;` or `=` are quoted. The text is cut so that
/// the message fits in `max_len` (and never more than [`MAX_RFC3164`]) bytes when the
/// pairs allow it.
pub fn rfc3164(m: &Message<'_>, max_len: usize, out: &mut String) {
    let (date, time) = civil(m.time, m.utc_offset_s);
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS[usize::from(date.1 - 1)];
    let tag: String = m.app_name.chars().filter(char::is_ascii_alphanumeric).take(MAX_TAG).collect();
    let tag = if tag.is_empty() { "sekishod".to_owned() } else { tag };
    let _ = write!(
        out,
        "<{}>{month} {:>2} {:02}:{:02}:{:02} {} {tag}[{}]: {}",
        pri(m),
        date.2,
        time.0,
        time.1,
        time.2,
        header_field(m.hostname, MAX_HOSTNAME),
        header_field(m.procid, MAX_PROCID),
        header_field(m.msgid, MAX_MSGID),
    );
    let mut pairs = String::new();
    for (name, value) in m.params {
        let v = param_value(value);
        let quote = v.is_empty() || v.chars().any(|c| matches!(c, ' ' | '"' | '\\' | ';' | '='));
        let _ = write!(pairs, " {name}=");
        if quote {
            pairs.push('"');
            for c in v.chars() {
                if matches!(c, '"' | '\\') {
                    pairs.push('\\');
                }
                pairs.push(c);
            }
            pairs.push('"');
        } else {
            pairs.push_str(&v);
        }
    }
    let max_len = max_len.min(MAX_RFC3164);
    if !m.text.is_empty() {
        out.push(' ');
        let budget = max_len.saturating_sub(pairs.len() + 1);
        push_cut(out, m.text, budget);
    }
    if !pairs.is_empty() {
        out.push(';');
        out.push_str(&pairs);
    }
}

/// Append `text` (control characters as spaces) while `out` stays within `max_len`
/// bytes, cutting at a character boundary.
fn push_cut(out: &mut String, text: &str, max_len: usize) {
    for c in clean_text(text) {
        if out.len() + c.len_utf8() > max_len {
            break;
        }
        out.push(c);
    }
}

/// RFC 6587 octet counting: `LEN SP MSG`.
pub fn octet_frame(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// The offset cut to whole minutes and to ±23:59.
fn clamp_offset(offset_s: i32) -> i64 {
    let max = 23 * 3600 + 59 * 60;
    i64::from(offset_s.clamp(-max, max) / 60 * 60)
}

/// (year, month 1-12, day 1-31) and (hour, minute, second) of `t` shifted by the
/// offset. Days to civil date: H. Hinnant's algorithm (proleptic Gregorian).
fn civil(t: Timestamp, offset_s: i32) -> ((i64, u8, u8), (u8, u8, u8)) {
    let secs = (t.as_nanos() / 1_000_000_000) as i64 + clamp_offset(offset_s);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), ((sod / 3600) as u8, (sod / 60 % 60) as u8, (sod % 60) as u8))
}

/// RFC 3339 with microseconds: `2026-11-26T10:15:30.123456+09:00` (or `…Z` at
/// offset 0), as RFC 5424's TIMESTAMP.
pub fn rfc3339(t: Timestamp, utc_offset_s: i32) -> String {
    let ((y, mo, d), (h, mi, s)) = civil(t, utc_offset_s);
    let micros = t.as_nanos() % 1_000_000_000 / 1000;
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}");
    let off = clamp_offset(utc_offset_s);
    if off == 0 {
        out.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        let _ = write!(out, "{sign}{:02}:{:02}", a / 3600, a / 60 % 60);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(params: &'a [(&'a str, &'a str)], text: &'a str) -> Message<'a> {
        Message {
            facility: Facility::Local4,
            severity: Severity::Crit,
            // 2026-11-26T01:15:30.123456789Z
            time: Timestamp(1_795_655_730_123_456_789),
            utc_offset_s: 9 * 3600,
            hostname: "gw1",
            app_name: APP_NAME,
            procid: "4242",
            msgid: "MYNUMBER_ISOLATION",
            params,
            text,
        }
    }

    #[test]
    fn timestamps() {
        let t = Timestamp(1_795_655_730_123_456_789);
        assert_eq!(rfc3339(t, 9 * 3600), "2026-11-26T10:15:30.123456+09:00");
        assert_eq!(rfc3339(t, 0), "2026-11-26T01:15:30.123456Z");
        assert_eq!(rfc3339(t, -(3 * 3600 + 30 * 60)), "2026-11-25T21:45:30.123456-03:30");
        assert_eq!(rfc3339(Timestamp(0), 0), "1970-01-01T00:00:00.000000Z");
        // Leap day, and seconds in the offset are dropped.
        assert_eq!(rfc3339(Timestamp::from_secs(1_709_164_800), 59), "2024-02-29T00:00:00.000000Z");
    }

    #[test]
    fn rfc5424_shape() {
        let mut out = String::new();
        rfc5424(
            &msg(&[("reason", "deny:mynumber-isolation"), ("src", "198.18.10.5")], "テスト"),
            2048,
            &mut out,
        );
        assert_eq!(
            out,
            "<162>1 2026-11-26T10:15:30.123456+09:00 gw1 sekishod 4242 MYNUMBER_ISOLATION \
             [sekisho@32473 reason=\"deny:mynumber-isolation\" src=\"198.18.10.5\"] \u{feff}テスト"
        );
    }

    #[test]
    fn escaping_and_nil() {
        let mut out = String::new();
        let mut m = msg(&[("path", "a\"b\\c]d")], "");
        m.hostname = "";
        m.procid = "my proc";
        rfc5424(&m, 2048, &mut out);
        assert!(out.contains(" - sekishod my_proc "), "{out}");
        assert!(out.ends_with("[sekisho@32473 path=\"a\\\"b\\\\c\\]d\"]"), "{out}");
        let mut out = String::new();
        rfc5424(&msg(&[], "x"), 2048, &mut out);
        assert!(out.ends_with(" MYNUMBER_ISOLATION - \u{feff}x"), "{out}");
    }

    #[test]
    fn header_fields_are_cut_and_sanitised() {
        assert_eq!(header_field("", 5), "-");
        assert_eq!(header_field("ab cd\u{3042}", 10), "ab_cd_");
        assert_eq!(header_field(&"h".repeat(300), MAX_HOSTNAME).len(), 255);
    }

    #[test]
    fn text_is_cut_to_fit() {
        let mut out = String::new();
        let long = "あ".repeat(1000);
        rfc5424(&msg(&[("src", "198.18.10.5")], &long), 300, &mut out);
        assert!(out.len() <= 300 && out.len() > 290, "{}", out.len());
        let mut out = String::new();
        rfc5424(&msg(&[], "a\nb\u{7}c"), 300, &mut out);
        assert!(out.ends_with("\u{feff}a b c"), "{out}");
    }

    #[test]
    fn rfc3164_shape() {
        let mut out = String::new();
        let mut m = msg(&[("reason", "deny:no-rule"), ("path", "a b"), ("rule", "")], "dropped");
        m.time = Timestamp::from_secs(1_767_225_600 + 5 * 86_400); // 2026-01-06T00:00:00Z
        m.utc_offset_s = 9 * 3600;
        rfc3164(&m, 2048, &mut out);
        assert_eq!(
            out,
            "<162>Jan  6 09:00:00 gw1 sekishod[4242]: MYNUMBER_ISOLATION dropped; reason=deny:no-rule path=\"a b\" rule=\"\""
        );
        let mut out = String::new();
        rfc3164(&msg(&[("src", "x")], &"y".repeat(5000)), 65_000, &mut out);
        assert!(out.len() <= MAX_RFC3164 && out.ends_with("; src=x"), "{}", out.len());
    }

    #[test]
    fn framing() {
        let mut out = Vec::new();
        octet_frame(b"<13>1 - - - - - -", &mut out);
        assert_eq!(out, b"17 <13>1 - - - - - -");
    }
}
