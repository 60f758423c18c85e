//! The formatter against the RFC 5424 grammar, checked twice: by a strict checker
//! written from the ABNF (section 6) here, and by an independent parser
//! (`syslog_rfc5424`). Property tests feed arbitrary field contents.

use proptest::prelude::*;
use sekisho_alert::format::{self, header_field, param_value, Message, SD_ID};
use sekisho_alert::{Facility, Severity, PARAM_NAMES};
use sekisho_policy::Timestamp;

/// What the strict checker read.
#[derive(Debug, PartialEq, Eq)]
struct Strict {
    pri: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    params: Vec<(String, String)>,
    msg: Option<String>,
}

fn printusascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// `1*max PRINTUSASCII` (or the NILVALUE), then SP.
fn field<'a>(s: &'a str, max: usize, what: &str) -> Result<(String, &'a str), String> {
    let end = s.find(' ').ok_or(format!("{what}: no SP after it"))?;
    let f = &s[..end];
    if f.is_empty() || f.len() > max || !f.bytes().all(printusascii) {
        return Err(format!("{what} {f:?}: must be 1-{max} PRINTUSASCII"));
    }
    Ok((f.to_owned(), &s[end + 1..]))
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// FULL-DATE "T" FULL-TIME with TIME-SECFRAC of 1-6 digits and TIME-OFFSET.
fn check_timestamp(t: &str) -> Result<(), String> {
    let bad = || format!("TIMESTAMP {t:?}");
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || !digits(d[0], 4) || !digits(d[1], 2) || !digits(d[2], 2) {
        return Err(bad());
    }
    let (month, day): (u32, u32) = (d[1].parse().unwrap(), d[2].parse().unwrap());
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, None)
    } else {
        let i = time.rfind(['+', '-']).ok_or_else(bad)?;
        (&time[..i], Some(&time[i + 1..]))
    };
    let (hms, frac) = clock.split_once('.').ok_or_else(bad)?;
    let h: Vec<&str> = hms.split(':').collect();
    if h.len() != 3
        || !h.iter().all(|x| digits(x, 2))
        || frac.is_empty()
        || frac.len() > 6
        || !digits(frac, frac.len())
    {
        return Err(bad());
    }
    let (hh, mm, ss): (u32, u32, u32) = (h[0].parse().unwrap(), h[1].parse().unwrap(), h[2].parse().unwrap());
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    if let Some(o) = offset {
        let (oh, om) = o.split_once(':').ok_or_else(bad)?;
        if !digits(oh, 2)
            || !digits(om, 2)
            || oh.parse::<u32>().unwrap() > 23
            || om.parse::<u32>().unwrap() > 59
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// SD-NAME: 1*32 PRINTUSASCII except '=', SP, ']', '"'.
fn sd_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| printusascii(b) && !matches!(b, b'=' | b']' | b'"'))
}

fn strict(m: &str) -> Result<Strict, String> {
    let rest = m.strip_prefix('<').ok_or("no '<'")?;
    let close = rest.find('>').ok_or("no '>'")?;
    let pri_text = &rest[..close];
    if pri_text.is_empty()
        || pri_text.len() > 3
        || !digits(pri_text, pri_text.len())
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!("PRIVAL {pri_text:?}"));
    }
    let pri: u16 = pri_text.parse().unwrap();
    if pri > 191 {
        return Err(format!("PRIVAL {pri} > 191"));
    }
    let rest = rest[close + 1..].strip_prefix("1 ").ok_or("VERSION must be 1 followed by SP")?;
    let (timestamp, rest) = field(rest, 64, "TIMESTAMP")?;
    if timestamp != "-" {
        check_timestamp(&timestamp)?;
    }
    let (hostname, rest) = field(rest, 255, "HOSTNAME")?;
    let (app_name, rest) = field(rest, 48, "APP-NAME")?;
    let (procid, rest) = field(rest, 128, "PROCID")?;
    let (msgid, mut rest) = field(rest, 32, "MSGID")?;
    let mut params = Vec::new();
    if let Some(r) = rest.strip_prefix('-') {
        rest = r;
    } else {
        // One SD-ELEMENT is all sekisho writes.
        let r = rest.strip_prefix('[').ok_or("STRUCTURED-DATA must be '-' or start with '['")?;
        let id_end = r.find([' ', ']']).ok_or("unterminated SD-ELEMENT")?;
        let id = &r[..id_end];
        if !sd_name(id) || id != SD_ID {
            return Err(format!("SD-ID {id:?}"));
        }
        let mut r = &r[id_end..];
        loop {
            if let Some(after) = r.strip_prefix(']') {
                r = after;
                break;
            }
            r = r.strip_prefix(' ').ok_or("SD-PARAM must follow SP")?;
            let eq = r.find('=').ok_or("PARAM-NAME without '='")?;
            let name = &r[..eq];
            if !sd_name(name) {
                return Err(format!("PARAM-NAME {name:?}"));
            }
            r = r[eq + 1..].strip_prefix('"').ok_or("PARAM-VALUE must be quoted")?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                let (i, c) = chars.next().ok_or("unterminated PARAM-VALUE")?;
                match c {
                    '\\' => match chars.next() {
                        Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                        other => return Err(format!("stray backslash before {other:?}")),
                    },
                    '"' => break i,
                    ']' => return Err("unescaped ']' in PARAM-VALUE".into()),
                    c => value.push(c),
                }
            };
            params.push((name.to_owned(), value));
            r = &r[end + 1..];
        }
        rest = r;
    }
    let msg = if rest.is_empty() {
        None
    } else {
        let body = rest.strip_prefix(' ').ok_or("MSG must follow SP")?;
        let text = body.strip_prefix('\u{feff}').ok_or("MSG must start with the UTF-8 BOM")?;
        Some(text.to_owned())
    };
    Ok(Strict { pri: pri as u8, timestamp, hostname, app_name, procid, msgid, params, msg })
}

fn render(m: &Message<'_>, max: usize) -> String {
    let mut out = String::new();
    format::rfc5424(m, max, &mut out);
    out
}

fn base<'a>(params: &'a [(&'a str, &'a str)]) -> Message<'a> {
    Message {
        facility: Facility::Local4,
        severity: Severity::Alert,
        time: Timestamp(1_795_655_730_123_456_789),
        utc_offset_s: 9 * 3600,
        hostname: "gw1.example.lg.jp",
        app_name: format::APP_NAME,
        procid: "4242",
        msgid: "MYNUMBER_ISOLATION",
        params,
        text: "マイナンバー利用事務系の分離違反",
    }
}

#[test]
fn example_message_passes_both_checkers() {
    let params = [("reason", "deny:mynumber-isolation"), ("src", "198.18.10.5"), ("approval", "R8-情政-012")];
    let s = render(&base(&params), 2048);
    let st = strict(&s).unwrap();
    assert_eq!(st.pri, 20 * 8 + 1);
    assert_eq!(st.timestamp, "2026-11-26T10:15:30.123456+09:00");
    assert_eq!(st.params[2], ("approval".to_owned(), "R8-情政-012".to_owned()));
    let p = syslog_rfc5424::parse_message(&s).unwrap();
    assert_eq!(p.timestamp, Some(1_795_655_730));
    assert_eq!(p.timestamp_nanos, Some(123_456_000));
    assert_eq!(p.msgid.as_deref(), Some("MYNUMBER_ISOLATION"));
    assert_eq!(p.sd.find_tuple(SD_ID, "approval").map(String::as_str), Some("R8-情政-012"));
    assert_eq!(p.msg, "\u{feff}マイナンバー利用事務系の分離違反");
}

#[test]
fn escapes_nil_lengths_and_sanitising() {
    let params = [("path", "a\"b\\c]d"), ("rule", "")];
    let mut m = base(&params);
    m.hostname = "";
    m.procid = "";
    m.msgid = "has space and ü";
    let long_app = "x".repeat(100);
    m.app_name = &long_app;
    let s = render(&m, 2048);
    let st = strict(&s).unwrap();
    assert_eq!(st.hostname, "-");
    assert_eq!(st.procid, "-");
    assert_eq!(st.app_name.len(), 48);
    assert_eq!(st.msgid, "has_space_and__");
    assert_eq!(st.params[0].1, "a\"b\\c]d");
    assert_eq!(st.params[1].1, "");
    assert!(s.contains(r#"path="a\"b\\c\]d""#), "{s}");
    let p = syslog_rfc5424::parse_message(&s).unwrap();
    assert_eq!(p.hostname, None);
    assert_eq!(p.sd.find_tuple(SD_ID, "path").map(String::as_str), Some("a\"b\\c]d"));
    // Without params: the NILVALUE.
    let s = render(&base(&[]), 2048);
    assert!(strict(&s).unwrap().params.is_empty());
    assert!(s.contains(" MYNUMBER_ISOLATION - \u{feff}"), "{s}");
    // Zulu time.
    let mut m = base(&[]);
    m.utc_offset_s = 0;
    assert_eq!(strict(&render(&m, 2048)).unwrap().timestamp, "2026-11-26T01:15:30.123456Z");
}

#[test]
fn text_is_cut_to_the_limit_not_the_structured_data() {
    let params = [("src", "198.18.10.5")];
    let long = "界".repeat(2000);
    let mut m = base(&params);
    m.text = &long;
    let s = render(&m, 480);
    assert!(s.len() <= 480 && s.len() >= 477, "{}", s.len());
    let st = strict(&s).unwrap();
    assert_eq!(st.params[0].1, "198.18.10.5");
    assert!(st.msg.unwrap().chars().all(|c| c == '界'));
}

fn any_text() -> impl Strategy<Value = String> {
    // Arbitrary Unicode, with the characters that need care made frequent.
    prop::collection::vec(
        prop_oneof![
            3 => any::<char>(),
            1 => prop::sample::select(vec!['"', '\\', ']', '[', '=', ' ', '\n', '\r', '\0', '-', '\u{feff}', 'あ', '\u{7f}']),
        ],
        0..80,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_fields_always_make_a_valid_message(
        facility in 0usize..24,
        severity in 0usize..8,
        secs in 0u64..16_000_000_000,
        nanos in 0u64..1_000_000_000,
        offset in -86_400i32..86_400,
        hostname in any_text(),
        procid in any_text(),
        msgid in any_text(),
        text in any_text(),
        values in prop::collection::vec(any_text(), PARAM_NAMES.len()),
        take in 0usize..=PARAM_NAMES.len(),
    ) {
        let params: Vec<(&str, &str)> =
            PARAM_NAMES.iter().zip(&values).take(take).map(|(n, v)| (*n, v.as_str())).collect();
        let m = Message {
            facility: Facility::ALL[facility],
            severity: Severity::ALL[severity],
            time: Timestamp(secs * 1_000_000_000 + nanos),
            utc_offset_s: offset,
            hostname: &hostname,
            app_name: format::APP_NAME,
            procid: &procid,
            msgid: &msgid,
            params: &params,
            text: &text,
        };
        let s = render(&m, 65_000);
        let st = strict(&s).map_err(|e| TestCaseError::fail(format!("{e}: {s:?}")))?;
        prop_assert_eq!(st.pri, (facility * 8 + severity) as u8);
        prop_assert_eq!(&st.hostname, &header_field(&hostname, 255));
        prop_assert_eq!(&st.procid, &header_field(&procid, 128));
        prop_assert_eq!(&st.msgid, &header_field(&msgid, 32));
        let expected: Vec<(String, String)> =
            params.iter().map(|(n, v)| ((*n).to_owned(), param_value(v))).collect();
        prop_assert_eq!(&st.params, &expected);
        let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        prop_assert_eq!(st.msg.as_deref().unwrap_or(""), clean.as_str());

        // The independent parser agrees.
        let p = syslog_rfc5424::parse_message(&s).map_err(|e| TestCaseError::fail(format!("{e}: {s:?}")))?;
        prop_assert_eq!(p.severity as usize, severity);
        prop_assert_eq!(p.facility as usize, facility);
        prop_assert_eq!(p.timestamp, Some((m.time.as_nanos() / 1_000_000_000) as i64));
        prop_assert_eq!(p.timestamp_nanos, Some((m.time.as_nanos() % 1_000_000_000 / 1000 * 1000) as u32));
        let nil = |f: String| if f == "-" { None } else { Some(f) };
        prop_assert_eq!(p.hostname, nil(header_field(&hostname, 255)));
        prop_assert_eq!(p.msgid, nil(header_field(&msgid, 32)));
        for (name, value) in &expected {
            prop_assert_eq!(p.sd.find_tuple(SD_ID, name), Some(value), "param {}", name);
        }
        if !text.is_empty() {
            prop_assert_eq!(p.msg, format!("\u{feff}{clean}"));
        }
    }

    #[test]
    fn any_limit_is_respected_when_the_header_fits(text in any_text(), limit in 150usize..600) {
        let params = [("reason", "deny:no-rule"), ("src", "203.0.113.9")];
        let mut m = base(&params);
        m.text = "";
        let header = render(&m, limit).len() + " \u{feff}".len();
        m.text = &text;
        let s = render(&m, limit);
        prop_assert!(header > limit || s.len() <= limit, "{} > {}", s.len(), limit);
        prop_assert!(strict(&s).is_ok());
    }

    #[test]
    fn rfc3164_is_one_bounded_line(
        text in any_text(),
        host in any_text(),
        values in prop::collection::vec(prop::collection::vec(any::<char>(), 0..20), 3),
    ) {
        let values: Vec<String> = values.into_iter().map(|v| v.into_iter().collect()).collect();
        let params = [("reason", values[0].as_str()), ("path", values[1].as_str()), ("rule", values[2].as_str())];
        let mut m = base(&params);
        m.text = &text;
        m.hostname = &host;
        let mut s = String::new();
        format::rfc3164(&m, 65_000, &mut s);
        prop_assert!(!s.chars().any(char::is_control), "{:?}", s);
        prop_assert!(s.starts_with("<161>"));
        let header_end = s.find(" sekishod[4242]: ").unwrap() + 17;
        prop_assert!(s[header_end..].starts_with("MYNUMBER_ISOLATION"));
        prop_assert!(s.len() <= format::MAX_RFC3164, "{}", s.len());
    }
}
