//! The request-head terminator scan of the head deadline (`head_deadline::HeadEnd`), fed in
//! pieces of every size: it must see the end of the head in the very piece where a scan of the
//! whole bytes finds it (the first empty line: two newlines with only carriage returns between),
//! however the reads split the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::head_deadline::HeadEnd;

/// Index of the newline that ends the first empty line, scanning the whole input at once.
fn whole_scan(bytes: &[u8]) -> Option<usize> {
    let mut last_newline: Option<usize> = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' if last_newline.is_some() => return Some(i),
            b'\n' => last_newline = Some(i),
            b'\r' => {}
            _ => last_newline = None,
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 17) + 1;
    let mut end = HeadEnd::default();
    let mut seen_in = None;
    for (n, piece) in bytes.chunks(step).enumerate() {
        if end.feed(piece) {
            seen_in = Some(n);
            break;
        }
    }
    assert_eq!(seen_in, whole_scan(bytes).map(|i| i / step), "step {step}");
});
