//! Mail text-ification (メール無害化): what the lab's mail relay does to every message.
//!
//! The result is a single `text/plain` message: the text parts are kept (decoded from
//! base64 or quoted-printable), HTML is turned into text (tags, scripts, styles and
//! comments removed, entities decoded), and every other part (attachments, images,
//! nested messages) is dropped and listed in a note at the end of the body. Only a safe
//! subset of the original headers is kept, and `X-Sekisho-Sanitized: mail-text` is added.
//!
//! Bounded: nesting depth, part count and output size are limited; any input gives an
//! output, never a panic.

/// The header added to every text-ified message.
pub const SANITIZED_HEADER: &str = "X-Sekisho-Sanitized";

/// Headers copied from the original message (everything else is dropped).
const KEPT_HEADERS: [&str; 9] =
    ["from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to", "references"];

const MAX_DEPTH: usize = 8;
const MAX_PARTS: usize = 64;
const MAX_LINE: usize = 990;

/// A text-ified message.
#[derive(Debug, Clone)]
pub struct Textified {
    /// The new message (headers and body, CRLF line ends, not dot-stuffed).
    pub message: Vec<u8>,
    /// What was removed: one description per dropped part.
    pub removed: Vec<String>,
}

/// Text-ifies `raw`, a whole message (headers and body).
pub fn textify(raw: &[u8]) -> Textified {
    let (headers, body) = split_message(raw);
    let mut collected = Collected::default();
    walk(&headers, body, 0, &mut collected);

    let texts = if collected.texts.is_empty() { &collected.htmls } else { &collected.texts };
    let charset = common_charset(texts);
    let mut text = texts.iter().map(|t| t.text.trim_end().to_string()).collect::<Vec<_>>().join("\n\n");
    if text.trim().is_empty() {
        text = "(no text content)".to_string();
    }
    if !collected.removed.is_empty() {
        text.push_str("\n\n");
        text.push_str(&format!(
            "[sekisho mail-text: {} non-text part(s) removed: {}]",
            collected.removed.len(),
            collected.removed.join("; ")
        ));
    }

    let mut out = String::new();
    for (name, value) in &headers {
        if KEPT_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            let line = format!("{name}: {}", clean_header_value(value));
            out.push_str(truncate_chars(&line, MAX_LINE));
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "{SANITIZED_HEADER}: mail-text; removed-parts={}; html-converted={}\r\n",
        collected.removed.len(),
        if collected.texts.is_empty() && !collected.htmls.is_empty() { "yes" } else { "no" }
    ));
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: text/plain; charset={charset}\r\n"));
    out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    for line in text.lines() {
        for piece in wrap(line, MAX_LINE) {
            out.push_str(piece);
            out.push_str("\r\n");
        }
    }
    Textified { message: out.into_bytes(), removed: collected.removed }
}

#[derive(Default)]
struct Collected {
    texts: Vec<TextPart>,
    htmls: Vec<TextPart>,
    removed: Vec<String>,
    parts: usize,
}

struct TextPart {
    text: String,
    charset: String,
}

type Headers = Vec<(String, String)>;

/// Splits a message (or a MIME part) into unfolded headers and the body.
fn split_message(raw: &[u8]) -> (Headers, &[u8]) {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None if raw.starts_with(b"\r\n") => (&raw[..0], &raw[2..]),
            None if raw.starts_with(b"\n") => (&raw[..0], &raw[1..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    let mut headers: Headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            if headers.len() < 256 {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A parsed `Content-Type` (or `Content-Disposition`): the lower-cased value and parameters.
struct HeaderValue {
    value: String,
    params: Vec<(String, String)>,
}

impl HeaderValue {
    fn parse(text: &str) -> HeaderValue {
        let mut pieces = split_params(text).into_iter();
        let value = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
        let params = pieces
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                let v = v.trim();
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
                Some((k.trim().to_ascii_lowercase(), v.to_string()))
            })
            .collect();
        HeaderValue { value, params }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Splits on `;` outside double quotes.
fn split_params(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn walk(headers: &Headers, body: &[u8], depth: usize, out: &mut Collected) {
    out.parts += 1;
    let ct = HeaderValue::parse(header(headers, "content-type").unwrap_or("text/plain"));
    let disposition = HeaderValue::parse(header(headers, "content-disposition").unwrap_or(""));
    let name = disposition.param("filename").or_else(|| ct.param("name")).map(str::to_string);
    let describe = || match &name {
        Some(n) => format!("{:?} ({})", truncate_chars(n, 80), ct.value),
        None => ct.value.clone(),
    };
    if out.parts > MAX_PARTS || depth > MAX_DEPTH {
        out.removed.push(format!("{} (beyond the part/depth limit)", describe()));
        return;
    }
    let attachment = disposition.value == "attachment";
    let encoding = header(headers, "content-transfer-encoding").unwrap_or("").trim().to_ascii_lowercase();
    let charset = ct.param("charset").unwrap_or("utf-8").to_ascii_lowercase();

    if ct.value.starts_with("multipart/") {
        let Some(boundary) = ct.param("boundary").filter(|b| !b.is_empty()) else {
            out.removed.push(format!("{} (no boundary)", ct.value));
            return;
        };
        let parts = split_multipart(body, boundary.as_bytes());
        if ct.value == "multipart/alternative" {
            // One rendering of the same content: keep the plain one when there is one.
            let mut alt = Collected { parts: out.parts, ..Collected::default() };
            for part in parts {
                let (h, b) = split_message(part);
                walk(&h, b, depth + 1, &mut alt);
            }
            out.parts = alt.parts;
            if alt.texts.is_empty() {
                out.htmls.extend(alt.htmls);
            } else {
                out.texts.extend(alt.texts);
            }
            out.removed.extend(alt.removed);
        } else {
            for part in parts {
                let (h, b) = split_message(part);
                walk(&h, b, depth + 1, out);
            }
        }
        return;
    }
    if attachment || !(ct.value == "text/plain" || ct.value == "text/html" || ct.value.is_empty()) {
        out.removed.push(describe());
        return;
    }
    let decoded = decode_transfer(body, &encoding);
    let text = clean_text(&String::from_utf8_lossy(&decoded));
    if ct.value == "text/html" {
        out.htmls.push(TextPart { text: html_to_text(&text), charset });
    } else {
        out.texts.push(TextPart { text, charset });
    }
}

/// The parts of a multipart body (without their boundary lines).
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..].iter().position(|&b| b == b'\n').map_or(body.len(), |i| pos + i + 1);
        let line = trim_eol(&body[pos..end]);
        if line.starts_with(&delimiter) {
            let rest = &line[delimiter.len()..];
            if let Some(s) = start {
                // The CRLF before the delimiter belongs to the delimiter.
                let mut e = pos;
                if e > s && body[e - 1] == b'\n' {
                    e -= 1;
                    if e > s && body[e - 1] == b'\r' {
                        e -= 1;
                    }
                }
                parts.push(&body[s..e]);
            }
            if rest.starts_with(b"--") {
                return parts;
            }
            start = Some(end);
        }
        pos = end;
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\r' | b'\n' | b' ' | b'\t'] = l {
        l = rest;
    }
    l
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn decode_transfer(body: &[u8], encoding: &str) -> Vec<u8> {
    match encoding {
        "base64" => decode_base64(body),
        "quoted-printable" => decode_qp(body),
        _ => body.to_vec(),
    }
}

/// Base64 decoding that skips anything outside the alphabet (line breaks, junk).
pub fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable decoding (soft line breaks, `=XX`); malformed escapes are kept.
pub fn decode_qp(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'=' {
            let rest = &input[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (rest.first().and_then(hex), rest.get(1).and_then(hex)) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn hex(c: &u8) -> Option<u8> {
    (*c as char).to_digit(16).map(|d| d as u8)
}

/// Removes control characters other than tab, newline and ESC (ISO-2022-JP needs it),
/// and normalises line ends to `\n`.
fn clean_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter(|&c| !c.is_control() || matches!(c, '\n' | '\t' | '\x1b'))
        .collect()
}

fn clean_header_value(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

/// Turns HTML into text: scripts, styles and comments go entirely, block ends become
/// line breaks, every other tag is removed, and entities are decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        let lrest = &lower[i..];
        if lrest.starts_with("<!--") {
            i += lrest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if lrest.starts_with("<script") || lrest.starts_with("<style") {
            let close = if lrest.starts_with("<script") { "</script" } else { "</style" };
            i += match lrest.find(close) {
                Some(e) => lrest[e..].find('>').map_or(rest.len(), |g| e + g + 1),
                None => rest.len(),
            };
        } else if rest.starts_with('<') {
            let close = rest.find('>');
            let end = close.map_or(rest.len(), |e| e + 1);
            let tag = lrest[1..close.unwrap_or(rest.len())].trim_start_matches('/');
            let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if matches!(
                name.as_str(),
                "br" | "p"
                    | "div"
                    | "li"
                    | "tr"
                    | "h1"
                    | "h2"
                    | "h3"
                    | "h4"
                    | "h5"
                    | "h6"
                    | "table"
                    | "ul"
                    | "ol"
            ) && !out.ends_with('\n')
            {
                out.push('\n');
            }
            i += end;
        } else if rest.starts_with('&') {
            let (decoded, used) = decode_entity(rest);
            out.push_str(&decoded);
            i += used;
        } else {
            let next = rest.find(['<', '&']).unwrap_or(rest.len());
            out.push_str(&rest[..next]);
            i += next;
        }
    }
    // Collapse runs of blank lines and trailing spaces.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.trim().to_string()
}

fn decode_entity(text: &str) -> (String, usize) {
    let Some(end) = text[1..].find(';').map(|e| e + 1).filter(|&e| e <= 10) else {
        return ("&".to_string(), 1);
    };
    let name = &text[1..end];
    let c = match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" | "#39" => Some('\''),
        "nbsp" => Some(' '),
        _ => name
            .strip_prefix("#x")
            .or_else(|| name.strip_prefix("#X"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
            .and_then(char::from_u32)
            .filter(|c| !c.is_control() || *c == '\n' || *c == '\t'),
    };
    match c {
        Some(c) => (c.to_string(), end + 1),
        None => ("&".to_string(), 1),
    }
}

fn common_charset(parts: &[TextPart]) -> String {
    let first = parts.first().map_or("utf-8", |p| p.charset.as_str());
    let safe = first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && !first.is_empty();
    if safe && parts.iter().all(|p| p.charset == first) {
        first.to_string()
    } else {
        "utf-8".to_string()
    }
}

fn truncate_chars(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Splits `line` into pieces of at most `max` bytes, at character boundaries.
fn wrap(line: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let piece = truncate_chars(rest, max);
        let piece =
            if piece.is_empty() { &rest[..rest.chars().next().map_or(1, char::len_utf8)] } else { piece };
        pieces.push(piece);
        rest = &rest[piece.len()..];
    }
    pieces.push(rest);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Textified) -> String {
        String::from_utf8(m.message.clone()).expect("utf-8 output")
    }

    #[test]
    fn plain_message_keeps_its_text_and_gets_the_header() {
        let m = textify(b"From: a@x\r\nTo: b@y\r\nSubject: hi\r\nX-Evil: 1\r\n\r\nhello\r\nworld\r\n");
        let t = text(&m);
        assert!(t.contains("From: a@x\r\n"));
        assert!(t.contains("Subject: hi\r\n"));
        assert!(!t.contains("X-Evil"));
        assert!(t.contains("X-Sekisho-Sanitized: mail-text; removed-parts=0"));
        assert!(t.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(t.ends_with("\r\n\r\nhello\r\nworld\r\n"));
        assert!(m.removed.is_empty());
    }

    #[test]
    fn html_and_attachments_are_removed() {
        let raw = b"From: a@x\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
preamble\r\n--XX\r\nContent-Type: text/html\r\n\r\n<html><script>alert(1)</script>\
<p>Dear &amp; staff</p><br><b>bold</b><!-- c --></html>\r\n--XX\r\nContent-Type: \
application/octet-stream; name=evil.exe\r\nContent-Disposition: attachment; filename=\"evil.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVpQAAIAAAAEAA8A\r\n--XX--\r\nepilogue\r\n";
        let m = textify(raw);
        let t = text(&m);
        assert!(t.contains("Dear & staff"), "{t}");
        assert!(t.contains("bold"));
        assert!(!t.contains("<p>") && !t.contains("alert") && !t.contains("TVpQ"), "{t}");
        assert_eq!(m.removed.len(), 1);
        assert!(t.contains("evil.exe"));
        assert!(t.contains("html-converted=yes"));
    }

    #[test]
    fn alternative_prefers_plain_and_decodes_encodings() {
        let raw = b"Content-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 =\r\nsoft\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--b1--\r\n";
        let m = textify(raw);
        let t = text(&m);
        assert!(t.contains("café soft"), "{t}");
        assert!(!t.contains("html version"));
        let b64 = textify(b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gYmFzZTY0\r\n");
        assert!(text(&b64).contains("hello base64"));
    }

    #[test]
    fn garbage_never_panics() {
        let samples: [&[u8]; 8] = [
            b"",
            b"\r\n",
            b"Content-Type: multipart/mixed\r\n\r\nno boundary",
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--",
            b"Content-Type: text/html\r\n\r\n<<<&&&#xFFFFFFFF;&#0;<script",
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=\xff=Z=",
            &[0xff, 0xfe, b'\n', b'\n', 0, 1, 2],
        ];
        for s in samples {
            let _ = textify(s);
        }
        // Deep nesting stops at the limit.
        let mut raw = String::new();
        for i in 0..20 {
            raw.push_str(&format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"));
        }
        raw.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
        let m = textify(raw.as_bytes());
        assert!(!m.removed.is_empty());
    }

    #[test]
    fn long_lines_are_wrapped() {
        let mut raw = b"\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 3000));
        let m = textify(&raw);
        assert!(text(&m).lines().all(|l| l.len() <= MAX_LINE));
    }
}
