//! The text check of a mail message on the text leg of a mail path, streaming, line by
//! line, in bounded state: every leaf part must be `text/plain` (the default where a part
//! says nothing), not an attachment (`Content-Disposition: attachment`, a file name),
//! not base64 or binary; multiparts nest at most four deep; no body line may start a
//! uuencoded or yEnc file; no line is longer than 998 characters (RFC 5322).

/// Longest line, without its CR LF (RFC 5322 section 2.1.1).
pub(crate) const MAX_LINE: usize = 998;
/// Multiparts within multiparts, at most.
const MAX_NESTING: usize = 4;
/// Longest boundary (RFC 2046 section 5.1.1).
const MAX_BOUNDARY: usize = 70;
/// Longest unfolded value of a Content-* field that is kept.
const MAX_FIELD: usize = 1024;

type Check = Result<(), &'static str>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The header section of the message or of a part.
    Headers,
    /// The body of a leaf part, or the preamble/epilogue of a multipart.
    Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Other,
    ContentType,
    Encoding,
    Disposition,
}

/// What a part's header section said.
#[derive(Clone, Copy, Debug, Default)]
struct Part {
    seen_type: bool,
    seen_encoding: bool,
    seen_disposition: bool,
}

/// The message being checked.
#[derive(Debug)]
pub(crate) struct Mime {
    state: State,
    field: Field,
    part: Part,
    value: [u8; MAX_FIELD],
    value_len: usize,
    value_truncated: bool,
    boundaries: [[u8; MAX_BOUNDARY]; MAX_NESTING],
    boundary_lens: [u8; MAX_NESTING],
    depth: usize,
    /// The boundary the part being read declared (pushed at the end of its headers).
    pending_boundary: Option<([u8; MAX_BOUNDARY], u8)>,
    /// Bytes of a line not yet complete (BDAT chunks split lines anywhere).
    line: [u8; MAX_LINE + 2],
    line_len: usize,
}

impl Default for Mime {
    fn default() -> Mime {
        Mime {
            state: State::Headers,
            field: Field::Other,
            part: Part::default(),
            value: [0; MAX_FIELD],
            value_len: 0,
            value_truncated: false,
            boundaries: [[0; MAX_BOUNDARY]; MAX_NESTING],
            boundary_lens: [0; MAX_NESTING],
            depth: 0,
            pending_boundary: None,
            line: [0; MAX_LINE + 2],
            line_len: 0,
        }
    }
}

/// Splits a structured field value at `;` outside quoted strings: the first item and the
/// parameters as (lower-case-insensitive name, unquoted value) via a callback.
fn parameters(value: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Check) -> Check {
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    let mut first = true;
    let mut emit = |s: usize, e: usize, first: bool| -> Check {
        if first {
            return Ok(());
        }
        let item = trim(&value[s..e]);
        let Some(eq) = item.iter().position(|b| *b == b'=') else {
            return if item.is_empty() { Ok(()) } else { Err("malformed MIME parameter") };
        };
        let name = trim(&item[..eq]);
        let v = trim(&item[eq + 1..]);
        let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
        f(name, v)
    };
    while i < value.len() {
        match value[i] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => i += 1,
            b';' if !quoted => {
                emit(start, i, first)?;
                first = false;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    emit(start, value.len().min(i), first)
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |i| i + 1);
    &b[s..e.max(s)]
}

/// The first item of a structured value (before any `;`), trimmed.
fn first_item(value: &[u8]) -> &[u8] {
    trim(value.split(|b| *b == b';').next().unwrap_or(value))
}

/// Whether a parameter name names a file (`name`, `filename`, or their RFC 2231 forms).
fn is_file_name(param: &[u8]) -> bool {
    let base = param.split(|b| *b == b'*').next().unwrap_or(param);
    base.eq_ignore_ascii_case(b"name") || base.eq_ignore_ascii_case(b"filename")
}

impl Mime {
    /// Starts a new message.
    pub(crate) fn reset(&mut self) {
        self.state = State::Headers;
        self.field = Field::Other;
        self.part = Part::default();
        self.value_len = 0;
        self.value_truncated = false;
        self.depth = 0;
        self.pending_boundary = None;
        self.line_len = 0;
    }

    /// Feeds raw message bytes (BDAT): lines are assembled here.
    pub(crate) fn bytes(&mut self, mut data: &[u8]) -> Check {
        while !data.is_empty() {
            let take = data.iter().position(|b| *b == b'\n').map_or(data.len(), |i| i + 1);
            if self.line_len + take > self.line.len() {
                return Err("line longer than 998 characters");
            }
            self.line[self.line_len..self.line_len + take].copy_from_slice(&data[..take]);
            self.line_len += take;
            data = &data[take..];
            if self.line[self.line_len - 1] == b'\n' {
                let n = self.line_len;
                self.line_len = 0;
                let line = self.line;
                self.line_ending(&line[..n])?;
            }
        }
        Ok(())
    }

    fn line_ending(&mut self, raw: &[u8]) -> Check {
        self.line(super::validate::trim_eol(raw))
    }

    /// The message ended (the SMTP end of data, or the last BDAT chunk).
    pub(crate) fn finish(&mut self) -> Check {
        if self.line_len > 0 {
            let n = self.line_len;
            self.line_len = 0;
            let line = self.line;
            self.line_ending(&line[..n])?;
        }
        if self.state == State::Headers {
            self.end_of_headers()?;
        }
        self.reset();
        Ok(())
    }

    /// One line of the message, without its CR LF (dot-stuffing already undone).
    pub(crate) fn line(&mut self, line: &[u8]) -> Check {
        if line.len() > MAX_LINE {
            return Err("line longer than 998 characters");
        }
        match self.state {
            State::Headers => self.header_line(line),
            State::Body => self.body_line(line),
        }
    }

    fn header_line(&mut self, line: &[u8]) -> Check {
        if line.is_empty() {
            return self.end_of_headers();
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if self.field != Field::Other {
                self.append(b" ");
                self.append(trim(line));
            }
            return Ok(());
        }
        self.end_of_field()?;
        let colon = line.iter().position(|b| *b == b':').ok_or("malformed header line")?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err("malformed header line");
        }
        self.field = if name.eq_ignore_ascii_case(b"content-type") {
            Field::ContentType
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            Field::Encoding
        } else if name.eq_ignore_ascii_case(b"content-disposition") {
            Field::Disposition
        } else {
            Field::Other
        };
        self.value_len = 0;
        self.value_truncated = false;
        if self.field != Field::Other {
            self.append(trim(&line[colon + 1..]));
        }
        Ok(())
    }

    fn append(&mut self, b: &[u8]) {
        let room = MAX_FIELD - self.value_len;
        let n = b.len().min(room);
        self.value[self.value_len..self.value_len + n].copy_from_slice(&b[..n]);
        self.value_len += n;
        self.value_truncated |= n < b.len();
    }

    /// The end of a Content-* field: judged now.
    fn end_of_field(&mut self) -> Check {
        let field = std::mem::replace(&mut self.field, Field::Other);
        if field == Field::Other {
            return Ok(());
        }
        if self.value_truncated {
            return Err("Content-* header field too long to check");
        }
        let value = self.value;
        let value = &value[..self.value_len];
        let seen = match field {
            Field::ContentType => &mut self.part.seen_type,
            Field::Encoding => &mut self.part.seen_encoding,
            Field::Disposition => &mut self.part.seen_disposition,
            Field::Other => return Ok(()),
        };
        if std::mem::replace(seen, true) {
            return Err("a Content-* header field given twice");
        }
        match field {
            Field::ContentType => self.content_type(value),
            Field::Encoding => {
                let cte = first_item(value);
                let text =
                    [&b"7bit"[..], b"8bit", b"quoted-printable"].iter().any(|t| cte.eq_ignore_ascii_case(t));
                if text {
                    Ok(())
                } else if cte.eq_ignore_ascii_case(b"base64") {
                    Err("base64 body")
                } else {
                    Err("body encoding not 7bit, 8bit or quoted-printable")
                }
            }
            _ => {
                if first_item(value).eq_ignore_ascii_case(b"attachment") {
                    return Err("attachment");
                }
                parameters(
                    value,
                    |name, _| if is_file_name(name) { Err("attachment (file name)") } else { Ok(()) },
                )
            }
        }
    }

    fn content_type(&mut self, value: &[u8]) -> Check {
        let media = first_item(value);
        let Some(slash) = media.iter().position(|b| *b == b'/') else {
            return Err("malformed Content-Type");
        };
        let (ty, sub) = (&media[..slash], &media[slash + 1..]);
        if ty.eq_ignore_ascii_case(b"multipart") {
            if !([&b"mixed"[..], b"alternative", b"related"].iter().any(|s| sub.eq_ignore_ascii_case(s))) {
                return Err("multipart type other than mixed, alternative or related");
            }
            let mut boundary = None;
            parameters(value, |name, v| {
                let base = name.split(|b| *b == b'*').next().unwrap_or(name);
                if base.eq_ignore_ascii_case(b"boundary") && !name.eq_ignore_ascii_case(b"boundary") {
                    // RFC 2231 forms (`boundary*`, `boundary*0`): readers that join or
                    // prefer them split the message at a boundary this check never saw.
                    return Err("multipart boundary in RFC 2231 form");
                }
                if name.eq_ignore_ascii_case(b"boundary") {
                    if boundary.is_some() {
                        // Readers differ on which one counts (the first, the last): the
                        // parts of the other would pass here as preamble text.
                        return Err("multipart boundary given twice");
                    }
                    if v.is_empty() || v.len() > MAX_BOUNDARY {
                        return Err("multipart boundary length out of range");
                    }
                    let mut b = [0u8; MAX_BOUNDARY];
                    b[..v.len()].copy_from_slice(v);
                    boundary = Some((b, v.len() as u8));
                }
                Ok(())
            })?;
            self.pending_boundary = Some(boundary.ok_or("multipart without a boundary")?);
            return Ok(());
        }
        if !(ty.eq_ignore_ascii_case(b"text") && sub.eq_ignore_ascii_case(b"plain")) {
            return Err("part is not text/plain");
        }
        parameters(value, |name, _| if is_file_name(name) { Err("attachment (file name)") } else { Ok(()) })
    }

    fn end_of_headers(&mut self) -> Check {
        self.end_of_field()?;
        self.part = Part::default();
        if let Some((b, len)) = self.pending_boundary.take() {
            if self.depth == MAX_NESTING {
                return Err("multiparts nested too deep");
            }
            self.boundaries[self.depth] = b;
            self.boundary_lens[self.depth] = len;
            self.depth += 1;
        }
        self.state = State::Body;
        Ok(())
    }

    fn body_line(&mut self, line: &[u8]) -> Check {
        if let Some(rest) = line.strip_prefix(b"--") {
            for level in (0..self.depth).rev() {
                let b = &self.boundaries[level][..usize::from(self.boundary_lens[level])];
                let Some(after) = rest.strip_prefix(b) else { continue };
                let after = trim(after);
                if after.is_empty() {
                    // The next part of the multipart at `level`.
                    self.depth = level + 1;
                    self.state = State::Headers;
                    return Ok(());
                }
                if after == b"--" {
                    // The multipart at `level` is closed: its parent's body goes on.
                    self.depth = level;
                    return Ok(());
                }
            }
        }
        let lower = |p: &[u8]| line.len() >= p.len() && line[..p.len()].eq_ignore_ascii_case(p);
        if lower(b"begin ") && line.len() > 10 && line[6..9].iter().all(|b| (b'0'..=b'7').contains(b)) {
            return Err("uuencoded attachment");
        }
        if lower(b"=ybegin ") {
            return Err("yEnc attachment");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: &str) -> Check {
        let mut m = Box::<Mime>::default();
        for line in message.split("\r\n") {
            m.line(line.as_bytes())?;
        }
        m.finish()
    }

    #[test]
    fn text_messages_pass() {
        assert_eq!(check("From: a@example\r\nSubject: hi\r\n\r\nhello\r\n"), Ok(()));
        assert_eq!(check("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9\r\n"), Ok(()));
        let alt = "Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b1\r\n\r\nmore plain\r\n--b1--\r\nepilogue\r\n";
        assert_eq!(check(alt), Ok(()));
        assert_eq!(check("Subject: no body"), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(check("Content-Type: text/html\r\n\r\n<p>x</p>\r\n"), Err("part is not text/plain"));
        assert_eq!(
            check("Content-Type: application/octet-stream\r\n\r\nxx\r\n"),
            Err("part is not text/plain")
        );
        assert_eq!(check("Content-Transfer-Encoding: base64\r\n\r\nTVqQ\r\n"), Err("base64 body"));
        assert_eq!(check("Content-Disposition: attachment\r\n\r\nx\r\n"), Err("attachment"));
        assert_eq!(
            check("Content-Type: text/plain; name=\"a.txt\"\r\n\r\nx\r\n"),
            Err("attachment (file name)")
        );
        assert_eq!(
            check("Content-Disposition: inline;\r\n filename*=UTF-8''a.exe\r\n\r\nx\r\n"),
            Err("attachment (file name)")
        );
        let attach = "Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/x-msdownload; name=invoice.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--XX--\r\n";
        assert_eq!(check(attach), Err("part is not text/plain"));
        assert_eq!(
            check("Subject: x\r\n\r\nbegin 644 invoice.exe\r\nM35J0\r\n"),
            Err("uuencoded attachment")
        );
        assert_eq!(check("Subject: x\r\n\r\n=ybegin line=128 size=3 name=a.exe\r\n"), Err("yEnc attachment"));
        assert_eq!(check("Content-Type: multipart/mixed\r\n\r\nx\r\n"), Err("multipart without a boundary"));
        assert_eq!(
            check("Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n"),
            Err("a Content-* header field given twice")
        );
        assert_eq!(check("no colon here\r\n\r\n"), Err("malformed header line"));
        assert_eq!(
            check(&format!("Subject: x\r\n\r\n{}\r\n", "a".repeat(999))),
            Err("line longer than 998 characters")
        );
        let deep = (0..5)
            .map(|i| format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"))
            .collect::<String>();
        assert_eq!(check(&deep), Err("multiparts nested too deep"));
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_verdict() {
        let attach = b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: image/png\r\n\r\n..\r\n--XX--\r\n";
        for cut in 1..attach.len() {
            let mut m = Box::<Mime>::default();
            let r = m.bytes(&attach[..cut]).and_then(|()| m.bytes(&attach[cut..])).and_then(|()| m.finish());
            assert_eq!(r, Err("part is not text/plain"), "cut at {cut}");
        }
        let mut m = Box::<Mime>::default();
        assert_eq!(m.bytes(b"Subject: a\r\n\r\nhello\r\n").and_then(|()| m.finish()), Ok(()));
    }
}
