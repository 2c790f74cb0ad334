//! MD5 for x86 CPUs with AVX-512VL: ~15% faster than OpenSSL's assembly on the Intel CPUs it
//! was written on, 0.73x of it on an AMD EPYC (`cargo bench --bench digests` in glance-rs),
//! so glance-rs times both at start-up and uses the faster (`digest::calibrate`).
//!
//! A crate of its own so that it can be built optimised in debug builds too (see the profile
//! in glance-rs's Cargo.toml): unoptimised, each intrinsic is a function call, ~50x slower, and
//! the integration tests, which run the debug server, upload gigabytes.
//!
//! MD5 is one long dependency chain: each step needs the previous step's result, so its speed is
//! the latency of a step. In general-purpose registers a step costs about five dependent
//! instructions. Kept in lane 0 of vector registers, the boolean function is one `vpternlogd`
//! and the rotation one `vprold`, so a step is four (function, add, rotate, add); the message
//! word and round constant are added to `a` off that chain. Lanes 1-3 carry garbage that never
//! reaches lane 0 (every instruction used is lane-wise).
//!
//! The upload pipeline computes MD5 and sha512 of every byte on a two-core machine, so the CPU
//! MD5 saves goes to the rest of the upload. Verified against OpenSSL by glance-rs's
//! `digest::tests`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// Incremental MD5 over `Md5::update` calls; only built where the CPU has AVX-512F and VL.
pub struct Md5 {
    state: [u32; 4],
    pending: [u8; 64],
    pending_len: usize,
    total: u64,
}

impl Md5 {
    /// `None` when this CPU lacks the instructions.
    pub fn new() -> Option<Md5> {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
            return Some(Md5 {
                state: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476],
                pending: [0; 64],
                pending_len: 0,
                total: 0,
            });
        }
        None
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.pending_len > 0 {
            let take = (64 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 64 {
                return;
            }
            let block = self.pending;
            self.compress(&block);
            self.pending_len = 0;
        }
        let whole = data.len() - data.len() % 64;
        self.compress(&data[..whole]);
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    pub fn finish(mut self) -> [u8; 16] {
        let bits = self.total.wrapping_mul(8);
        let mut tail = [0u8; 128];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        let len = if self.pending_len < 56 { 64 } else { 128 };
        tail[len - 8..len].copy_from_slice(&bits.to_le_bytes());
        self.compress(&tail[..len]);
        let mut out = [0u8; 16];
        for (o, s) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&s.to_le_bytes());
        }
        out
    }

    fn compress(&mut self, blocks: &[u8]) {
        if blocks.is_empty() {
            return;
        }
        // SAFETY: `new` only returns an Md5 where the CPU has avx512f and avx512vl.
        unsafe { compress(&mut self.state, blocks) }
    }
}

const K: [u32; 64] = {
    // floor(abs(sin(i + 1)) * 2^32), as RFC 1321 defines them.
    [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ]
};

/// `vpternlogd` immediates: a boolean function evaluated on the bit patterns 0xf0, 0xcc, 0xaa of
/// the instruction's operands 1, 2, 3 gives its truth table. MD5's f(b, c, d) is computed as
/// ternlog(d, b, c): operand 1 is also the destination, so the copy the compiler makes is of `d`,
/// ready long before, rather than of `b`, which the step waits for.
macro_rules! table {
    (|$x:ident, $y:ident, $z:ident| $e:expr) => {{
        let ($z, $x, $y) = (0xf0u32, 0xccu32, 0xaau32);
        ($e & 0xff) as i32
    }};
}
const F: i32 = table!(|x, y, z| (x & y) | (!x & z));
const G: i32 = table!(|x, y, z| (x & z) | (y & !z));
const H: i32 = table!(|x, y, z| x ^ y ^ z);
const I: i32 = table!(|x, y, z| y ^ (x | !z));

/// One MD5 step: `a = b + rotl(a + f(b, c, d) + m + k, s)`, with `m + k` added to `a` first,
/// while the previous step is still computing `b`.
macro_rules! step {
    ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $i:expr, $k:expr, $s:expr) => {{
        let mk = _mm_cvtsi32_si128($w[$i].wrapping_add(K[$k]) as i32);
        let t = _mm_add_epi32($a, mk);
        let t = _mm_add_epi32(t, _mm_ternarylogic_epi32::<{ $f }>($d, $b, $c));
        $a = _mm_add_epi32($b, _mm_rol_epi32::<{ $s }>(t));
    }};
}

/// Steps `k..k + 4`: one function, the round's four rotations, the message words given.
macro_rules! quad {
    ($f:expr, $w:expr, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr, [$i0:expr, $i1:expr, $i2:expr, $i3:expr], [$s0:expr, $s1:expr, $s2:expr, $s3:expr]) => {
        step!($f, $a, $b, $c, $d, $w, $i0, $k, $s0);
        step!($f, $d, $a, $b, $c, $w, $i1, $k + 1, $s1);
        step!($f, $c, $d, $a, $b, $w, $i2, $k + 2, $s2);
        step!($f, $b, $c, $d, $a, $w, $i3, $k + 3, $s3);
    };
}

#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn compress(state: &mut [u32; 4], blocks: &[u8]) {
    let mut a = _mm_cvtsi32_si128(state[0] as i32);
    let mut b = _mm_cvtsi32_si128(state[1] as i32);
    let mut c = _mm_cvtsi32_si128(state[2] as i32);
    let mut d = _mm_cvtsi32_si128(state[3] as i32);
    for block in blocks.chunks_exact(64) {
        let mut w = [0u32; 16];
        for (w, b) in w.iter_mut().zip(block.chunks_exact(4)) {
            *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let (aa, bb, cc, dd) = (a, b, c, d);
        quad!(F, w, a, b, c, d, 0, [0, 1, 2, 3], [7, 12, 17, 22]);
        quad!(F, w, a, b, c, d, 4, [4, 5, 6, 7], [7, 12, 17, 22]);
        quad!(F, w, a, b, c, d, 8, [8, 9, 10, 11], [7, 12, 17, 22]);
        quad!(F, w, a, b, c, d, 12, [12, 13, 14, 15], [7, 12, 17, 22]);
        quad!(G, w, a, b, c, d, 16, [1, 6, 11, 0], [5, 9, 14, 20]);
        quad!(G, w, a, b, c, d, 20, [5, 10, 15, 4], [5, 9, 14, 20]);
        quad!(G, w, a, b, c, d, 24, [9, 14, 3, 8], [5, 9, 14, 20]);
        quad!(G, w, a, b, c, d, 28, [13, 2, 7, 12], [5, 9, 14, 20]);
        quad!(H, w, a, b, c, d, 32, [5, 8, 11, 14], [4, 11, 16, 23]);
        quad!(H, w, a, b, c, d, 36, [1, 4, 7, 10], [4, 11, 16, 23]);
        quad!(H, w, a, b, c, d, 40, [13, 0, 3, 6], [4, 11, 16, 23]);
        quad!(H, w, a, b, c, d, 44, [9, 12, 15, 2], [4, 11, 16, 23]);
        quad!(I, w, a, b, c, d, 48, [0, 7, 14, 5], [6, 10, 15, 21]);
        quad!(I, w, a, b, c, d, 52, [12, 3, 10, 1], [6, 10, 15, 21]);
        quad!(I, w, a, b, c, d, 56, [8, 15, 6, 13], [6, 10, 15, 21]);
        quad!(I, w, a, b, c, d, 60, [4, 11, 2, 9], [6, 10, 15, 21]);
        a = _mm_add_epi32(a, aa);
        b = _mm_add_epi32(b, bb);
        c = _mm_add_epi32(c, cc);
        d = _mm_add_epi32(d, dd);
    }
    state[0] = _mm_cvtsi128_si32(a) as u32;
    state[1] = _mm_cvtsi128_si32(b) as u32;
    state[2] = _mm_cvtsi128_si32(c) as u32;
    state[3] = _mm_cvtsi128_si32(d) as u32;
}
