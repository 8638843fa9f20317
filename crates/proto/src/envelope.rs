//! The signed envelope (SPEC §4.2).
//!
//! Every WebSocket frame is one JSON object `{"t","i","s","ts","p","h"}`. `h` is the lowercase
//! hex HMAC-SHA256, under the direction's key, of `t|i|s|ts|p` where `p` is the payload's JSON
//! text exactly as it stands in the frame: the verifier uses the raw bytes, never a
//! re-serialization. [`Receiver::accept`] runs the checks in the spec's order: size, HMAC
//! (constant time), clock skew, sequence.

use hmac::Mac;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::keys::DirectionKey;
use crate::messages::MessageType;
use crate::window::{ReplayWindow, WindowError};

/// The largest frame accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// The largest difference between the sender's clock and ours, in milliseconds.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// Why a frame was refused; the codes of SPEC §13 (`sequence_gap` added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    FrameTooLarge,
    BadFrame,
    BadMac,
    StaleTimestamp,
    ReplayedSequence,
    SequenceGap,
}

impl RejectCode {
    pub const ALL: [RejectCode; 6] = [
        RejectCode::FrameTooLarge,
        RejectCode::BadFrame,
        RejectCode::BadMac,
        RejectCode::StaleTimestamp,
        RejectCode::ReplayedSequence,
        RejectCode::SequenceGap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::FrameTooLarge => "frame_too_large",
            RejectCode::BadFrame => "bad_frame",
            RejectCode::BadMac => "bad_mac",
            RejectCode::StaleTimestamp => "stale_timestamp",
            RejectCode::ReplayedSequence => "replayed_sequence",
            RejectCode::SequenceGap => "sequence_gap",
        }
    }
}

/// A refused frame: the code and a sentence without any of the frame's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub message: &'static str,
}

impl Rejection {
    fn new(code: RejectCode, message: &'static str) -> Self {
        Self { code, message }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// A verified frame, borrowing from the text it came in.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    pub t: &'a str,
    pub i: &'a str,
    pub s: u64,
    pub ts: i64,
    #[serde(borrow)]
    pub p: &'a RawValue,
    pub h: &'a str,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn signed_parts<'a>(t: &'a str, i: &'a str, s: &'a str, ts: &'a str, p: &'a str) -> [&'a [u8]; 9] {
    [t.as_bytes(), b"|", i.as_bytes(), b"|", s.as_bytes(), b"|", ts.as_bytes(), b"|", p.as_bytes()]
}

/// Signs frames of one direction of one connection, numbering them from 1.
#[derive(Debug)]
pub struct Sender {
    key: DirectionKey,
    next: u64,
}

impl Sender {
    pub fn new(key: DirectionKey) -> Self {
        Self { key, next: 1 }
    }

    /// The frame text for a payload given as JSON text; `id` is 16 random bytes.
    pub fn seal_raw(&mut self, t: &str, id: [u8; 16], ts_ms: i64, payload_json: &str) -> String {
        let seq = self.next;
        self.next += 1;
        seal_frame(&self.key, t, &hex::encode(id), seq, ts_ms, payload_json)
    }

    /// The frame text for a typed message.
    pub fn seal<M: MessageType>(&mut self, message: &M, id: [u8; 16], ts_ms: i64) -> String {
        let payload = serde_json::to_string(message).unwrap_or_else(|_| "{}".into());
        self.seal_raw(M::TYPE, id, ts_ms, &payload)
    }
}

/// Builds one frame's text with an explicit sequence number (tests and fuzzers use it to
/// forge frames).
pub fn seal_frame(key: &DirectionKey, t: &str, i: &str, seq: u64, ts_ms: i64, payload_json: &str) -> String {
    let (s, ts) = (seq.to_string(), ts_ms.to_string());
    let h = hex::encode(key.mac(&signed_parts(t, i, &s, &ts, payload_json)));
    let t_json = serde_json::to_string(t).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"t\":{t_json},\"i\":\"{i}\",\"s\":{s},\"ts\":{ts},\"p\":{payload_json},\"h\":\"{h}\"}}")
}

/// Verifies frames of one direction of one connection.
#[derive(Debug)]
pub struct Receiver {
    key: DirectionKey,
    window: ReplayWindow,
}

impl Receiver {
    pub fn new(key: DirectionKey) -> Self {
        Self { key, window: ReplayWindow::new() }
    }

    /// Runs every receive check; on success the frame's sequence is recorded.
    pub fn accept<'a>(&mut self, text: &'a str, now_ms: i64) -> Result<Frame<'a>, Rejection> {
        let frame = verify_frame(&self.key, text, now_ms)?;
        self.window.accept(frame.s).map_err(|e| match e {
            WindowError::Jump => {
                Rejection::new(RejectCode::SequenceGap, "the sequence number jumped too far ahead")
            }
            WindowError::Zero => Rejection::new(RejectCode::BadFrame, "sequence numbers start at 1"),
            WindowError::Replayed => {
                Rejection::new(RejectCode::ReplayedSequence, "this sequence number was already seen")
            }
            WindowError::BelowWindow => {
                Rejection::new(RejectCode::ReplayedSequence, "the sequence number is below the replay window")
            }
        })?;
        Ok(frame)
    }
}

/// The stateless checks: size, shape, HMAC, clock skew.
pub fn verify_frame<'a>(key: &DirectionKey, text: &'a str, now_ms: i64) -> Result<Frame<'a>, Rejection> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(Rejection::new(RejectCode::FrameTooLarge, "the frame is larger than 2 MiB"));
    }
    let frame: Frame<'a> = serde_json::from_str(text)
        .map_err(|_| Rejection::new(RejectCode::BadFrame, "the frame is not an envelope object"))?;
    if !is_lower_hex(frame.i, 32) || !is_lower_hex(frame.h, 64) {
        return Err(Rejection::new(RejectCode::BadFrame, "`i` must be 32 and `h` 64 lowercase hex digits"));
    }
    let (s, ts) = (frame.s.to_string(), frame.ts.to_string());
    let mut mac = key.verifier();
    for part in signed_parts(frame.t, frame.i, &s, &ts, frame.p.get()) {
        mac.update(part);
    }
    let mut expected = [0u8; 32];
    if hex::decode_to_slice(frame.h, &mut expected).is_err() || mac.verify_slice(&expected).is_err() {
        return Err(Rejection::new(RejectCode::BadMac, "the frame's HMAC does not verify"));
    }
    if now_ms.abs_diff(frame.ts) > MAX_SKEW_MS as u64 {
        return Err(Rejection::new(
            RejectCode::StaleTimestamp,
            "the frame's timestamp is more than 5 minutes off",
        ));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{LinkKeys, mac_key_from_api_key};

    const NOW: i64 = 1_800_000_000_000;

    fn keys() -> LinkKeys {
        LinkKeys::derive(&mac_key_from_api_key("whk_unit"), "0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_sealed_frame_verifies_and_keeps_the_payload_text() {
        let k = keys();
        let mut tx = Sender::new(k.c2s.clone());
        let text = tx.seal_raw("heartbeat", [7; 16], NOW, "{\"b\": 1,  \"a\":2}");
        let mut rx = Receiver::new(k.c2s);
        let frame = rx.accept(&text, NOW).expect("accepted");
        assert_eq!((frame.t, frame.s, frame.p.get()), ("heartbeat", 1, "{\"b\": 1,  \"a\":2}"));
    }

    #[test]
    fn a_frame_signed_for_the_other_direction_is_refused() {
        let k = keys();
        let text = Sender::new(k.s2c.clone()).seal_raw("welcome", [1; 16], NOW, "{}");
        let err = Receiver::new(k.c2s).accept(&text, NOW).expect_err("reflected");
        assert_eq!(err.code, RejectCode::BadMac);
    }

    #[test]
    fn skew_of_five_minutes_is_accepted_and_one_second_more_is_not() {
        let k = keys();
        for (offset, ok) in [
            (MAX_SKEW_MS, true),
            (-MAX_SKEW_MS, true),
            (MAX_SKEW_MS + 1000, false),
            (-MAX_SKEW_MS - 1000, false),
        ] {
            let text = seal_frame(&k.c2s, "x", &"a".repeat(32), 1, NOW + offset, "{}");
            let result = Receiver::new(k.c2s.clone()).accept(&text, NOW);
            assert_eq!(result.is_ok(), ok, "offset {offset}");
            if !ok {
                assert_eq!(result.err().map(|e| e.code), Some(RejectCode::StaleTimestamp));
            }
        }
    }

    #[test]
    fn oversize_and_malformed_frames_are_refused_before_any_mac_work() {
        let k = keys();
        let big = format!("{{\"p\":\"{}\"}}", "a".repeat(MAX_FRAME_BYTES));
        assert_eq!(
            Receiver::new(k.c2s.clone()).accept(&big, NOW).err().map(|e| e.code),
            Some(RejectCode::FrameTooLarge)
        );
        for bad in [
            "",
            "[]",
            "{}",
            "{\"t\":1}",
            "not json",
            "{\"t\":\"x\",\"i\":\"AB\",\"s\":1,\"ts\":1,\"p\":{},\"h\":\"00\"}",
        ] {
            assert_eq!(
                Receiver::new(k.c2s.clone()).accept(bad, NOW).err().map(|e| e.code),
                Some(RejectCode::BadFrame),
                "{bad}"
            );
        }
    }

    #[test]
    fn one_flipped_bit_in_any_field_fails() {
        let k = keys();
        let text = seal_frame(&k.c2s, "heartbeat", &"ab".repeat(16), 5, NOW, "{\"cpu_pct\":1.5}");
        let variants = [
            text.replace("\"heartbeat\"", "\"heartbeau\""),
            text.replace(&"ab".repeat(16), &format!("bb{}", "ab".repeat(15))),
            text.replace("\"s\":5", "\"s\":4"),
            text.replace(&format!("\"ts\":{NOW}"), &format!("\"ts\":{}", NOW + 1)),
            text.replace("1.5", "1.4"),
        ];
        for forged in variants {
            assert_ne!(forged, text);
            let err = Receiver::new(k.c2s.clone()).accept(&forged, NOW).expect_err("forged");
            assert_eq!(err.code, RejectCode::BadMac, "{forged}");
        }
        let h_pos = text.rfind("\"h\":\"").expect("h") + 5;
        let mut bytes = text.clone().into_bytes();
        bytes[h_pos] = if bytes[h_pos] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(bytes).expect("utf8");
        assert_eq!(Receiver::new(k.c2s).accept(&forged, NOW).err().map(|e| e.code), Some(RejectCode::BadMac));
    }

    #[test]
    fn an_exact_replay_is_refused() {
        let k = keys();
        let mut tx = Sender::new(k.c2s.clone());
        let text = tx.seal_raw("heartbeat", [2; 16], NOW, "{}");
        let mut rx = Receiver::new(k.c2s);
        assert!(rx.accept(&text, NOW).is_ok());
        assert_eq!(rx.accept(&text, NOW).err().map(|e| e.code), Some(RejectCode::ReplayedSequence));
    }
}
