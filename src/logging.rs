//! Access and WAF logs: one JSON object per line, to stdout or to a file that
//! is reopened on SIGUSR1 (for logrotate's `postrotate`). Operational messages
//! (startup, reloads, ejections) go through `tracing` to stderr instead.
//!
//! A request never waits for the disk. Each worker thread serialises its
//! lines straight into a buffer of its own; one writer thread per log swaps
//! those buffers out every 10 ms and writes them, so a burst costs one system
//! call, not one per request, and no lock, allocation or wake-up is shared
//! between workers. A line reaches the file about 10 ms after its request.
//! When the disk falls so far behind that a worker's buffer reaches
//! [`PENDING_LIMIT`], its further lines are dropped and counted
//! (`portcullis_log_lines_dropped_total`) rather than stalling the proxy.

use serde::Serialize;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes one worker thread may have waiting for the writer before its new lines are dropped.
pub const PENDING_LIMIT: usize = 8 << 20;

/// How often the writer thread takes the waiting lines: about the most a line waits.
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

/// What the signal handler and shutdown ask of a log's writer thread.
enum Control {
    /// Write what is waiting, reopen the file (after logrotate moved it away), answer.
    Reopen(Sender<std::io::Result<()>>),
    /// Write what is waiting, then answer.
    Flush(Sender<()>),
}

/// Lines waiting in one worker thread.
type Pending = Arc<Mutex<Vec<u8>>>;

/// What a log's workers and its writer share.
#[derive(Debug, Default)]
struct Shared {
    /// Every worker thread's pending lines, registered on the thread's first line.
    pending: Mutex<Vec<Pending>>,
    dropped: AtomicU64,
}

/// A JSON-lines log destination.
#[derive(Debug)]
pub struct LogSink {
    destination: Destination,
    /// Tells this log's buffers apart from other logs' in a thread's [`THREAD_PENDING`].
    id: u64,
    shared: Arc<Shared>,
    /// None when the log is off.
    control: Option<Sender<Control>>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// A lock that a panic elsewhere did not make unusable (the data is bytes; the worst is a torn line).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// This thread's pending lines, per log id.
    static THREAD_PENDING: RefCell<Vec<(u64, Pending)>> = const { RefCell::new(Vec::new()) };
}

impl LogSink {
    /// Opens the destination (a file is created if missing and appended to)
    /// and starts its writer thread.
    pub fn open(destination: Destination) -> std::io::Result<LogSink> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let output = match &destination {
            Destination::File(p) => Some(Output::File(p.clone(), open_append(p)?)),
            Destination::Stdout => Some(Output::Stdout),
            Destination::Off => None,
        };
        let shared = Arc::new(Shared::default());
        let control = match output {
            Some(output) => {
                let (tx, rx) = channel();
                let for_writer = shared.clone();
                std::thread::Builder::new()
                    .name("portcullis-log".into())
                    .spawn(move || write_lines(output, &for_writer, rx))?;
                Some(tx)
            }
            None => None,
        };
        Ok(LogSink {
            destination,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shared,
            control,
        })
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn enabled(&self) -> bool {
        self.control.is_some()
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Adds one record as one line. Logging never fails or delays a request:
    /// a line that cannot be written is dropped (and counted when the writer is behind).
    pub fn write<T: Serialize>(&self, record: &T) {
        self.write_with(|out| {
            serde_json::to_writer(&mut *out, record)
                .map(|()| out.push(b'\n'))
                .is_ok()
        });
    }

    /// Adds one line that `line` appends to the buffer it is given, ending in a
    /// newline; it returns false when it failed, and what it appended is removed.
    pub fn write_with(&self, line: impl FnOnce(&mut Vec<u8>) -> bool) {
        if !self.enabled() {
            return;
        }
        let pending = self.thread_pending();
        let mut out = lock(&pending);
        if out.len() >= PENDING_LIMIT {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let start = out.len();
        if !line(&mut out) {
            out.truncate(start);
        }
    }

    /// This thread's buffer for this log, registered with the writer on first use.
    fn thread_pending(&self) -> Pending {
        THREAD_PENDING.with(|mine| {
            let mut mine = mine.borrow_mut();
            if let Some((_, p)) = mine.iter().find(|(id, _)| *id == self.id) {
                return p.clone();
            }
            let p = Pending::default();
            lock(&self.shared.pending).push(p.clone());
            mine.push((self.id, p.clone()));
            p
        })
    }

    /// Reopens a file destination (after logrotate moved the old file away).
    /// Lines added before the call go to the old file.
    pub fn reopen(&self) -> std::io::Result<()> {
        if !matches!(self.destination, Destination::File(_)) {
            return Ok(());
        }
        self.ask(Control::Reopen)
            .unwrap_or_else(|| Err(std::io::Error::other("log writer did not answer")))
    }

    /// Waits until every line added so far is written (tests; orderly stops).
    pub fn flush(&self) {
        self.ask(Control::Flush);
    }

    /// Asks the writer and waits at most [`WRITER_WAIT`] for its answer (a
    /// stalled disk must not hang the caller: the signal handler or shutdown).
    fn ask<R>(&self, request: impl FnOnce(Sender<R>) -> Control) -> Option<R> {
        let control = self.control.as_ref()?;
        let (tx, rx) = channel();
        control.send(request(tx)).ok()?;
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
        if bytes.is_empty() {
            return;
        }
        let _ = match self {
            Output::Stdout => std::io::stdout().lock().write_all(bytes),
            Output::File(_, f) => f.write_all(bytes),
        };
    }
}

/// A writer thread: every [`WRITER_PERIOD`], or at once when asked, it writes
/// every worker's pending lines; it returns when the sink is gone.
fn write_lines(mut output: Output, shared: &Shared, control: Receiver<Control>) {
    // Swapped with each worker's buffer, so both keep their capacity.
    let mut spare: Vec<u8> = Vec::new();
    loop {
        let asked = control.recv_timeout(WRITER_PERIOD);
        let workers: Vec<Pending> = lock(&shared.pending).clone();
        for pending in &workers {
            std::mem::swap(&mut *lock(pending), &mut spare);
            output.write(&spare);
            spare.clear();
        }
        match asked {
            Ok(Control::Reopen(reply)) => {
                let result = match &mut output {
                    Output::File(path, file) => open_append(path).map(|fresh| *file = fresh),
                    Output::Stdout => Ok(()),
                };
                let _ = reply.send(result);
            }
            Ok(Control::Flush(reply)) => {
                let _ = reply.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Now, as RFC 3339 with milliseconds (UTC).
pub fn timestamp() -> String {
    timestamp_at(std::time::SystemTime::now())
}

/// `at` as RFC 3339 with milliseconds (UTC), as humantime writes it. Every log line
/// needs one, so the text up to the second is formatted once per second and
/// thread, and only the milliseconds are added per call.
fn timestamp_at(at: std::time::SystemTime) -> String {
    thread_local! {
        /// The last second formatted on this thread, without its `Z`.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let Ok(since_epoch) = at.duration_since(std::time::UNIX_EPOCH) else {
        return humantime::format_rfc3339_millis(at).to_string();
    };
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != since_epoch.as_secs() {
            let mut text = humantime::format_rfc3339_seconds(at).to_string();
            text.pop();
            *second = (since_epoch.as_secs(), text);
        }
        let millis = since_epoch.subsec_millis();
        let mut out = String::with_capacity(second.1.len() + 5);
        out.push_str(&second.1);
        out.push('.');
        for digit in [millis / 100, millis / 10 % 10, millis % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
        out.push('Z');
        out
    })
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
    /// The API contract's operation the request was for (`operationId`), when a contract applies.
    pub contract_operation: &'a str,
    /// Each contract violation as `kind pointer keyword`, blocking or logged.
    pub contract_violations: Vec<String>,
    pub error: String,
}

impl AccessRecord<'_> {
    /// Appends the record as one JSON line, the same bytes `serde_json` writes
    /// for it plus a newline (a unit test holds the two together). Written out here because it runs
    /// once per request: fixed keys need no escaping and most values none
    /// either, which makes this several times cheaper than the generic serializer.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let mut j = JsonObject::start(out);
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
        j.str("contract_operation", self.contract_operation);
        j.strs("contract_violations", &self.contract_violations);
        j.str("error", &self.error);
        j.finish_line();
    }
}

/// A JSON object written member by member at the end of a buffer, for records
/// whose keys are plain identifiers.
struct JsonObject<'b> {
    out: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> JsonObject<'b> {
    fn start(out: &'b mut Vec<u8>) -> JsonObject<'b> {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        // A fold without an early exit, so the compiler checks many bytes per instruction: most
        // values (paths, user agents) need no escape, and this runs for every field of every line.
        let needs_escape = value.bytes().fold(false, |seen, b| {
            seen | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if !needs_escape {
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *self.out, value);
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

    fn strs(&mut self, key: &str, values: &[String]) {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *self.out, v);
        }
        self.out.push(b']');
    }

    fn finish_line(self) {
        self.out.extend_from_slice(b"}\n");
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
            contract_operation: "createOrder",
            contract_violations: vec!["body /body/qty \"minimum\"".into(), String::new()],
            error: "upstream said \"no\"\r\n".into(),
        };
        let serde_line = |r: &AccessRecord| {
            let mut v = serde_json::to_vec(r).expect("json");
            v.push(b'\n');
            String::from_utf8(v).expect("utf8")
        };
        let ours = |r: &AccessRecord| {
            let mut line = Vec::new();
            r.write_json_line(&mut line);
            String::from_utf8(line).expect("utf8")
        };
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

    /// The per-second text plus milliseconds reads exactly as humantime's, across
    /// second boundaries and back in time (the clock can step).
    #[test]
    fn timestamps_match_humantime() {
        let base = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        for ms in [
            0u64, 1, 9, 10, 99, 100, 999, 1_000, 1_001, 59_999, 60_000, 3_600_123, 5, 86_400_000,
        ] {
            let at = base + Duration::from_millis(ms) + Duration::from_micros(999);
            assert_eq!(
                timestamp_at(at),
                humantime::format_rfc3339_millis(at).to_string()
            );
        }
    }

    /// A log whose file stops taking writes (here a pipe nobody reads) must not
    /// stall the requests: its lines are dropped and counted once its buffer is full.
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
        let line_len = serde_json::to_vec(&line).expect("json").len() + 1;
        let started = std::time::Instant::now();
        // Three buffers' worth: the writer can take at most one before its write blocks, and the
        // thread's buffer holds at most one more, so at least one buffer's worth is dropped.
        for _ in 0..3 * PENDING_LIMIT / line_len {
            sink.write(&line);
        }
        let at_least = (PENDING_LIMIT / line_len) as u64;
        assert!(sink.dropped() >= at_least, "dropped {}", sink.dropped());
        // Generous: adding 200k lines takes a fraction of a second; a blocking write never returns.
        assert!(started.elapsed() < Duration::from_secs(20));
        // Nor does a reopen (SIGUSR1) hang on the stalled writer: it gives up with an error.
        let asked = std::time::Instant::now();
        assert!(sink.reopen().is_err());
        assert!(asked.elapsed() < WRITER_WAIT * 3);
    }
}
