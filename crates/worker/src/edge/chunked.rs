//! Finds where a chunked body ends (RFC 9112 §7.1) without decoding it: the router passes an
//! app's chunked response through byte for byte and only needs to know when it is complete,
//! so the upstream connection can be used again. Strict: CRLF line ends, hex sizes that fit
//! in 64 bits, extensions and trailer lines of bounded length.

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: extensions up to the CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// The chunked body's shape is broken; the connection cannot be trusted any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

#[derive(Debug, Clone)]
pub struct ChunkedEnd {
    state: State,
    /// The size being read, or the data left in the current chunk.
    size: u64,
    line: usize,
}

impl Default for ChunkedEnd {
    fn default() -> Self {
        ChunkedEnd { state: State::Size { digits: 0 }, size: 0, line: 0 }
    }
}

impl ChunkedEnd {
    /// Reads the next bytes of the body. `Ok(Some(n))`: the body ends after `bytes[..n]`;
    /// `Ok(None)`: all of `bytes` belongs to it and more is to come.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Data {
                let take = usize::try_from(self.size).unwrap_or(usize::MAX).min(bytes.len() - i);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match self.state {
                State::Size { digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(Malformed);
                        }
                        let value = u64::from(char::from(b).to_digit(16).ok_or(Malformed)?);
                        self.size = self.size * 16 + value;
                        State::Size { digits: digits + 1 }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => {
                        self.line = 0;
                        State::Extension
                    }
                    b'\r' if digits > 0 => State::SizeLf,
                    _ => return Err(Malformed),
                },
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(Malformed),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(Malformed);
                        }
                        State::Extension
                    }
                },
                State::SizeLf if b == b'\n' => {
                    if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => {
                    self.size = 0;
                    State::Size { digits: 0 }
                }
                State::TrailerStart if b == b'\r' => State::EndLf,
                State::TrailerStart | State::Trailer if b != b'\r' && b != b'\n' => {
                    self.line = if self.state == State::TrailerStart { 0 } else { self.line + 1 };
                    if self.line > MAX_LINE {
                        return Err(Malformed);
                    }
                    State::Trailer
                }
                State::Trailer if b == b'\r' => State::TrailerLf,
                State::TrailerLf if b == b'\n' => State::TrailerStart,
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(Some(i));
                }
                _ => return Err(Malformed),
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn end_of(body: &[u8]) -> Result<Option<usize>, Malformed> {
        ChunkedEnd::default().feed(body)
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_in_one_piece_or_byte_by_byte() {
        let body =
            b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(end_of(&with_next), Ok(Some(body.len())));
        let mut scanner = ChunkedEnd::default();
        for (i, b) in body.iter().enumerate() {
            let found = scanner.feed(std::slice::from_ref(b)).expect("well formed");
            assert_eq!(found.is_some(), i == body.len() - 1, "byte {i}");
        }
        assert_eq!(end_of(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(end_of(b"3\r\nabc\r\n"), Ok(None), "more to come");
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello\r\n",
            b"3\r\nabcX\r\n",
            b"11111111111111111\r\n",
            b"0\r\n\n",
            b"0\r\nX: y\n\r\n",
        ] {
            assert_eq!(end_of(bad), Err(Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
        let long_extension = format!("1;{}\r\n", "x".repeat(MAX_LINE + 1));
        assert_eq!(end_of(long_extension.as_bytes()), Err(Malformed));
    }

    proptest! {
        #[test]
        fn the_end_is_found_exactly_however_the_body_is_split(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
            extension in proptest::option::of("[a-z]{1,8}=[a-z0-9]{0,8}"),
            trailers in proptest::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,20}", 0..3),
            upper in any::<bool>(),
            cuts in proptest::collection::vec(0usize..4000, 0..6),
        ) {
            let mut body = Vec::new();
            for chunk in &chunks {
                let size = if upper { format!("{:X}", chunk.len()) } else { format!("{:x}", chunk.len()) };
                body.extend_from_slice(size.as_bytes());
                if let Some(ext) = &extension {
                    body.extend_from_slice(format!(";{ext}").as_bytes());
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(chunk);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            for trailer in &trailers {
                body.extend_from_slice(trailer.as_bytes());
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"\r\n");
            let end = body.len();
            body.extend_from_slice(b"HTTP/1.1 200 OK\r\n");

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % body.len()).collect();
            cuts.push(body.len());
            cuts.sort_unstable();
            let mut scanner = ChunkedEnd::default();
            let mut at = 0;
            let mut found = None;
            for cut in cuts {
                if cut <= at {
                    continue;
                }
                if let Some(n) = scanner.feed(&body[at..cut]).expect("well formed") {
                    found = Some(at + n);
                    break;
                }
                at = cut;
            }
            prop_assert_eq!(found, Some(end));
        }
    }
}
