//! Read coalescing (pure): the pieces one read resolves to, merged into fewer store reads.
//!
//! A volume overwritten at random keeps logically adjacent blocks in scattered places of the
//! log, but blocks written in one batch sit side by side. A large read may resolve to
//! hundreds of 4 KiB pieces, and Pangu verifies a whole 64 KiB checksum block for each piece
//! it reads: reading the pieces one by one would verify the same block many times and pay a
//! round trip per piece. Pieces of the same file whose byte ranges lie within [`MAX_GAP`] of
//! each other are read as one span (the bytes between them are read and dropped), so each
//! checksum block is verified once per request and the number of store calls falls with
//! the fragmentation.

use crate::store::FileId;

/// Pieces closer than this (bytes) in the same file are read as one span: one Pangu
/// checksum block, so reading the gap costs no more verification than two reads would.
pub const MAX_GAP: u64 = 64 * 1024;

/// Spans are cut at this length (a store read is one transfer).
pub const MAX_SPAN: u64 = 8 * 1024 * 1024;

/// One store read and the pieces it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: FileId,
    pub offset: u64,
    pub len: u64,
    /// (index of the piece in the caller's list, its offset within the span).
    pub pieces: Vec<(usize, u64)>,
}

/// Plans the store reads for `pieces`, each `(file, offset in file, length)`.
pub fn plan(pieces: &[(FileId, u64, u64)]) -> Vec<Span> {
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| (pieces[i].0, pieces[i].1));
    let mut spans: Vec<Span> = Vec::new();
    for i in order {
        let (file, at, len) = pieces[i];
        if let Some(s) = spans.last_mut() {
            let end = s.offset + s.len;
            let new_end = end.max(at + len);
            if s.file == file && at <= end + MAX_GAP && new_end - s.offset <= MAX_SPAN {
                s.len = new_end - s.offset;
                s.pieces.push((i, at - s.offset));
                continue;
            }
        }
        spans.push(Span { file, offset: at, len, pieces: vec![(i, 0)] });
    }
    spans
}

/// Spans of one file that one store call reads together at most (so a read of a fragmented
/// range still spreads over several calls, and so over the store's threads).
pub const BATCH_SPANS: usize = 64;

/// Groups the planned spans (in `plan`'s order: by file, then offset) into store calls:
/// consecutive spans of one file, at most [`BATCH_SPANS`] and [`MAX_SPAN`] bytes a call (a
/// longer span goes alone). Flattened in order, the answers line up with the spans.
pub fn batches(spans: &[Span]) -> Vec<(FileId, Ranges)> {
    let mut out: Vec<(FileId, Ranges)> = Vec::new();
    let mut bytes = 0;
    for s in spans {
        match out.last_mut() {
            Some((file, ranges)) if *file == s.file && ranges.len() < BATCH_SPANS && bytes + s.len <= MAX_SPAN => {
                ranges.push((s.offset, s.len));
                bytes += s.len;
            }
            _ => {
                out.push((s.file, vec![(s.offset, s.len)]));
                bytes = s.len;
            }
        }
    }
    out
}

/// `(offset, len)` ranges of one file.
pub type Ranges = Vec<(u64, u64)>;

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 4096;

    #[test]
    fn near_pieces_of_one_file_share_a_read_and_others_do_not() {
        let f = FileId(7);
        let g = FileId(8);
        // Out of order, with a gap inside MAX_GAP, one far away, one in another file.
        let pieces = [(f, 10 * K, K), (f, 0, K), (f, 1 << 30, K), (g, 0, K), (f, K, 2 * K)];
        let spans = plan(&pieces);
        assert_eq!(spans.len(), 3, "{spans:?}");
        let first = &spans[0];
        assert_eq!((first.file, first.offset, first.len), (f, 0, 11 * K));
        assert_eq!(first.pieces, vec![(1, 0), (4, K), (0, 10 * K)]);
        assert_eq!((spans[1].offset, spans[1].pieces.clone()), (1 << 30, vec![(2, 0)]));
        assert_eq!((spans[2].file, spans[2].pieces.clone()), (g, vec![(3, 0)]));
    }

    #[test]
    fn every_piece_is_served_exactly_once_within_its_span() {
        let f = FileId(1);
        let pieces: Vec<_> = (0..500u64).map(|i| (FileId(i % 3), (i * 7919 % 4096) * K, K * (1 + i % 4))).collect();
        let spans = plan(&pieces);
        let mut seen = vec![0; pieces.len()];
        for s in &spans {
            assert!(s.len <= MAX_SPAN || s.pieces.len() == 1);
            for &(i, off) in &s.pieces {
                seen[i] += 1;
                let (file, at, len) = pieces[i];
                assert_eq!(file, s.file);
                assert_eq!(at, s.offset + off);
                assert!(off + len <= s.len);
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let _ = f;
    }

    #[test]
    fn batches_keep_the_spans_order_and_bounds() {
        // 300 scattered 4 KiB pieces in two files, and one long span.
        let mut pieces: Vec<_> = (0..300u64).map(|i| (FileId(1 + i % 2), i * 1_000_000, K)).collect();
        pieces.push((FileId(2), 1 << 40, MAX_SPAN));
        let spans = plan(&pieces);
        let batches = batches(&spans);
        let flat: Vec<(FileId, u64, u64)> =
            batches.iter().flat_map(|(f, r)| r.iter().map(move |&(at, n)| (*f, at, n))).collect();
        let expected: Vec<_> = spans.iter().map(|s| (s.file, s.offset, s.len)).collect();
        assert_eq!(flat, expected);
        assert!(batches.iter().all(|(_, r)| r.len() <= BATCH_SPANS));
        assert!(batches.iter().all(|(_, r)| r.len() == 1 || r.iter().map(|x| x.1).sum::<u64>() <= MAX_SPAN));
        // 150 pieces per file: three batches each, and the long span alone.
        assert_eq!(batches.len(), 3 + 3 + 1, "{:?}", batches.iter().map(|b| b.1.len()).collect::<Vec<_>>());
    }

    #[test]
    fn spans_stop_growing_at_the_transfer_limit() {
        let f = FileId(1);
        let pieces: Vec<_> = (0..4096u64).map(|i| (f, i * K, K)).collect();
        let spans = plan(&pieces);
        assert_eq!(spans.len(), (4096 * K / MAX_SPAN) as usize);
        assert!(spans.iter().all(|s| s.len == MAX_SPAN));
    }
}
