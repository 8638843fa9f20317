//! A small DNS stub resolver for one job: reading the TXT records of a name, to verify custom
//! domains. It asks the configured recursive server (`domains.dns_resolver`, or the first
//! `nameserver` of `/etc/resolv.conf`) over UDP with a random query id, accepts only an answer
//! from that server to that question, falls back to TCP when the answer is truncated, and
//! retries a lost datagram. Replies are parsed defensively: a malformed one is an error,
//! never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS server {server} did not answer in time")]
    Timeout { server: SocketAddr },
    #[error("the DNS server {server} could not answer (response code {rcode}); try again later")]
    ServerFailure { server: SocketAddr, rcode: u8 },
    #[error("the DNS server {server} sent a malformed answer: {reason}")]
    Malformed { server: SocketAddr, reason: &'static str },
    #[error("cannot reach the DNS server {server}: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
    #[error("{0:?} cannot be looked up: {1}")]
    BadName(String, &'static str),
}

#[derive(Debug, Clone)]
pub struct TxtResolver {
    server: SocketAddr,
    timeout: Duration,
}

impl TxtResolver {
    pub fn new(server: SocketAddr, timeout: Duration) -> TxtResolver {
        TxtResolver { server, timeout }
    }

    /// The first `nameserver` of `/etc/resolv.conf`, else 127.0.0.1:53.
    pub fn system(timeout: Duration) -> TxtResolver {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let server = nameserver_of(&text).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        TxtResolver::new(SocketAddr::new(server, 53), timeout)
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Every TXT record of `name` (each record's strings joined); empty when the name does not
    /// exist or has none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let id: u16 = rand::random();
        let query = encode_query(id, name)?;
        let mut last = DnsError::Timeout { server: self.server };
        for _ in 0..ATTEMPTS {
            match self.udp(&query).await {
                Ok(reply) => {
                    let answer = parse_reply(&reply, id, name).map_err(|reason| self.malformed(reason))?;
                    let answer = if answer.truncated { self.tcp(&query, id, name).await? } else { answer };
                    return self.records_of(answer);
                }
                Err(e @ DnsError::Timeout { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn malformed(&self, reason: &'static str) -> DnsError {
        DnsError::Malformed { server: self.server, reason }
    }

    fn records_of(&self, answer: Answer) -> Result<Vec<String>, DnsError> {
        match answer.rcode {
            0 => Ok(answer.txt),
            3 => Ok(Vec::new()), // NXDOMAIN: no such name, so no record.
            rcode => Err(DnsError::ServerFailure { server: self.server, rcode }),
        }
    }

    async fn udp(&self, query: &[u8]) -> Result<Vec<u8>, DnsError> {
        let io = |source| DnsError::Io { server: self.server, source };
        let local: SocketAddr = if self.server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(self.server).await.map_err(io)?;
        socket.send(query).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        // A connected socket only delivers datagrams from the server; the id and question
        // checks in `parse_reply` refuse a stale or forged one.
        match tokio::time::timeout(self.timeout, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                buf.truncate(n);
                Ok(buf)
            }
            Ok(Err(source)) => Err(io(source)),
            Err(_) => Err(DnsError::Timeout { server: self.server }),
        }
    }

    async fn tcp(&self, query: &[u8], id: u16, name: &str) -> Result<Answer, DnsError> {
        let io = |source| DnsError::Io { server: self.server, source };
        let exchange = async {
            let mut stream = TcpStream::connect(self.server).await.map_err(io)?;
            let len = u16::try_from(query.len()).map_err(|_| self.malformed("query too long"))?;
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(query);
            stream.write_all(&framed).await.map_err(io)?;
            let len = stream.read_u16().await.map_err(io)?;
            let mut reply = vec![0u8; usize::from(len)];
            stream.read_exact(&mut reply).await.map_err(io)?;
            parse_reply(&reply, id, name).map_err(|reason| self.malformed(reason))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DnsError::Timeout { server: self.server })?
    }
}

fn nameserver_of(resolv_conf: &str) -> Option<IpAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver")).then(|| words.next()).flatten()?.parse().ok()
    })
}

/// The labels of `name` in wire form.
fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), DnsError> {
    let bad = |why| DnsError::BadName(name.to_string(), why);
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(bad("a name is 1 to 253 characters"));
    }
    for label in trimmed.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or(bad("a label is 1 to 63 characters"))?;
        if !label.is_ascii() {
            return Err(bad("names are looked up in their ASCII form"));
        }
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// A recursive (RD) query for the TXT records of `name`.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    encode_name(name, &mut out)?;
    out.extend_from_slice(&TYPE_TXT.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub rcode: u8,
    pub truncated: bool,
    pub txt: Vec<String>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("cut short")?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a (possibly compressed) name, lowercased, without the trailing dot.
    fn name(&mut self) -> Result<String, &'static str> {
        let mut labels: Vec<String> = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.buf.get(pos).ok_or("cut short")?;
            match len {
                0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    return Ok(labels.join("."));
                }
                l if l & 0xC0 == 0xC0 => {
                    let low = *self.buf.get(pos + 1).ok_or("cut short")?;
                    if !jumped {
                        self.pos = pos + 2;
                    }
                    jumped = true;
                    pos = (usize::from(l & 0x3F) << 8) | usize::from(low);
                }
                l if l & 0xC0 == 0 => {
                    let start = pos + 1;
                    let label = self.buf.get(start..start + usize::from(l)).ok_or("cut short")?;
                    labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                    pos = start + usize::from(l);
                }
                _ => return Err("unknown label type"),
            }
        }
        Err("a name loops")
    }
}

/// Reads a reply to query `id` for `name`'s TXT records: the answer section's TXT records
/// (each record's character-strings concatenated, as RFC 7208 reads them).
pub fn parse_reply(buf: &[u8], id: u16, name: &str) -> Result<Answer, &'static str> {
    let mut r = Reader { buf, pos: 0 };
    if r.u16()? != id {
        return Err("the answer is for another query");
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("not a response");
    }
    let questions = r.u16()?;
    let answers = r.u16()?;
    r.u16()?; // authority
    r.u16()?; // additional
    let mut answer =
        Answer { rcode: (flags & 0x000F) as u8, truncated: flags & 0x0200 != 0, txt: Vec::new() };
    if questions != 1 {
        return Err("the answer does not repeat the one question");
    }
    let asked = r.name()?;
    let (qtype, qclass) = (r.u16()?, r.u16()?);
    if asked != name.trim_end_matches('.').to_ascii_lowercase() || qtype != TYPE_TXT || qclass != CLASS_IN {
        return Err("the answer is for another question");
    }
    if answer.truncated {
        return Ok(answer);
    }
    for _ in 0..answers {
        r.name()?;
        let (rtype, class) = (r.u16()?, r.u16()?);
        r.take(4)?; // ttl
        let len = usize::from(r.u16()?);
        let data = r.take(len)?;
        if rtype != TYPE_TXT || class != CLASS_IN {
            continue; // a CNAME on the way, say
        }
        let mut text = Vec::new();
        let mut d = Reader { buf: data, pos: 0 };
        while d.pos < data.len() {
            let n = usize::from(d.u8()?);
            text.extend_from_slice(d.take(n)?);
        }
        answer.txt.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reply to `query` with these TXT records (each a list of strings), a CNAME first and
    /// compression pointers to the question.
    fn reply(query: &[u8], records: &[&[&str]], flags: u16) -> Vec<u8> {
        let mut out = query.to_vec();
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        out[6..8].copy_from_slice(&u16::try_from(records.len() + 1).unwrap_or(0).to_be_bytes());
        // CNAME, name = pointer to the question (offset 12), data = pointer too.
        out.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 12]);
        for strings in records {
            let mut data = Vec::new();
            for s in *strings {
                data.push(u8::try_from(s.len()).unwrap_or(0));
                data.extend_from_slice(s.as_bytes());
            }
            out.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
            out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&data);
        }
        out
    }

    #[test]
    fn txt_records_are_read_through_compression_and_joined_per_record() {
        let query = encode_query(0x1234, "_wisehosting-challenge.Example.com").expect("query");
        let buf = reply(&query, &[&["wh-verify=", "abc"], &["v=spf1 -all"]], 0x8180);
        let answer = parse_reply(&buf, 0x1234, "_wisehosting-challenge.example.com.").expect("parse");
        assert_eq!(answer.rcode, 0);
        assert_eq!(answer.txt, vec!["wh-verify=abc".to_string(), "v=spf1 -all".to_string()]);
    }

    #[test]
    fn answers_to_another_query_or_question_are_refused() {
        let query = encode_query(7, "a.example.com").expect("query");
        let buf = reply(&query, &[&["x"]], 0x8180);
        assert_eq!(parse_reply(&buf, 8, "a.example.com"), Err("the answer is for another query"));
        assert_eq!(parse_reply(&buf, 7, "b.example.com"), Err("the answer is for another question"));
        assert_eq!(parse_reply(&query, 7, "a.example.com"), Err("not a response"));
        let truncated = parse_reply(&reply(&query, &[], 0x8380), 7, "a.example.com").expect("parse");
        assert!(truncated.truncated);
        let nxdomain = parse_reply(&reply(&query, &[], 0x8183), 7, "a.example.com").expect("parse");
        assert_eq!(nxdomain.rcode, 3);
    }

    #[test]
    fn a_pointer_loop_is_an_error_not_a_hang() {
        let mut buf = encode_query(1, "a.example.com").expect("query");
        buf[2] = 0x81;
        buf[7] = 1;
        buf.extend_from_slice(&[0xC0, 29]); // points at itself
        let at = buf.len() - 2;
        buf[at + 1] = u8::try_from(at).unwrap_or(0);
        assert_eq!(parse_reply(&buf, 1, "a.example.com"), Err("a name loops"));
    }

    #[test]
    fn resolv_conf_gives_the_first_nameserver() {
        let conf = "# comment\nsearch example.org\nnameserver 10.0.0.53\nnameserver 1.1.1.1\n";
        assert_eq!(nameserver_of(conf), Some("10.0.0.53".parse().expect("ip")));
        assert_eq!(nameserver_of("options ndots:1\n"), None);
    }

    #[test]
    fn names_that_cannot_be_asked_are_refused() {
        assert!(encode_query(1, "").is_err());
        assert!(encode_query(1, &format!("{}.com", "a".repeat(64))).is_err());
        assert!(encode_query(1, "a..com").is_err());
        assert!(encode_query(1, "bücher.de").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_parse_to_a_result_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_reply(&bytes, 0, "a.example.com");
        }

        #[test]
        fn a_mutated_reply_never_panics(flip in 0usize..200, value in any::<u8>()) {
            let query = encode_query(9, "x.example.com").unwrap_or_default();
            let mut buf = reply(&query, &[&["token-1", "part"]], 0x8180);
            let at = flip % buf.len();
            buf[at] = value;
            let _ = parse_reply(&buf, 9, "x.example.com");
        }
    }
}
