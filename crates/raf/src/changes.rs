//! When each 1 MiB range of a volume last changed: the sequence number of the last guest
//! record (a write, a trim, a write-zeroes) that touched it.
//!
//! An incremental snapshot stores only the ranges that changed since its parent's instant
//! (`docs/snapshots.md`, "Change sequence"). The index cannot say which: compaction moves
//! blocks without changing them, so a block's location is no witness of its contents. This
//! map is: it follows the guest's records only (compaction's `Move`s leave it alone), it is
//! kept in checkpoints and rebuilt by replay like the index, and a range whose sequence is
//! below a snapshot's next sequence number held at the snapshot's instant what it holds now.
//!
//! Sparse (ranges never touched have no entry), so it costs about 16 bytes per MiB written,
//! whatever the volume's size.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use crate::index::{Index, Target};

/// Blocks of 4 KiB in one range: 1 MiB, the unit a snapshot stores.
pub const RANGE_BLOCKS: u64 = 256;

/// The last changing record of each touched range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Range → sequence number of the last guest record that touched it.
    last: BTreeMap<u64, u64>,
}

impl Changes {
    pub fn new() -> Changes {
        Changes::default()
    }

    /// The map of these `(range, seq)` entries (as a checkpoint holds them).
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, u64)>) -> Changes {
        Changes { last: entries.into_iter().collect() }
    }

    /// The guest record `seq` touched the `nblocks` blocks from `lba`. Records come in
    /// sequence order (the writer's, and replay's), so the newest wins.
    pub fn record(&mut self, lba: u64, nblocks: u64, seq: u64) {
        if nblocks == 0 {
            return;
        }
        let first = lba / RANGE_BLOCKS;
        let last = (lba + nblocks - 1) / RANGE_BLOCKS;
        for range in first..=last {
            let entry = self.last.entry(range).or_insert(seq);
            *entry = (*entry).max(seq);
        }
    }

    /// When `range` last changed, if it ever did.
    pub fn last_change(&self, range: u64) -> Option<u64> {
        self.last.get(&range).copied()
    }

    /// The ranges changed by a record numbered `next_seq` or later, in order: what changed
    /// since an instant at which `next_seq` was the next record's number.
    pub fn changed_since(&self, next_seq: u64) -> impl Iterator<Item = u64> + '_ {
        self.last.iter().filter(move |(_, &seq)| seq >= next_seq).map(|(&range, _)| range)
    }

    /// Every `(range, seq)` entry, in range order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.last.iter().map(|(&range, &seq)| (range, seq))
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The ranges in which `index` maps any data (not zeros, not holes), each once, ascending:
/// what a full snapshot of the layer reads.
pub fn data_ranges(index: &Index) -> impl Iterator<Item = u64> + '_ {
    let mut last: Option<u64> = None;
    index
        .extents()
        .filter(|e| matches!(e.target, Target::Data(_)))
        .flat_map(|e| (e.start / RANGE_BLOCKS)..=((e.start + e.len - 1) / RANGE_BLOCKS))
        .filter(move |&r| {
            // Extents are in block order, so a range repeats only right after itself.
            let new = last != Some(r);
            last = Some(r);
            new
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Location;

    #[test]
    fn data_ranges_are_those_any_data_extent_touches() {
        let at = |segment| Target::Data(Location { segment, offset: 0 });
        let mut index = Index::new();
        assert_eq!(data_ranges(&index).count(), 0);
        index.map(0, 1, at(1));
        index.map(5, 1, at(2)); // range 0 again
        index.map(RANGE_BLOCKS - 1, 2, at(3)); // ranges 0 and 1
        index.map(3 * RANGE_BLOCKS, 2 * RANGE_BLOCKS, Target::Zero); // zeros: no data
        index.map(7 * RANGE_BLOCKS + 9, 3 * RANGE_BLOCKS, at(4)); // ranges 7 to 10
        assert_eq!(data_ranges(&index).collect::<Vec<_>>(), vec![0, 1, 7, 8, 9, 10]);
    }

    #[test]
    fn a_record_marks_every_range_it_touches_and_the_newest_wins() {
        let mut c = Changes::new();
        c.record(0, 1, 5);
        c.record(RANGE_BLOCKS - 1, 2, 6); // straddles ranges 0 and 1
        c.record(10 * RANGE_BLOCKS, 3 * RANGE_BLOCKS, 7); // ranges 10, 11, 12
        c.record(5, 0, 99); // nothing
        assert_eq!(c.entries().collect::<Vec<_>>(), vec![(0, 6), (1, 6), (10, 7), (11, 7), (12, 7)]);
        assert_eq!(c.last_change(0), Some(6));
        assert_eq!(c.last_change(2), None);
        // Replay of an older record after a newer one (never happens) keeps the newer.
        c.record(0, 1, 1);
        assert_eq!(c.last_change(0), Some(6));
    }

    #[test]
    fn changed_since_an_instant_is_what_records_from_then_on_touched() {
        let mut c = Changes::new();
        for (seq, lba) in [(0u64, 0u64), (1, 300), (2, 600), (3, 0), (4, 2000)] {
            c.record(lba, 1, seq);
        }
        // Ranges: 0 (seqs 0, 3), 1 (1), 2 (2), 7 (4).
        assert_eq!(c.changed_since(0).collect::<Vec<_>>(), vec![0, 1, 2, 7]);
        assert_eq!(c.changed_since(3).collect::<Vec<_>>(), vec![0, 7]);
        assert_eq!(c.changed_since(5).count(), 0);
        let again = Changes::from_entries(c.entries());
        assert_eq!(again, c);
        assert_eq!(again.len(), 4);
    }
}
