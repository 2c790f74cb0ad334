//! In-flight disk image format inspection: the upload stream passes through `Inspector::feed`,
//! which keeps the first 64 KiB, the first MiB only when those show a format's signature (raw
//! data needs no more), the last 512 bytes and any region a header points to, so it costs a
//! bounded copy whatever the image size. At the end it names the format, its virtual
//! size, and whether the image is safe to hand to a hypervisor (no backing or data files, no
//! VMDK extents outside the image, sane partition tables) — the checks Glance applies.

const HEAD: usize = 1 << 20;
/// Every signature sits in the first 64 KiB (the deepest, ISO's, at 0x9001).
const SNIFF: usize = 64 << 10;
const TAIL: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Vhd,
    Vhdx,
    Vdi,
    Iso,
    Gpt,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
            Format::Gpt => "gpt",
        }
    }
}

/// Disk formats an inspector exists for; others (ami, ari, aki, ploop) cannot be checked.
pub const INSPECTABLE: &[&str] = &["raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "gpt"];

#[derive(Debug)]
pub struct Inspection {
    /// Every format whose signature matched (empty: raw).
    pub matched: Vec<Format>,
    pub size: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    regions: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Accept, with the virtual size to record (None: unknown).
    Accept(Option<u64>),
    /// The data is not what `disk_format` says, or is ambiguous.
    Mismatch(String),
    /// A safety check failed.
    Unsafe(String),
}

pub struct Inspector {
    head: Vec<u8>,
    /// How much of the stream `head` keeps: HEAD once the first SNIFF bytes show a format's
    /// signature, else SNIFF (holding a MiB for each of many concurrent raw uploads was a
    /// quarter of the server's peak memory).
    head_limit: usize,
    tail: Vec<u8>,
    total: u64,
    /// Regions beyond the head that a header asked for: (offset, len, captured bytes).
    wanted: Vec<(u64, usize, Vec<u8>)>,
    vhdx_parsed: bool,
}

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32le(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}
fn u32be(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|s| u32::from_be_bytes(s.try_into().unwrap_or([0; 4])))
}
fn u64be(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8)
        .map(|s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])))
}

const VHDX_METADATA_REGION: [u8; 16] = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const VHDX_VIRTUAL_DISK_SIZE: [u8; 16] = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");

/// A GUID in its on-disk (mixed-endian) byte order.
const fn guid(s: &str) -> [u8; 16] {
    let b = s.as_bytes();
    let mut hex = [0u8; 16];
    let mut i = 0;
    let mut j = 0;
    while i < b.len() {
        if b[i] != b'-' {
            let v = match b[i] {
                b'0'..=b'9' => b[i] - b'0',
                b'a'..=b'f' => b[i] - b'a' + 10,
                _ => b[i] - b'A' + 10,
            };
            if j % 2 == 0 {
                hex[j / 2] = v << 4;
            } else {
                hex[j / 2] |= v;
            }
            j += 1;
        }
        i += 1;
    }
    // First three groups are little-endian on disk.
    [
        hex[3], hex[2], hex[1], hex[0], hex[5], hex[4], hex[7], hex[6], hex[8], hex[9], hex[10],
        hex[11], hex[12], hex[13], hex[14], hex[15],
    ]
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            head: Vec::new(),
            head_limit: SNIFF,
            tail: Vec::new(),
            total: 0,
            wanted: Vec::new(),
            vhdx_parsed: false,
        }
    }
}

impl Inspector {
    pub fn feed(&mut self, chunk: &[u8]) {
        let start = self.total;
        let mut rest = chunk;
        while self.head.len() < self.head_limit && !rest.is_empty() {
            if self.head.capacity() == 0 {
                self.head.reserve_exact(SNIFF);
            }
            let n = (self.head_limit - self.head.len()).min(rest.len());
            self.head.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.head.len() == SNIFF && !formats(&self.head, false).is_empty() {
                self.head_limit = HEAD;
                self.head.reserve_exact(HEAD - SNIFF);
            }
        }
        // The region table is read as soon as the head holds it, before this chunk is offered
        // to the regions: the metadata may start in this very chunk, or (in a crafted file) in
        // the part of the head already passed, whose bytes are copied from the head.
        if !self.vhdx_parsed && self.head.starts_with(b"vhdxfile") && self.head.len() >= 0x40000 {
            self.vhdx_parsed = true;
            if let Some((off, len)) = vhdx_metadata_region(&self.head)
                && off.saturating_add(len as u64) > HEAD as u64
            {
                let len = len.min(1 << 20);
                let passed = match usize::try_from(off) {
                    Ok(o) if o < start as usize => {
                        self.head[o..(start as usize).min(o + len)].to_vec()
                    }
                    _ => Vec::new(),
                };
                self.wanted.push((off, len, passed));
            }
        }
        for (off, len, buf) in &mut self.wanted {
            let (off, end) = (*off, off.saturating_add(*len as u64));
            let (cs, ce) = (start, start + chunk.len() as u64);
            if ce > off && cs < end {
                let from = off.max(cs);
                let to = end.min(ce);
                // Regions are filled in order as the stream passes them.
                if from == off + buf.len() as u64 {
                    buf.extend_from_slice(&chunk[(from - cs) as usize..(to - cs) as usize]);
                }
            }
        }
        if chunk.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
        self.total += chunk.len() as u64;
    }

    pub fn finish(self) -> Inspection {
        let vhd_footer = self.total >= 512 && self.tail.starts_with(b"conectix");
        let matched = formats(&self.head, vhd_footer);
        Inspection {
            matched,
            size: self.total,
            head: self.head,
            tail: self.tail,
            regions: self.wanted.into_iter().map(|(o, _, b)| (o, b)).collect(),
        }
    }
}

/// The formats whose signature `h` (the head of the data) carries; `vhd_footer`:
/// the data ends with a VHD footer.
fn formats(h: &[u8], vhd_footer: bool) -> Vec<Format> {
    let mut matched = Vec::new();
    if h.starts_with(b"QFI\xfb") {
        matched.push(Format::Qcow2);
    }
    if u32le(h, 0x40) == Some(0xbeda107f) {
        matched.push(Format::Vdi);
    }
    if h.starts_with(b"conectix") || vhd_footer {
        matched.push(Format::Vhd);
    }
    if h.starts_with(b"vhdxfile") {
        matched.push(Format::Vhdx);
    }
    if h.starts_with(b"KDMV") || h.starts_with(b"# Disk DescriptorFile") {
        matched.push(Format::Vmdk);
    }
    if [0x8001usize, 0x8801, 0x9001]
        .iter()
        .any(|o| h.get(*o..*o + 5) == Some(b"CD001".as_slice()))
    {
        matched.push(Format::Iso);
    }
    if h.get(510..512) == Some([0x55u8, 0xAA].as_slice()) {
        matched.push(Format::Gpt);
    }
    matched
}

fn vhdx_metadata_region(head: &[u8]) -> Option<(u64, usize)> {
    // Region table at 192 KiB: "regi", checksum, entry count, reserved, then 32-byte entries.
    let rt = 0x30000;
    if head.get(rt..rt + 4)? != b"regi" {
        return None;
    }
    let count = u32le(head, rt + 8)? as usize;
    for i in 0..count.min(2047) {
        let e = rt + 16 + i * 32;
        if head.get(e..e + 16)? == VHDX_METADATA_REGION {
            return Some((u64le(head, e + 16)?, u32le(head, e + 24)? as usize));
        }
    }
    None
}

impl Inspection {
    /// The single detected format: an ISO with a GPT boot record counts as ISO; any other
    /// combination is ambiguous.
    pub fn format(&self) -> Result<Format, String> {
        match self.matched.as_slice() {
            [] => Ok(Format::Raw),
            [one] => Ok(*one),
            m if m.len() == 2 && m.contains(&Format::Iso) && m.contains(&Format::Gpt) => {
                Ok(Format::Iso)
            }
            m => Err(format!(
                "Multiple formats detected: {}",
                m.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    fn bytes_at(&self, off: u64, len: usize) -> Option<&[u8]> {
        let end = off.checked_add(len as u64)?;
        if end <= self.head.len() as u64 {
            return self.head.get(off as usize..end as usize);
        }
        for (ro, buf) in &self.regions {
            if off >= *ro && end <= ro + buf.len() as u64 {
                return buf.get((off - ro) as usize..(end - ro) as usize);
            }
        }
        None
    }

    pub fn virtual_size(&self, f: Format) -> Option<u64> {
        let h = &self.head;
        match f {
            Format::Raw | Format::Gpt => Some(self.size),
            Format::Qcow2 => u64be(h, 24),
            Format::Vdi => u64le(h, 0x170),
            Format::Vhd => {
                let footer = if h.starts_with(b"conectix") {
                    &h[..]
                } else {
                    &self.tail[..]
                };
                u64be(footer, 48)
            }
            Format::Vmdk => {
                if h.starts_with(b"KDMV") {
                    u64le(h, 12).map(|s| s.saturating_mul(512))
                } else {
                    None
                }
            }
            Format::Iso => {
                let pvd = [0x8000usize, 0x8800, 0x9000]
                    .into_iter()
                    .find(|o| h.get(o + 1..o + 6) == Some(b"CD001".as_slice()))?;
                let blocks = u32le(h, pvd + 80)? as u64;
                let bs = u16le(h, pvd + 128)? as u64;
                Some(blocks * bs)
            }
            Format::Vhdx => {
                let (moff, _) = vhdx_metadata_region(h)?;
                let table = self.bytes_at(moff, 32)?;
                if &table[..8] != b"metadata" {
                    return None;
                }
                let count = u16le(table, 10)? as usize;
                for i in 0..count.min(2047) {
                    let e = self.bytes_at(moff.checked_add(32 + i as u64 * 32)?, 32)?;
                    if e[..16] == VHDX_VIRTUAL_DISK_SIZE {
                        let item = u32le(e, 16)? as u64;
                        return self
                            .bytes_at(moff.checked_add(item)?, 8)
                            .and_then(|b| u64le(b, 0));
                    }
                }
                None
            }
        }
    }

    /// The safety checks for the detected format; Err names what failed.
    pub fn safety_check(&self, f: Format) -> Result<(), String> {
        match f {
            Format::Qcow2 => self.qcow2_safe(),
            Format::Vmdk => self.vmdk_safe(),
            Format::Gpt => match self.gpt_failures().first() {
                Some((_, why)) => Err(why.clone()),
                None => Ok(()),
            },
            Format::Iso => Ok(()),
            _ => Ok(()),
        }
    }

    fn qcow2_safe(&self) -> Result<(), String> {
        let h = &self.head;
        let version = u32be(h, 4).ok_or("qcow2 header truncated")?;
        if u64be(h, 8).ok_or("qcow2 header truncated")? != 0 {
            return Err("qcow2 image has a backing file".into());
        }
        let mut ext_start = 72usize;
        if version >= 3 {
            let incompatible = u64be(h, 72).ok_or("qcow2 header truncated")?;
            if incompatible & (1 << 2) != 0 {
                return Err("qcow2 image has an external data file".into());
            }
            ext_start = u32be(h, 100).ok_or("qcow2 header truncated")? as usize;
        }
        // Header extensions: (type, length, data padded to 8), ended by type 0.
        let mut o = ext_start;
        for _ in 0..64 {
            let Some(kind) = u32be(h, o) else { break };
            if kind == 0 {
                break;
            }
            if kind == 0x4441_5441 {
                return Err("qcow2 image names an external data file".into());
            }
            if kind == 0xe279_2aca {
                return Err("qcow2 image names a backing file format".into());
            }
            let len = u32be(h, o + 4).unwrap_or(0) as usize;
            o += 8 + len.div_ceil(8) * 8;
        }
        Ok(())
    }

    fn vmdk_safe(&self) -> Result<(), String> {
        let h = &self.head;
        let desc: &[u8] = if h.starts_with(b"KDMV") {
            let off = u64le(h, 28).unwrap_or(0).saturating_mul(512);
            let len = u64le(h, 36).unwrap_or(0).saturating_mul(512).min(1 << 20) as usize;
            if off == 0 || len == 0 {
                return Err("VMDK has no embedded descriptor".into());
            }
            self.bytes_at(off, len)
                .ok_or("VMDK descriptor is out of reach")?
        } else {
            // A bare descriptor: its data lives in other files, which is exactly the danger.
            return Err("VMDK descriptor file without data (extents are separate files)".into());
        };
        let text = String::from_utf8_lossy(desc);
        let text = text.trim_end_matches('\0');
        let create_type = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("createType"))
            .filter_map(|l| l.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .next()
            .ok_or("VMDK descriptor has no createType")?;
        if !matches!(create_type.as_str(), "monolithicSparse" | "streamOptimized") {
            return Err(format!("VMDK createType {create_type} is not allowed"));
        }
        let mut extents = 0;
        for line in text.lines().map(str::trim) {
            if line.starts_with("RW ")
                || line.starts_with("RDONLY ")
                || line.starts_with("NOACCESS ")
            {
                extents += 1;
                let kind = line.split_whitespace().nth(2).unwrap_or("");
                if kind != "SPARSE" {
                    return Err(format!("VMDK extent type {kind} is not allowed"));
                }
            }
        }
        if extents != 1 {
            return Err(format!(
                "VMDK has {extents} extents; only one (the image itself) is allowed"
            ));
        }
        Ok(())
    }

    /// Every failed MBR/GPT check, named as Glance's `gpt_safety_checks_nonfatal` names them:
    /// "mbr" (the partition table itself) and "gptmbr" (the protective MBR a GPT needs).
    fn gpt_failures(&self) -> Vec<(&'static str, String)> {
        let h = &self.head;
        let mut failures = Vec::new();
        let mut protective = 0;
        for i in 0..4 {
            let e = 446 + i * 16;
            let Some(entry) = h.get(e..e + 16) else {
                continue;
            };
            let status = entry[0];
            if status != 0 && status != 0x80 {
                failures.push((
                    "mbr",
                    format!("MBR partition {i} has an invalid boot flag {status:#x}"),
                ));
            }
            if entry[4] == 0xEE {
                protective += 1;
                if u32le(entry, 8) != Some(1) {
                    failures.push((
                        "gptmbr",
                        "GPT protective MBR partition does not start at LBA 1".into(),
                    ));
                }
            }
        }
        if protective > 1 {
            failures.push((
                "gptmbr",
                "MBR has more than one GPT protective partition".into(),
            ));
        }
        let has_gpt = h.get(512..520) == Some(b"EFI PART".as_slice());
        if has_gpt && protective == 0 {
            failures.push(("gptmbr", "GPT header without a protective MBR".into()));
        }
        failures
    }

    /// Glance's decision for `container_format=bare` data declared as `disk_format`.
    /// `nonfatal`: names of GPT checks that only warn (`gpt_safety_checks_nonfatal`).
    pub fn verdict(&self, disk_format: &str, require_match: bool, nonfatal: &[String]) -> Verdict {
        let f = match self.format() {
            Ok(f) => f,
            Err(e) => {
                return if require_match {
                    Verdict::Mismatch(e)
                } else {
                    Verdict::Accept(None)
                };
            }
        };
        let vsize = if f.name() == disk_format {
            self.virtual_size(f)
        } else if f == Format::Raw && !INSPECTABLE.contains(&disk_format) {
            None
        } else if disk_format == "raw" {
            Some(self.size)
        } else if require_match {
            return Verdict::Mismatch(format!(
                "Image disk_format {disk_format} does not match stream data {}",
                f.name()
            ));
        } else {
            None
        };
        if f == Format::Gpt {
            let failures = self.gpt_failures();
            let fatal = failures
                .iter()
                .any(|(check, _)| !nonfatal.iter().any(|n| n == check));
            if fatal {
                let why: Vec<&str> = failures.iter().map(|(_, w)| w.as_str()).collect();
                return Verdict::Unsafe(why.join("; "));
            }
            for (check, why) in &failures {
                tracing::warn!(check, reason = %why, "non-fatal GPT safety check failed");
            }
            return Verdict::Accept(vsize);
        }
        match self.safety_check(f) {
            Ok(()) => Verdict::Accept(vsize),
            Err(e) => Verdict::Unsafe(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rng::Rng;

    fn inspect(data: &[u8], chunk: usize) -> Inspection {
        let mut i = Inspector::default();
        for c in data.chunks(chunk) {
            i.feed(c);
        }
        i.finish()
    }

    #[test]
    fn raw_and_chunking() {
        let data = vec![7u8; 3 * HEAD + 5];
        for chunk in [1, 511, 4096, HEAD + 3] {
            let r = inspect(&data, chunk);
            assert_eq!(r.format().unwrap(), Format::Raw);
            assert_eq!(
                r.verdict("raw", true, &[]),
                Verdict::Accept(Some(data.len() as u64))
            );
            assert_eq!(r.tail, vec![7u8; 512]);
            assert_eq!(r.head.len(), SNIFF, "raw data keeps only what was sniffed");
        }
    }

    /// A signature in the first 64 KiB keeps the first MiB whole, whichever chunk crosses the
    /// 64 KiB mark; a VHDX region table at 192 KiB is then read from it.
    #[test]
    fn signature_keeps_the_first_mib_across_chunkings() {
        let mut data: Vec<u8> = (0..2 * HEAD).map(|i| (i % 251) as u8).collect();
        data[..8].copy_from_slice(b"vhdxfile");
        for chunk in [1000, SNIFF, SNIFF - 1, SNIFF + 1, 3 * SNIFF + 7, HEAD + 3] {
            let r = inspect(&data, chunk);
            assert_eq!(r.format().unwrap(), Format::Vhdx);
            assert_eq!(r.head, data[..HEAD], "chunk {chunk}");
        }
        let mut i = Inspector::default();
        i.feed(&data[..SNIFF - 1]);
        i.feed(&data[SNIFF - 1..SNIFF + 9]);
        assert_eq!(i.finish().head, data[..SNIFF + 9]);
    }

    #[test]
    fn qcow2_header_and_backing_file() {
        let mut h = vec![0u8; 4096];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[100..104].copy_from_slice(&104u32.to_be_bytes());
        let r = inspect(&h, 100);
        assert_eq!(
            r.verdict("qcow2", true, &[]),
            Verdict::Accept(Some(1 << 30))
        );
        assert!(matches!(r.verdict("vmdk", true, &[]), Verdict::Mismatch(_)));
        // Declared raw: allowed as raw, but the safety checks of the real format still apply.
        assert_eq!(r.verdict("raw", true, &[]), Verdict::Accept(Some(4096)));
        h[8..16].copy_from_slice(&512u64.to_be_bytes());
        let r = inspect(&h, 100);
        assert!(matches!(r.verdict("qcow2", true, &[]), Verdict::Unsafe(_)));
        assert!(matches!(r.verdict("raw", true, &[]), Verdict::Unsafe(_)));
    }

    /// A VMDK capacity in sectors whose byte count exceeds u64 saturates (was an overflow:
    /// a panic in debug builds, a wrapped small size in release).
    #[test]
    fn vmdk_capacity_saturates() {
        let mut h = vec![0u8; 1024];
        h[..4].copy_from_slice(b"KDMV");
        h[12..20].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert_eq!(inspect(&h, 1024).virtual_size(Format::Vmdk), Some(u64::MAX));
    }

    /// The VHDX metadata region (at 3 MiB, as qemu-img places it) is read however the stream
    /// is cut: one chunk holding both the region table and the region used to skip it.
    #[test]
    fn vhdx_metadata_found_whatever_the_chunks() {
        let (data, _) = seeds()
            .into_iter()
            .find(|(d, _)| d.starts_with(b"vhdxfile") && d.len() > 0x30_0000)
            .unwrap();
        for chunk in [data.len(), 1000, 0x40001, 0x30_0001] {
            let r = inspect(&data, chunk);
            assert_eq!(r.virtual_size(Format::Vhdx), Some(1 << 30), "chunk {chunk}");
        }
    }

    #[test]
    fn guids_are_mixed_endian() {
        assert_eq!(&VHDX_METADATA_REGION[..4], &[0x06, 0xA2, 0x7C, 0x8B]);
    }

    fn put(b: &mut Vec<u8>, at: usize, bytes: &[u8]) {
        if b.len() < at + bytes.len() {
            b.resize(at + bytes.len(), 0);
        }
        b[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// One well-formed header per format, with the offsets of its fields (where a mutation
    /// does the most damage).
    fn seeds() -> Vec<(Vec<u8>, Vec<usize>)> {
        let mut out = Vec::new();
        let mut q = Vec::new();
        put(&mut q, 0, b"QFI\xfb");
        put(&mut q, 4, &3u32.to_be_bytes());
        put(&mut q, 20, &16u32.to_be_bytes());
        put(&mut q, 24, &(1u64 << 30).to_be_bytes());
        put(&mut q, 100, &112u32.to_be_bytes());
        put(&mut q, 112, &0x6803_f857u32.to_be_bytes()); // feature table extension
        put(&mut q, 116, &8u32.to_be_bytes());
        put(&mut q, 4095, &[0]);
        out.push((q, vec![4, 8, 24, 72, 100, 112, 116, 128, 132]));
        let mut v = vec![0u8; 1024];
        put(&mut v, 0x40, &0xbeda107fu32.to_le_bytes());
        put(&mut v, 0x170, &(1u64 << 30).to_le_bytes());
        out.push((v, vec![0x40, 0x170]));
        let mut footer = vec![0u8; 512];
        put(&mut footer, 0, b"conectix");
        put(&mut footer, 48, &(1u64 << 30).to_be_bytes());
        let mut vhd = vec![9u8; 4096];
        vhd.extend_from_slice(&footer);
        out.push((footer, vec![48]));
        out.push((vhd, vec![4096 + 48]));
        // VHDX: region table at 192 KiB pointing at metadata at 3 MiB (as qemu-img lays it
        // out), or inside the first MiB.
        for meta in [0x30_0000usize, 0x8_0000] {
            let mut x = Vec::new();
            put(&mut x, 0, b"vhdxfile");
            put(&mut x, 0x30000, b"regi");
            put(&mut x, 0x30008, &1u32.to_le_bytes());
            put(&mut x, 0x30010, &VHDX_METADATA_REGION);
            put(&mut x, 0x30020, &(meta as u64).to_le_bytes());
            put(&mut x, 0x30028, &(1u32 << 20).to_le_bytes());
            put(&mut x, meta, b"metadata");
            put(&mut x, meta + 10, &1u16.to_le_bytes());
            put(&mut x, meta + 32, &VHDX_VIRTUAL_DISK_SIZE);
            put(&mut x, meta + 48, &0x1_0000u32.to_le_bytes());
            put(&mut x, meta + 0x1_0000, &(1u64 << 30).to_le_bytes());
            put(&mut x, meta + 0x1_0000 + 4096, &[0]);
            let fields = vec![
                0x30008,
                0x30020,
                0x30028,
                meta + 10,
                meta + 48,
                meta + 0x1_0000,
            ];
            out.push((x, fields));
        }
        let mut k = Vec::new();
        put(&mut k, 0, b"KDMV");
        put(&mut k, 12, &(1u64 << 21).to_le_bytes());
        put(&mut k, 28, &1u64.to_le_bytes());
        put(&mut k, 36, &1u64.to_le_bytes());
        put(
            &mut k,
            512,
            b"createType=\"monolithicSparse\"\nRW 2048 SPARSE \"a.vmdk\"\n",
        );
        put(&mut k, 8191, &[0]);
        out.push((k, vec![12, 28, 36, 512]));
        let mut iso = vec![0u8; 0x9800];
        put(&mut iso, 0x8001, b"CD001");
        put(&mut iso, 0x8000 + 80, &1000u32.to_le_bytes());
        put(&mut iso, 0x8000 + 128, &2048u16.to_le_bytes());
        out.push((iso, vec![0x8050, 0x8080]));
        let mut gpt = vec![0u8; 2048];
        put(&mut gpt, 446 + 4, &[0xEE]);
        put(&mut gpt, 446 + 8, &1u32.to_le_bytes());
        put(&mut gpt, 510, &[0x55, 0xAA]);
        put(&mut gpt, 512, b"EFI PART");
        out.push((gpt, vec![446, 450, 454, 462, 466, 470]));
        out.push((crate::testutil::pseudo_random(5000), vec![0, 512]));
        out
    }

    fn mutate(rng: &mut Rng, seed: &(Vec<u8>, Vec<usize>)) -> Vec<u8> {
        const WORDS: [u64; 8] = [
            0,
            1,
            0x7f,
            0x8000_0000,
            0xffff_ffff,
            1 << 40,
            i64::MAX as u64,
            u64::MAX,
        ];
        let (mut d, fields) = (seed.0.clone(), &seed.1);
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                0 => {
                    let at = rng.below(d.len());
                    if let Some(b) = d.get_mut(at) {
                        *b = rng.next() as u8;
                    }
                }
                1 | 2 => {
                    // A field, or a field's neighbour, set to an edge value in either order.
                    let at = *rng.pick(fields) + rng.below(3) * 4;
                    let w = *rng.pick(&WORDS);
                    let bytes = if rng.chance(50) {
                        w.to_le_bytes()
                    } else {
                        w.to_be_bytes()
                    };
                    put(&mut d, at, &bytes[..[2, 4, 8][rng.below(3)]]);
                }
                3 => d.truncate(rng.below(d.len() + 1)),
                _ => {
                    // Another format's signature somewhere it is looked for.
                    let (at, sig): (usize, &[u8]) = [
                        (0, b"QFI\xfb".as_slice()),
                        (0, b"KDMV"),
                        (0, b"# Disk DescriptorFile"),
                        (0x8001, b"CD001"),
                        (510, &[0x55, 0xAA]),
                        (0x40, &[0x7f, 0x10, 0xda, 0xbe]),
                    ][rng.below(6)];
                    put(&mut d, at, sig);
                }
            }
        }
        d
    }

    /// Everything a caller can ask of an inspection.
    fn answers(r: &Inspection) -> Vec<String> {
        let mut out = vec![format!("{:?} {}", r.format(), r.size)];
        for d in INSPECTABLE.iter().copied().chain(["ami"]) {
            let nonfatal = ["mbr".to_string(), "gptmbr".to_string()];
            out.push(format!("{:?}", r.verdict(d, true, &[])));
            out.push(format!("{:?}", r.verdict(d, false, &nonfatal)));
        }
        out
    }

    /// Damaged and hostile headers of every format: inspection never panics (tests build with
    /// overflow checks), and its answers do not depend on how the network cut the stream.
    #[test]
    fn mutated_headers_never_panic_and_chunking_never_matters() {
        let seeds = seeds();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..1500 {
            let seed = &seeds[round % seeds.len()];
            let data = mutate(&mut rng, seed);
            let whole = answers(&inspect(&data, data.len().max(1)));
            let small = answers(&inspect(&data, 1 + rng.below(700)));
            assert_eq!(whole, small, "round {round}: one chunk vs small chunks");
            let mut i = Inspector::default();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(300_000)).min(rest.len());
                i.feed(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(whole, answers(&i.finish()), "round {round}: uneven chunks");
        }
    }

    #[test]
    fn uninspectable_formats_pass_when_raw() {
        let r = inspect(&[1u8; 100], 10);
        assert_eq!(r.verdict("ami", true, &[]), Verdict::Accept(None));
    }
}
