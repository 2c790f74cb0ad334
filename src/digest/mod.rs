//! The digests of uploaded data: MD5 (`checksum`) and the configured `hashing_algorithm`
//! (`os_hash_value`).

#[cfg(target_arch = "x86_64")]
mod md5;

use crate::store::StoreError;

/// OpenSSL's digests, whose assembly is the reference the benchmark compares against and is
/// markedly faster than the pure-Rust ones on x86 (sha512 ~1.3x, md5 ~1.25x measured here);
/// MD5 uses our AVX-512 version where the CPU has it (see `md5`).
pub enum Hasher {
    #[cfg(target_arch = "x86_64")]
    Md5(md5::Md5),
    OpenSsl(openssl::hash::Hasher),
}

impl Hasher {
    pub fn new(algo: &str) -> Result<Hasher, StoreError> {
        #[cfg(target_arch = "x86_64")]
        if algo == "md5"
            && let Some(h) = md5::Md5::new()
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
