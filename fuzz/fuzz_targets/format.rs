//! Format inspection of arbitrary data: never panics, and the answers do not depend on how the
//! stream is cut into chunks. The first two bytes choose the chunk size.
#![no_main]

use glance_rs::format::{INSPECTABLE, Inspection, Inspector};
use libfuzzer_sys::fuzz_target;

fn inspect(data: &[u8], chunk: usize) -> Inspection {
    let mut i = Inspector::default();
    for c in data.chunks(chunk.max(1)) {
        i.feed(c);
    }
    i.finish()
}

fn answers(r: &Inspection) -> Vec<String> {
    let nonfatal = ["mbr".to_string()];
    let mut out = vec![format!("{:?}", r.format())];
    for d in INSPECTABLE.iter().copied().chain(["ami"]) {
        out.push(format!("{:?}", r.verdict(d, true, &[])));
        out.push(format!("{:?}", r.verdict(d, false, &nonfatal)));
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let (chunk, data) = match input {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    assert_eq!(
        answers(&inspect(data, data.len())),
        answers(&inspect(data, chunk))
    );
});
