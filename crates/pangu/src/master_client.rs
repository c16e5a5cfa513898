//! What the file client ([`crate::client`]) needs of the master, as one trait: create, list
//! and delete files, map a file onto its chunks and replicas, get a new chunk to write,
//! record seals, hear that a writer is gone or that a replica is corrupt, and keep the
//! registry of volumes ([`crate::volume`]).
//!
//! # Why a trait
//!
//! `feitian up` runs the master and the file client in one process, and [`Master`]
//! implements [`MasterClient`] by calling itself. A file client in another process (an OSS
//! front end on another host) needs the same calls over the network. The file client holds
//! only an `Arc<dyn MasterClient>`, so another transport is another implementation, not a
//! branch in the client: nothing in [`crate::client`] knows which one it has.
//!
//! # The contract is data
//!
//! Every argument and result is plain data with serde (ids, [`FileLayout`],
//! [`ChunkLocation`]), and so is the error, [`MasterClientError`]: the master's own
//! [`MasterError`] can carry a store error, which does not cross a process boundary, so it
//! becomes what the client can act on. Chunk bytes never pass through the master: the client
//! sends them to the chunkservers itself, through [`crate::chunk_client::ChunkClients`]
//! (which also knows the chunkservers running in its own process).
//!
//! # Plugging in a network transport
//!
//! A network implementation is an HTTP client that implements [`MasterClient`] against
//! master routes added beside those of [`crate::master::router`] (one per method, e.g.
//! `POST /pangu/v1/files/{id}/chunks` for [`MasterClient::allocate_chunk`]), each taking its
//! arguments as JSON and answering the JSON of the result or of a [`MasterClientError`]. Like
//! every internal service, those routes must authenticate their callers. A master that
//! cannot be reached or does not answer in time is [`MasterClientError::Unavailable`], as a
//! failing store is in process; the client already treats it as a failed call.
//!
//! [`MasterClient::writer_gone`] is called from a writer's `Drop`, so it cannot wait: a
//! network implementation sends it in the background. A writer whose process dies sends
//! nothing; across processes the master will want to hold a chunk for its writer under a
//! lease that expires rather than until told. That is the master's business, not this
//! trait's.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::chunk::ChunkId;
use crate::master::{ChunkLocation, FileId, FileLayout, Master, MasterError};
use crate::placement::{PlacementError, ServerId};
use crate::volume::{VolumeError, VolumeLease, VolumePin};

/// The answer to a call on the master.
pub type MasterFuture<'a, T> = BoxFuture<'a, Result<T, MasterClientError>>;

/// The master as the file client sees it. Object-safe: held as `Arc<dyn MasterClient>`.
pub trait MasterClient: Send + Sync {
    /// A new, empty file.
    fn create_file(&self) -> MasterFuture<'_, FileId>;

    /// Deletes a file; its replicas are deleted from their servers in the background.
    fn delete_file(&self, file: FileId) -> MasterFuture<'_, ()>;

    /// Every file (for the garbage collection of the layer above).
    fn files(&self) -> MasterFuture<'_, Vec<FileId>>;

    /// The file's chunks, in order, each with its healthy replicas, live servers first.
    fn layout(&self, file: FileId) -> MasterFuture<'_, FileLayout>;

    /// Adds a chunk at the end of `file`, on servers not in `exclude`, with its replicas
    /// created, and hands it to the caller as its writer.
    fn allocate_chunk<'a>(&'a self, file: FileId, exclude: &'a [ServerId]) -> MasterFuture<'a, ChunkLocation>;

    /// The writer sealed `chunk` at `len` on every replica but those in `failed`, which
    /// are to be replaced.
    fn chunk_sealed<'a>(&'a self, chunk: ChunkId, len: u64, failed: &'a [ServerId]) -> MasterFuture<'a, ()>;

    /// Seals the file at `len`.
    fn seal_file(&self, file: FileId, len: u64) -> MasterFuture<'_, ()>;

    /// The writer of unsealed `chunk` is gone: the master seals it. Must not block (it is
    /// called from `Drop`).
    fn writer_gone(&self, chunk: ChunkId);

    /// A read found a corrupt block in `server`'s replica of `chunk`: the master has it
    /// repaired.
    fn report_corrupt(&self, chunk: ChunkId, server: ServerId) -> MasterFuture<'_, ()>;

    /// A new volume (see [`Master::volume_create`]).
    fn volume_create<'a>(&'a self, name: &'a str, size_bytes: u64, parent: Option<&'a str>) -> MasterFuture<'a, ()>;

    /// Takes the volume as its one writer (see [`Master::volume_acquire`]).
    fn volume_acquire<'a>(&'a self, name: &'a str) -> MasterFuture<'a, VolumeLease>;

    /// The volume's layout, without taking it.
    fn volume_describe<'a>(&'a self, name: &'a str) -> MasterFuture<'a, VolumeLease>;

    /// A new segment file of the volume: its number and id.
    fn volume_new_segment<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, (u64, FileId)>;

    /// A new checkpoint file of the volume (not yet installed).
    fn volume_new_checkpoint_file<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, FileId>;

    /// Installs a sealed checkpoint file as the volume's checkpoint.
    fn volume_set_checkpoint<'a>(
        &'a self,
        name: &'a str,
        epoch: u64,
        file: FileId,
        covers_seq: u64,
        covers_offset: u64,
    ) -> MasterFuture<'a, ()>;

    /// Registers a sealed checkpoint file as the volume's pin `pin_name` (see
    /// [`Master::volume_add_pin`]).
    fn volume_add_pin<'a>(
        &'a self,
        name: &'a str,
        epoch: u64,
        pin_name: &'a str,
        file: FileId,
        next_seq: u64,
        size_bytes: u64,
    ) -> MasterFuture<'a, VolumePin>;

    /// Deletes the volume's pin `pin_name` and its file; a missing one is no error.
    fn volume_release_pin<'a>(&'a self, name: &'a str, pin_name: &'a str) -> MasterFuture<'a, ()>;

    /// Deletes the volume's segments numbered `seqs`.
    fn volume_drop_segments<'a>(&'a self, name: &'a str, epoch: u64, seqs: &'a [u64]) -> MasterFuture<'a, ()>;

    /// Grows the volume.
    fn volume_resize<'a>(&'a self, name: &'a str, size_bytes: u64) -> MasterFuture<'a, ()>;

    /// Seals the volume's open segments and freezes it.
    fn volume_freeze<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, ()>;

    /// Deletes the volume and its files.
    fn volume_delete<'a>(&'a self, name: &'a str) -> MasterFuture<'a, ()>;

    /// Every volume's name.
    fn volumes(&self) -> MasterFuture<'_, Vec<String>>;
}

/// Why the master did not do what a file client asked, as data that crosses a transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MasterClientError {
    #[error("no such file {0}")]
    NoSuchFile(FileId),
    #[error("file {0} is sealed")]
    FileSealed(FileId),
    #[error("chunk {0} is not sealed: seal it before adding the next one")]
    ChunkOpen(ChunkId),
    #[error("cannot place a new chunk: {0}")]
    Placement(PlacementError),
    #[error("no chunkserver could create the chunk ({0})")]
    Create(String),
    #[error("chunk {chunk} is sealed at {len} bytes")]
    ChunkSealed { chunk: ChunkId, len: u64 },
    /// The volume registry refused the call.
    #[error(transparent)]
    Volume(VolumeError),
    /// The master cannot serve the call now: its store failed, it is shutting down, or
    /// (across a network) it cannot be reached. A later call may succeed.
    #[error("the pangu master is unavailable: {0}")]
    Unavailable(String),
}

impl From<MasterError> for MasterClientError {
    fn from(e: MasterError) -> MasterClientError {
        match e {
            MasterError::NoSuchFile(file) => MasterClientError::NoSuchFile(file),
            MasterError::FileSealed(file) => MasterClientError::FileSealed(file),
            MasterError::ChunkOpen(chunk) => MasterClientError::ChunkOpen(chunk),
            MasterError::Placement(e) => MasterClientError::Placement(e),
            MasterError::Create(e) => MasterClientError::Create(e),
            MasterError::ChunkSealed { chunk, len } => MasterClientError::ChunkSealed { chunk, len },
            MasterError::Volume(e) => MasterClientError::Volume(e),
            e @ (MasterError::UnknownServer(_)
            | MasterError::Fence { .. }
            | MasterError::Forbidden(_)
            | MasterError::Store(_)
            | MasterError::Gone) => MasterClientError::Unavailable(e.to_string()),
        }
    }
}

/// The in-process transport: calls on the master itself.
impl MasterClient for Master {
    fn create_file(&self) -> MasterFuture<'_, FileId> {
        Box::pin(async move { Ok(Master::create_file(self).await?) })
    }

    fn delete_file(&self, file: FileId) -> MasterFuture<'_, ()> {
        Box::pin(async move { Ok(Master::delete_file(self, file).await?) })
    }

    fn files(&self) -> MasterFuture<'_, Vec<FileId>> {
        Box::pin(async move { Ok(Master::files(self)) })
    }

    fn layout(&self, file: FileId) -> MasterFuture<'_, FileLayout> {
        Box::pin(async move { Ok(Master::layout(self, file)?) })
    }

    fn allocate_chunk<'a>(&'a self, file: FileId, exclude: &'a [ServerId]) -> MasterFuture<'a, ChunkLocation> {
        Box::pin(async move { Ok(Master::allocate_chunk(self, file, exclude).await?) })
    }

    fn chunk_sealed<'a>(&'a self, chunk: ChunkId, len: u64, failed: &'a [ServerId]) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::chunk_sealed(self, chunk, len, failed).await?) })
    }

    fn seal_file(&self, file: FileId, len: u64) -> MasterFuture<'_, ()> {
        Box::pin(async move { Ok(Master::seal_file(self, file, len).await?) })
    }

    fn writer_gone(&self, chunk: ChunkId) {
        Master::writer_gone(self, chunk)
    }

    fn report_corrupt(&self, chunk: ChunkId, server: ServerId) -> MasterFuture<'_, ()> {
        Box::pin(async move {
            Master::report_corrupt(self, chunk, server);
            Ok(())
        })
    }

    fn volume_create<'a>(&'a self, name: &'a str, size_bytes: u64, parent: Option<&'a str>) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::volume_create(self, name, size_bytes, parent).await?) })
    }

    fn volume_acquire<'a>(&'a self, name: &'a str) -> MasterFuture<'a, VolumeLease> {
        Box::pin(async move { Ok(Master::volume_acquire(self, name).await?) })
    }

    fn volume_describe<'a>(&'a self, name: &'a str) -> MasterFuture<'a, VolumeLease> {
        Box::pin(async move { Ok(Master::volume_describe(self, name).await?) })
    }

    fn volume_new_segment<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, (u64, FileId)> {
        Box::pin(async move { Ok(Master::volume_new_segment(self, name, epoch).await?) })
    }

    fn volume_new_checkpoint_file<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, FileId> {
        Box::pin(async move { Ok(Master::volume_new_checkpoint_file(self, name, epoch).await?) })
    }

    fn volume_set_checkpoint<'a>(
        &'a self,
        name: &'a str,
        epoch: u64,
        file: FileId,
        covers_seq: u64,
        covers_offset: u64,
    ) -> MasterFuture<'a, ()> {
        Box::pin(
            async move { Ok(Master::volume_set_checkpoint(self, name, epoch, file, covers_seq, covers_offset).await?) },
        )
    }

    fn volume_add_pin<'a>(
        &'a self,
        name: &'a str,
        epoch: u64,
        pin_name: &'a str,
        file: FileId,
        next_seq: u64,
        size_bytes: u64,
    ) -> MasterFuture<'a, VolumePin> {
        Box::pin(
            async move { Ok(Master::volume_add_pin(self, name, epoch, pin_name, file, next_seq, size_bytes).await?) },
        )
    }

    fn volume_release_pin<'a>(&'a self, name: &'a str, pin_name: &'a str) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::volume_release_pin(self, name, pin_name).await?) })
    }

    fn volume_drop_segments<'a>(&'a self, name: &'a str, epoch: u64, seqs: &'a [u64]) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::volume_drop_segments(self, name, epoch, seqs).await?) })
    }

    fn volume_resize<'a>(&'a self, name: &'a str, size_bytes: u64) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::volume_resize(self, name, size_bytes).await?) })
    }

    fn volume_freeze<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::volume_freeze(self, name, epoch).await?) })
    }

    fn volume_delete<'a>(&'a self, name: &'a str) -> MasterFuture<'a, ()> {
        Box::pin(async move { Ok(Master::volume_delete(self, name).await?) })
    }

    fn volumes(&self) -> MasterFuture<'_, Vec<String>> {
        Box::pin(async move { Ok(Master::volumes(self)) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use feitian_meta::Store;
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::chunkserver::DEFAULT_FLOW;
    use crate::client::{Pangu, PanguError};
    use crate::master::{self, MasterConfig};
    use crate::node::{self, NodeConfig};

    /// Through JSON and back, as a network transport would carry it.
    fn hop<T: Serialize + DeserializeOwned>(value: &T) -> T {
        carry(value)
    }

    /// Through JSON into its owned form (borrowed arguments arrive owned).
    fn carry<A: Serialize + ?Sized, B: DeserializeOwned>(value: &A) -> B {
        serde_json::from_slice(&serde_json::to_vec(value).expect("encodes")).expect("decodes")
    }

    /// A master client that carries every argument and answer (errors included) through
    /// JSON on its way to and from the in-process master, and counts the calls.
    struct JsonHop {
        master: Arc<Master>,
        calls: AtomicUsize,
    }

    impl JsonHop {
        fn inner(&self) -> &dyn MasterClient {
            self.calls.fetch_add(1, Ordering::Relaxed);
            &*self.master
        }
    }

    async fn answer<T: Serialize + DeserializeOwned>(call: MasterFuture<'_, T>) -> Result<T, MasterClientError> {
        hop(&call.await)
    }

    impl MasterClient for JsonHop {
        fn create_file(&self) -> MasterFuture<'_, FileId> {
            Box::pin(answer(self.inner().create_file()))
        }

        fn delete_file(&self, file: FileId) -> MasterFuture<'_, ()> {
            Box::pin(answer(self.inner().delete_file(hop(&file))))
        }

        fn files(&self) -> MasterFuture<'_, Vec<FileId>> {
            Box::pin(answer(self.inner().files()))
        }

        fn layout(&self, file: FileId) -> MasterFuture<'_, FileLayout> {
            Box::pin(answer(self.inner().layout(hop(&file))))
        }

        fn allocate_chunk<'a>(&'a self, file: FileId, exclude: &'a [ServerId]) -> MasterFuture<'a, ChunkLocation> {
            Box::pin(async move {
                let exclude: Vec<ServerId> = hop(&exclude.to_vec());
                answer(self.inner().allocate_chunk(hop(&file), &exclude)).await
            })
        }

        fn chunk_sealed<'a>(&'a self, chunk: ChunkId, len: u64, failed: &'a [ServerId]) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let failed: Vec<ServerId> = hop(&failed.to_vec());
                answer(self.inner().chunk_sealed(hop(&chunk), len, &failed)).await
            })
        }

        fn seal_file(&self, file: FileId, len: u64) -> MasterFuture<'_, ()> {
            Box::pin(answer(self.inner().seal_file(hop(&file), len)))
        }

        fn writer_gone(&self, chunk: ChunkId) {
            self.inner().writer_gone(hop(&chunk))
        }

        fn report_corrupt(&self, chunk: ChunkId, server: ServerId) -> MasterFuture<'_, ()> {
            Box::pin(answer(self.inner().report_corrupt(hop(&chunk), hop(&server))))
        }

        fn volume_create<'a>(
            &'a self,
            name: &'a str,
            size_bytes: u64,
            parent: Option<&'a str>,
        ) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let (name, parent): (String, Option<String>) = carry(&(name, parent));
                answer(self.inner().volume_create(&name, size_bytes, parent.as_deref())).await
            })
        }

        fn volume_acquire<'a>(&'a self, name: &'a str) -> MasterFuture<'a, VolumeLease> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_acquire(&name)).await
            })
        }

        fn volume_describe<'a>(&'a self, name: &'a str) -> MasterFuture<'a, VolumeLease> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_describe(&name)).await
            })
        }

        fn volume_new_segment<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, (u64, FileId)> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_new_segment(&name, epoch)).await
            })
        }

        fn volume_new_checkpoint_file<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, FileId> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_new_checkpoint_file(&name, epoch)).await
            })
        }

        fn volume_set_checkpoint<'a>(
            &'a self,
            name: &'a str,
            epoch: u64,
            file: FileId,
            covers_seq: u64,
            covers_offset: u64,
        ) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_set_checkpoint(&name, epoch, hop(&file), covers_seq, covers_offset)).await
            })
        }

        fn volume_add_pin<'a>(
            &'a self,
            name: &'a str,
            epoch: u64,
            pin_name: &'a str,
            file: FileId,
            next_seq: u64,
            size_bytes: u64,
        ) -> MasterFuture<'a, VolumePin> {
            Box::pin(async move {
                let (name, pin_name): (String, String) = carry(&(name, pin_name));
                answer(self.inner().volume_add_pin(&name, epoch, &pin_name, hop(&file), next_seq, size_bytes)).await
            })
        }

        fn volume_release_pin<'a>(&'a self, name: &'a str, pin_name: &'a str) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let (name, pin_name): (String, String) = carry(&(name, pin_name));
                answer(self.inner().volume_release_pin(&name, &pin_name)).await
            })
        }

        fn volume_drop_segments<'a>(&'a self, name: &'a str, epoch: u64, seqs: &'a [u64]) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let (name, seqs): (String, Vec<u64>) = carry(&(name, seqs));
                answer(self.inner().volume_drop_segments(&name, epoch, &seqs)).await
            })
        }

        fn volume_resize<'a>(&'a self, name: &'a str, size_bytes: u64) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_resize(&name, size_bytes)).await
            })
        }

        fn volume_freeze<'a>(&'a self, name: &'a str, epoch: u64) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_freeze(&name, epoch)).await
            })
        }

        fn volume_delete<'a>(&'a self, name: &'a str) -> MasterFuture<'a, ()> {
            Box::pin(async move {
                let name: String = carry(&name);
                answer(self.inner().volume_delete(&name)).await
            })
        }

        fn volumes(&self) -> MasterFuture<'_, Vec<String>> {
            Box::pin(answer(self.inner().volumes()))
        }
    }

    fn data(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add((i >> 12) as u8)).collect::<Vec<u8>>())
    }

    /// The file client needs nothing of the master but the trait, and nothing it sends or
    /// gets back is lost in a transport's encoding: a file written across chunks through
    /// [`JsonHop`] reads back whole, and the master's refusals arrive as typed errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_client_works_through_the_trait_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MasterConfig::new(1);
        config.chunk_size = 1 << 20;
        config.tick = Duration::from_millis(100);
        let master = Master::open(Store::open_in_memory().unwrap(), config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master_addr = listener.local_addr().unwrap().to_string();
        let router = master::router(master.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        tokio::spawn(master.clone().run(std::future::pending()));
        let _node = node::start_beside(
            &master,
            NodeConfig {
                master: master_addr,
                dir: dir.path().to_path_buf(),
                rack: "r".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
                advertise: None,
                capacity_bytes: 1 << 32,
                flow: DEFAULT_FLOW,
                heartbeat: Duration::from_millis(100),
                scrub: None,
                secret: master.config().secret.clone(),
            },
            std::future::pending(),
        )
        .await
        .unwrap();
        let hop = Arc::new(JsonHop { master: master.clone(), calls: AtomicUsize::new(0) });
        let pangu = Pangu::new(hop.clone(), master.chunk_clients().clone());

        let body = data((5 << 20) / 2);
        let mut w = pangu.create().await.unwrap();
        let file = w.id();
        assert_eq!(w.append(body.slice(..1000)).await.unwrap(), 0);
        assert_eq!(w.append(body.slice(1000..)).await.unwrap(), 1000);
        assert_eq!(w.seal().await.unwrap(), body.len() as u64);
        assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
        let across = (1 << 20) - 10..(1 << 20) + 10;
        assert_eq!(pangu.read(file, across.start as u64, 20).await.unwrap(), body.slice(across));
        assert_eq!(pangu.files().await.unwrap(), vec![file]);
        assert_eq!(master.layout(file).unwrap().chunks.len(), 3);

        // A writer dropped unsealed hands its chunk to the master through the trait (a chunk
        // still held by its writer would never be sealed).
        let mut dropped = pangu.create().await.unwrap();
        dropped.append(body.slice(..10)).await.unwrap();
        drop(dropped);
        for _ in 0..100 {
            if master.status().unsealed == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(master.status().unsealed, 0, "the master sealed the chunk of the gone writer");

        pangu.delete(file).await.unwrap();
        match pangu.read(file, 0, 1).await {
            Err(PanguError::Master(MasterClientError::NoSuchFile(f))) => assert_eq!(f, file),
            other => panic!("expected NoSuchFile, got {other:?}"),
        }

        // The volume registry, through the trait: a clone of a frozen base, its segments and
        // checkpoint, and the refusals as typed errors.
        pangu.volume_create("img-hop", 1 << 20, None).await.unwrap();
        let base = pangu.volume_acquire("img-hop").await.unwrap();
        let (seq, mut w) = pangu.volume_new_segment("img-hop", base.epoch).await.unwrap();
        w.append(body.slice(..5000)).await.unwrap();
        pangu.volume_freeze("img-hop", base.epoch).await.unwrap();
        pangu.volume_create("d-hop", 1 << 20, Some("img-hop")).await.unwrap();
        pangu.volume_resize("d-hop", 2 << 20).await.unwrap();
        let lease = pangu.volume_acquire("d-hop").await.unwrap();
        let (_, mut seg) = pangu.volume_new_segment("d-hop", lease.epoch).await.unwrap();
        seg.append(body.slice(..10)).await.unwrap();
        let mut cp = pangu.volume_new_checkpoint_file("d-hop", lease.epoch).await.unwrap();
        cp.append(body.slice(..20)).await.unwrap();
        let cp_file = cp.id();
        cp.seal().await.unwrap();
        pangu.volume_set_checkpoint("d-hop", lease.epoch, cp_file, 0, 10).await.unwrap();
        pangu.volume_drop_segments("d-hop", lease.epoch, &[0]).await.unwrap();
        let described = pangu.volume_describe("img-hop").await.unwrap();
        assert!(described.frozen);
        assert_eq!((described.segments[0].seq, described.segments[0].len), (seq, 5000));
        let clone = pangu.volume_describe("d-hop").await.unwrap();
        assert_eq!((clone.size_bytes, clone.parent.as_deref(), clone.segments.len()), (2 << 20, Some("img-hop"), 0));
        assert_eq!(clone.checkpoint.map(|c| (c.file, c.covers_offset)), Some((cp_file, 10)));
        assert_eq!(pangu.volumes().await.unwrap(), ["d-hop", "img-hop"]);
        match pangu.volume_delete("img-hop").await {
            Err(PanguError::Master(MasterClientError::Volume(VolumeError::VolumeInUse { clone, .. }))) => {
                assert_eq!(clone, "d-hop")
            }
            other => panic!("expected VolumeInUse, got {other:?}"),
        }
        pangu.volume_delete("d-hop").await.unwrap();
        pangu.volume_delete("img-hop").await.unwrap();
        assert!(hop.calls.load(Ordering::Relaxed) >= 10);
    }

    #[test]
    fn the_masters_errors_cross_as_data() {
        let placement = PlacementError::NotEnoughServers {
            wanted: 3,
            usable: 1,
            chunk_size: 64,
            excluded: 0,
            dead: 2,
            draining: 0,
            full: 0,
        };
        for (from, to) in [
            (MasterError::NoSuchFile(FileId(7)), MasterClientError::NoSuchFile(FileId(7))),
            (MasterError::ChunkOpen(ChunkId(u64::MAX)), MasterClientError::ChunkOpen(ChunkId(u64::MAX))),
            (MasterError::Placement(placement.clone()), MasterClientError::Placement(placement)),
            (MasterError::Gone, MasterClientError::Unavailable("the master is shutting down".into())),
            (
                MasterError::ChunkSealed { chunk: ChunkId(3), len: 9 },
                MasterClientError::ChunkSealed { chunk: ChunkId(3), len: 9 },
            ),
            (
                MasterError::Volume(VolumeError::StaleEpoch { volume: "d-1".into(), current: 4 }),
                MasterClientError::Volume(VolumeError::StaleEpoch { volume: "d-1".into(), current: 4 }),
            ),
        ] {
            let message = from.to_string();
            let carried = hop(&MasterClientError::from(from));
            assert_eq!(carried, to);
            if !matches!(carried, MasterClientError::Unavailable(_)) {
                assert_eq!(carried.to_string(), message, "the message is the master's");
            }
        }
    }
}
