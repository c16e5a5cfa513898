//! Block arithmetic: which blocks a byte range touches, and how block checksums grow as
//! bytes are appended. Plain functions, no I/O.

use std::ops::Range;

/// The checksum granularity: every block of this many bytes (the last one possibly
/// partial) has its own CRC32C.
pub const BLOCK_SIZE: u64 = 64 * 1024;

/// `BLOCK_SIZE` as a `usize`, for slicing buffers.
pub(super) const BLOCK_BYTES: usize = 64 * 1024;

/// How many blocks hold `len` bytes (the last one possibly partial).
pub fn block_count(len: u64) -> u64 {
    len.div_ceil(BLOCK_SIZE)
}

/// The index of the block that holds byte `offset`.
pub fn block_of(offset: u64) -> u64 {
    offset / BLOCK_SIZE
}

/// How many bytes of block `block_of(len)` are in use in a chunk of `len` bytes: zero when
/// `len` is block-aligned (that block has not started yet).
pub fn tail_bytes(len: u64) -> u64 {
    len % BLOCK_SIZE
}

/// The blocks that the `len` bytes starting at `offset` touch; empty when `len` is zero.
/// `offset + len` must not overflow (callers check the range against the chunk first).
pub fn blocks_touched(offset: u64, len: u64) -> Range<u64> {
    if len == 0 {
        let b = block_of(offset);
        return b..b;
    }
    block_of(offset)..block_count(offset.saturating_add(len))
}

/// The byte extent of the blocks `blocks` in a chunk of `chunk_len` bytes: the last block is
/// cut at the end of the chunk.
pub fn blocks_extent(blocks: &Range<u64>, chunk_len: u64) -> Range<u64> {
    let start = blocks.start.saturating_mul(BLOCK_SIZE).min(chunk_len);
    let end = blocks.end.saturating_mul(BLOCK_SIZE).min(chunk_len);
    start..end.max(start)
}

/// The block checksums after appending `data` (the concatenation of its parts, which may
/// cross block boundaries anywhere) to a chunk of `old_len` bytes, and, if `of_data`, the
/// CRC32C of `data` itself (the writer's end-to-end checksum to compare with).
///
/// `tail_crc` is the CRC32C of the bytes already in the partial last block (`0`, the CRC of
/// nothing, when `old_len` is block-aligned). Returns the index of the first block whose
/// checksum changes (`block_of(old_len)`), the new checksums of that block and every block
/// after it, up to `block_count(old_len + len(data))`, and the CRC of `data` if asked for.
///
/// The partial block's CRC is extended, not recomputed from disk: the new CRC is a function
/// of the CRC the chunk recorded and the new bytes, so a block that rotted on disk still
/// fails verification after it grows. Each byte is fetched from memory once: the CRC of
/// `data` runs over each piece right after the block's, from the cache.
pub fn extend_checksums<'a>(
    old_len: u64,
    tail_crc: u32,
    data: impl IntoIterator<Item = &'a [u8]>,
    of_data: bool,
) -> (u64, Vec<u32>, Option<u32>) {
    let first_block = block_of(old_len);
    let mut crcs = Vec::new();
    // `tail_bytes` is < BLOCK_SIZE, so it fits any usize this code runs on.
    let tail = usize::try_from(tail_bytes(old_len)).unwrap_or(0);
    // Bytes left in the block being filled, its CRC so far, and whether new bytes are in it.
    let mut room = BLOCK_BYTES - tail;
    let mut crc = if tail == 0 { 0 } else { tail_crc };
    let mut touched = false;
    let mut data_crc = 0;
    for part in data {
        let mut rest = part;
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(room.min(rest.len()));
            crc = crate::crc::crc32c_append(crc, piece);
            if of_data {
                // The bytes were just read: this second pass runs from the cache.
                data_crc = crate::crc::crc32c_append(data_crc, piece);
            }
            room -= piece.len();
            touched = true;
            if room == 0 {
                crcs.push(crc);
                (room, crc, touched) = (BLOCK_BYTES, 0, false);
            }
            rest = after;
        }
    }
    if touched {
        crcs.push(crc);
    }
    (first_block, crcs, of_data.then_some(data_crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = BLOCK_SIZE;

    #[test]
    fn counts_and_indexes() {
        assert_eq!(block_count(0), 0);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(B), 1);
        assert_eq!(block_count(B + 1), 2);
        assert_eq!(block_of(0), 0);
        assert_eq!(block_of(B - 1), 0);
        assert_eq!(block_of(B), 1);
        assert_eq!(tail_bytes(B), 0);
        assert_eq!(tail_bytes(B + 7), 7);
    }

    #[test]
    fn touched_blocks() {
        assert_eq!(blocks_touched(0, 0), 0..0);
        assert_eq!(blocks_touched(5, 1), 0..1);
        assert_eq!(blocks_touched(B - 1, 1), 0..1);
        assert_eq!(blocks_touched(B - 1, 2), 0..2);
        assert_eq!(blocks_touched(B, B), 1..2);
        assert_eq!(blocks_touched(10, 3 * B), 0..4);
        assert_eq!(blocks_touched(u64::MAX - 1, 1), block_of(u64::MAX - 1)..block_count(u64::MAX));
    }

    #[test]
    fn extents_are_cut_at_the_chunk_end() {
        assert_eq!(blocks_extent(&(0..1), 10), 0..10);
        assert_eq!(blocks_extent(&(0..2), B + 3), 0..B + 3);
        assert_eq!(blocks_extent(&(1..2), 3 * B), B..2 * B);
        assert_eq!(blocks_extent(&(3..4), B), B..B);
    }

    fn crcs_of(bytes: &[u8]) -> Vec<u32> {
        bytes.chunks(BLOCK_BYTES).map(crate::crc::crc32c).collect()
    }

    #[test]
    fn extending_from_empty_equals_per_block_crcs() {
        let data: Vec<u8> = (0..(2 * B + 100)).map(|i| (i * 7 % 251) as u8).collect();
        let (first, crcs, whole) = extend_checksums(0, 0, [&data[..]], true);
        assert_eq!(whole, Some(crate::crc::crc32c(&data)));
        assert_eq!(first, 0);
        assert_eq!(crcs, crcs_of(&data));
    }

    #[test]
    fn extending_in_unaligned_pieces_equals_one_big_append() {
        let data: Vec<u8> = (0..(3 * B + 17)).map(|i| (i * 31 % 253) as u8).collect();
        let cuts = [0usize, 1, 100, 65_535, 65_536, 65_537, 140_000, 196_608, data.len()];
        let mut all: Vec<u32> = Vec::new();
        for w in cuts.windows(2) {
            let (old, new) = (w[0], w[1]);
            let tail = if tail_bytes(old as u64) == 0 { 0 } else { *all.last().unwrap_or(&0) };
            let (first, crcs, whole) = extend_checksums(old as u64, tail, [&data[old..new]], true);
            assert_eq!(whole, Some(crate::crc::crc32c(&data[old..new])));
            assert_eq!(
                extend_checksums(old as u64, tail, data[old..new].chunks(1000), false),
                (first, crcs.clone(), None)
            );
            assert_eq!(first, block_of(old as u64));
            all.truncate(first as usize);
            all.extend(crcs);
            assert_eq!(all.len() as u64, block_count(new as u64));
            assert_eq!(all, crcs_of(&data[..new]));
        }
    }

    #[test]
    fn a_stale_tail_crc_stays_wrong_after_extension() {
        // The recorded tail CRC is of "abc"; the disk holds "abX". Extending must not heal it.
        let recorded = crate::crc::crc32c(b"abc");
        let (_, crcs, _) = extend_checksums(3, recorded, [&b"def"[..]], true);
        assert_eq!(crcs, vec![crate::crc::crc32c(b"abcdef")]);
        assert_ne!(crcs[0], crate::crc::crc32c(b"abXdef"));
    }

    #[test]
    fn aligned_old_len_ignores_tail_crc() {
        let (first, crcs, _) = extend_checksums(B, 0xdead_beef, [&b"x"[..]], true);
        assert_eq!(first, 1);
        assert_eq!(crcs, vec![crate::crc::crc32c(b"x")]);
    }

    #[test]
    fn empty_extension_changes_nothing() {
        assert_eq!(extend_checksums(5, 9, [&b""[..]], true), (0, vec![], Some(0)));
        assert_eq!(extend_checksums(5, 9, [], true), (0, vec![], Some(0)));
    }
}
