//! [`TestDns`]: a local DNS server standing in for the internet's DNS in domain-verification
//! and repository-address tests. It answers TXT, A and AAAA questions from a table the test
//! edits, over UDP and TCP on one loopback port; unknown names get NXDOMAIN, and a UDP answer
//! over 512 bytes is sent truncated (TC) so clients must retry over TCP, as real servers make
//! them. A name's addresses may rotate through several answers, one per A question, with a
//! TTL of 0 — a rebinding name.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// What the server knows of one name.
#[derive(Debug, Default, Clone)]
struct Entry {
    txt: Vec<String>,
    /// The answers to A/AAAA questions, in turn; the next A question moves to the next one.
    addrs: Vec<Vec<IpAddr>>,
    turn: usize,
}

type Records = Arc<Mutex<HashMap<String, Entry>>>;

pub struct TestDns {
    pub addr: SocketAddr,
    records: Records,
    stop: CancellationToken,
}

impl TestDns {
    pub async fn start() -> TestDns {
        Self::start_on(IpAddr::from([127, 0, 0, 1])).await
    }

    /// Listens on `ip` (a host address network namespaces reach, for hosts in them).
    pub async fn start_on(ip: IpAddr) -> TestDns {
        // A free UDP port may be taken for TCP (by a client's ephemeral port, say): try others.
        let mut attempt = 0;
        let (udp, addr, tcp) = loop {
            let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).await.expect("bind dns udp");
            let addr = udp.local_addr().expect("addr");
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, addr, tcp),
                Err(_) if attempt < 50 => attempt += 1,
                Err(e) => panic!("no port free for both UDP and TCP after 50 tries: {e}"),
            }
        };
        let records: Records = Arc::default();
        let stop = CancellationToken::new();
        let (r, s) = (records.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                tokio::select! {
                    () = s.cancelled() => return,
                    got = udp.recv_from(&mut buf) => {
                        let Ok((n, from)) = got else { continue };
                        if let Some(reply) = answer(&buf[..n], &r, true) {
                            let _ = udp.send_to(&reply, from).await;
                        }
                    }
                }
            }
        });
        let (r, s) = (records.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = s.cancelled() => return,
                    a = tcp.accept() => a,
                };
                let Ok((mut stream, _)) = accepted else { continue };
                let r = r.clone();
                tokio::spawn(async move {
                    let Ok(len) = stream.read_u16().await else { return };
                    let mut query = vec![0u8; usize::from(len)];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    if let Some(reply) = answer(&query, &r, false) {
                        let mut framed = u16::try_from(reply.len()).expect("fits").to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        let _ = stream.write_all(&framed).await;
                    }
                });
            }
        });
        TestDns { addr, records, stop }
    }

    /// Sets the TXT records of `name` (replacing any); an empty list removes the name.
    pub fn set_txt(&self, name: &str, values: &[&str]) {
        let mut records = self.records.lock().expect("records");
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if values.is_empty() {
            records.remove(&key);
        } else {
            records.entry(key).or_default().txt = values.iter().map(|v| (*v).to_string()).collect();
        }
    }

    /// Sets the addresses of `name`: one answer, or several that rotate, one per A question.
    pub fn set_addrs(&self, name: &str, answers: &[&[IpAddr]]) {
        let mut records = self.records.lock().expect("records");
        let entry = records.entry(name.trim_end_matches('.').to_ascii_lowercase()).or_default();
        entry.addrs = answers.iter().map(|a| a.to_vec()).collect();
        entry.turn = 0;
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The reply to one query, or `None` for something that is not a plain query.
fn answer(query: &[u8], records: &Records, udp: bool) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let question_end = pos + 4;
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let name = labels.join(".");
    let (found, txt, addrs) = {
        let mut records = records.lock().expect("records");
        match records.get_mut(&name) {
            None => (false, Vec::new(), Vec::new()),
            Some(entry) => {
                let addrs = match entry.addrs.len() {
                    0 => Vec::new(),
                    n => {
                        let now = entry.addrs[entry.turn % n].clone();
                        if qtype == 1 {
                            entry.turn += 1;
                        }
                        now
                    }
                };
                (true, entry.txt.clone(), addrs)
            }
        }
    };
    let mut out = query.get(..question_end)?.to_vec();
    out[2] = 0x84 | (query[2] & 0x01); // response, authoritative, RD copied
    out[3] = if found { 0x80 } else { 0x83 }; // RA; NXDOMAIN when unknown
    out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    let txt = if qtype == 16 { txt } else { Vec::new() };
    let mut count = 0u16;
    for value in &txt {
        let mut data = Vec::new();
        for chunk in value.as_bytes().chunks(255) {
            data.push(u8::try_from(chunk.len()).expect("chunk"));
            data.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 30]);
        out.extend_from_slice(&u16::try_from(data.len()).expect("record").to_be_bytes());
        out.extend_from_slice(&data);
        count += 1;
    }
    for addr in addrs {
        let (rtype, data) = match addr {
            IpAddr::V4(v4) if qtype == 1 => (1u8, v4.octets().to_vec()),
            IpAddr::V6(v6) if qtype == 28 => (28u8, v6.octets().to_vec()),
            _ => continue,
        };
        // TTL 0: a resolver asks again next time.
        out.extend_from_slice(&[0xC0, 12, 0, rtype, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&u16::try_from(data.len()).expect("record").to_be_bytes());
        out.extend_from_slice(&data);
        count += 1;
    }
    if udp && out.len() > 512 {
        out.truncate(question_end);
        out[2] |= 0x02; // TC
        return Some(out);
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    Some(out)
}
