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
use crate::auth::{RequestFacts, TokenIssuer, AUTHORIZATION};
use crate::chunk::BLOCK_SIZE;
use crate::chunk_client::{ChunkClient, ChunkClientError};

const ID: ChunkId = ChunkId(0x00c0_ffee);
const SERVER: ServerId = ServerId(7);

/// The cluster's secret and the master's key, shared by every server of these tests.
fn keys() -> (Keyring, TokenIssuer) {
    let secret = crate::auth::Secret::from_hex(&"c5".repeat(32)).unwrap();
    let master = crate::auth::Secret::from_hex(&"3a".repeat(32)).unwrap();
    (Keyring::single(secret), TokenIssuer::new(master))
}

/// What the master signs its orders to [`SERVER`] with.
fn master_credentials() -> Credentials {
    let (secret, issuer) = keys();
    Credentials::server(SERVER, &issuer.token(SERVER), &secret)
}

/// What any member of the cluster signs with.
fn cluster_credentials() -> Credentials {
    Credentials::cluster(&keys().0)
}

/// A chunkserver running on its own listener until dropped (or `stop`ped).
struct Running {
    addr: SocketAddr,
    /// Signs as the master does to this server: everything is allowed.
    client: ChunkClient,
    /// Signs with the cluster secret: a member that is not the master.
    member: ChunkClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start(dir: &Path) -> Running {
        Running::start_with(dir, crate::serve::DEFAULT_LIMITS).await
    }

    async fn start_with(dir: &Path, limits: crate::serve::Limits) -> Running {
        let (secret, issuer) = keys();
        let config = ChunkServerConfig {
            dir: dir.to_path_buf(),
            server_id: SERVER,
            rack: "rack-a".to_string(),
            capacity_bytes: 1 << 30,
            flow: super::DEFAULT_FLOW,
            secret,
            token: issuer.token(SERVER),
        };
        let server = tokio::task::spawn_blocking(move || ChunkServer::open(config)).await.unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.serve_with(listener, limits, async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            client: ChunkClient::new(addr.to_string(), master_credentials()),
            member: ChunkClient::new(addr.to_string(), cluster_credentials()),
            stop: Some(stop),
            task,
        }
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Drop our keep-alive connections so that the graceful shutdown can finish.
        drop(self.client);
        drop(self.member);
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
        let facts =
            RequestFacts { method, path_and_query: path, content_length: 0, crc32c: header.unwrap_or(""), sha256: "" };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", server.addr))
            .header(AUTHORIZATION, master_credentials().authorization(&facts));
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
    let result = ChunkClient::new(addr.to_string(), cluster_credentials()).status().await;
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

// ---- authentication: the attacks of issue 14, each refused -----------------------------

/// One HTTP/1.1 exchange on a fresh connection: `request` is written as is (nothing more),
/// then the answer is read up to the end of its body: its status and body.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let status = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if answer.len() >= end + 4 + len {
                return (status, answer[end + 4..end + 4 + len].to_vec());
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "the connection closed without a whole answer: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
}

/// A request's head and body, signed with `credentials` (or not at all) at `now_ms`.
fn raw_request(method: &str, path: &str, crc: Option<u32>, body: &[u8], sign: Option<(&Credentials, u64)>) -> Vec<u8> {
    let crc = crc.map(|c| c.to_string());
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n", body.len());
    if let Some(crc) = &crc {
        head += &format!("{CRC32C_HEADER}: {crc}\r\n");
    }
    if let Some((credentials, now)) = sign {
        let facts = RequestFacts {
            method,
            path_and_query: path,
            content_length: body.len() as u64,
            crc32c: crc.as_deref().unwrap_or(""),
            sha256: "",
        };
        head += &format!("{AUTHORIZATION}: {}\r\n", credentials.authorization_at(&facts, now, rand::random()));
    }
    head += "connection: close\r\n\r\n";
    [head.as_bytes(), body].concat()
}

fn code_of(body: &[u8]) -> ErrorCode {
    serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(body))).code
}

#[tokio::test]
async fn without_the_secret_nobody_reads_writes_lists_or_deletes_a_replica() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let c = &server.client;
    let secret = b"a private object's bytes";
    c.create(ID, 1 << 20).await.unwrap();
    c.append(ID, 0, Bytes::from_static(secret)).await.unwrap();
    let other = ChunkId(0xbad);
    let junk = vec![0x55u8; 4096];
    let id = format!("{ID}");
    let n = secret.len();
    let routes: Vec<(&str, String, Option<u32>, &[u8])> = vec![
        // Before: 200 and the bytes.
        ("GET", format!("/chunks/{id}?offset=0&len=10"), None, b""),
        ("GET", "/chunks".into(), None, b""),
        // Before: 204, and the object was unrecoverable.
        ("DELETE", format!("/chunks/{id}"), None, b""),
        ("POST", format!("/chunks/{id}/seal?len=1"), None, b""),
        // Before: a new replica and bytes on disk (filling it).
        ("POST", format!("/chunks/{other}?max_size=1048576"), None, b""),
        ("POST", format!("/chunks/{id}/append?offset={n}"), Some(checksum(&junk)), &junk),
        // Before: a connection to any host named.
        ("POST", format!("/chunks/{other}/replicate?from=127.0.0.1:9&len=10"), None, b""),
        ("GET", "/corrupt".into(), None, b""),
        ("GET", "/status".into(), None, b""),
    ];
    let wrong = Credentials::cluster(&Keyring::generate());
    for (method, path, crc, body) in &routes {
        for sign in [None, Some((&wrong, crate::auth::now_ms()))] {
            let (status, answer) = raw_exchange(server.addr, &raw_request(method, path, *crc, body, sign)).await;
            assert_eq!(
                (status, code_of(&answer)),
                (401, ErrorCode::Unauthenticated),
                "{method} {path} {}",
                sign.is_some()
            );
            assert!(!answer.windows(10).any(|w| w == &secret[..10]), "no byte of the replica in a refusal");
        }
    }
    // Nothing changed: the one replica, its bytes, unsealed; nothing else was created.
    assert_eq!(c.list().await.unwrap(), vec![ChunkInfo { id: ID, len: n as u64, max_size: 1 << 20, sealed: false }]);
    assert_eq!(&c.read(ID, 0, n as u64).await.unwrap()[..], secret);
    assert!(!dir.path().join(format!("{other}.meta")).exists());
    // The same requests signed with the secret are served (the old behaviour, for members).
    let member = cluster_credentials();
    let (status, answer) =
        raw_exchange(server.addr, &raw_request("GET", &routes[0].1, None, b"", Some((&member, crate::auth::now_ms()))))
            .await;
    assert_eq!((status, &answer[..]), (200, &secret[..10]));
    server.stop().await;
}

#[tokio::test]
async fn only_the_master_orders_creates_deletes_and_replicates() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    server.client.create(ID, 1 << 20).await.unwrap();
    let m = &server.member;
    // A member's data calls are served ...
    assert_eq!(m.append(ID, 0, Bytes::from_static(b"hello")).await.unwrap(), 5);
    assert_eq!(&m.read(ID, 0, 5).await.unwrap()[..], b"hello");
    assert_eq!(m.list().await.unwrap().len(), 1);
    assert_eq!(m.status().await.unwrap().chunks, 1);
    // ... its orders are not: they are the master's, signed with this server's key.
    let (code, _) = refusal(m.create(ChunkId(2), 100).await);
    assert_eq!(code, ErrorCode::Forbidden);
    let result = m.delete(ID).await;
    let Err(ChunkClientError::Server { status, code, .. }) = result else { panic!("{result:?}") };
    assert_eq!((status, code), (403, ErrorCode::Forbidden));
    assert_eq!(&m.read(ID, 0, 5).await.unwrap()[..], b"hello", "the replica is still there");
    let (code, _) = refusal(m.replicate(ChunkId(3), &server.addr.to_string(), 5).await);
    assert_eq!(code, ErrorCode::Forbidden);
    // Another server's key is not this server's.
    let (secret, issuer) = keys();
    let eight = ChunkClient::new(
        server.addr.to_string(),
        Credentials::server(ServerId(8), &issuer.token(ServerId(8)), &secret),
    );
    let (code, _) = refusal(eight.delete(ID).await);
    assert_eq!(code, ErrorCode::Unauthenticated);
    assert_eq!(m.list().await.unwrap().iter().map(|i| i.id).collect::<Vec<_>>(), vec![ID]);
    server.stop().await;
}

#[tokio::test]
async fn a_replicate_from_a_host_the_master_did_not_name_never_connects() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let from = attacker.local_addr().unwrap().to_string();
    // Unsigned (before: 502 after connecting to it), and signed by a member.
    let path = format!("/chunks/{}/replicate?from={from}&len=10", ChunkId(5));
    let (status, answer) = raw_exchange(server.addr, &raw_request("POST", &path, None, b"", None)).await;
    assert_eq!((status, code_of(&answer)), (401, ErrorCode::Unauthenticated));
    let (code, _) = refusal(server.member.replicate(ChunkId(5), &from, 10).await);
    assert_eq!(code, ErrorCode::Forbidden);
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(300), attacker.accept()).await;
    assert!(accepted.is_err(), "the chunkserver connected to the attacker's host");
    assert!(server.client.list().await.unwrap().is_empty(), "no replica was created");
    server.stop().await;
}

#[tokio::test]
async fn an_unsigned_append_is_refused_before_its_body_is_read() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    server.client.create(ID, 1 << 20).await.unwrap();
    // A 64 MiB append of which only the head and 1 KiB are sent: the refusal comes without
    // waiting for (or reading) the rest.
    let head = format!(
        "POST /chunks/{ID}/append?offset=0 HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n{CRC32C_HEADER}: 1\r\n\r\n",
        MAX_TRANSFER_BYTES
    );
    let request = [head.as_bytes(), &[0u8; 1024]].concat();
    let (status, answer) = raw_exchange(server.addr, &request).await;
    assert_eq!((status, code_of(&answer)), (401, ErrorCode::Unauthenticated));
    assert_eq!(server.client.list().await.unwrap()[0].len, 0);
    server.stop().await;
}

#[tokio::test]
async fn stale_future_and_replayed_requests_are_refused() {
    let dir = TempDir::new().unwrap();
    let server = Running::start(dir.path()).await;
    let member = cluster_credentials();
    let now = crate::auth::now_ms();
    for at in [now - 20_000, now + 20_000] {
        let (status, answer) =
            raw_exchange(server.addr, &raw_request("GET", "/status", None, b"", Some((&member, at)))).await;
        assert_eq!((status, code_of(&answer)), (401, ErrorCode::RequestExpired));
    }
    // One signed request, captured and sent again: served once.
    let request = raw_request("GET", "/status", None, b"", Some((&member, now)));
    assert_eq!(raw_exchange(server.addr, &request).await.0, 200);
    let (status, answer) = raw_exchange(server.addr, &request).await;
    assert_eq!((status, code_of(&answer)), (401, ErrorCode::RequestReplayed));
    server.stop().await;
}

#[tokio::test]
async fn silent_connections_are_closed_and_connections_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new().unwrap();
    let limits = crate::serve::Limits {
        max_connections: 2,
        header_read_timeout: std::time::Duration::from_millis(300),
        ..crate::serve::DEFAULT_LIMITS
    };
    let server = Running::start_with(dir.path(), limits).await;
    // Two peers take both connections with a head they never finish (slowloris).
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        silent.push(s);
    }
    // A member is still served once their time is up; they are closed.
    assert_eq!(server.member.status().await.unwrap().server_id, SERVER.0);
    for mut s in silent {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await.expect("closed");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    server.stop().await;
}

#[test]
fn free_space_is_the_budget_left_or_what_the_disk_has_left() {
    use super::free_bytes;
    assert_eq!(free_bytes(1000, 300, None), 700, "no file system answer: the budget");
    assert_eq!(free_bytes(1000, 300, Some(10_000)), 700, "a roomy disk: the budget");
    assert_eq!(free_bytes(1000, 300, Some(50)), 50, "a disk something else filled");
    assert_eq!(free_bytes(1000, 1200, Some(50)), 0, "over budget");
    assert_eq!(free_bytes(1000, 0, Some(0)), 0, "a full disk is full");
}

#[test]
fn the_file_system_is_measured() {
    let dir = TempDir::new().unwrap();
    let avail = super::fs_available_bytes(dir.path()).expect("statvfs answers for a directory that exists");
    assert!(avail > 0);
    assert_eq!(super::fs_available_bytes(&dir.path().join("no/such/dir")), None);
}
