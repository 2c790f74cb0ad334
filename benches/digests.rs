//! Digest throughput on this machine: OpenSSL's sha512 and MD5 (the benchmark's references)
//! next to the hashers the upload pipeline uses. `cargo bench --bench digests`
use std::time::Instant;

use glance_rs::digest::Hasher;

/// MB/s of 128 MiB through `f`.
fn rate(f: &mut impl FnMut(&[u8]), buf: &[u8]) -> f64 {
    let rounds = 128;
    let t = Instant::now();
    for _ in 0..rounds {
        f(buf);
    }
    (buf.len() * rounds) as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let buf: Vec<u8> = (0..1usize << 20).map(|i| (i * 2654435761) as u8).collect();
    for algo in ["md5", "sha512"] {
        let md = openssl::hash::MessageDigest::from_name(algo).expect("known digest");
        let mut reference = openssl::hash::Hasher::new(md).expect("OpenSSL digest");
        let mut ours = Hasher::new(algo).expect("digest");
        // Alternating runs, best of each: this VM's speed drifts by 10-20% between seconds.
        let (mut openssl, mut pipeline) = (0f64, 0f64);
        for _ in 0..8 {
            openssl = openssl.max(rate(&mut |b| reference.update(b).expect("update"), &buf));
            pipeline = pipeline.max(rate(&mut |b| ours.update(b), &buf));
        }
        println!(
            "{algo}: OpenSSL {openssl:.0} MB/s, upload pipeline {pipeline:.0} MB/s ({:.2} x)",
            pipeline / openssl
        );
    }
}
