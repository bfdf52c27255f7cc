//! Request bodies sent in a content coding (`Content-Encoding: gzip`, `deflate`, `br`): the
//! engine inspects them decoded, as a backend that accepts them reads them. Without this, an
//! attack in a compressed body would pass unseen, and a compressed JSON body would fail to parse
//! (and be blocked as malformed). The edge forwards the body as the client sent it.
//!
//! Decoding stops at the inspection limit, so a small body that expands without end (a
//! decompression bomb) costs at most that much memory; the result says when the decoded body
//! went past the limit, for the edge to refuse it where oversized bodies are refused. A coding
//! the engine cannot decode, or corrupt data in a coding, is a body error (the `reqbody_error`
//! target): the body cannot be inspected. A body that is in no coding at all (no gzip magic, no
//! output from its first bytes) is inspected as sent: real clients label plain beacons `gzip`.

use std::borrow::Cow;
use std::io::Read;

/// Most content codings one body may carry (`gzip, br` is two).
const MAX_CODINGS: usize = 4;

/// A request body as the engine inspects it.
#[derive(Debug)]
pub struct DecodedBody<'a> {
    /// The body to inspect: borrowed when it was in no coding.
    pub bytes: Cow<'a, [u8]>,
    /// Only a prefix of the body: the client's body was cut at the inspection limit, or its
    /// decoding went past it.
    pub truncated: bool,
    /// The decoded body went past the inspection limit.
    pub over_limit: bool,
    /// Why the body could not be decoded.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
}

impl Coding {
    /// Whether `data` starts as this coding's framing does (the gzip magic; a zlib header). A
    /// body that does is corrupt data in the coding, not a body sent in another one.
    fn framed(self, data: &[u8]) -> bool {
        match self {
            Coding::Gzip => data.starts_with(&[0x1f, 0x8b]),
            Coding::Deflate => {
                data.len() >= 2
                    && data[0] & 0x0f == 8
                    && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
            }
            // No magic number: a stream that fails before its first byte of output is taken
            // for a body in no coding.
            Coding::Brotli => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
        }
    }
}

/// Decodes `body` by the values of its `Content-Encoding` header lines (several lines make one
/// list, in order), up to `limit` decoded bytes. `truncated`: the body itself is only a prefix
/// (its decoding may then end early, which is no error).
pub fn decode<'a>(
    content_encodings: &[&[u8]],
    body: &'a [u8],
    truncated: bool,
    limit: usize,
) -> DecodedBody<'a> {
    let mut out = DecodedBody {
        bytes: Cow::Borrowed(body),
        truncated,
        over_limit: false,
        error: None,
    };
    if content_encodings.is_empty() || body.is_empty() {
        return out;
    }
    let codings = match parse_codings(content_encodings) {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    // The codings were applied in the order listed: undo the last first.
    for coding in codings.into_iter().rev() {
        let (bytes, over, failure) = decode_one(coding, &out.bytes, limit);
        if failure.is_some() && bytes.is_empty() && !coding.framed(&out.bytes) {
            // Not in this coding at all (a beacon whose header says gzip over plain JSON): a
            // backend that honours the header refuses it, one that ignores the header reads the
            // bytes as they are, so that is what is inspected.
            continue;
        }
        out.bytes = Cow::Owned(bytes);
        out.over_limit |= over;
        out.truncated |= over;
        if let Some(e) = failure {
            // A cut body ends in the middle of its coding: what came out is inspected.
            if !out.truncated {
                out.error = Some(format!(
                    "request body in content coding {} could not be decoded: {e}",
                    coding.name()
                ));
            }
            break;
        }
    }
    out
}

/// The codings of `Content-Encoding` values, in the order they were applied (`identity` and
/// empty items left out).
fn parse_codings(values: &[&[u8]]) -> Result<Vec<Coding>, String> {
    let mut codings = Vec::new();
    for value in values {
        let text = String::from_utf8_lossy(value);
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let coding = match item.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Brotli,
                _ => {
                    return Err(format!(
                        "request body in content coding {item:?}, which the WAF cannot decode"
                    ))
                }
            };
            codings.push(coding);
        }
    }
    if codings.len() > MAX_CODINGS {
        return Err(format!(
            "request body in {} content codings (at most {MAX_CODINGS})",
            codings.len()
        ));
    }
    Ok(codings)
}

/// One decoding step: the output (at most `limit` bytes), whether there was more, and the
/// error that ended it early, if any.
fn decode_one(coding: Coding, input: &[u8], limit: usize) -> (Vec<u8>, bool, Option<String>) {
    match coding {
        Coding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(input), limit),
        Coding::Deflate => {
            // HTTP's deflate is the zlib format; some clients send raw deflate data instead.
            let zlib = read_capped(flate2::read::ZlibDecoder::new(input), limit);
            match zlib {
                (ref out, _, Some(_)) if out.is_empty() => {
                    read_capped(flate2::read::DeflateDecoder::new(input), limit)
                }
                done => done,
            }
        }
        Coding::Brotli => read_capped(brotli::Decompressor::new(input, 4096), limit),
    }
}

fn read_capped(reader: impl Read, limit: usize) -> (Vec<u8>, bool, Option<String>) {
    let mut out = Vec::new();
    // Bytes read before an error stay in `out`.
    let failure = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .err()
        .map(|e| e.to_string());
    let over = out.len() > limit;
    out.truncate(limit);
    (out, over, failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).expect("write");
        drop(w);
        out
    }

    const TEXT: &[u8] = br#"{"q":"1 UNION SELECT password FROM users--"}"#;

    #[test]
    fn every_coding_decodes() {
        for (header, body) in [
            (&b"gzip"[..], gzip(TEXT)),
            (b"x-gzip", gzip(TEXT)),
            (b"deflate", zlib(TEXT)),
            (b"deflate", raw_deflate(TEXT)),
            (b"br", brotli(TEXT)),
            (b"GZIP", gzip(TEXT)),
            (b"gzip, br", brotli(&gzip(TEXT))),
            (b"identity, gzip", gzip(TEXT)),
        ] {
            let d = decode(&[header], &body, false, 1 << 20);
            assert_eq!(&*d.bytes, TEXT, "{}", String::from_utf8_lossy(header));
            assert!(d.error.is_none() && !d.truncated && !d.over_limit);
        }
    }

    #[test]
    fn several_header_lines_make_one_list() {
        let once = gzip(TEXT);
        let d = decode(&[b"identity", b"gzip"], &once, false, 1 << 20);
        assert_eq!(&*d.bytes, TEXT);
        let twice = brotli(&once);
        let d = decode(&[b"gzip", b"br"], &twice, false, 1 << 20);
        assert_eq!(&*d.bytes, TEXT);
    }

    #[test]
    fn no_coding_borrows_the_body() {
        for headers in [&[][..], &[&b"identity"[..]], &[b""]] {
            let d = decode(headers, TEXT, false, 1 << 20);
            assert!(matches!(d.bytes, Cow::Borrowed(_)));
            assert!(d.error.is_none());
        }
    }

    #[test]
    fn unknown_codings_and_corrupt_data_are_body_errors() {
        let d = decode(&[b"compress"], TEXT, false, 1 << 20);
        assert!(d.error.is_some_and(|e| e.contains("compress")));
        let d = decode(&[b"zstd"], TEXT, false, 1 << 20);
        assert!(d.error.is_some());
        let mut corrupt = gzip(TEXT);
        let mid = corrupt.len() / 2;
        corrupt[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
        let d = decode(&[b"gzip"], &corrupt, false, 1 << 20);
        assert!(d.error.is_some_and(|e| e.contains("gzip")));
        let mut header_only = gzip(TEXT);
        header_only[12..].iter_mut().for_each(|b| *b = 0xff);
        let d = decode(&[b"gzip"], &header_only, false, 1 << 20);
        assert!(d.error.is_some_and(|e| e.contains("gzip")));
        let d = decode(&[b"gzip,gzip,gzip", b"gzip, gzip"], TEXT, false, 1 << 20);
        assert!(d.error.is_some_and(|e| e.contains("5 content codings")));
    }

    #[test]
    fn a_body_in_no_coding_at_all_is_inspected_as_sent() {
        for coding in [&b"gzip"[..], b"x-gzip", b"deflate", b"br"] {
            let d = decode(&[coding], TEXT, false, 1 << 20);
            assert!(d.error.is_none(), "{:?}: {:?}", coding, d.error);
            assert_eq!(&*d.bytes, TEXT);
        }
        // `br` over a gzip body: the gzip layer underneath still decodes.
        let gzipped = gzip(TEXT);
        let d = decode(&[b"gzip, br"], &gzipped, false, 1 << 20);
        assert_eq!(&*d.bytes, TEXT);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b'a'; 10 << 20]);
        assert!(bomb.len() < 20_000);
        let d = decode(&[b"gzip"], &bomb, false, 65_536);
        assert_eq!(d.bytes.len(), 65_536);
        assert!(d.over_limit && d.truncated && d.error.is_none());
    }

    #[test]
    fn a_cut_body_yields_what_it_holds_without_error() {
        let long: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let body = gzip(&long);
        let cut = &body[..body.len() / 2];
        let d = decode(&[b"gzip"], cut, true, 1 << 20);
        assert!(d.error.is_none() && d.truncated && !d.over_limit);
        assert!(!d.bytes.is_empty() && long.starts_with(&d.bytes));
        // The same cut on a body that claims to be whole is an error.
        assert!(decode(&[b"gzip"], cut, false, 1 << 20).error.is_some());
    }
}
