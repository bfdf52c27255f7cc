//! Access and WAF logs: one JSON object per line, to stdout or to a file that
//! is reopened on SIGUSR1 (for logrotate's `postrotate`). Operational messages
//! (startup, reloads, ejections) go through `tracing` to stderr instead.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// A JSON-lines log destination.
#[derive(Debug)]
pub struct LogSink {
    destination: Destination,
    file: Mutex<Option<File>>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogSink {
    /// Opens the destination; a file is created if missing and appended to.
    pub fn open(destination: Destination) -> std::io::Result<LogSink> {
        let file = match &destination {
            Destination::File(p) => Some(open_append(p)?),
            _ => None,
        };
        Ok(LogSink {
            destination,
            file: Mutex::new(file),
        })
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn enabled(&self) -> bool {
        self.destination != Destination::Off
    }

    /// Writes one record as one line. Logging never fails a request: errors are dropped.
    pub fn write<T: Serialize>(&self, record: &T) {
        if !self.enabled() {
            return;
        }
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        match &self.destination {
            Destination::Stdout => {
                let _ = std::io::stdout().lock().write_all(&line);
            }
            Destination::File(_) => {
                if let Ok(mut guard) = self.file.lock() {
                    if let Some(f) = guard.as_mut() {
                        let _ = f.write_all(&line);
                    }
                }
            }
            Destination::Off => {}
        }
    }

    /// Reopens a file destination (after logrotate moved the old file away).
    pub fn reopen(&self) -> std::io::Result<()> {
        if let Destination::File(path) = &self.destination {
            let fresh = open_append(path)?;
            if let Ok(mut guard) = self.file.lock() {
                *guard = Some(fresh);
            }
        }
        Ok(())
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
    pub uri: String,
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
        let rotated = std::fs::read_to_string(dir.join("access.log.1")).expect("read");
        let fresh = std::fs::read_to_string(&path).expect("read");
        assert_eq!(rotated, "{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(fresh, "{\"a\":3}\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
