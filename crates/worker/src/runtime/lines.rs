//! Output is hostile (SECURITY-TESTS T36): an app or a build may print a 3 MB line, a line that
//! never ends, or a flood of lines. This module reads such output without ever holding more
//! than one cut line, batches lines under a byte cap that keeps every `log` frame far below
//! the link's 2 MiB limit, and limits how fast one app's lines go out so a noisy app cannot
//! starve the others or the link.
//!
//! - [`read_lines`] cuts each line at [`MAX_LINE_BYTES`] while reading: the rest of a longer
//!   line is skipped up to its newline, so an endless line costs one cut line and no memory.
//! - [`LogBatch`] says when a batch is full by count or by bytes ([`MAX_BATCH_BYTES`]).
//! - [`LogBudget`] is a token bucket per stream of one app (lines and bytes per second); lines
//!   over it are dropped and counted, and one notice says how many when lines flow again.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest line kept, in bytes (SPEC §6: each line cut at 8 KiB).
pub const MAX_LINE_BYTES: usize = wisehosting_proto::MAX_LOG_LINE_BYTES;
/// A batch is sent once its lines hold this many bytes. JSON escaping can make a byte six
/// (`\u001b`), so a full batch is at most ~1.2 MB on the wire: under the 2 MiB frame limit.
pub const MAX_BATCH_BYTES: usize = 192 * 1024;
// The worst case on the wire (every byte escaped as `\u00XX`) stays under the frame limit.
const _: () = assert!(MAX_BATCH_BYTES * 6 + 64 * 1024 < wisehosting_proto::MAX_FRAME_BYTES);
/// Sustained lines per second one app stream may send, and the burst above it.
pub const LINES_PER_SEC: f64 = 500.0;
pub const LINES_BURST: f64 = 2_000.0;
/// Sustained bytes per second one app stream may send, and the burst above it.
pub const BYTES_PER_SEC: f64 = 256.0 * 1024.0;
pub const BYTES_BURST: f64 = 1024.0 * 1024.0;

/// Reads `pipe` line by line into `tx`, each line cut at [`MAX_LINE_BYTES`] (a cut line is sent
/// as soon as it is full; the rest of it, up to its newline, is skipped). Invalid UTF-8 is
/// replaced, a trailing `\r` dropped. Ends when the pipe ends or the receiver is gone.
pub async fn read_lines<R: AsyncRead + Unpin>(pipe: R, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::with_capacity(16 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    // Inside a line that was already cut and sent.
    let mut skipping = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let newline = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if !skipping {
            let room = MAX_LINE_BYTES - line.len();
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        let full = !skipping && line.len() >= MAX_LINE_BYTES && newline.is_none();
        if newline.is_some() || full {
            if !skipping && tx.send(to_text(&line)).await.is_err() {
                return;
            }
            line.clear();
            skipping = full;
        }
    }
    if !line.is_empty() && !skipping {
        let _ = tx.send(to_text(&line)).await;
    }
}

/// The line as text of at most [`MAX_LINE_BYTES`]: a character cut in half at the end is
/// dropped, other invalid bytes replaced, a trailing `\r` removed.
fn to_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Lines waiting to go out as one `log` message.
#[derive(Debug)]
pub struct LogBatch {
    lines: Vec<String>,
    bytes: usize,
    max_lines: usize,
}

impl LogBatch {
    pub fn new(max_lines: usize) -> Self {
        Self { lines: Vec::new(), bytes: 0, max_lines }
    }

    /// Adds a line; true when the batch should be sent now.
    pub fn push(&mut self, line: String) -> bool {
        self.bytes += line.len();
        self.lines.push(line);
        self.lines.len() >= self.max_lines || self.bytes >= MAX_BATCH_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn take(&mut self) -> Vec<String> {
        self.bytes = 0;
        std::mem::take(&mut self.lines)
    }
}

/// A token bucket of lines and bytes for one app's output.
#[derive(Debug)]
pub struct LogBudget {
    lines: f64,
    bytes: f64,
    at: Instant,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self { lines: LINES_BURST, bytes: BYTES_BURST, at: Instant::now(), dropped: 0 }
    }
}

impl LogBudget {
    /// What to send for `line`: nothing when over budget (counted), else the line, preceded by
    /// a notice when lines were dropped before it. (No allocation beyond the notice: this runs
    /// for every line.)
    pub fn admit(&mut self, line: String) -> impl Iterator<Item = String> + use<> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.lines = (self.lines + elapsed * LINES_PER_SEC).min(LINES_BURST);
        self.bytes = (self.bytes + elapsed * BYTES_PER_SEC).min(BYTES_BURST);
        let cost = line.len().max(1) as f64;
        if self.lines < 1.0 || self.bytes < cost {
            self.dropped += 1;
            return None.into_iter().chain(None);
        }
        self.lines -= 1.0;
        self.bytes -= cost;
        let notice = (self.dropped > 0).then(|| {
            format!(
                "[wisehosting] {} lines dropped: output over {} lines or {} KiB a second is not kept",
                std::mem::take(&mut self.dropped),
                LINES_PER_SEC,
                BYTES_PER_SEC / 1024.0
            )
        });
        notice.into_iter().chain(Some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: Vec<u8>) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(read_lines(std::io::Cursor::new(input), tx));
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn a_3_mb_line_becomes_one_8_kib_line_and_the_next_line_survives() {
        let mut input = vec![b'a'; 3_000_000];
        input.extend_from_slice(b"\nafter\r\n");
        let lines = lines_of(input).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert!(lines[0].bytes().all(|b| b == b'a'));
        assert_eq!(lines[1], "after");
    }

    /// A reader that never ends a line: 64 KiB of `x` at a time, forever, yielding between
    /// reads as a pipe does (a reader always ready would starve the test's runtime).
    struct Endless {
        ready: bool,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            let n = buf.remaining().min(64 * 1024);
            buf.put_slice(&vec![b'x'; n]);
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_endless_line_is_sent_cut_at_once_and_the_rest_is_never_held() {
        let (tx, mut rx) = mpsc::channel(4);
        let reader = tokio::spawn(read_lines(Endless { ready: false }, tx));
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("the cut line arrives while the line goes on")
            .expect("a line");
        assert_eq!(first.len(), MAX_LINE_BYTES);
        // It keeps reading (and skipping) without sending anything more.
        let more = tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await;
        assert!(more.is_err(), "only one line for an endless line");
        assert!(!reader.is_finished());
        reader.abort();
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_and_a_split_character_at_the_cut_is_dropped() {
        let lines = lines_of(b"ok \xff bad\n".to_vec()).await;
        assert_eq!(lines, vec!["ok \u{fffd} bad"]);
        // A three-byte character straddling the 8 KiB cut.
        let mut input = vec![b'a'; MAX_LINE_BYTES - 1];
        input.extend_from_slice("€".as_bytes());
        input.push(b'\n');
        let lines = lines_of(input).await;
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES - 1);
        // Invalid bytes that expand when replaced still give at most 8 KiB.
        let lines = lines_of(vec![0xff; MAX_LINE_BYTES + 10]).await;
        assert!(lines[0].len() <= MAX_LINE_BYTES, "{}", lines[0].len());
    }

    #[test]
    fn a_batch_is_full_by_count_or_by_bytes() {
        let mut batch = LogBatch::new(3);
        assert!(!batch.push("a".into()));
        assert!(!batch.push("b".into()));
        assert!(batch.push("c".into()));
        assert_eq!(batch.take().len(), 3);
        let mut batch = LogBatch::new(1000);
        let big = "x".repeat(MAX_LINE_BYTES);
        let mut pushed = 0;
        while !batch.push(big.clone()) {
            pushed += 1;
        }
        assert_eq!(pushed + 1, MAX_BATCH_BYTES / MAX_LINE_BYTES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_cut_to_the_budget_and_the_drop_is_told() {
        let mut budget = LogBudget::default();
        let sent: usize = (0..10_000).map(|i| budget.admit(format!("line {i}")).count()).sum();
        assert_eq!(sent, LINES_BURST as usize, "a burst, then nothing");
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let next: Vec<String> = budget.admit("later".into()).collect();
        assert_eq!(next.len(), 2);
        assert!(next[0].contains("8000 lines dropped"), "{next:?}");
        assert_eq!(next[1], "later");
        // Bytes count too: 8 KiB lines run out of bytes long before lines.
        let mut budget = LogBudget::default();
        let big = "y".repeat(MAX_LINE_BYTES);
        let kept = (0..1000).filter(|_| budget.admit(big.clone()).next().is_some()).count();
        assert_eq!(kept, (BYTES_BURST as usize) / MAX_LINE_BYTES);
    }
}
