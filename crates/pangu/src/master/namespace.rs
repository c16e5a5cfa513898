//! The master's namespace in the control-plane store: chunkservers, files, chunks and where
//! their replicas are, and the volumes with the files they own (the `pangu_*` tables). The master keeps a mirror in memory and writes
//! through to these tables first, so that what it answered survives a crash.
//!
//! The queries live here, beside the master that owns the tables, so that nothing else reads
//! or writes them; their definitions stay in `feitian-meta`'s migrations, because the
//! control-plane database has one schema history.

use feitian_meta::{MetaError, Transaction};
use rusqlite::{params, OptionalExtension, Row};

use crate::master::FileId;
use crate::volume::{VolumeCheckpoint, VolumeFileKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    pub id: u64,
    pub addr: String,
    pub rack: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: u64,
    pub replication: u32,
    pub sealed_len: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub id: u64,
    pub file_id: u64,
    pub seq: u32,
    pub file_offset: u64,
    pub max_size: u64,
    pub sealed_len: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaRow {
    pub chunk_id: u64,
    pub server_id: u64,
    pub healthy: bool,
}

/// Everything the master loads at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub servers: Vec<ServerRow>,
    pub files: Vec<FileRow>,
    pub chunks: Vec<ChunkRow>,
    pub replicas: Vec<ReplicaRow>,
    /// (chunk, server) pairs to delete from their servers.
    pub garbage: Vec<(u64, u64)>,
    pub volumes: Vec<VolumeRow>,
    pub volume_files: Vec<VolumeFileRow>,
}

/// A volume's root (see [`crate::volume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub name: String,
    pub size_bytes: u64,
    pub epoch: u64,
    pub parent: Option<String>,
    pub frozen: bool,
    pub checkpoint: Option<VolumeCheckpoint>,
    pub next_seq: u64,
}

/// A file a volume owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFileRow {
    pub file_id: u64,
    pub volume: String,
    pub kind: VolumeFileKind,
    /// Segments only.
    pub seq: Option<u64>,
    /// The epoch of the writer that made it.
    pub epoch: u64,
    /// Pins only: its name (a snapshot id), next sequence number and size.
    pub pin: Option<PinFields>,
}

/// What a pin's row holds beyond a file's (see [`crate::volume::VolumePin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinFields {
    pub name: String,
    pub next_seq: u64,
    pub size_bytes: u64,
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v as u64)
}

pub fn load(tx: &Transaction<'_>) -> Result<Snapshot, MetaError> {
    let mut s = Snapshot::default();
    let mut st = tx.prepare_cached("SELECT id, addr, rack FROM pangu_servers ORDER BY id")?;
    s.servers = st
        .query_map([], |r| Ok(ServerRow { id: r.get::<_, i64>(0)? as u64, addr: r.get(1)?, rack: r.get(2)? }))?
        .collect::<Result<_, _>>()?;
    let mut st = tx.prepare_cached("SELECT id, replication, sealed_len FROM pangu_files ORDER BY id")?;
    s.files = st
        .query_map([], |r| {
            Ok(FileRow {
                id: r.get::<_, i64>(0)? as u64,
                replication: r.get::<_, i64>(1)? as u32,
                sealed_len: opt_u64(r.get(2)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut st = tx.prepare_cached(
        "SELECT id, file_id, seq, file_offset, max_size, sealed_len FROM pangu_chunks ORDER BY file_id, seq",
    )?;
    s.chunks = st
        .query_map([], |r| {
            Ok(ChunkRow {
                id: r.get::<_, i64>(0)? as u64,
                file_id: r.get::<_, i64>(1)? as u64,
                seq: r.get::<_, i64>(2)? as u32,
                file_offset: r.get::<_, i64>(3)? as u64,
                max_size: r.get::<_, i64>(4)? as u64,
                sealed_len: opt_u64(r.get(5)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut st =
        tx.prepare_cached("SELECT chunk_id, server_id, healthy FROM pangu_replicas ORDER BY chunk_id, server_id")?;
    s.replicas = st
        .query_map([], |r| {
            Ok(ReplicaRow {
                chunk_id: r.get::<_, i64>(0)? as u64,
                server_id: r.get::<_, i64>(1)? as u64,
                healthy: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut st = tx.prepare_cached("SELECT chunk_id, server_id FROM pangu_garbage ORDER BY chunk_id, server_id")?;
    s.garbage = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    s.volumes = volumes(tx)?;
    let mut st = tx.prepare_cached(&format!("{VOLUME_FILE_COLUMNS} ORDER BY volume, file_id"))?;
    s.volume_files = st.query_map([], volume_file_row)?.collect::<Result<_, _>>()?;
    Ok(s)
}

/// Registers a new chunkserver; returns its id.
pub fn insert_server(tx: &Transaction<'_>, addr: &str, rack: &str, now: &str) -> Result<u64, MetaError> {
    tx.execute("INSERT INTO pangu_servers (addr, rack, registered_at) VALUES (?1, ?2, ?3)", params![addr, rack, now])?;
    Ok(tx.last_insert_rowid() as u64)
}

/// A known server came back (possibly at another address or rack); `false` if unknown.
pub fn update_server(tx: &Transaction<'_>, id: u64, addr: &str, rack: &str) -> Result<bool, MetaError> {
    Ok(tx.execute("UPDATE pangu_servers SET addr = ?2, rack = ?3 WHERE id = ?1", params![id as i64, addr, rack])? == 1)
}

pub fn insert_file(tx: &Transaction<'_>, replication: u32, now: &str) -> Result<u64, MetaError> {
    tx.execute("INSERT INTO pangu_files (replication, created_at) VALUES (?1, ?2)", params![replication, now])?;
    Ok(tx.last_insert_rowid() as u64)
}

pub fn seal_file(tx: &Transaction<'_>, id: u64, len: u64) -> Result<(), MetaError> {
    tx.execute("UPDATE pangu_files SET sealed_len = ?2 WHERE id = ?1", params![id as i64, len as i64])?;
    Ok(())
}

/// Adds a chunk with its replica set (all healthy); returns the chunk's id.
pub fn insert_chunk(
    tx: &Transaction<'_>,
    file_id: u64,
    seq: u32,
    file_offset: u64,
    max_size: u64,
    servers: &[u64],
) -> Result<u64, MetaError> {
    tx.execute(
        "INSERT INTO pangu_chunks (file_id, seq, file_offset, max_size) VALUES (?1, ?2, ?3, ?4)",
        params![file_id as i64, seq, file_offset as i64, max_size as i64],
    )?;
    let id = tx.last_insert_rowid() as u64;
    for s in servers {
        set_replica(tx, id, *s, true)?;
    }
    Ok(id)
}

pub fn seal_chunk(tx: &Transaction<'_>, id: u64, len: u64) -> Result<(), MetaError> {
    tx.execute("UPDATE pangu_chunks SET sealed_len = ?2 WHERE id = ?1", params![id as i64, len as i64])?;
    Ok(())
}

/// The chunk's sealed length (`None`: unsealed or unknown).
pub fn chunk_sealed_len(tx: &Transaction<'_>, id: u64) -> Result<Option<u64>, MetaError> {
    let len: Option<Option<i64>> =
        tx.query_row("SELECT sealed_len FROM pangu_chunks WHERE id = ?1", [id as i64], |r| r.get(0)).optional()?;
    Ok(opt_u64(len.flatten()))
}

/// Records (or replaces) a replica.
pub fn set_replica(tx: &Transaction<'_>, chunk: u64, server: u64, healthy: bool) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO pangu_replicas (chunk_id, server_id, healthy) VALUES (?1, ?2, ?3)
         ON CONFLICT (chunk_id, server_id) DO UPDATE SET healthy = excluded.healthy",
        params![chunk as i64, server as i64, healthy],
    )?;
    Ok(())
}

/// Forgets a replica; its bytes on the server become garbage to delete.
pub fn drop_replica(tx: &Transaction<'_>, chunk: u64, server: u64) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM pangu_replicas WHERE chunk_id = ?1 AND server_id = ?2",
        params![chunk as i64, server as i64],
    )?;
    add_garbage(tx, chunk, server)
}

pub fn add_garbage(tx: &Transaction<'_>, chunk: u64, server: u64) -> Result<(), MetaError> {
    tx.execute(
        "INSERT OR IGNORE INTO pangu_garbage (chunk_id, server_id) VALUES (?1, ?2)",
        params![chunk as i64, server as i64],
    )?;
    Ok(())
}

pub fn forget_garbage(tx: &Transaction<'_>, chunk: u64, server: u64) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM pangu_garbage WHERE chunk_id = ?1 AND server_id = ?2",
        params![chunk as i64, server as i64],
    )?;
    Ok(())
}

/// Deletes a file and its chunks; every replica becomes garbage. `false` if unknown.
pub fn delete_file(tx: &Transaction<'_>, id: u64) -> Result<bool, MetaError> {
    tx.execute(
        "INSERT OR IGNORE INTO pangu_garbage (chunk_id, server_id)
         SELECT r.chunk_id, r.server_id FROM pangu_replicas r JOIN pangu_chunks c ON c.id = r.chunk_id
         WHERE c.file_id = ?1",
        [id as i64],
    )?;
    Ok(tx.execute("DELETE FROM pangu_files WHERE id = ?1", [id as i64])? == 1)
}

pub fn file(tx: &Transaction<'_>, id: u64) -> Result<Option<FileRow>, MetaError> {
    Ok(tx
        .query_row("SELECT id, replication, sealed_len FROM pangu_files WHERE id = ?1", [id as i64], |r| {
            Ok(FileRow {
                id: r.get::<_, i64>(0)? as u64,
                replication: r.get::<_, i64>(1)? as u32,
                sealed_len: opt_u64(r.get(2)?),
            })
        })
        .optional()?)
}

// ---- volumes ---------------------------------------------------------------------------

const VOLUME_COLUMNS: &str = "SELECT name, size_bytes, epoch, parent, frozen, checkpoint_file, checkpoint_seq,
    checkpoint_offset, next_seq FROM pangu_volumes";

const VOLUME_FILE_COLUMNS: &str =
    "SELECT file_id, volume, kind, seq, epoch, name, pin_next_seq, pin_size_bytes FROM pangu_volume_files";

fn volume_row(r: &Row<'_>) -> rusqlite::Result<VolumeRow> {
    let file: Option<i64> = r.get(5)?;
    let (seq, offset): (Option<i64>, Option<i64>) = (r.get(6)?, r.get(7)?);
    Ok(VolumeRow {
        name: r.get(0)?,
        size_bytes: r.get::<_, i64>(1)? as u64,
        epoch: r.get::<_, i64>(2)? as u64,
        parent: r.get(3)?,
        frozen: r.get(4)?,
        checkpoint: match (file, seq, offset) {
            (Some(file), Some(seq), Some(offset)) => Some(VolumeCheckpoint {
                file: FileId(file as u64),
                covers_seq: seq as u64,
                covers_offset: offset as u64,
            }),
            _ => None,
        },
        next_seq: r.get::<_, i64>(8)? as u64,
    })
}

fn volume_file_row(r: &Row<'_>) -> rusqlite::Result<VolumeFileRow> {
    let kind: String = r.get(2)?;
    let kind = VolumeFileKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("volume file kind {kind:?}").into(),
        )
    })?;
    Ok(VolumeFileRow {
        file_id: r.get::<_, i64>(0)? as u64,
        volume: r.get(1)?,
        kind,
        seq: opt_u64(r.get(3)?),
        epoch: r.get::<_, i64>(4)? as u64,
        pin: match (r.get::<_, Option<String>>(5)?, opt_u64(r.get(6)?), opt_u64(r.get(7)?)) {
            (Some(name), Some(next_seq), Some(size_bytes)) => Some(PinFields { name, next_seq, size_bytes }),
            _ => None,
        },
    })
}

/// Every volume, by name.
pub fn volumes(tx: &Transaction<'_>) -> Result<Vec<VolumeRow>, MetaError> {
    let mut st = tx.prepare_cached(&format!("{VOLUME_COLUMNS} ORDER BY name"))?;
    let rows = st.query_map([], volume_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn volume(tx: &Transaction<'_>, name: &str) -> Result<Option<VolumeRow>, MetaError> {
    let mut st = tx.prepare_cached(&format!("{VOLUME_COLUMNS} WHERE name = ?1"))?;
    Ok(st.query_row([name], volume_row).optional()?)
}

/// A new volume at epoch 0, not frozen, without files. `false` if the name is taken.
pub fn insert_volume(
    tx: &Transaction<'_>,
    name: &str,
    size_bytes: u64,
    parent: Option<&str>,
    now: &str,
) -> Result<bool, MetaError> {
    Ok(tx.execute(
        "INSERT INTO pangu_volumes (name, size_bytes, epoch, parent, frozen, next_seq, created_at)
         VALUES (?1, ?2, 0, ?3, FALSE, 0, ?4) ON CONFLICT (name) DO NOTHING",
        params![name, size_bytes as i64, parent, now],
    )? == 1)
}

pub fn set_volume_epoch(tx: &Transaction<'_>, name: &str, epoch: u64) -> Result<(), MetaError> {
    tx.execute("UPDATE pangu_volumes SET epoch = ?2 WHERE name = ?1", params![name, epoch as i64])?;
    Ok(())
}

pub fn set_volume_size(tx: &Transaction<'_>, name: &str, size_bytes: u64) -> Result<(), MetaError> {
    tx.execute("UPDATE pangu_volumes SET size_bytes = ?2 WHERE name = ?1", params![name, size_bytes as i64])?;
    Ok(())
}

pub fn set_volume_frozen(tx: &Transaction<'_>, name: &str) -> Result<(), MetaError> {
    tx.execute("UPDATE pangu_volumes SET frozen = TRUE WHERE name = ?1", [name])?;
    Ok(())
}

pub fn set_volume_checkpoint(tx: &Transaction<'_>, name: &str, c: &VolumeCheckpoint) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE pangu_volumes SET checkpoint_file = ?2, checkpoint_seq = ?3, checkpoint_offset = ?4 WHERE name = ?1",
        params![name, c.file.0 as i64, c.covers_seq as i64, c.covers_offset as i64],
    )?;
    Ok(())
}

/// Takes the volume's next segment number.
pub fn take_segment_seq(tx: &Transaction<'_>, name: &str) -> Result<u64, MetaError> {
    let seq: i64 = tx.query_row(
        "UPDATE pangu_volumes SET next_seq = next_seq + 1 WHERE name = ?1 RETURNING next_seq - 1",
        [name],
        |r| r.get(0),
    )?;
    Ok(seq as u64)
}

/// The names of the volumes that are clones of `name`.
pub fn clones_of(tx: &Transaction<'_>, name: &str) -> Result<Vec<String>, MetaError> {
    let mut st = tx.prepare_cached("SELECT name FROM pangu_volumes WHERE parent = ?1 ORDER BY name")?;
    let names = st.query_map([name], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(names)
}

/// Deletes the volume's row (its files' rows go with it; the files stay).
pub fn delete_volume(tx: &Transaction<'_>, name: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM pangu_volumes WHERE name = ?1", [name])?;
    Ok(())
}

/// Records that the volume owns `file`.
pub fn insert_volume_file(tx: &Transaction<'_>, row: &VolumeFileRow) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO pangu_volume_files (file_id, volume, kind, seq, epoch) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![row.file_id as i64, row.volume, row.kind.as_str(), row.seq.map(|s| s as i64), row.epoch as i64],
    )?;
    Ok(())
}

/// Makes the volume's file `file_id` (a checkpoint file) its pin `pin`; `false` if it is not
/// a checkpoint file of the volume.
pub fn make_pin(tx: &Transaction<'_>, volume: &str, file_id: u64, pin: &PinFields) -> Result<bool, MetaError> {
    Ok(tx.execute(
        "UPDATE pangu_volume_files SET kind = 'pin', name = ?3, pin_next_seq = ?4, pin_size_bytes = ?5
         WHERE volume = ?1 AND file_id = ?2 AND kind = 'checkpoint'",
        params![volume, file_id as i64, pin.name, pin.next_seq as i64, pin.size_bytes as i64],
    )? == 1)
}

/// The files the volume owns, segments in order first, then checkpoint files.
pub fn volume_files(tx: &Transaction<'_>, name: &str) -> Result<Vec<VolumeFileRow>, MetaError> {
    let mut st = tx.prepare_cached(&format!(
        "{VOLUME_FILE_COLUMNS} WHERE volume = ?1 ORDER BY CASE kind WHEN 'segment' THEN 0 ELSE 1 END, seq, file_id"
    ))?;
    let rows = st.query_map([name], volume_file_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use feitian_meta::Store;

    use super::*;

    #[test]
    fn namespace_round_trip_and_delete_makes_garbage() {
        let s = Store::open_in_memory().unwrap();
        let (file, chunk) = s
            .write(|tx| {
                let a = insert_server(tx, "127.0.0.1:1", "r1", "t")?;
                let b = insert_server(tx, "127.0.0.1:2", "r2", "t")?;
                assert!(update_server(tx, b, "127.0.0.1:3", "r2")?);
                assert!(!update_server(tx, 99, "x", "y")?);
                let f = insert_file(tx, 2, "t")?;
                let c = insert_chunk(tx, f, 0, 0, 1 << 20, &[a, b])?;
                seal_chunk(tx, c, 10)?;
                set_replica(tx, c, b, false)?;
                Ok::<_, MetaError>((f, c))
            })
            .unwrap();
        let snap = s.read(load).unwrap();
        assert_eq!(snap.servers[1].addr, "127.0.0.1:3");
        assert_eq!(snap.chunks[0].sealed_len, Some(10));
        assert_eq!(snap.replicas.iter().filter(|r| r.healthy).count(), 1);
        s.write(|tx| {
            seal_file(tx, file, 10)?;
            assert_eq!(self::file(tx, file)?.unwrap().sealed_len, Some(10));
            assert!(delete_file(tx, file)?);
            assert!(!delete_file(tx, file)?);
            Ok::<_, MetaError>(())
        })
        .unwrap();
        let snap = s.read(load).unwrap();
        assert!(snap.files.is_empty() && snap.chunks.is_empty() && snap.replicas.is_empty());
        assert_eq!(snap.garbage, vec![(chunk, 1), (chunk, 2)]);
        s.write(|tx| forget_garbage(tx, chunk, 1)).unwrap();
        assert_eq!(s.read(load).unwrap().garbage, vec![(chunk, 2)]);
    }

    #[test]
    fn volumes_round_trip_and_own_their_files() {
        let s = Store::open_in_memory().unwrap();
        s.write(|tx| {
            assert!(insert_volume(tx, "img-1", 8192, None, "t")?);
            assert!(!insert_volume(tx, "img-1", 4096, None, "t")?);
            set_volume_frozen(tx, "img-1")?;
            assert!(insert_volume(tx, "d-1", 4096, Some("img-1"), "t")?);
            set_volume_epoch(tx, "d-1", 3)?;
            set_volume_size(tx, "d-1", 12288)?;
            assert_eq!(take_segment_seq(tx, "d-1")?, 0);
            assert_eq!(take_segment_seq(tx, "d-1")?, 1);
            let seg = insert_file(tx, 3, "t")?;
            let cp = insert_file(tx, 3, "t")?;
            insert_volume_file(
                tx,
                &VolumeFileRow {
                    file_id: seg,
                    volume: "d-1".into(),
                    kind: VolumeFileKind::Segment,
                    seq: Some(1),
                    epoch: 3,
                    pin: None,
                },
            )?;
            insert_volume_file(
                tx,
                &VolumeFileRow {
                    file_id: cp,
                    volume: "d-1".into(),
                    kind: VolumeFileKind::Checkpoint,
                    seq: None,
                    epoch: 3,
                    pin: None,
                },
            )?;
            set_volume_checkpoint(tx, "d-1", &VolumeCheckpoint { file: FileId(cp), covers_seq: 1, covers_offset: 77 })?;
            Ok::<_, MetaError>(())
        })
        .unwrap();
        let snap = s.read(load).unwrap();
        assert_eq!(snap.volumes.len(), 2);
        let d = s.read(|tx| volume(tx, "d-1")).unwrap().unwrap();
        assert_eq!((d.epoch, d.size_bytes, d.next_seq, d.frozen), (3, 12288, 2, false));
        assert_eq!(d.parent.as_deref(), Some("img-1"));
        assert_eq!(d.checkpoint.map(|c| (c.covers_seq, c.covers_offset)), Some((1, 77)));
        assert!(s.read(|tx| volume(tx, "img-1")).unwrap().unwrap().frozen);
        assert_eq!(s.read(|tx| clones_of(tx, "img-1")).unwrap(), vec!["d-1".to_owned()]);
        let files = s.read(|tx| volume_files(tx, "d-1")).unwrap();
        assert_eq!(
            files.iter().map(|f| f.kind).collect::<Vec<_>>(),
            [VolumeFileKind::Segment, VolumeFileKind::Checkpoint]
        );
        assert_eq!(snap.volume_files, files);
        // A deleted file leaves its volume.
        let seg = files[0].file_id;
        s.write(|tx| delete_file(tx, seg)).unwrap();
        assert_eq!(s.read(|tx| volume_files(tx, "d-1")).unwrap().len(), 1);
        // The parent cannot go while a clone refers to it.
        assert!(s.write(|tx| delete_volume(tx, "img-1")).is_err());
    }

    #[test]
    fn a_checkpoint_file_becomes_a_named_pin_once() {
        let s = Store::open_in_memory().unwrap();
        let pin = PinFields { name: "s-1".into(), next_seq: 40, size_bytes: 8192 };
        let (seg, a, b) = s
            .write(|tx| {
                assert!(insert_volume(tx, "d-1", 8192, None, "t")?);
                let mut ids = Vec::new();
                for (kind, seq) in [(VolumeFileKind::Segment, Some(0)), (VolumeFileKind::Checkpoint, None)] {
                    for _ in 0..if seq.is_some() { 1 } else { 2 } {
                        let file_id = insert_file(tx, 3, "t")?;
                        let row = VolumeFileRow { file_id, volume: "d-1".into(), kind, seq, epoch: 1, pin: None };
                        insert_volume_file(tx, &row)?;
                        ids.push(file_id);
                    }
                }
                Ok::<_, MetaError>((ids[0], ids[1], ids[2]))
            })
            .unwrap();
        // A segment is no pin, nor a file of another volume.
        assert!(!s.write(|tx| make_pin(tx, "d-1", seg, &pin)).unwrap());
        assert!(!s.write(|tx| make_pin(tx, "d-2", a, &pin)).unwrap());
        assert!(s.write(|tx| make_pin(tx, "d-1", a, &pin)).unwrap());
        // The name is taken: the store refuses a second pin of it.
        assert!(s.write(|tx| make_pin(tx, "d-1", b, &pin)).is_err());
        let files = s.read(|tx| volume_files(tx, "d-1")).unwrap();
        let pinned: Vec<_> = files.iter().filter(|f| f.kind == VolumeFileKind::Pin).collect();
        assert_eq!(pinned.len(), 1);
        assert_eq!((pinned[0].file_id, pinned[0].pin.as_ref()), (a, Some(&pin)));
        assert!(files.iter().filter(|f| f.kind != VolumeFileKind::Pin).all(|f| f.pin.is_none()));
    }
}
