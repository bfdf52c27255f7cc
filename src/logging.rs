//! Access and WAF logs: one JSON object per line, to stdout or to a file that
//! is reopened on SIGUSR1 (for logrotate's `postrotate`). Operational messages
//! (startup, reloads, ejections) go through `tracing` to stderr instead.
//!
//! A request never waits for the disk: the worker serialises its record and
//! queues the line; one writer thread per log takes the queue every 10 ms and
//! writes what has gathered in one system call, so a burst costs one write,
//! not one per request, and no lock is shared between workers. A line reaches
//! the file at most about 10 ms after its request. When the disk falls so far
//! behind that the queue is full, lines are dropped and counted
//! (`portcullis_log_lines_dropped_total`) rather than stalling the proxy.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

/// Lines a log may hold queued before new ones are dropped (about 25 MB of typical access lines).
const QUEUE_LINES: usize = 65_536;

/// Bytes gathered before the writer writes even though more lines are queued.
const WRITE_CHUNK: usize = 64 * 1024;

/// How often the writer thread takes the queued lines: the most a line waits before it is written.
const WRITER_PERIOD: Duration = Duration::from_millis(10);

/// How long [`LogSink::reopen`] and [`LogSink::flush`] wait for the writer.
const WRITER_WAIT: Duration = Duration::from_secs(5);

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
    Off,
}

impl Destination {
    /// `"stdout"`, `"off"`, or a file path.
    pub fn parse(s: &str) -> Destination {
        match s {
            "stdout" | "-" => Destination::Stdout,
            "off" | "" => Destination::Off,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

/// What the request path and the signal handler send to a log's writer thread.
enum Message {
    Line(Vec<u8>),
    /// Reopen the file (after logrotate moved it away); the result goes back.
    Reopen(Sender<std::io::Result<()>>),
    /// Answer once every line queued before this one is written.
    Flush(Sender<()>),
}

/// A JSON-lines log destination.
#[derive(Debug)]
pub struct LogSink {
    destination: Destination,
    /// None when the log is off.
    queue: Option<SyncSender<Message>>,
    dropped: AtomicU64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogSink {
    /// Opens the destination (a file is created if missing and appended to)
    /// and starts its writer thread.
    pub fn open(destination: Destination) -> std::io::Result<LogSink> {
        let output = match &destination {
            Destination::File(p) => Some(Output::File(p.clone(), open_append(p)?)),
            Destination::Stdout => Some(Output::Stdout),
            Destination::Off => None,
        };
        let queue = match output {
            Some(output) => {
                let (tx, rx) = sync_channel(QUEUE_LINES);
                std::thread::Builder::new()
                    .name("portcullis-log".into())
                    .spawn(move || write_lines(output, rx))?;
                Some(tx)
            }
            None => None,
        };
        Ok(LogSink {
            destination,
            queue,
            dropped: AtomicU64::new(0),
        })
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one record as one line. Logging never fails or delays a request:
    /// a line that cannot be queued is dropped and counted.
    pub fn write<T: Serialize>(&self, record: &T) {
        if !self.enabled() {
            return;
        }
        let mut line = Vec::with_capacity(512);
        if serde_json::to_writer(&mut line, record).is_err() {
            return;
        }
        line.push(b'\n');
        self.write_line(line);
    }

    /// Queues one finished line (ending in a newline), as [`LogSink::write`] does.
    pub fn write_line(&self, line: Vec<u8>) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            queue.try_send(Message::Line(line))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reopens a file destination (after logrotate moved the old file away).
    /// Lines queued before the call go to the old file.
    pub fn reopen(&self) -> std::io::Result<()> {
        if !matches!(self.destination, Destination::File(_)) {
            return Ok(());
        }
        self.ask(Message::Reopen)
            .unwrap_or_else(|| Err(std::io::Error::other("log writer did not answer")))
    }

    /// Waits until every line queued so far is written (tests; orderly stops).
    pub fn flush(&self) {
        self.ask(Message::Flush);
    }

    /// Sends a request that carries a reply channel and waits for the answer,
    /// at most [`WRITER_WAIT`] to queue it and as long again for the answer (a
    /// stalled disk must not hang the caller, the signal handler or shutdown).
    fn ask<R>(&self, message: impl FnOnce(Sender<R>) -> Message) -> Option<R> {
        let queue = self.queue.as_ref()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let deadline = std::time::Instant::now() + WRITER_WAIT;
        let mut message = message(tx);
        loop {
            match queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return None,
            }
        }
        rx.recv_timeout(WRITER_WAIT).ok()
    }
}

/// What a writer thread writes to.
enum Output {
    Stdout,
    File(PathBuf, File),
}

impl Output {
    /// Write errors are dropped: a full disk must not stop the edge.
    fn write(&mut self, bytes: &[u8]) {
        let _ = match self {
            Output::Stdout => std::io::stdout().lock().write_all(bytes),
            Output::File(_, f) => f.write_all(bytes),
        };
    }
}

/// A writer thread: every [`WRITER_PERIOD`] it takes every queued message and
/// writes the lines in chunks; it returns when the sink (its sender) is gone.
/// It polls rather than waits on the queue so that queuing a line never has to
/// wake it: a wake-up per line would cost the workers more than the write.
fn write_lines(mut output: Output, queue: Receiver<Message>) {
    let mut pending: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
    loop {
        loop {
            match queue.try_recv() {
                Ok(message) => handle(message, &mut output, &mut pending),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    output.write(&pending);
                    return;
                }
            }
        }
        output.write(&pending);
        pending.clear();
        std::thread::sleep(WRITER_PERIOD);
    }
}

/// Applies one message: a line joins `pending` (written once it reaches a chunk);
/// a reopen or flush first writes what is pending, then answers.
fn handle(message: Message, output: &mut Output, pending: &mut Vec<u8>) {
    match message {
        Message::Line(line) => {
            pending.extend_from_slice(&line);
            if pending.len() >= WRITE_CHUNK {
                output.write(pending);
                pending.clear();
            }
        }
        Message::Reopen(reply) => {
            output.write(pending);
            pending.clear();
            let result = match output {
                Output::File(path, file) => open_append(path).map(|fresh| *file = fresh),
                Output::Stdout => Ok(()),
            };
            let _ = reply.send(result);
        }
        Message::Flush(reply) => {
            output.write(pending);
            pending.clear();
            let _ = reply.send(());
        }
    }
}

/// Now, as RFC 3339 with milliseconds (UTC).
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// One line of the access log.
#[derive(Debug, Serialize, Default)]
pub struct AccessRecord<'a> {
    pub timestamp: String,
    pub request_id: &'a str,
    pub client_ip: String,
    pub client_port: u16,
    pub country: &'a str,
    pub listener: &'a str,
    pub site: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub uri: std::borrow::Cow<'a, str>,
    pub status: u16,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub upstream_addr: String,
    pub upstream_status: u16,
    pub tries: usize,
    pub latency_ms: f64,
    pub upstream_latency_ms: f64,
    pub tls_version: &'a str,
    pub tls_cipher: &'a str,
    pub waf_action: &'a str,
    pub waf_score: u32,
    pub rule_ids: Vec<u32>,
    pub block_reason: &'a str,
    pub error: String,
}

impl AccessRecord<'_> {
    /// The record as one JSON line, the same bytes `serde_json` writes for it
    /// (a unit test holds the two together). Written out here because it runs
    /// once per request: fixed keys need no escaping and most values none
    /// either, which makes this several times cheaper than the generic serializer.
    pub fn json_line(&self) -> Vec<u8> {
        let mut j = JsonObject::with_capacity(512);
        j.str("timestamp", &self.timestamp);
        j.str("request_id", self.request_id);
        j.str("client_ip", &self.client_ip);
        j.uint("client_port", self.client_port.into());
        j.str("country", self.country);
        j.str("listener", self.listener);
        j.str("site", self.site);
        j.str("method", self.method);
        j.str("host", self.host);
        j.str("uri", &self.uri);
        j.uint("status", self.status.into());
        j.uint("bytes_in", self.bytes_in as u64);
        j.uint("bytes_out", self.bytes_out as u64);
        j.str("upstream_addr", &self.upstream_addr);
        j.uint("upstream_status", self.upstream_status.into());
        j.uint("tries", self.tries as u64);
        j.float("latency_ms", self.latency_ms);
        j.float("upstream_latency_ms", self.upstream_latency_ms);
        j.str("tls_version", self.tls_version);
        j.str("tls_cipher", self.tls_cipher);
        j.str("waf_action", self.waf_action);
        j.uint("waf_score", self.waf_score.into());
        j.uints("rule_ids", &self.rule_ids);
        j.str("block_reason", self.block_reason);
        j.str("error", &self.error);
        j.finish_line()
    }
}

/// A JSON object written member by member, for records whose keys are plain identifiers.
struct JsonObject {
    out: Vec<u8>,
}

impl JsonObject {
    fn with_capacity(n: usize) -> JsonObject {
        let mut out = Vec::with_capacity(n);
        out.push(b'{');
        JsonObject { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if plain {
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.out, value);
        }
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// As serde_json writes an f64: shortest round-trip digits, `null` when not finite.
    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            self.out
                .extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    fn uints(&mut self, key: &str, values: &[u32]) {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
        }
        self.out.push(b']');
    }

    fn finish_line(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_appends_lines_and_reopens() {
        let dir = std::env::temp_dir().join(format!("portcullis-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let sink = LogSink::open(Destination::File(path.clone())).expect("open");
        sink.write(&serde_json::json!({"a": 1}));
        std::fs::rename(&path, dir.join("access.log.1")).expect("rotate");
        sink.write(&serde_json::json!({"a": 2}));
        sink.reopen().expect("reopen");
        sink.write(&serde_json::json!({"a": 3}));
        sink.flush();
        let rotated = std::fs::read_to_string(dir.join("access.log.1")).expect("read");
        let fresh = std::fs::read_to_string(&path).expect("read");
        assert_eq!(rotated, "{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(fresh, "{\"a\":3}\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The hand-written line is byte for byte what serde_json writes for the record,
    /// including values that need escaping and numbers of every kind.
    #[test]
    fn access_line_matches_serde_json() {
        let mut record = AccessRecord {
            timestamp: timestamp(),
            request_id: "req-1",
            client_ip: "2001:db8::1".into(),
            client_port: 54321,
            country: "NL",
            listener: "https",
            site: "api",
            method: "GET",
            host: "api.example.test",
            uri: "/a?q=\"quoted\"&b=back\\slash&c=\u{1}\u{7f}é\u{1F600}\t\n".into(),
            status: 403,
            bytes_in: usize::MAX,
            bytes_out: 0,
            upstream_addr: "10.0.0.1:8080".into(),
            upstream_status: 0,
            tries: 2,
            latency_ms: 0.123456789,
            upstream_latency_ms: 1e-7,
            tls_version: "TLSv1.3",
            tls_cipher: "TLS13_AES_128_GCM_SHA256",
            waf_action: "blocked",
            waf_score: u32::MAX,
            rule_ids: vec![942100, 941100, 0],
            block_reason: "waf",
            error: "upstream said \"no\"\r\n".into(),
        };
        let serde_line = |r: &AccessRecord| {
            let mut v = serde_json::to_vec(r).expect("json");
            v.push(b'\n');
            String::from_utf8(v).expect("utf8")
        };
        let ours = |r: &AccessRecord| String::from_utf8(r.json_line()).expect("utf8");
        assert_eq!(ours(&record), serde_line(&record));
        record.rule_ids.clear();
        record.latency_ms = 12345678.0;
        record.upstream_latency_ms = f64::NAN;
        assert_eq!(ours(&record), serde_line(&record));
        assert_eq!(
            ours(&AccessRecord::default()),
            serde_line(&AccessRecord::default())
        );
    }

    /// A log whose file stops taking writes (here a pipe nobody reads) must not
    /// stall the requests: its lines are dropped and counted once the queue is full.
    #[test]
    fn a_stalled_log_drops_and_counts_lines_instead_of_blocking() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("stalled.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        // A reader that never reads keeps the pipe open, so writes block once its buffer is full.
        const NONBLOCKING: i32 = 0o4000;
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NONBLOCKING)
            .open(&fifo)
            .expect("reader");
        let sink = LogSink::open(Destination::File(fifo)).expect("open");
        let line = serde_json::json!({"uri": "/".repeat(100)});
        let started = std::time::Instant::now();
        // The writer takes at most a pipe buffer and a chunk (about 1,100 of these lines) off the queue.
        for _ in 0..QUEUE_LINES + 20_000 {
            sink.write(&line);
        }
        assert!(sink.dropped() >= 15_000, "dropped {}", sink.dropped());
        // Generous: queuing 70k lines takes milliseconds; a blocking write would never return.
        assert!(started.elapsed() < Duration::from_secs(20));
        // Nor does a reopen (SIGUSR1) hang on the stalled writer: it gives up with an error.
        let asked = std::time::Instant::now();
        assert!(sink.reopen().is_err());
        assert!(asked.elapsed() < WRITER_WAIT * 3);
    }
}
