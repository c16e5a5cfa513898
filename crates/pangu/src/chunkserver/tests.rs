//! The chunkserver and its client together, over real sockets on 127.0.0.1 and real
//! (temporary) directories.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::chunk::BLOCK_SIZE;
use crate::chunk_client::{ChunkClient, ChunkClientError};

const ID: ChunkId = ChunkId(0x00c0_ffee);

/// A chunkserver running on its own listener until dropped (or `stop`ped).
struct Running {
    addr: SocketAddr,
    client: ChunkClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start(dir: &Path) -> Running {
        let config = ChunkServerConfig {
            dir: dir.to_path_buf(),
            server_id: ServerId(7),
            rack: "rack-a".to_string(),
            capacity_bytes: 1 << 30,
            flow: super::DEFAULT_FLOW,
        };
        let server = tokio::task::spawn_blocking(move || ChunkServer::open(config)).await.unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.serve_until(listener, async {
            let _ = stopped.await;
        }));
        Running { addr, client: ChunkClient::new(addr.to_string()), stop: Some(stop), task }
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Drop our keep-alive connections so that the graceful shutdown can finish.
        drop(self.client);
        self.task.await.unwrap().unwrap();
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn refusal(result: Result<impl std::fmt::Debug, ChunkClientError>) -> (ErrorCode, ErrorBody) {
    match result {
        Err(ChunkClientError::Server { code, body, .. }) => (code, body),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_append_read_round_trip_across_blocks() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = &server.client;

    let info = c.create(ID, 1 << 20).await.unwrap();
    assert_eq!((info.id, info.len, info.max_size, info.sealed), (ID, 0, 1 << 20, false));

    let a = pattern(100_000, 1);
    let b = pattern(70_000, 2);
    assert_eq!(c.append(ID, 0, Bytes::from(a.clone())).await.unwrap(), 100_000);
    assert_eq!(c.append(ID, 100_000, Bytes::from(b.clone())).await.unwrap(), 170_000);
    let all = [a, b].concat();

    let b64 = BLOCK_SIZE as usize;
    for (offset, len) in [(0, 170_000), (b64 - 10, 20), (b64, b64), (99_990, 20), (169_999, 1), (5, 0)] {
        let got = c.read(ID, offset as u64, len as u64).await.unwrap();
        assert_eq!(&got[..], &all[offset..offset + len], "range {offset}+{len}");
    }

    let (code, body) = refusal(c.read(ID, 169_000, 2_000).await);
    assert_eq!((code, body.chunk_len), (ErrorCode::OutOfRange, Some(170_000)));

    assert_eq!(c.seal(ID, None).await.unwrap(), 170_000);
    assert_eq!(c.seal(ID, None).await.unwrap(), 170_000, "a retried seal is harmless");
    let (code, _) = refusal(c.append(ID, 170_000, Bytes::from_static(b"more")).await);
    assert_eq!(code, ErrorCode::ChunkSealed);

    let list = c.list().await.unwrap();
    assert_eq!(list, vec![ChunkInfo { id: ID, len: 170_000, max_size: 1 << 20, sealed: true }]);
    let status = c.status().await.unwrap();
    assert_eq!((status.server_id, status.rack.as_str()), (7, "rack-a"));
    assert_eq!((status.used_bytes, status.free_bytes, status.chunks), (170_000, (1 << 30) - 170_000, 1));
    server.stop().await;
}

#[tokio::test]
async fn retried_append_with_the_same_bytes_is_ok_and_different_bytes_are_refused() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = &server.client;
    c.create(ID, 1 << 20).await.unwrap();

    let data = Bytes::from(pattern(80_000, 3));
    assert_eq!(c.append(ID, 0, data.clone()).await.unwrap(), 80_000);
    assert_eq!(c.append(ID, 0, data.clone()).await.unwrap(), 80_000, "retry of a committed append");

    let (code, _) = refusal(c.append(ID, 0, Bytes::from(pattern(80_000, 4))).await);
    assert_eq!(code, ErrorCode::RetryMismatch);
    assert_eq!(&c.read(ID, 0, 80_000).await.unwrap()[..], &data[..]);
    server.stop().await;
}

#[tokio::test]
async fn offset_and_checksum_mismatches_are_refused_and_write_nothing() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = &server.client;
    c.create(ID, 1 << 20).await.unwrap();
    c.append(ID, 0, Bytes::from_static(b"hello")).await.unwrap();

    let result = c.append(ID, 9, Bytes::from_static(b"world")).await;
    let Err(ChunkClientError::Server { status, code, body, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code, body.chunk_len), (409, ErrorCode::OffsetMismatch, Some(5)));

    let data = Bytes::from_static(b"world");
    let wrong = checksum(&data) ^ 1;
    let result = c.append_with_checksum(ID, 5, data, wrong).await;
    let Err(ChunkClientError::Server { status, code, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code), (400, ErrorCode::ChecksumMismatch));

    assert_eq!(c.list().await.unwrap()[0].len, 5, "nothing was written");
    assert_eq!(&c.read(ID, 0, 5).await.unwrap()[..], b"hello");
    let (code, _) = refusal(c.read(ID, 0, 6).await);
    assert_eq!(code, ErrorCode::OutOfRange);
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_4xx_with_codes() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = &server.client;

    let result = c.read(ChunkId(42), 0, 1).await;
    let Err(ChunkClientError::Server { status, code, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code), (404, ErrorCode::ChunkNotFound));

    let (code, _) = refusal(c.create(ID, 0).await);
    assert_eq!(code, ErrorCode::InvalidMaxSize);
    c.create(ID, 100).await.unwrap();
    let (code, _) = refusal(c.create(ID, 100).await);
    assert_eq!(code, ErrorCode::ChunkAlreadyExists);
    let (code, body) = refusal(c.append(ID, 0, Bytes::from(vec![0u8; 101])).await);
    assert_eq!((code, body.chunk_len), (ErrorCode::ChunkFull, Some(0)));
    let (code, _) = refusal(c.seal(ID, Some(1)).await);
    assert_eq!(code, ErrorCode::SealBeyondEnd);

    // Raw requests a typed client would never send.
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    for (method, path, header, want) in [
        ("GET", "/chunks/not-hex", None, (400, ErrorCode::InvalidChunkId)),
        ("POST", "/chunks/c0ffee/append", Some("1"), (400, ErrorCode::InvalidParameter)),
        ("POST", "/chunks/c0ffee/append?offset=0", None, (400, ErrorCode::InvalidParameter)),
        ("POST", "/chunks/c0ffee/append?offset=0", Some("x"), (400, ErrorCode::InvalidParameter)),
        ("POST", "/chunks/c0ffee/seal?len=-1", None, (400, ErrorCode::InvalidParameter)),
        ("POST", "/chunks/c0ffee/replicate?len=1", None, (400, ErrorCode::InvalidParameter)),
    ] {
        let mut request = hyper::Request::builder().method(method).uri(format!("http://{}{path}", server.addr));
        if let Some(crc) = header {
            request = request.header(CRC32C_HEADER, crc);
        }
        let response = http.request(request.body(http_body_util::Full::new(Bytes::new())).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, body.code), want, "{method} {path}: {}", body.message);
    }

    // Delete, then delete again (harmless), then the chunk is gone.
    c.delete(ID).await.unwrap();
    c.delete(ID).await.unwrap();
    let (code, _) = refusal(c.read(ID, 0, 0).await);
    assert_eq!(code, ErrorCode::ChunkNotFound);
    assert!(c.list().await.unwrap().is_empty());
    assert!(!dir.path().join(format!("{ID}.meta")).exists());
    server.stop().await;
}

#[tokio::test]
async fn a_flipped_byte_is_reported_never_served_and_listed_as_corrupt() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = &server.client;
    c.create(ID, 1 << 20).await.unwrap();
    let data = pattern(200_000, 5);
    c.append(ID, 0, Bytes::from(data.clone())).await.unwrap();
    assert!(c.corrupt().await.unwrap().is_empty());

    // Flip one byte of block 1 on disk.
    let file = OpenOptions::new().read(true).write(true).open(dir.path().join(format!("{ID}.chunk"))).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 70_000).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], 70_000).unwrap();

    let result = c.read(ID, 0, 200_000).await;
    let Err(ChunkClientError::Server { status, code, body, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code, body.block_index), (409, ErrorCode::ChunkCorrupt, Some(1)));
    // Other blocks still read.
    assert_eq!(&c.read(ID, 0, 1_000).await.unwrap()[..], &data[..1_000]);

    let corrupt = c.corrupt().await.unwrap();
    assert_eq!(corrupt.len(), 1);
    assert_eq!(corrupt[0].id, ID);
    assert!(corrupt[0].reason.contains("block 1"), "{}", corrupt[0].reason);
    assert_eq!(c.status().await.unwrap().corrupt_chunks, 1);

    // Deleting the bad replica clears it from the list.
    c.delete(ID).await.unwrap();
    assert!(c.corrupt().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn replicate_copies_a_sealed_chunk_with_identical_verified_bytes() {
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = Running::start(dir_a.path()).await;
    let b = Running::start(dir_b.path()).await;

    // More than one replication read (4 MiB), ending mid-block.
    let len = REPLICATE_READ_BYTES as usize + 3 * BLOCK_SIZE as usize + 12_345;
    let data = pattern(len, 6);
    a.client.create(ID, 8 << 20).await.unwrap();
    let mut offset = 0;
    for piece in data.chunks(1 << 20) {
        offset = a.client.append(ID, offset, Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert_eq!(a.client.seal(ID, None).await.unwrap(), len as u64);

    let from = a.addr.to_string();
    assert_eq!(b.client.replicate(ID, &from, len as u64).await.unwrap(), len as u64);
    assert_eq!(&b.client.read(ID, 0, len as u64).await.unwrap()[..], &data[..]);
    let info = &b.client.list().await.unwrap()[0];
    assert_eq!((info.id, info.len, info.sealed), (ID, len as u64, true));
    // A retried replicate of a finished copy is harmless.
    assert_eq!(b.client.replicate(ID, &from, len as u64).await.unwrap(), len as u64);

    // A source that does not have the chunk, or is not there at all: a 502 with its code.
    let (code, _) = refusal(b.client.replicate(ChunkId(9), &from, 10).await);
    assert_eq!(code, ErrorCode::ReplicationSourceFailed);
    // The failed copy left no replica behind.
    let ids: Vec<_> = b.client.list().await.unwrap().iter().map(|i| i.id).collect();
    assert_eq!(ids, vec![ID]);
    let result = b.client.replicate(ChunkId(10), "127.0.0.1:1", 10).await;
    let Err(ChunkClientError::Server { status, code, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code), (502, ErrorCode::ReplicationSourceFailed));

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_byte() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let (open, sealed) = (ChunkId(1), ChunkId(2));
    let c = server.client.clone();
    c.create(open, 1 << 20).await.unwrap();
    c.create(sealed, 1 << 20).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..5u8 {
        let piece = pattern(30_000 + i as usize, i);
        c.append(open, expected.len() as u64, Bytes::from(piece.clone())).await.unwrap();
        expected.extend_from_slice(&piece);
    }
    c.append(sealed, 0, Bytes::from(pattern(1_000, 9))).await.unwrap();
    c.seal(sealed, Some(600)).await.unwrap();
    drop(c);
    server.stop().await;

    // A chunk whose metadata is garbage: listed as corrupt at start, not fatal.
    std::fs::write(dir.path().join(format!("{}.meta", ChunkId(3))), b"not a chunk").unwrap();
    std::fs::write(dir.path().join(format!("{}.chunk", ChunkId(3))), b"").unwrap();

    let server = Running::start(dir.path()).await;
    let c = &server.client;
    assert_eq!(&c.read(open, 0, expected.len() as u64).await.unwrap()[..], &expected[..]);
    assert_eq!(&c.read(sealed, 0, 600).await.unwrap()[..], &pattern(1_000, 9)[..600]);
    let list = c.list().await.unwrap();
    let summary: Vec<_> = list.iter().map(|i| (i.id, i.len, i.sealed)).collect();
    assert_eq!(summary, vec![(open, expected.len() as u64, false), (sealed, 600, true)]);
    // The open chunk takes appends where it left off.
    let end = expected.len() as u64;
    assert_eq!(c.append(open, end, Bytes::from_static(b"tail")).await.unwrap(), end + 4);

    let corrupt = c.corrupt().await.unwrap();
    assert_eq!(corrupt.iter().map(|x| x.id).collect::<Vec<_>>(), vec![ChunkId(3)]);
    let result = c.read(ChunkId(3), 0, 0).await;
    let Err(ChunkClientError::Server { status, code, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code), (409, ErrorCode::ChunkCorrupt));
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = ChunkClient::new(addr.to_string()).status().await;
    assert!(result.as_ref().is_err_and(ChunkClientError::is_transport), "{result:?}");
}

#[tokio::test]
async fn concurrent_reads_and_appends_on_one_chunk() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = server.client.clone();
    c.create(ID, 4 << 20).await.unwrap();
    c.append(ID, 0, Bytes::from(pattern(100_000, 1))).await.unwrap();

    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut end = 100_000;
            for i in 0..20u8 {
                end = c.append(ID, end, Bytes::from(pattern(10_000, i))).await.unwrap();
            }
            end
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    assert_eq!(&c.read(ID, 0, 100_000).await.unwrap()[..], &pattern(100_000, 1)[..]);
                }
            })
        })
        .collect();
    assert_eq!(writer.await.unwrap(), 300_000);
    for reader in readers {
        reader.await.unwrap();
    }
    drop(c);
    server.stop().await;
}

#[test]
fn query_strings_decode() {
    let q = Query::parse(Some("from=127.0.0.1%3A8080&len=5&flag&x=a+b%zz"));
    assert_eq!(q.get("from"), Some("127.0.0.1:8080"));
    assert_eq!(q.required_u64("len").ok(), Some(5));
    assert_eq!(q.get("flag"), Some(""));
    assert_eq!(q.get("x"), Some("a b%zz"));
    assert!(q.optional_u64("x").is_err());
    assert!(q.required("missing").is_err());
    assert_eq!(percent_decode("%4"), "%4");
}
