//! Tests of a chunk on a real (temporary) directory: round trips, the append protocol,
//! sealing, crash recovery from simulated torn writes, and corruption detection.

use super::*;
use std::io::Write;
use tempfile::TempDir;

const B: u64 = BLOCK_SIZE;
const ID: ChunkId = ChunkId(0x00c0_ffee);

/// A small deterministic generator (xorshift64*), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn new_chunk(max_size: u64) -> (TempDir, ChunkFile) {
    let dir = TempDir::new().unwrap();
    let chunk = ChunkFile::create(dir.path(), ID, max_size).unwrap();
    (dir, chunk)
}

fn append(chunk: &mut ChunkFile, data: &[u8]) -> u64 {
    chunk.append(chunk.len(), data, checksum(data)).unwrap()
}

fn reopen(dir: &TempDir) -> ChunkFile {
    ChunkFile::open(dir.path(), ID).unwrap()
}

fn paths(dir: &TempDir) -> Paths {
    Paths::new(dir.path(), ID)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn append_raw(path: &Path, bytes: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, offset).unwrap();
}

fn assert_corrupt(r: Result<impl fmt::Debug>, block: u64) {
    match r {
        Err(ChunkError::Corrupt { block_index, offset }) => {
            assert_eq!(block_index, block);
            assert_eq!(offset, block * B);
        }
        other => panic!("expected block {block} corrupt, got {other:?}"),
    }
}

#[test]
fn chunk_ids_display_as_hex_file_names() {
    assert_eq!(ChunkId(0xab).to_string(), "00000000000000ab");
    assert_eq!(ChunkId(u64::MAX).to_string(), "ffffffffffffffff");
    assert_eq!("00000000000000ab".parse::<ChunkId>().unwrap(), ChunkId(0xab));
    for bad in ["", "+1", "xyz", "00000000000000000", " 1"] {
        assert!(bad.parse::<ChunkId>().is_err(), "{bad:?} parsed");
    }
    let (dir, _c) = new_chunk(B);
    assert!(dir.path().join("0000000000c0ffee.chunk").exists());
    assert!(dir.path().join("0000000000c0ffee.meta").exists());
}

#[test]
fn create_open_delete() {
    let dir = TempDir::new().unwrap();
    assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::NotFound { id: ID })));
    assert!(matches!(ChunkFile::create(dir.path(), ID, 0), Err(ChunkError::InvalidMaxSize { .. })));
    assert!(matches!(ChunkFile::create(dir.path(), ID, MAX_CHUNK_SIZE + 1), Err(ChunkError::InvalidMaxSize { .. })));
    let c = ChunkFile::create(dir.path(), ID, DEFAULT_MAX_SIZE).unwrap();
    assert_eq!((c.id(), c.len(), c.is_empty(), c.is_sealed(), c.max_size()), (ID, 0, true, false, DEFAULT_MAX_SIZE));
    drop(c);
    assert!(matches!(ChunkFile::create(dir.path(), ID, B), Err(ChunkError::AlreadyExists { id: ID })));
    let c = reopen(&dir);
    assert_eq!((c.len(), c.max_size()), (0, DEFAULT_MAX_SIZE));
    drop(c);
    ChunkFile::delete(dir.path(), ID).unwrap();
    assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::NotFound { .. })));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // A retried delete is fine, and the id can be used again.
    ChunkFile::delete(dir.path(), ID).unwrap();
    ChunkFile::create(dir.path(), ID, B).unwrap();
}

#[test]
fn a_crashed_create_leaves_no_chunk_and_can_be_redone() {
    let dir = TempDir::new().unwrap();
    let p = paths(&dir);
    // Data file and a half-written temporary metadata file, no rename.
    fs::write(&p.data, b"leftover").unwrap();
    fs::write(&p.meta_tmp, b"PANGU").unwrap();
    assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::NotFound { .. })));
    let mut c = ChunkFile::create(dir.path(), ID, B).unwrap();
    assert_eq!(c.len(), 0);
    assert_eq!(file_len(&p.data), 0);
    append(&mut c, b"fresh");
    assert_eq!(reopen(&dir).read(0, 5).unwrap(), b"fresh");
}

#[test]
fn random_appends_round_trip_across_block_boundaries() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let max = 5 * B + 123;
    let (dir, mut c) = new_chunk(max);
    let mut model: Vec<u8> = Vec::new();
    while (model.len() as u64) < max {
        let room = max - model.len() as u64;
        let size = match rng.below(4) {
            0 => rng.below(16) + 1,
            1 => rng.below(B) + 1,
            2 => B - (model.len() as u64 % B), // exactly to the next boundary
            _ => rng.below(2 * B) + 1,
        }
        .min(room);
        let data = rng.bytes(size as usize);
        let new_len = append(&mut c, &data);
        model.extend_from_slice(&data);
        assert_eq!(new_len, model.len() as u64);
        // A random committed range reads back.
        let off = rng.below(model.len() as u64);
        let len = rng.below(model.len() as u64 - off + 1);
        assert_eq!(c.read(off, len).unwrap(), &model[off as usize..(off + len) as usize]);
    }
    assert_eq!(c.len(), max);
    assert_eq!(c.read(0, max).unwrap(), model);
    c.verify_all().unwrap();
    drop(c);

    let c = reopen(&dir);
    assert_eq!(c.len(), max);
    assert_eq!(c.read(0, max).unwrap(), model);
    for _ in 0..200 {
        let off = rng.below(max);
        let len = rng.below(max - off + 1);
        assert_eq!(c.read(off, len).unwrap(), &model[off as usize..(off + len) as usize]);
    }
    c.verify_all().unwrap();
}

#[test]
fn reads_outside_the_committed_range_are_refused() {
    let (_dir, mut c) = new_chunk(4 * B);
    append(&mut c, &[7; 100]);
    assert_eq!(c.read(100, 0).unwrap(), Vec::<u8>::new());
    assert_eq!(c.read(99, 1).unwrap(), vec![7]);
    for (off, len) in [(100, 1), (0, 101), (101, 0), (u64::MAX, 2), (1, u64::MAX)] {
        assert!(matches!(c.read(off, len), Err(ChunkError::OutOfRange { chunk_len: 100, .. })), "read({off}, {len})");
    }
}

#[test]
fn a_retried_append_is_acknowledged_without_writing_again() {
    let (dir, mut c) = new_chunk(4 * B);
    let first = vec![1u8; (B + 10) as usize];
    let second = vec![2u8; 500];
    append(&mut c, &first);
    append(&mut c, &second);
    let meta_len = file_len(&paths(&dir).meta);
    let len = c.len();
    // The last append again, and an earlier one, and part of one.
    assert_eq!(c.append(B + 10, &second, checksum(&second)).unwrap(), len);
    assert_eq!(c.append(0, &first, checksum(&first)).unwrap(), len);
    assert_eq!(c.append(B + 10, &second[..20], checksum(&second[..20])).unwrap(), len);
    assert_eq!(c.append(len, b"", checksum(b"")).unwrap(), len);
    assert_eq!(file_len(&paths(&dir).meta), meta_len, "a retry must not write a record");
    assert_eq!(c.len(), len);
    // Same range, other bytes: not a retry.
    let other = vec![3u8; 500];
    assert!(matches!(
        c.append(B + 10, &other, checksum(&other)),
        Err(ChunkError::RetryMismatch { offset, len: 500 }) if offset == B + 10
    ));
    // A retry is recognised after a restart, and on a sealed chunk.
    drop(c);
    let mut c = reopen(&dir);
    c.seal(None).unwrap();
    assert_eq!(c.append(B + 10, &second, checksum(&second)).unwrap(), len);
}

#[test]
fn appends_at_the_wrong_offset_are_refused() {
    let (_dir, mut c) = new_chunk(4 * B);
    append(&mut c, &[5; 1000]);
    let data = [9u8; 10];
    let crc = checksum(&data);
    // Past the end, and overlapping the end (neither a retry nor the end).
    for off in [1001, 2000, 995, u64::MAX] {
        match c.append(off, &data, crc) {
            Err(ChunkError::OffsetMismatch { expected, actual: 1000 }) => assert_eq!(expected, off),
            other => panic!("append at {off}: {other:?}"),
        }
    }
    assert_eq!(c.len(), 1000);
    assert_eq!(c.append(1000, &data, crc).unwrap(), 1010);
}

#[test]
fn data_corrupted_in_transit_is_refused_before_anything_is_written() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, b"hello");
    let (data_len, meta_len) = (file_len(&paths(&dir).data), file_len(&paths(&dir).meta));
    let sent = b" world";
    let mut received = *sent;
    received[2] ^= 1;
    match c.append(5, &received, checksum(sent)) {
        Err(ChunkError::ChecksumMismatch { expected, actual }) => {
            assert_eq!(expected, checksum(sent));
            assert_eq!(actual, checksum(&received));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((file_len(&paths(&dir).data), file_len(&paths(&dir).meta)), (data_len, meta_len));
    assert_eq!(c.len(), 5);
    assert_eq!(c.append(5, sent, checksum(sent)).unwrap(), 11);
    assert_eq!(c.read(0, 11).unwrap(), b"hello world");
}

#[test]
fn a_trusted_append_of_parts_keeps_the_same_block_checksums_and_rules() {
    // Unaligned pieces across block boundaries, some trusted and in parts of odd sizes, some
    // checked: the chunk is the same as one written whole, and survives a reopen.
    let data: Vec<u8> = (0..(3 * B as usize + 77)).map(|i| (i * 13 % 251) as u8).collect();
    let (dir, mut c) = new_chunk(4 * B);
    let cuts = [0usize, 10, B as usize + 3, B as usize + 4, 2 * B as usize, data.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        let piece = &data[w[0]..w[1]];
        let len = if i % 2 == 0 {
            c.append_trusted(w[0] as u64, &piece.chunks(7_001).collect::<Vec<_>>(), None, Durability::Durable)
        } else {
            c.append(w[0] as u64, piece, checksum(piece))
        };
        assert_eq!(len.unwrap(), w[1] as u64);
    }
    // A retry of committed bytes, in other parts, is recognised; different bytes are not.
    let end = data.len() as u64;
    assert_eq!(c.append_trusted(5, &[&data[5..9], &data[9..70_000]], None, Durability::Durable).unwrap(), end);
    assert!(matches!(
        c.append_trusted(5, &[&data[5..9], b"late"], None, Durability::Durable),
        Err(ChunkError::RetryMismatch { .. })
    ));
    assert!(matches!(
        c.append_trusted(end + 1, &[b"x"], None, Durability::Durable),
        Err(ChunkError::OffsetMismatch { .. })
    ));
    drop(c);
    let c = reopen(&dir);
    assert_eq!(c.read(0, end).unwrap(), data);
}

#[test]
fn a_writers_block_checksums_are_recorded_at_a_block_boundary_and_ignored_elsewhere() {
    let data: Vec<u8> = (0..(3 * B as usize + 77)).map(|i| (i * 31 % 241) as u8).collect();
    let crcs_of = |bytes: &[u8]| bytes.chunks(B as usize).map(checksum).collect::<Vec<_>>();
    let (dir, mut c) = new_chunk(4 * B);
    // At 0 (aligned): recorded as given.
    let first = &data[..B as usize];
    assert_eq!(
        c.append_trusted(0, &first.chunks(999).collect::<Vec<_>>(), Some(&crcs_of(first)), Durability::Durable)
            .unwrap(),
        B
    );
    // An unaligned length, then an append at the unaligned end: the second one's list cannot
    // apply to the chunk's blocks and is ignored, as is a list of the wrong length.
    let second = &data[B as usize..B as usize + 10];
    assert_eq!(c.append_trusted(B, &[second], Some(&crcs_of(second)), Durability::Durable).unwrap(), B + 10);
    let third = &data[B as usize + 10..2 * B as usize + 5];
    assert_eq!(c.append_trusted(B + 10, &[third], Some(&crcs_of(third)), Durability::Durable).unwrap(), 2 * B + 5);
    let rest = &data[2 * B as usize + 5..];
    assert_eq!(
        c.append_trusted(2 * B + 5, &[rest], Some(&[1, 2, 3, 4, 5]), Durability::Durable).unwrap(),
        data.len() as u64
    );
    assert_eq!(c.read(0, data.len() as u64).unwrap(), data);
    drop(c);
    let c = reopen(&dir);
    assert_eq!(c.read(0, data.len() as u64).unwrap(), data);
    c.verify_all().unwrap();
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "a writer's block checksums are wrong")]
fn wrong_block_checksums_from_a_writer_are_caught_in_debug_builds() {
    let (_dir, mut c) = new_chunk(4 * B);
    let _ = c.append_trusted(0, &[b"abc"], Some(&[checksum(b"abd")]), Durability::Durable);
}

#[test]
fn bytes_missing_from_the_data_file_fail_verification_and_are_never_served() {
    // The data file loses its tail under the committed length (a disk that dropped writes):
    // reads of the lost blocks fail as corrupt; the blocks before it still read.
    let data: Vec<u8> = (0..(2 * B as usize + 500)).map(|i| (i * 7 % 253) as u8).collect();
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, &data);
    OpenOptions::new().write(true).open(paths(&dir).data).unwrap().set_len(B + 10).unwrap();
    assert_eq!(c.read(0, B).unwrap(), data[..B as usize]);
    for (offset, len, block) in [(B, 10, 1), (B + 5, 100, 1), (2 * B, 1, 2), (0, 2 * B + 500, 1)] {
        match c.read(offset, len) {
            Err(ChunkError::Corrupt { block_index, .. }) => assert_eq!(block_index, block, "{offset} {len}"),
            other => panic!("{offset} {len}: {other:?}"),
        }
    }
}

#[test]
fn a_vectored_write_of_many_buffers_lands_every_byte_in_order() {
    // More buffers than one pwritev takes, some empty: the file is their concatenation.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("f");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    let data: Vec<u8> = (0..700_000).map(|i| (i * 31 % 255) as u8).collect();
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    for i in 0.. {
        let n = (i * 37 % 500).min(data.len() - at);
        parts.push(&data[at..at + n]);
        at += n;
        if at == data.len() {
            break;
        }
    }
    assert!(parts.len() > 2048);
    super::write_all_at(&file, &parts, 10).unwrap();
    let written = fs::read(&path).unwrap();
    assert_eq!(&written[10..], &data[..]);
}

#[test]
fn a_chunk_fills_up_to_its_maximum_size_and_no_further() {
    let max = B + 100;
    let (dir, mut c) = new_chunk(max);
    append(&mut c, &vec![1; (max - 1) as usize]);
    assert!(matches!(
        c.append(max - 1, &[2, 3], checksum(&[2, 3])),
        Err(ChunkError::ChunkFull { len, requested: 2, max_size }) if len == max - 1 && max_size == max
    ));
    assert_eq!(append(&mut c, &[2]), max);
    assert!(matches!(c.append(max, &[4], checksum(&[4])), Err(ChunkError::ChunkFull { .. })));
    drop(c);
    let c = reopen(&dir);
    assert_eq!(c.len(), max);
    c.verify_all().unwrap();
}

#[test]
fn a_sealed_chunk_takes_no_appends_and_stays_sealed() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, b"abc");
    assert_eq!(c.seal(None).unwrap(), 3);
    assert!(c.is_sealed());
    assert!(matches!(c.append(3, b"d", checksum(b"d")), Err(ChunkError::Sealed { len: 3 })));
    // Retried seals succeed; a different length does not.
    assert_eq!(c.seal(None).unwrap(), 3);
    assert_eq!(c.seal(Some(3)).unwrap(), 3);
    assert!(matches!(c.seal(Some(2)), Err(ChunkError::Sealed { len: 3 })));
    drop(c);
    let mut c = reopen(&dir);
    assert!(c.is_sealed());
    assert_eq!(c.read(0, 3).unwrap(), b"abc");
    assert!(matches!(c.append(3, b"d", checksum(b"d")), Err(ChunkError::Sealed { .. })));
}

#[test]
fn sealing_at_a_shorter_length_truncates() {
    let mut rng = Rng(99);
    let data = rng.bytes((3 * B + 500) as usize);
    for target in [0, 1, B - 1, B, B + 1, 2 * B + 7, 3 * B, 3 * B + 499, 3 * B + 500] {
        let (dir, mut c) = new_chunk(4 * B);
        // Appended in unaligned pieces so that block CRCs were extended, not written whole.
        for piece in data.chunks(40_000) {
            append(&mut c, piece);
        }
        assert!(matches!(c.seal(Some(3 * B + 501)), Err(ChunkError::SealBeyondEnd { .. })));
        assert_eq!(c.seal(Some(target)).unwrap(), target);
        assert_eq!(c.len(), target);
        assert_eq!(c.read(0, target).unwrap(), &data[..target as usize]);
        assert!(matches!(c.read(0, target + 1), Err(ChunkError::OutOfRange { .. })));
        c.verify_all().unwrap();
        assert_eq!(file_len(&paths(&dir).data), target);
        drop(c);
        let c = reopen(&dir);
        assert!(c.is_sealed(), "target {target}");
        assert_eq!(c.len(), target);
        assert_eq!(c.read(0, target).unwrap(), &data[..target as usize]);
        c.verify_all().unwrap();
    }
}

#[test]
fn a_crash_between_the_seal_record_and_the_truncation_is_recovered() {
    let (dir, mut c) = new_chunk(4 * B);
    let data = Rng(5).bytes((B + 300) as usize);
    append(&mut c, &data);
    c.seal(Some(B + 100)).unwrap();
    drop(c);
    // As if the data file had not been truncated yet.
    append_raw(&paths(&dir).data, &data[(B + 100) as usize..]);
    let c = reopen(&dir);
    assert_eq!((c.len(), c.is_sealed()), (B + 100, true));
    assert_eq!(file_len(&paths(&dir).data), B + 100);
    assert_eq!(c.read(0, B + 100).unwrap(), &data[..(B + 100) as usize]);
}

#[test]
fn sealing_into_a_corrupt_block_is_refused() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, &vec![8u8; (2 * B) as usize]);
    flip_byte(&paths(&dir).data, B + 10);
    assert_corrupt(c.seal(Some(B + 5)), 1);
    assert!(!c.is_sealed());
    // A block boundary needs no block read, and block 0 is fine.
    assert_eq!(c.seal(Some(B)).unwrap(), B);
    c.verify_all().unwrap();
}

#[test]
fn data_written_without_its_record_is_discarded_on_open() {
    // A crash after the data write of an append but before its record: torn tails of every
    // shape, in the middle of a block (partial-block extension) and on a boundary.
    for committed in [0, 10, B - 1, B, B + 3] {
        for garbage in [1, 100, B, 2 * B + 5] {
            let (dir, mut c) = new_chunk(8 * B);
            let data = Rng(committed ^ garbage).bytes(committed as usize);
            if committed > 0 {
                append(&mut c, &data);
            }
            drop(c);
            append_raw(&paths(&dir).data, &vec![0xee; garbage as usize]);
            let mut c = reopen(&dir);
            assert_eq!(c.len(), committed);
            assert_eq!(file_len(&paths(&dir).data), committed);
            assert_eq!(c.read(0, committed).unwrap(), data);
            c.verify_all().unwrap();
            // The chunk carries on from the committed end.
            let more = vec![0x11u8; 70_000];
            assert_eq!(c.append(committed, &more, checksum(&more)).unwrap(), committed + 70_000);
            drop(c);
            let c = reopen(&dir);
            assert_eq!(c.read(committed, 70_000).unwrap(), more);
            c.verify_all().unwrap();
        }
    }
}

#[test]
fn a_torn_record_is_cut_off_and_the_previous_commit_stands() {
    let first = Rng(1).bytes((B + 10) as usize);
    let second = Rng(2).bytes(3 * B as usize);
    let (dir, mut c) = new_chunk(8 * B);
    append(&mut c, &first);
    let meta_after_first = file_len(&paths(&dir).meta);
    append(&mut c, &second);
    let meta_full = file_len(&paths(&dir).meta);
    drop(c);
    let full_meta = fs::read(paths(&dir).meta).unwrap();
    let full_data = fs::read(paths(&dir).data).unwrap();

    // Every possible cut through the last record (the checksum file truncated).
    for cut in meta_after_first..meta_full {
        fs::write(paths(&dir).meta, &full_meta[..cut as usize]).unwrap();
        fs::write(paths(&dir).data, &full_data).unwrap();
        let c = reopen(&dir);
        assert_eq!(c.len(), B + 10, "cut at {cut}");
        assert_eq!(file_len(&paths(&dir).meta), meta_after_first);
        assert_eq!(file_len(&paths(&dir).data), B + 10);
        assert_eq!(c.read(0, B + 10).unwrap(), first);
        c.verify_all().unwrap();
    }

    // A last record of the right length with garbage in it (the length reached the disk,
    // the contents did not).
    let mut garbled = full_meta.clone();
    garbled[meta_after_first as usize..].fill(0);
    fs::write(paths(&dir).meta, &garbled).unwrap();
    fs::write(paths(&dir).data, &full_data).unwrap();
    let mut c = reopen(&dir);
    assert_eq!(c.len(), B + 10);
    // And the log carries on from there.
    append(&mut c, &second);
    drop(c);
    let c = reopen(&dir);
    assert_eq!(c.len(), 4 * B + 10);
    assert_eq!(c.read(B + 10, 3 * B).unwrap(), second);
}

#[test]
fn damage_in_the_middle_of_the_log_is_not_mistaken_for_a_torn_tail() {
    let (dir, mut c) = new_chunk(B);
    for i in 0..50u8 {
        append(&mut c, &[i; 10]);
    }
    drop(c);
    // A byte in the first record's checksums: intact records follow, so this is bit rot.
    flip_byte(&paths(&dir).meta, format::HEADER_LEN as u64 + 30);
    assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::BadMetadata { .. })));
    // Nothing was truncated by the failed open.
    assert_eq!(file_len(&paths(&dir).data), 500);
}

#[test]
fn a_damaged_header_or_a_foreign_file_is_refused() {
    let (dir, c) = new_chunk(B);
    drop(c);
    flip_byte(&paths(&dir).meta, 20);
    assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::BadMetadata { offset: 0, .. })));

    // The metadata of another chunk under this chunk's name.
    let dir = TempDir::new().unwrap();
    drop(ChunkFile::create(dir.path(), ChunkId(7), B).unwrap());
    let other = Paths::new(dir.path(), ChunkId(7));
    fs::copy(&other.meta, paths(&dir).meta).unwrap();
    fs::copy(&other.data, paths(&dir).data).unwrap();
    assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::BadMetadata { offset: 16, .. })));
}

#[test]
fn a_flipped_byte_anywhere_is_detected_and_never_served() {
    let len = 3 * B + 1000;
    let data = Rng(77).bytes(len as usize);
    let offsets = [0, 1, B / 2, B - 1, B, 2 * B + 3, 3 * B, 3 * B + 500, len - 1];
    for &at in &offsets {
        let (dir, mut c) = new_chunk(4 * B);
        for piece in data.chunks(30_000) {
            append(&mut c, piece);
        }
        flip_byte(&paths(&dir).data, at);
        let bad = at / B;
        assert_corrupt(c.verify_all(), bad);
        // Any read touching the bad block fails, however little of it it wants.
        assert_corrupt(c.read(at, 1), bad);
        assert_corrupt(c.read(bad * B, 1), bad);
        assert_corrupt(c.read(0, len), bad);
        // Reads of the other blocks still work.
        for block in 0..block_count(len) {
            if block != bad {
                let extent = blocks_extent(&(block..block + 1), len);
                let got = c.read(extent.start, extent.end - extent.start).unwrap();
                assert_eq!(got, &data[extent.start as usize..extent.end as usize]);
            }
        }
        // Still detected after a restart.
        drop(c);
        let c = reopen(&dir);
        assert_corrupt(c.verify_all(), bad);
        // Flipped back, the block is good again: the checksums were never rewritten.
        flip_byte(&paths(&dir).data, at);
        c.verify_all().unwrap();
    }
}

#[test]
fn a_rotten_partial_block_stays_detected_as_it_grows() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, &[1; 100]);
    flip_byte(&paths(&dir).data, 50);
    // The new CRC extends the recorded one, not the bytes on disk.
    append(&mut c, &[2; 100]);
    assert_corrupt(c.read(150, 10), 0);
    append(&mut c, &vec![3; B as usize]);
    assert_corrupt(c.verify_all(), 0);
    assert_eq!(c.read(B, 200).unwrap(), vec![3; 200]);
}

#[test]
fn a_retry_over_a_corrupt_block_reports_the_corruption() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, &[4; 1000]);
    flip_byte(&paths(&dir).data, 999);
    assert_corrupt(c.append(0, &[4; 1000], checksum(&[4; 1000])), 0);
}

#[test]
fn a_data_file_shorter_than_committed_reads_as_corrupt() {
    let (dir, mut c) = new_chunk(4 * B);
    let data = Rng(3).bytes((2 * B + 10) as usize);
    append(&mut c, &data);
    drop(c);
    OpenOptions::new().write(true).open(paths(&dir).data).unwrap().set_len(B + 5).unwrap();
    let c = reopen(&dir);
    assert_eq!(c.len(), 2 * B + 10);
    assert_eq!(c.read(0, B).unwrap(), &data[..B as usize]);
    assert_corrupt(c.read(B, 1), 1);
    assert_corrupt(c.read(2 * B, 1), 2);
    assert_corrupt(c.verify_all(), 1);
}

#[test]
fn the_log_is_compacted_and_survives_reopening() {
    let (dir, mut c) = new_chunk(4 * B);
    c.compact_at = 2_000;
    let mut model = Vec::new();
    let mut rng = Rng(11);
    for _ in 0..300 {
        let size = rng.below(1_000) as usize + 1;
        let piece = rng.bytes(size);
        append(&mut c, &piece);
        model.extend_from_slice(&piece);
        assert!(file_len(&paths(&dir).meta) < 2_000 + 200);
    }
    assert_eq!(c.read(0, c.len()).unwrap(), model);
    drop(c);
    let mut c = reopen(&dir);
    assert_eq!(c.read(0, c.len()).unwrap(), model);
    c.verify_all().unwrap();
    c.compact_at = 0;
    assert_eq!(c.seal(Some(B + 1)).unwrap(), B + 1);
    // Compacting a sealed chunk keeps it sealed.
    c.compact().unwrap();
    drop(c);
    let c = reopen(&dir);
    assert_eq!((c.len(), c.is_sealed()), (B + 1, true));
    assert_eq!(c.read(0, B + 1).unwrap(), &model[..(B + 1) as usize]);
    assert!(!paths(&dir).meta_tmp.exists());
}

#[test]
fn a_crashed_compaction_leaves_the_old_log_in_charge() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, &[1; 5000]);
    drop(c);
    // A temporary file that was never renamed.
    fs::write(paths(&dir).meta_tmp, b"half a snapshot").unwrap();
    let c = reopen(&dir);
    assert_eq!(c.len(), 5000);
    assert!(!paths(&dir).meta_tmp.exists());
}

#[test]
fn a_poisoned_handle_refuses_writes_but_still_reads() {
    let (dir, mut c) = new_chunk(4 * B);
    append(&mut c, b"committed");
    c.poisoned = true;
    assert!(matches!(c.append(9, b"x", checksum(b"x")), Err(ChunkError::Poisoned)));
    assert!(matches!(c.seal(None), Err(ChunkError::Poisoned)));
    assert_eq!(c.read(0, 9).unwrap(), b"committed");
    // A retry of committed bytes needs no write, so it is still answered.
    assert_eq!(c.append(0, b"committed", checksum(b"committed")).unwrap(), 9);
    drop(c);
    let mut c = reopen(&dir);
    append(&mut c, b"!");
    assert_eq!(c.read(0, 10).unwrap(), b"committed!");
}

// ---- cached appends (see "Cached appends" in the module docs) ---------------------------

fn append_cached(chunk: &mut ChunkFile, data: &[u8]) -> u64 {
    chunk.append_with(chunk.len(), data, checksum(data), Durability::Cached).unwrap()
}

/// The kinds of the records in the chunk's log, and whether replay sees an unsynced tail.
fn log_kinds(dir: &TempDir) -> (Vec<u8>, usize) {
    let bytes = fs::read(paths(dir).meta).unwrap();
    let replay = format::replay(&bytes).unwrap();
    let mut kinds = Vec::new();
    let mut pos = format::HEADER_LEN;
    while pos + 8 <= bytes.len() {
        kinds.push(bytes[pos]);
        let n = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += format::RECORD_OVERHEAD + 4 * n;
    }
    (kinds, replay.tail.len())
}

/// A durable append, then three cached ones across block boundaries: (the chunk's dir,
/// the data, the end of each append, the end of each record in the log).
fn durable_then_cached() -> (TempDir, Vec<u8>, Vec<u64>, Vec<u64>) {
    let sizes = [B + 10, 5, 2 * B + 7, B];
    let data = Rng(77).bytes(sizes.iter().sum::<u64>() as usize);
    let (dir, mut c) = new_chunk(16 * B);
    let (mut at, mut ends, mut meta_ends) = (0usize, Vec::new(), Vec::new());
    for (i, n) in sizes.iter().enumerate() {
        let piece = &data[at..at + *n as usize];
        if i == 0 {
            append(&mut c, piece);
        } else {
            append_cached(&mut c, piece);
        }
        at += *n as usize;
        ends.push(at as u64);
        meta_ends.push(file_len(&paths(&dir).meta));
    }
    assert!(c.is_unsynced());
    drop(c);
    (dir, data, ends, meta_ends)
}

#[test]
fn cached_appends_survive_a_crash_of_the_process_and_are_made_durable_on_open() {
    let (dir, data, ends, _) = durable_then_cached();
    // The process died without a sync (the handle dropped): the kernel kept the writes.
    assert_eq!(log_kinds(&dir), (vec![1, 3, 3, 3], 3));
    let c = reopen(&dir);
    assert_eq!(c.len(), *ends.last().unwrap());
    assert_eq!(c.read(0, c.len()).unwrap(), data);
    assert!(!c.is_unsynced());
    // open committed what it kept with a sync record: the tail is durable now.
    assert_eq!(log_kinds(&dir), (vec![1, 3, 3, 3, 4], 0));
}

#[test]
fn a_power_loss_keeps_the_longest_prefix_of_cached_appends_whose_data_reached_the_disk() {
    let (dir, data, ends, _) = durable_then_cached();
    let full_meta = fs::read(paths(&dir).meta).unwrap();
    let full_data = fs::read(paths(&dir).data).unwrap();
    // The data of the third append (ends[1]..ends[2]) never reached the disk, at the start
    // of its range, in the middle, or at its end; the fourth's did (pages are written back
    // in any order). The chunk keeps the first two appends only.
    for lost in [ends[1]..ends[1] + 1, ends[1] + B..ends[1] + B + 100, ends[2] - 1..ends[2]] {
        let mut d = full_data.clone();
        d[lost.start as usize..lost.end as usize].fill(0);
        fs::write(paths(&dir).data, &d).unwrap();
        fs::write(paths(&dir).meta, &full_meta).unwrap();
        let mut c = reopen(&dir);
        assert_eq!(c.len(), ends[1], "lost {lost:?}");
        assert_eq!(c.read(0, ends[1]).unwrap(), &data[..ends[1] as usize]);
        c.verify_all().unwrap();
        assert_eq!(file_len(&paths(&dir).data), ends[1]);
        // It carries on from there, and what it kept is durable.
        append_cached(&mut c, b"after");
        drop(c);
        assert_eq!(reopen(&dir).read(ends[1], 5).unwrap(), b"after");
    }
    // The data file lost everything past the durable append (a shorter file).
    fs::write(paths(&dir).data, &full_data[..ends[0] as usize + 3]).unwrap();
    fs::write(paths(&dir).meta, &full_meta).unwrap();
    let c = reopen(&dir);
    assert_eq!(c.len(), ends[0]);
    assert_eq!(c.read(0, ends[0]).unwrap(), &data[..ends[0] as usize]);
}

#[test]
fn every_cut_through_the_unsynced_records_keeps_the_whole_records_before_it() {
    let (dir, data, ends, meta_ends) = durable_then_cached();
    let full_meta = fs::read(paths(&dir).meta).unwrap();
    let full_data = fs::read(paths(&dir).data).unwrap();
    for cut in meta_ends[0]..meta_ends[3] {
        let whole = meta_ends.iter().rposition(|&e| e <= cut).unwrap();
        fs::write(paths(&dir).meta, &full_meta[..cut as usize]).unwrap();
        fs::write(paths(&dir).data, &full_data).unwrap();
        let c = reopen(&dir);
        assert_eq!(c.len(), ends[whole], "cut at {cut}");
        assert_eq!(c.read(0, c.len()).unwrap(), &data[..ends[whole] as usize]);
    }
}

#[test]
fn damage_among_unsynced_records_is_a_torn_tail_but_before_a_durable_record_it_is_rot() {
    let (dir, data, ends, meta_ends) = durable_then_cached();
    let full_meta = fs::read(paths(&dir).meta).unwrap();
    let full_data = fs::read(paths(&dir).data).unwrap();
    // A page of the log that never reached the disk, under the second cached record, with
    // the third intact after it: everything from the damage on is cut.
    for at in meta_ends[1]..meta_ends[2] {
        let mut m = full_meta.clone();
        m[at as usize] ^= 0x40;
        fs::write(paths(&dir).meta, &m).unwrap();
        fs::write(paths(&dir).data, &full_data).unwrap();
        let c = reopen(&dir);
        assert_eq!(c.len(), ends[1], "flip at {at}");
        assert_eq!(c.read(0, ends[1]).unwrap(), &data[..ends[1] as usize]);
    }
    // The same damage with a durable record after it (a sync: the records before it were
    // fsynced) is rot: the replica is refused, never silently shortened.
    fs::write(paths(&dir).meta, &full_meta).unwrap();
    fs::write(paths(&dir).data, &full_data).unwrap();
    let mut c = reopen(&dir);
    assert!(!c.is_unsynced());
    append_cached(&mut c, b"more");
    drop(c);
    for at in [meta_ends[1] + 3, meta_ends[2] - 1] {
        let mut m = fs::read(paths(&dir).meta).unwrap();
        m[at as usize] ^= 0x40;
        fs::write(paths(&dir).meta, &m).unwrap();
        assert!(matches!(ChunkFile::open(dir.path(), ID), Err(ChunkError::BadMetadata { .. })), "flip at {at}");
        m[at as usize] ^= 0x40;
        fs::write(paths(&dir).meta, &m).unwrap();
    }
    assert_eq!(reopen(&dir).len(), ends[3] + 4);
}

#[test]
fn sync_seal_and_durable_appends_make_cached_appends_durable() {
    let (dir, mut c) = new_chunk(8 * B);
    append_cached(&mut c, b"one");
    assert_eq!(c.sync().unwrap(), 3);
    assert!(!c.is_unsynced());
    // Nothing cached: a sync writes nothing.
    let meta = file_len(&paths(&dir).meta);
    assert_eq!(c.sync().unwrap(), 3);
    assert_eq!(file_len(&paths(&dir).meta), meta);
    // A durable append after cached ones is preceded by a sync record.
    append_cached(&mut c, b"two");
    append(&mut c, b"three");
    // A seal after a cached append syncs first too.
    append_cached(&mut c, b"four");
    assert_eq!(c.seal(None).unwrap(), 15);
    drop(c);
    assert_eq!(log_kinds(&dir), (vec![3, 4, 3, 4, 1, 3, 4, 2], 0));
    let c = reopen(&dir);
    assert_eq!(c.read(0, 15).unwrap(), b"onetwothreefour");
    assert!(c.is_sealed());
}

#[test]
fn a_long_log_of_cached_appends_is_compacted_durably() {
    // Enough small cached appends to pass the compaction threshold: the compacted log is
    // a durable snapshot, so the data is fsynced first and nothing stays unsynced.
    let (dir, mut c) = new_chunk(64 * B);
    let piece = vec![7u8; 100];
    // 32,000 records of 36 to 40 bytes pass 1 MiB once.
    let n = 32_000u64;
    for _ in 0..n {
        append_cached(&mut c, &piece);
    }
    assert!(file_len(&paths(&dir).meta) < 512 * 1024, "the log was compacted");
    assert!(c.is_unsynced(), "appends after the compaction are cached again");
    drop(c);
    let c = reopen(&dir);
    assert_eq!(c.len(), n * 100);
    c.verify_all().unwrap();
}
