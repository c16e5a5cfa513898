//! The index: which log location holds each 4 KiB block of a volume.
//!
//! An extent map keyed by first block: each extent maps a run of blocks either to data in
//! a segment (the first block's byte offset; the rest follow contiguously) or to explicit
//! zeros (a trim or write-zeroes). Blocks in no extent are *holes*: never written, they
//! read as zeros, or through the parent of a clone. Memory is proportional to the number
//! of extents, not the volume's size: a new extent is merged with a neighbour it continues
//! (zeros after zeros, data right after data in the same segment).
//!
//! The index also keeps, exactly, how many bytes of each segment are still live (mapped):
//! every overwrite and trim takes the replaced blocks off their segment's count.
//! Compaction chooses its segments by that count, and drops a segment only once it is 0.
//!
//! Compaction moves live blocks while the guest keeps writing, so it moves a range only
//! where the index still points at the place it copied from ([`Index::remap_if`]); a block
//! overwritten meanwhile keeps its new data.
//!
//! Pure: no I/O. All positions are in blocks here; segment offsets are in bytes.

use std::collections::BTreeMap;

/// The block size: every offset and length of the volume is a multiple of it.
pub const BLOCK: u64 = 4096;

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
}

impl Location {
    /// The location `blocks` blocks further on.
    pub fn advance(self, blocks: u64) -> Location {
        Location { segment: self.segment, offset: self.offset + blocks * BLOCK }
    }
}

/// What an extent maps its blocks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The blocks read as zeros (they shadow a clone's parent).
    Zero,
    /// The blocks' data, contiguous from this location.
    Data(Location),
}

impl Target {
    /// The target of the block `blocks` further on.
    fn advance(self, blocks: u64) -> Target {
        match self {
            Target::Zero => Target::Zero,
            Target::Data(loc) => Target::Data(loc.advance(blocks)),
        }
    }
}

/// A run of mapped blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
    pub target: Target,
}

/// What a looked-up run of blocks holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Never written here.
    Hole,
    Zero,
    Data(Location),
}

/// A run of blocks from a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub len: u64,
    pub mapping: Mapping,
}

/// Extents that cannot form an index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("extent at block {start} is empty or overlaps the one before")]
    Overlap { start: u64 },
    #[error("extent at block {start} runs past the end of the block space")]
    Overflow { start: u64 },
}

/// The extent map with its per-segment live bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// First block → (length in blocks, target). Extents never overlap.
    extents: BTreeMap<u64, (u64, Target)>,
    /// Segment → bytes of it the index maps. No zero entries.
    live: BTreeMap<u64, u64>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// An index of these extents (as a checkpoint holds them, in ascending order).
    pub fn from_extents(extents: impl IntoIterator<Item = Extent>) -> Result<Index, IndexError> {
        let mut index = Index::new();
        let mut end = 0u64;
        for e in extents {
            if e.len == 0 || e.start < end {
                return Err(IndexError::Overlap { start: e.start });
            }
            end = e.start.checked_add(e.len).ok_or(IndexError::Overflow { start: e.start })?;
            index.map(e.start, e.len, e.target);
        }
        Ok(index)
    }

    /// Maps `len` blocks from `start` to `target`, replacing whatever they were.
    pub fn map(&mut self, start: u64, len: u64, target: Target) {
        if len == 0 {
            return;
        }
        self.carve(start, start + len);
        self.extents.insert(start, (len, target));
        if let Target::Data(loc) = target {
            *self.live.entry(loc.segment).or_insert(0) += len * BLOCK;
        }
        let first = self.merge_with_previous(start);
        let (merged_len, _) = self.extents[&first];
        self.merge_with_previous(first + merged_len);
    }

    /// What the `len` blocks from `start` hold, in order, covering the whole range.
    pub fn lookup(&self, start: u64, len: u64) -> Vec<Piece> {
        let end = start + len;
        let mut pieces = Vec::new();
        let mut at = start;
        for (s, e, target) in self.overlapping(start, end) {
            if s > at {
                pieces.push(Piece { start: at, len: s - at, mapping: Mapping::Hole });
            }
            let mapping = match target {
                Target::Zero => Mapping::Zero,
                Target::Data(loc) => Mapping::Data(loc),
            };
            pieces.push(Piece { start: s, len: e - s, mapping });
            at = e;
        }
        if at < end {
            pieces.push(Piece { start: at, len: end - at, mapping: Mapping::Hole });
        }
        pieces
    }

    /// Moves the `len` blocks from `start` from data at `from` to data at `to`, but only
    /// the blocks still mapped where `from` says. Returns how many blocks moved.
    pub fn remap_if(&mut self, start: u64, len: u64, from: Location, to: Location) -> u64 {
        let moves: Vec<(u64, u64)> = self
            .overlapping(start, start + len)
            .into_iter()
            .filter(|&(s, _, target)| target == Target::Data(from.advance(s - start)))
            .map(|(s, e, _)| (s, e - s))
            .collect();
        let mut moved = 0;
        for (s, n) in moves {
            self.map(s, n, Target::Data(to.advance(s - start)));
            moved += n;
        }
        moved
    }

    /// Bytes of `segment` still mapped.
    pub fn live_bytes(&self, segment: u64) -> u64 {
        self.live.get(&segment).copied().unwrap_or(0)
    }

    /// Bytes mapped to data, over all segments.
    pub fn total_live_bytes(&self) -> u64 {
        self.live.values().sum()
    }

    /// Every extent, in block order.
    pub fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.extents.iter().map(|(&start, &(len, target))| Extent { start, len, target })
    }

    /// The extents whose data lies in `segment`.
    pub fn extents_in(&self, segment: u64) -> Vec<Extent> {
        self.extents().filter(|e| matches!(e.target, Target::Data(loc) if loc.segment == segment)).collect()
    }

    /// The segments the index maps any data to (what a pin of it needs kept), ascending.
    pub fn segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.live.keys().copied()
    }

    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }

    /// The parts of extents within `[start, end)`: (first block, end block, target there).
    fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64, Target)> {
        let before = self.extents.range(..start).next_back().filter(|(&k, &(len, _))| k + len > start);
        before
            .into_iter()
            .chain(self.extents.range(start..end))
            .map(|(&k, &(len, target))| {
                let s = k.max(start);
                let e = (k + len).min(end);
                (s, e, target.advance(s - k))
            })
            .collect()
    }

    /// Unmaps `[start, end)`, keeping the parts of extents outside it and taking the
    /// unmapped data off its segments' live bytes.
    fn carve(&mut self, start: u64, end: u64) {
        let before = self.extents.range(..start).next_back().filter(|(&k, &(len, _))| k + len > start).map(|(&k, _)| k);
        let keys: Vec<u64> = before.into_iter().chain(self.extents.range(start..end).map(|(&k, _)| k)).collect();
        for k in keys {
            let Some((len, target)) = self.extents.remove(&k) else { continue };
            let e = k + len;
            if k < start {
                self.extents.insert(k, (start - k, target));
            }
            if e > end {
                self.extents.insert(end, (e - end, target.advance(end - k)));
            }
            if let Target::Data(loc) = target {
                let cut = e.min(end) - k.max(start);
                self.take_live(loc.segment, cut * BLOCK);
            }
        }
    }

    fn take_live(&mut self, segment: u64, bytes: u64) {
        if let Some(live) = self.live.get_mut(&segment) {
            *live = live.saturating_sub(bytes);
            if *live == 0 {
                self.live.remove(&segment);
            }
        }
    }

    /// Merges the extent starting at `key` into the one before it when it continues it.
    /// Returns the first block of the extent that now holds `key`.
    fn merge_with_previous(&mut self, key: u64) -> u64 {
        let Some(&(len, target)) = self.extents.get(&key) else { return key };
        let Some((&pk, &(plen, ptarget))) = self.extents.range(..key).next_back() else { return key };
        if pk + plen != key || ptarget.advance(plen) != target {
            return key;
        }
        self.extents.remove(&key);
        self.extents.insert(pk, (plen + len, ptarget));
        pk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(segment: u64, offset: u64) -> Target {
        Target::Data(Location { segment, offset })
    }

    /// A block-by-block model: what each block maps to.
    fn expand(index: &Index, blocks: u64) -> Vec<Mapping> {
        let mut out = Vec::new();
        for p in index.lookup(0, blocks) {
            for i in 0..p.len {
                out.push(match p.mapping {
                    Mapping::Data(loc) => Mapping::Data(loc.advance(i)),
                    m => m,
                });
            }
        }
        out
    }

    fn live_from_blocks(blocks: &[Mapping], segment: u64) -> u64 {
        blocks.iter().filter(|m| matches!(m, Mapping::Data(l) if l.segment == segment)).count() as u64 * BLOCK
    }

    #[test]
    fn lookup_fills_holes_and_splits() {
        let mut index = Index::new();
        index.map(10, 10, data(1, 0));
        let pieces = index.lookup(5, 20);
        assert_eq!(
            pieces,
            vec![
                Piece { start: 5, len: 5, mapping: Mapping::Hole },
                Piece { start: 10, len: 10, mapping: Mapping::Data(Location { segment: 1, offset: 0 }) },
                Piece { start: 20, len: 5, mapping: Mapping::Hole },
            ]
        );
        let inner = index.lookup(12, 3);
        assert_eq!(
            inner,
            vec![Piece { start: 12, len: 3, mapping: Mapping::Data(Location { segment: 1, offset: 2 * BLOCK }) }]
        );
        assert_eq!(index.live_bytes(1), 10 * BLOCK);
    }

    #[test]
    fn overwrite_in_the_middle_splits_and_accounts() {
        let mut index = Index::new();
        index.map(0, 100, data(1, 0));
        index.map(40, 20, data(2, 4096 * 7));
        assert_eq!(index.extent_count(), 3);
        assert_eq!(index.live_bytes(1), 80 * BLOCK);
        assert_eq!(index.live_bytes(2), 20 * BLOCK);
        let tail = index.lookup(60, 1);
        assert_eq!(tail[0].mapping, Mapping::Data(Location { segment: 1, offset: 60 * BLOCK }));
        index.map(0, 100, Target::Zero);
        assert_eq!(index.extent_count(), 1);
        assert_eq!(index.live_bytes(1), 0);
        assert_eq!(index.live_bytes(2), 0);
        assert_eq!(index.total_live_bytes(), 0);
    }

    #[test]
    fn contiguous_extents_coalesce() {
        let mut index = Index::new();
        index.map(0, 4, data(3, 0));
        index.map(4, 4, data(3, 4 * BLOCK));
        assert_eq!(index.extent_count(), 1);
        index.map(8, 2, Target::Zero);
        index.map(10, 2, Target::Zero);
        assert_eq!(index.extent_count(), 2);
        // Filling a gap joins both sides.
        index.map(20, 4, data(3, 20 * BLOCK));
        index.map(12, 8, Target::Zero);
        assert_eq!(index.extent_count(), 3);
        // Data not contiguous in its segment does not merge.
        index.map(24, 1, data(3, 100 * BLOCK));
        assert_eq!(index.extent_count(), 4);
    }

    #[test]
    fn remap_moves_only_what_still_points_at_the_old_place() {
        let mut index = Index::new();
        let old = Location { segment: 1, offset: 0 };
        index.map(0, 10, Target::Data(old));
        // The guest overwrites blocks 3..5 after compaction copied 0..10.
        index.map(3, 2, data(2, 0));
        let moved = index.remap_if(0, 10, old, Location { segment: 5, offset: 8192 });
        assert_eq!(moved, 8);
        assert_eq!(index.live_bytes(1), 0);
        assert_eq!(index.live_bytes(5), 8 * BLOCK);
        let blocks = expand(&index, 10);
        assert_eq!(blocks[0], Mapping::Data(Location { segment: 5, offset: 8192 }));
        assert_eq!(blocks[3], Mapping::Data(Location { segment: 2, offset: 0 }));
        assert_eq!(blocks[9], Mapping::Data(Location { segment: 5, offset: 8192 + 9 * BLOCK }));
        // Moving from a place the blocks no longer are moves nothing.
        assert_eq!(index.remap_if(0, 10, old, Location { segment: 6, offset: 0 }), 0);
    }

    #[test]
    fn random_operations_match_a_block_model() {
        // A small deterministic generator keeps this test free of dependencies.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        const N: u64 = 200;
        let mut index = Index::new();
        let mut model = vec![Mapping::Hole; N as usize];
        for step in 0..3000 {
            let start = next(N);
            let len = 1 + next(N - start).min(30);
            match next(3) {
                0 => {
                    let loc = Location { segment: next(4), offset: next(50) * BLOCK };
                    index.map(start, len, Target::Data(loc));
                    for i in 0..len {
                        model[(start + i) as usize] = Mapping::Data(loc.advance(i));
                    }
                }
                1 => {
                    index.map(start, len, Target::Zero);
                    for i in 0..len {
                        model[(start + i) as usize] = Mapping::Zero;
                    }
                }
                _ => {
                    let from = Location { segment: next(4), offset: next(50) * BLOCK };
                    let to = Location { segment: 9, offset: next(50) * BLOCK };
                    index.remap_if(start, len, from, to);
                    for i in 0..len {
                        let m = &mut model[(start + i) as usize];
                        if *m == Mapping::Data(from.advance(i)) {
                            *m = Mapping::Data(to.advance(i));
                        }
                    }
                }
            }
            assert_eq!(expand(&index, N), model, "step {step}");
            for segment in [0, 1, 2, 3, 9] {
                assert_eq!(index.live_bytes(segment), live_from_blocks(&model, segment), "step {step}");
            }
            // Neighbouring extents that continue each other are always merged.
            let extents: Vec<Extent> = index.extents().collect();
            for w in extents.windows(2) {
                let joined = w[0].start + w[0].len == w[1].start && w[0].target.advance(w[0].len) == w[1].target;
                assert!(!joined, "step {step}: unmerged {w:?}");
            }
        }
        let rebuilt = Index::from_extents(index.extents()).expect("valid extents");
        assert_eq!(rebuilt, index);
    }

    #[test]
    fn from_extents_refuses_overlaps() {
        let e = |start, len| Extent { start, len, target: Target::Zero };
        assert_eq!(Index::from_extents([e(0, 10), e(5, 2)]), Err(IndexError::Overlap { start: 5 }));
        assert_eq!(Index::from_extents([e(0, 0)]), Err(IndexError::Overlap { start: 0 }));
        assert_eq!(Index::from_extents([e(u64::MAX, 2)]), Err(IndexError::Overflow { start: u64::MAX }));
    }
}
