//! CRC-64/ECMA exactly as `oss2` computes it, for `x-oss-hash-crc64ecma`.
//!
//! `oss2.utils.Crc64` is `crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True,
//! xorOut=0xFFFFFFFFFFFFFFFF)`: the ECMA-182 polynomial, reflected, register preset to all ones
//! and the result inverted — the catalogue's CRC-64/XZ (check value for `123456789`:
//! `0x995DC9BBDF1939FA`). `oss2` checks the header after every upload and download by default,
//! so an off-by-one-convention CRC fails every client call.
//!
//! Two properties the service relies on, both matching `oss2`:
//! - **continuation**: `update(crc_of_a, b) == checksum(a ++ b)`. `oss2`'s `Crc64(init_crc)`
//!   continues from a finished value the same way, which is how AppendObject's CRC grows;
//! - **combination**: `combine(crc_a, crc_b, len(b)) == checksum(a ++ b)` without the bytes
//!   (`oss2.crc64_combine`, used by `calc_obj_crc_from_parts`), which is how a completed
//!   multipart object gets its CRC from its parts' CRCs.
//!
//! The one-shot functions are a 60-line table-driven loop, pinned by the tests to values
//! `oss2` itself printed; streamed bodies go through [`Crc64`], which uses the `crc-fast`
//! crate (the same CRC-64/XZ, with carry-less multiplication) and is checked against the
//! table loop.

/// ECMA-182, bit-reversed (0x42F0E1EBA9EA3693 reflected).
const POLY: u64 = 0xC96C_5795_D787_0F42;

/// Slice-by-8 tables: `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC of
/// byte `b` followed by `k` zero bytes.
static TABLES: [[u64; 256]; 8] = make_tables();

const fn make_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut j = 1;
    while j < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        j += 1;
    }
    t
}

/// The CRC of `data`.
pub fn checksum(data: &[u8]) -> u64 {
    update(0, data)
}

/// Continues a finished CRC over more bytes: `update(checksum(a), b) == checksum(a ++ b)`.
pub fn update(crc: u64, data: &[u8]) -> u64 {
    let t = &TABLES;
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = crc ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        crc = t[7][(v & 0xff) as usize]
            ^ t[6][((v >> 8) & 0xff) as usize]
            ^ t[5][((v >> 16) & 0xff) as usize]
            ^ t[4][((v >> 24) & 0xff) as usize]
            ^ t[3][((v >> 32) & 0xff) as usize]
            ^ t[2][((v >> 40) & 0xff) as usize]
            ^ t[1][((v >> 48) & 0xff) as usize]
            ^ t[0][(v >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The CRC of `a ++ b` from `checksum(a)`, `checksum(b)` and `b`'s length, in
/// O(log len_b) 64×64 GF(2) matrix operations (zlib's `crc32_combine`, widened; the
/// algorithm of `oss2.crc64_combine`). Because this CRC's preset equals its final XOR, the
/// two cancel and no correction term is needed.
pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    if len_b == 0 {
        return crc_a;
    }
    let mut crc = crc_a;
    let mut len = len_b;
    // odd: the operator for one zero bit.
    let mut odd = [0u64; 64];
    odd[0] = POLY;
    let mut row = 1u64;
    for slot in odd.iter_mut().skip(1) {
        *slot = row;
        row <<= 1;
    }
    let mut even = [0u64; 64];
    gf2_square(&mut even, &odd); // two zero bits
    gf2_square(&mut odd, &even); // four zero bits
    loop {
        // Each pass doubles the shift: the first applies one zero byte.
        gf2_square(&mut even, &odd);
        if len & 1 == 1 {
            crc = gf2_times(&even, crc);
        }
        len >>= 1;
        if len == 0 {
            break;
        }
        gf2_square(&mut odd, &even);
        if len & 1 == 1 {
            crc = gf2_times(&odd, crc);
        }
        len >>= 1;
        if len == 0 {
            break;
        }
    }
    crc ^ crc_b
}

fn gf2_times(mat: &[u64; 64], mut vec: u64) -> u64 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 == 1 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn gf2_square(square: &mut [u64; 64], mat: &[u64; 64]) {
    for (n, slot) in square.iter_mut().enumerate() {
        *slot = gf2_times(mat, mat[n]);
    }
}

/// The CRC of a concatenation from its pieces' `(crc, length)`, in order — a completed
/// multipart object's CRC from its parts' (what `oss2.utils.calc_obj_crc_from_parts` checks).
pub fn combine_parts(parts: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    parts.into_iter().fold(0, |acc, (crc, len)| combine(acc, crc, len))
}

/// A running CRC for streamed bodies. The bytes go through `crc-fast` (carry-less
/// multiplication, VPCLMULQDQ where the CPU has it: tens of GB/s on data just received,
/// where the table loop above runs at well under one, and object bodies are hashed by the
/// gigabyte); a resumed CRC is joined to it by [`combine`] when the value is asked for.
#[derive(Clone)]
pub struct Crc64 {
    base: u64,
    digest: crc_fast::Digest,
    len: u64,
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({:#018x})", self.value())
    }
}

impl Crc64 {
    /// The CRC of nothing (0).
    pub fn new() -> Self {
        Crc64 { base: 0, digest: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz), len: 0 }
    }

    /// Continues from a finished CRC, like `oss2.utils.Crc64(init_crc)`: the CRC an append
    /// starts from is the object's current one.
    pub fn resume(crc: u64) -> Self {
        Crc64 { base: crc, ..Self::new() }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
        self.len += data.len() as u64;
    }

    pub fn value(&self) -> u64 {
        // 0 is the CRC of nothing: joining to it is the identity, and `combine` costs a few
        // microseconds of matrix products, which small objects would feel.
        if self.base == 0 {
            return self.digest.finalize();
        }
        combine(self.base, self.digest.finalize(), self.len)
    }
}

/// The header value: the CRC in decimal, which `oss2` reads with `int()`.
pub fn header_value(crc: u64) -> String {
    crc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by oss2 2.19.1:
    // python -c "import oss2.utils as u; c=u.Crc64(0); c.update(b'123456789'); print(c.crc)"
    // (and likewise for the other inputs below).
    #[test]
    fn matches_oss2() {
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(b"123456789"), 11051210869376104954);
        assert_eq!(checksum(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(checksum(b"hello world"), 5981764153023615706);
        // data = bytes(range(256)) * 40
        let data: Vec<u8> = (0..40).flat_map(|_| 0u8..=255).collect();
        assert_eq!(checksum(&data), 11412423047033425813);
        // b'x' * (1 << 20)
        assert_eq!(checksum(&vec![b'x'; 1 << 20]), 8714314512667677816);
    }

    // python -c "import oss2.utils as u; a=u.Crc64(0); a.update(b'12345'); b=u.Crc64(0);
    //   b.update(b'67890'); print(a.crc, b.crc, u.Crc64(0).combine(a.crc, b.crc, 5))"
    #[test]
    fn combine_matches_oss2() {
        let (a, b) = (6748440630437108969u64, 6285347597771850461u64);
        assert_eq!(checksum(b"12345"), a);
        assert_eq!(checksum(b"67890"), b);
        assert_eq!(combine(a, b, 5), 12811388247244714686);
        assert_eq!(checksum(b"1234567890"), 12811388247244714686);
        // oss2.utils.calc_obj_crc_from_parts starts from 0: combine(0, x, n) == x.
        assert_eq!(combine(0, a, 5), a);
        assert_eq!(combine(a, 0, 0), a);
        // Two 1 MiB parts of b'x' and a 4-byte tail, combined as oss2 does:
        // 4362905955465895406 == crc(big + big + b'tail').
        let big = checksum(&vec![b'x'; 1 << 20]);
        let tail = checksum(b"tail");
        assert_eq!(combine(combine(big, big, 1 << 20), tail, 4), 4362905955465895406);
        assert_eq!(combine_parts([(big, 1 << 20), (big, 1 << 20), (tail, 4)]), 4362905955465895406);
        assert_eq!(combine_parts([]), 0);
    }

    // python -c "import oss2.utils as u; a=u.Crc64(0); a.update(b'12345');
    //   c=u.Crc64(a.crc); c.update(b'67890'); print(c.crc)"  → 12811388247244714686
    #[test]
    fn continuation_matches_oss2() {
        assert_eq!(update(checksum(b"12345"), b"67890"), 12811388247244714686);
        let mut c = Crc64::resume(checksum(b"12345"));
        c.update(b"678");
        c.update(b"90");
        assert_eq!(c.value(), 12811388247244714686);
        assert_eq!(header_value(c.value()), "12811388247244714686");
    }

    #[test]
    fn every_split_agrees() {
        let data: Vec<u8> = (0..100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let whole = checksum(&data);
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(update(checksum(a), b), whole, "update at {cut}");
            assert_eq!(combine(checksum(a), checksum(b), b.len() as u64), whole, "combine at {cut}");
        }
        let mut c = Crc64::new();
        for chunk in data.chunks(7) {
            c.update(chunk);
        }
        assert_eq!(c.value(), whole);
    }

    #[test]
    fn combine_handles_huge_lengths() {
        // Must terminate quickly and not overflow for the largest lengths.
        let _ = combine(1, 2, u64::MAX);
        let _ = combine(u64::MAX, u64::MAX, 1 << 40);
    }

    #[test]
    fn streaming_crc_matches_the_table_loop_in_any_pieces_and_resumed() {
        let data: Vec<u8> = (0..200_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for cut in [0usize, 1, 7, 4096, 65_537, 199_999] {
            let mut c = Crc64::new();
            c.update(&data[..cut]);
            c.update(&data[cut..]);
            assert_eq!(c.value(), checksum(&data), "cut at {cut}");
            let mut r = Crc64::resume(checksum(&data[..cut]));
            r.update(&data[cut..]);
            assert_eq!(r.value(), checksum(&data), "resumed at {cut}");
        }
        assert_eq!(Crc64::new().value(), 0);
        assert_eq!(Crc64::resume(42).value(), 42);
    }
}
