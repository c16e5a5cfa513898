//! Bytes in several buffers, appended as one: a writer hands over what it received (a
//! request body's frames, say) without first copying it into one buffer. Cloning and
//! splitting are cheap (the buffers are shared `Bytes`).
//!
//! Parts may carry the CRC32Cs of their 64 KiB blocks ([`crate::chunk::BLOCK_SIZE`]),
//! computed by the writer while the bytes were still in the cache ([`BlockCrcs`]): an
//! in-process chunkserver appending them at a block boundary records those instead of reading
//! every byte again.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::chunk::BLOCK_SIZE;
use crate::crc::crc32c_append;

/// A sequence of byte buffers, read as their concatenation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    parts: VecDeque<Bytes>,
    len: usize,
    /// The CRC32C of each block of the concatenation (the last one possibly partial), when
    /// the writer gave them.
    block_crcs: Option<Vec<u32>>,
}

impl Parts {
    pub fn new() -> Parts {
        Parts::default()
    }

    /// The total length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a buffer (an empty one is dropped). Block checksums given before no longer
    /// cover the whole and are dropped.
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push_back(part);
            self.block_crcs = None;
        }
    }

    /// These parts with the CRC32Cs of their blocks: `crcs[i]` is the CRC32C of bytes
    /// `i * BLOCK_SIZE..` up to the next block or the end. A list of the wrong length is
    /// ignored. The caller vouches for the values; a chunkserver records them as the blocks'
    /// checksums (debug builds check them).
    pub fn with_block_crcs(mut self, crcs: Vec<u32>) -> Parts {
        let blocks = (self.len as u64).div_ceil(BLOCK_SIZE);
        self.block_crcs = (crcs.len() as u64 == blocks).then_some(crcs);
        self
    }

    /// The block checksums given with [`Parts::with_block_crcs`], if any.
    pub fn block_crcs(&self) -> Option<&[u32]> {
        self.block_crcs.as_deref()
    }

    /// The first `n` bytes (at most all), taken off the front; a buffer that straddles the cut
    /// is split, not copied. Block checksums follow the bytes when the cut is on a block
    /// boundary (or takes everything), and are dropped from both sides otherwise.
    pub fn split_to(&mut self, n: usize) -> Parts {
        let crcs = self.block_crcs.take();
        let mut head = Parts::new();
        while head.len < n {
            let Some(mut part) = self.parts.pop_front() else { break };
            let want = n - head.len;
            if part.len() > want {
                self.parts.push_front(part.split_off(want));
            }
            self.len -= part.len();
            head.push(part);
        }
        if let Some(mut crcs) = crcs {
            if self.len == 0 {
                head.block_crcs = Some(crcs);
            } else if head.len as u64 % BLOCK_SIZE == 0 {
                let rest = crcs.split_off((head.len as u64 / BLOCK_SIZE) as usize);
                head.block_crcs = Some(crcs);
                self.block_crcs = Some(rest);
            }
        }
        head
    }

    /// The buffers themselves, in order.
    pub fn buffers(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter()
    }

    /// The buffers, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.parts.iter().map(|p| p.as_ref())
    }

    /// The bytes in one buffer: the buffer itself when there is one, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts[0].clone(),
            _ => {
                let mut all = BytesMut::with_capacity(self.len);
                for p in &self.parts {
                    all.extend_from_slice(p);
                }
                all.freeze()
            }
        }
    }
}

impl From<Bytes> for Parts {
    fn from(b: Bytes) -> Parts {
        let mut p = Parts::new();
        p.push(b);
        p
    }
}

impl FromIterator<Bytes> for Parts {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Parts {
        let mut p = Parts::new();
        for b in iter {
            p.push(b);
        }
        p
    }
}

/// The CRC32Cs of the 64 KiB blocks of a stream of bytes, computed as the bytes arrive (a
/// request body frame by frame, each while it is still in the cache). Block `i` is bytes
/// `i * BLOCK_SIZE..`: a stream that starts at a block boundary of a file.
#[derive(Debug, Default)]
pub struct BlockCrcs {
    done: VecDeque<u32>,
    /// The CRC32C of the bytes so far of the block being filled, and how many there are.
    crc: u32,
    filled: usize,
}

impl BlockCrcs {
    pub fn new() -> BlockCrcs {
        BlockCrcs::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        const BLOCK: usize = BLOCK_SIZE as usize;
        while !data.is_empty() {
            let (now, rest) = data.split_at((BLOCK - self.filled).min(data.len()));
            // A new block's CRC starts from 0, the CRC of nothing.
            self.crc = crc32c_append(self.crc, now);
            self.filled += now.len();
            if self.filled == BLOCK {
                self.done.push_back(self.crc);
                (self.crc, self.filled) = (0, 0);
            }
            data = rest;
        }
    }

    /// The checksums of the next `blocks` whole blocks, if that many are complete.
    pub fn take(&mut self, blocks: usize) -> Option<Vec<u32>> {
        (self.done.len() >= blocks).then(|| self.done.drain(..blocks).collect())
    }

    /// The checksums of every block not taken yet, the partial last one included.
    pub fn finish(mut self) -> Vec<u32> {
        if self.filled > 0 {
            self.done.push_back(self.crc);
        }
        self.done.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc::crc32c;

    fn parts(pieces: &[&'static [u8]]) -> Parts {
        pieces.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn splitting_anywhere_keeps_every_byte_in_order() {
        let all = b"abcdefghij";
        for cut in 0..=12 {
            let mut p = parts(&[b"abc", b"", b"defg", b"h", b"ij"]);
            assert_eq!(p.len(), 10);
            let head = p.split_to(cut);
            assert_eq!(head.len(), cut.min(10));
            assert_eq!(p.len(), 10 - cut.min(10));
            assert_eq!(head.to_bytes(), Bytes::from_static(&all[..cut.min(10)]));
            assert_eq!(p.to_bytes(), Bytes::from_static(&all[cut.min(10)..]));
        }
    }

    #[test]
    fn buffers_are_kept_as_they_are_and_joined_only_when_asked() {
        let p = parts(&[b"ab", b"", b"cd"]);
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![&b"ab"[..], &b"cd"[..]]);
        assert_eq!(p.to_bytes(), Bytes::from_static(b"abcd"));
        let one = Parts::from(Bytes::from_static(b"xyz"));
        assert_eq!(one.to_bytes().as_ptr(), one.buffers().next().unwrap().as_ptr());
        assert!(Parts::new().to_bytes().is_empty());
    }

    #[test]
    fn block_checksums_follow_the_bytes_across_block_cuts_only() {
        const B: usize = BLOCK_SIZE as usize;
        let data: Vec<u8> = (0..(3 * B + 100)).map(|i| (i * 7 % 251) as u8).collect();
        let crcs: Vec<u32> = data.chunks(B).map(crc32c).collect();
        // As the bytes arrive, in pieces that cut blocks anywhere.
        let mut sums = BlockCrcs::new();
        for piece in data.chunks(9_999) {
            sums.update(piece);
        }
        assert_eq!(sums.take(4), None, "only three blocks are whole");
        assert_eq!(sums.take(2), Some(crcs[..2].to_vec()));
        assert_eq!(sums.finish(), crcs[2..].to_vec());

        let whole = || Parts::from(Bytes::from(data.clone())).with_block_crcs(crcs.clone());
        assert_eq!(whole().block_crcs(), Some(&crcs[..]));
        // A cut on a block boundary splits them; anywhere else drops them from both sides.
        let mut p = whole();
        let head = p.split_to(B);
        assert_eq!((head.block_crcs(), p.block_crcs()), (Some(&crcs[..1]), Some(&crcs[1..])));
        let mut p = whole();
        let head = p.split_to(B + 1);
        assert_eq!((head.block_crcs(), p.block_crcs()), (None, None));
        // Taking everything keeps them; a list of the wrong length or a push drops them.
        let mut p = whole();
        assert_eq!(p.split_to(10 * B).block_crcs(), Some(&crcs[..]));
        assert_eq!(Parts::from(Bytes::from(data.clone())).with_block_crcs(crcs[..3].to_vec()).block_crcs(), None);
        let mut p = whole();
        p.push(Bytes::from_static(b"x"));
        assert_eq!(p.block_crcs(), None);
    }
}
