//! The master's namespace in the control-plane store: chunkservers, files, chunks and where
//! their replicas are (the `pangu_*` tables). The master keeps a mirror in memory and writes
//! through to these tables first, so that what it answered survives a crash.
//!
//! The queries live here, beside the master that owns the tables, so that nothing else reads
//! or writes them; their definitions stay in `feitian-meta`'s migrations, because the
//! control-plane database has one schema history.

use feitian_meta::{MetaError, Transaction};
use rusqlite::{params, OptionalExtension};

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
}
