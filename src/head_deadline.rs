//! A deadline for the head of a connection's first request (`[limits] header_read_timeout_ms`).
//!
//! Pingora bounds each single read of a request head (60 s), so a slowloris client that sends one
//! byte a minute could hold a connection forever. [`HeadDeadline`] wraps a freshly accepted
//! connection and fails its reads with `TimedOut` once the deadline passes before the end of the
//! first request head (an empty line) has arrived. After that it is a plain pass-through: bodies
//! have their own rate limit (`body_read_timeout_ms`) and idle keep-alive connections their own
//! timeout. HTTP/2's connection preface contains an empty line, so h2 connections are released at
//! once too.
//!
//! It also counts the bytes read from the connection, so that the request path can tell a request
//! whose head had already arrived with the request before it (HTTP/1.1 pipelining, see
//! [`crate::pipelining`]). Every connection of a listener gets one, with or without a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A connection whose first request head must be complete before a deadline.
pub struct HeadDeadline {
    inner: Stream,
    /// Running until the first head is complete; None afterwards.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Progress through the head terminator: counts the bytes of "\r\n\r\n" (or "\n\n") seen.
    end: HeadEnd,
    /// Bytes read from the connection (after TLS). Written by reads only (through `&mut self`).
    read: AtomicU64,
    /// `read` at the end of the previous request ([`NO_REQUEST_YET`] before the first ends).
    request_end: AtomicU64,
}

/// `request_end` while the first request of the connection is being served.
const NO_REQUEST_YET: u64 = u64::MAX;

impl HeadDeadline {
    /// A connection whose first head must be complete within `limit` (None: no deadline, only
    /// the byte count).
    pub fn new(inner: Stream, limit: Option<Duration>) -> HeadDeadline {
        HeadDeadline {
            inner,
            deadline: limit.map(|l| Box::pin(tokio::time::sleep(l))),
            end: HeadEnd::default(),
            read: AtomicU64::new(0),
            request_end: AtomicU64::new(NO_REQUEST_YET),
        }
    }

    /// Notes the end of a request: bytes read from now on belong to the next one.
    pub fn mark_request_end(&self) {
        let read = self.read.load(Ordering::Relaxed);
        self.request_end.store(read, Ordering::Relaxed);
    }

    /// Whether a request head of `head_len` bytes, parsed after the previous request ended, came
    /// at least in part from bytes read before that end: fewer bytes than the head have been read
    /// since. False for the first request of a connection.
    pub fn head_was_buffered(&self, head_len: usize) -> bool {
        let end = self.request_end.load(Ordering::Relaxed);
        end != NO_REQUEST_YET
            && self.read.load(Ordering::Relaxed).saturating_sub(end) < head_len as u64
    }
}

/// Finds the empty line that ends a request head, across reads of any size (public for the
/// `head_end` fuzz target).
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadEnd {
    /// Newlines seen with nothing but CRs between them (2 = an empty line).
    newlines: u8,
}

impl HeadEnd {
    /// Feeds more bytes; true once the head has ended.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' => {
                    self.newlines += 1;
                    if self.newlines >= 2 {
                        return true;
                    }
                }
                b'\r' => {}
                _ => self.newlines = 0,
            }
        }
        false
    }
}

impl fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadDeadline")
            .field("inner", &self.inner)
            .field("waiting_for_head", &self.deadline.is_some())
            .finish()
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request head not complete before header_read_timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            *this.read.get_mut() += got.len() as u64;
            if this.deadline.is_some() && this.end.feed(got) {
                this.deadline = None;
            }
        }
        result
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// Everything else is the wrapped connection's.

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_head_split_across_reads() {
        let mut e = HeadEnd::default();
        assert!(!e.feed(b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(!e.feed(b"\n"));
        assert!(!e.feed(b"\r"));
        assert!(e.feed(b"\n"));
        let mut bare = HeadEnd::default();
        assert!(bare.feed(b"GET / HTTP/1.0\n\n"));
        let mut h2 = HeadEnd::default();
        assert!(h2.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        let mut partial = HeadEnd::default();
        assert!(!partial.feed(b"GET / HTTP/1.1\r\nX-Slow: a\r\nX-Slow: b\r\n"));
    }

    #[tokio::test]
    async fn tells_a_pipelined_head_from_one_read_after_the_previous_request() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = HeadDeadline::new(Box::new(server), None);
        let first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let second = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        // Both heads in one read: the second was buffered when the first ended.
        client
            .write_all(&[&first[..], &second[..]].concat())
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(n, first.len() + second.len());
        assert!(!conn.head_was_buffered(first.len()), "first request");
        conn.mark_request_end();
        assert!(conn.head_was_buffered(second.len()));
        // A third head read after the second ended: not pipelined.
        conn.mark_request_end();
        client.write_all(first).await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), first.len());
        assert!(!conn.head_was_buffered(first.len()));
    }
}
