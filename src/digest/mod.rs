//! The digests of uploaded data: MD5 (`checksum`) and the configured `hashing_algorithm`
//! (`os_hash_value`).

use crate::store::StoreError;

/// OpenSSL's digests, whose assembly is the reference the benchmark compares against and is
/// markedly faster than the pure-Rust ones on x86 (sha512 ~1.3x, md5 ~1.25x measured here);
/// MD5 uses our AVX-512 version (crates/glance-md5) where the CPU has it and it is the faster
/// of the two (`calibrate`).
pub enum Hasher {
    #[cfg(target_arch = "x86_64")]
    Md5(glance_md5::Md5),
    OpenSsl(openssl::hash::Hasher),
}

impl Hasher {
    pub fn new(algo: &str) -> Result<Hasher, StoreError> {
        #[cfg(target_arch = "x86_64")]
        if algo == "md5"
            && calibrate()
            && let Some(h) = glance_md5::Md5::new()
        {
            return Ok(Hasher::Md5(h));
        }
        // Names were validated at start-up (config::HASH_ALGORITHMS).
        let md = openssl::hash::MessageDigest::from_name(algo)
            .ok_or_else(|| StoreError::Other(format!("unknown hash algorithm {algo}")))?;
        openssl::hash::Hasher::new(md)
            .map(Hasher::OpenSsl)
            .map_err(|e| StoreError::Other(format!("OpenSSL {algo}: {e}")))
    }

    pub fn update(&mut self, b: &[u8]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Hasher::Md5(h) => h.update(b),
            // Only fails on a broken OpenSSL; a wrong digest would then fail verification.
            Hasher::OpenSsl(h) => {
                let _ = h.update(b);
            }
        }
    }

    pub fn hex(self) -> String {
        match self {
            #[cfg(target_arch = "x86_64")]
            Hasher::Md5(h) => hex::encode(h.finish()),
            Hasher::OpenSsl(mut h) => h.finish().map(|d| hex::encode(&*d)).unwrap_or_default(),
        }
    }
}

/// Whether the AVX-512 MD5 beats OpenSSL's on this CPU, timed once (~10 ms, the first call;
/// `serve` makes it at start-up): it is ~15% faster on the Intel CPUs it was written on, but
/// 0.73x OpenSSL's on an AMD EPYC with AVX-512 (`cargo bench --bench digests`, 2026-12-04), and
/// every uploaded byte goes through it.
pub fn calibrate() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FASTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FASTER.get_or_init(|| {
            use std::hint::black_box;
            use std::time::{Duration, Instant};
            if glance_md5::Md5::new().is_none() {
                return false;
            }
            let buf = vec![0x5a_u8; 1 << 20];
            let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
            // Alternated, best of each: the other core may be busy meanwhile.
            for _ in 0..3 {
                let t = Instant::now();
                if let Some(mut h) = glance_md5::Md5::new() {
                    h.update(black_box(&buf));
                    black_box(h.finish());
                }
                ours = ours.min(t.elapsed());
                let t = Instant::now();
                let _ = black_box(openssl::hash::hash(
                    openssl::hash::MessageDigest::md5(),
                    black_box(&buf),
                ));
                theirs = theirs.min(t.elapsed());
            }
            let mbps = |d: Duration| (buf.len() as f64 / d.as_secs_f64() / 1e6) as u64;
            let faster = ours < theirs;
            tracing::info!(
                avx512_mbps = mbps(ours),
                openssl_mbps = mbps(theirs),
                "MD5 of uploads: {}",
                if faster {
                    "AVX-512 version"
                } else {
                    "OpenSSL's"
                }
            );
            faster
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(test)]
mod tests {
    use glance_md5::Md5;

    fn openssl_md5(data: &[u8]) -> [u8; 16] {
        let d = openssl::hash::hash(openssl::hash::MessageDigest::md5(), data).unwrap();
        d.as_ref().try_into().unwrap()
    }

    /// The AVX-512 MD5 against OpenSSL's.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn md5_matches_openssl_for_every_length_and_split() {
        let Some(_) = Md5::new() else {
            eprintln!("no AVX-512VL on this CPU; the OpenSSL MD5 is used instead");
            return;
        };
        let data = crate::testutil::pseudo_random(3000);
        // Every padding case (lengths around 55/56/64 and multiples), split at several points.
        for len in 0usize..300 {
            for split in [0, 1, len / 3, len / 2, len.saturating_sub(1), len] {
                let split = split.min(len);
                let mut h = Md5::new().unwrap();
                h.update(&data[..split]);
                h.update(&data[split..len]);
                assert_eq!(
                    h.finish(),
                    openssl_md5(&data[..len]),
                    "len {len} split {split}"
                );
            }
        }
        let mut h = Md5::new().unwrap();
        for piece in data.chunks(61) {
            h.update(piece);
        }
        assert_eq!(h.finish(), openssl_md5(&data));
        // RFC 1321 test vector.
        let mut h = Md5::new().unwrap();
        h.update(b"message digest");
        assert_eq!(hex::encode(h.finish()), "f96b697d7cb7938d525a2f31aaf161d0");
    }
}
