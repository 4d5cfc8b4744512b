//! HTTP/1.1 messages as they crossed a wire: the head byte for byte, the
//! body decoded (chunk boundaries depend on how reads fell, so only the
//! chunked body's content and trailers are compared), and how it was
//! framed.

/// One message read off a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Start line and header lines, exactly as sent, up to the blank line.
    pub head: String,
    pub body: Vec<u8>,
    pub framing: Framing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No body by the rules (HEAD, 1xx, 204, 304, or no length on a request).
    Empty,
    Length,
    /// Chunked, with the trailer section as sent.
    Chunked {
        trailers: String,
    },
    /// Until the connection closed.
    Close,
}

impl Message {
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or_default()
    }

    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    fn status(&self) -> u16 {
        self.target().parse().unwrap_or(0)
    }

    /// The value of header `name` (the first), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What a parse of a buffer came to.
pub enum Parsed {
    /// The message and the bytes it took.
    Done(Message, usize),
    /// More bytes are needed.
    Partial,
}

/// A request at the start of `buf`: bodies framed by `Content-Length` or
/// chunked (the gateway sends nothing else upstream).
pub fn request(buf: &[u8]) -> Parsed {
    let Some((message, head_end)) = head(buf) else {
        return Parsed::Partial;
    };
    body(message, buf, head_end, false)
}

/// A response at the start of `buf`, to a request with method `method`;
/// `eof` says the connection has closed after `buf`.
pub fn response(buf: &[u8], method: &str, eof: bool) -> Parsed {
    let Some((message, head_end)) = head(buf) else {
        return Parsed::Partial;
    };
    let status = message.status();
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        return Parsed::Done(message, head_end);
    }
    let framed =
        message.header("transfer-encoding").is_some() || message.header("content-length").is_some();
    if !framed {
        if !eof {
            return Parsed::Partial;
        }
        let mut message = message;
        message.body = buf[head_end..].to_vec();
        message.framing = Framing::Close;
        return Parsed::Done(message, buf.len());
    }
    body(message, buf, head_end, eof)
}

/// The head at the start of `buf`, once it is all there, as a message
/// without a body; and where the head ends.
pub fn head(buf: &[u8]) -> Option<(Message, usize)> {
    let end = head_end(buf)?;
    let message = Message {
        head: String::from_utf8_lossy(&buf[..end - 4]).into_owned(),
        body: Vec::new(),
        framing: Framing::Empty,
    };
    Some((message, end))
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

fn body(mut message: Message, buf: &[u8], start: usize, eof: bool) -> Parsed {
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if chunked {
        return match chunks(&buf[start..]) {
            Some((body, trailers, used)) => {
                message.body = body;
                message.framing = Framing::Chunked { trailers };
                Parsed::Done(message, start + used)
            }
            None if eof => {
                message.body = buf[start..].to_vec();
                message.framing = Framing::Close;
                Parsed::Done(message, buf.len())
            }
            None => Parsed::Partial,
        };
    }
    let length: usize = message
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if length == 0 {
        return Parsed::Done(message, start);
    }
    if buf.len() < start + length {
        if eof {
            // Cut short: what came is what the peer saw.
            message.body = buf[start..].to_vec();
            message.framing = Framing::Close;
            return Parsed::Done(message, buf.len());
        }
        return Parsed::Partial;
    }
    message.body = buf[start..start + length].to_vec();
    message.framing = Framing::Length;
    Parsed::Done(message, start + length)
}

/// A whole chunked body: its content, its trailer section, the bytes used.
fn chunks(buf: &[u8]) -> Option<(Vec<u8>, String, usize)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
            if end == at {
                return Some((body, String::new(), at + 2));
            }
            let trailers_end = at + head_end(&buf[at..])?;
            let trailers = String::from_utf8_lossy(&buf[at..trailers_end - 4]).into_owned();
            return Some((body, trailers, trailers_end));
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}
