//! The master's side of issue 14's attacks, on loopback: before, anyone who reached the
//! master re-registered a known server id at their own address (`POST /pangu/v1/register`)
//! and took its reads and writes until its next heartbeat, again and again. Now every route
//! wants a signature, and moving a server takes that server's own key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use feitian_meta::Store;
use feitian_pangu::auth::layer::sha256_hex;
use feitian_pangu::auth::{now_ms, Credentials, Keyring, RequestFacts, AUTHORIZATION, SHA256_HEADER};
use feitian_pangu::chunkserver::DEFAULT_FLOW;
use feitian_pangu::client::Pangu;
use feitian_pangu::master::{self, HeartbeatRequest, Master, MasterConfig, MasterStatus, RegisterRequest};
use feitian_pangu::node::{self, Node, NodeConfig, NodeError};
use feitian_pangu::placement::ServerId;
use http_body_util::{BodyExt, Full};

struct Cluster {
    master: Arc<Master>,
    addr: String,
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn start(servers: usize) -> Cluster {
        let mut config = MasterConfig::new(servers.min(2));
        config.chunk_size = 1 << 20;
        config.tick = Duration::from_millis(100);
        let master = Master::open(Store::open_in_memory().unwrap(), config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let router = master::router(master.clone());
        tokio::spawn(feitian_pangu::serve::serve(
            listener,
            router,
            feitian_pangu::serve::DEFAULT_LIMITS,
            std::future::pending(),
        ));
        tokio::spawn(master.clone().run(std::future::pending()));
        let mut c = Cluster { master, addr, nodes: Vec::new(), _dirs: Vec::new() };
        for i in 0..servers {
            let dir = tempfile::tempdir().unwrap();
            let node = node::start(c.node_config(dir.path(), &format!("rack-{i}"), None), std::future::pending())
                .await
                .unwrap();
            c.nodes.push(node);
            c._dirs.push(dir);
        }
        c.wait("the nodes", |s| s.servers.iter().filter(|x| x.live).count() == servers).await;
        c
    }

    fn node_config(&self, dir: &std::path::Path, rack: &str, secret: Option<Keyring>) -> NodeConfig {
        NodeConfig {
            master: self.addr.clone(),
            dir: dir.to_path_buf(),
            rack: rack.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            capacity_bytes: 1 << 32,
            flow: DEFAULT_FLOW,
            heartbeat: Duration::from_millis(100),
            scrub: None,
            secret: secret.unwrap_or_else(|| self.master.config().secret.clone()),
        }
    }

    async fn wait(&self, what: &str, ok: impl Fn(&MasterStatus) -> bool) -> MasterStatus {
        for _ in 0..300 {
            let s = self.master.status();
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.master.status());
    }

    fn addr_of(&self, id: ServerId) -> String {
        self.master.status().servers.iter().find(|s| s.id == id.0).unwrap().addr.clone()
    }

    /// Server `id`'s own key, as it keeps it (its token in its data directory).
    fn as_server(&self, i: usize) -> Credentials {
        let identity = node::read_identity(self._dirs[i].path()).unwrap().unwrap();
        assert_eq!(identity.id, self.nodes[i].server_id);
        Credentials::server(identity.id, &identity.token, &self.master.config().secret)
    }

    fn member(&self) -> Credentials {
        Credentials::cluster(&self.master.config().secret)
    }
}

/// A POST of `body` (JSON) or a GET to the master, signed with `sign` (or not); the status
/// and the answer.
async fn call(addr: &str, method: &str, path: &str, body: &[u8], sign: Option<&Credentials>) -> (u16, String) {
    call_at(addr, method, path, body, sign.map(|c| (c, now_ms()))).await
}

async fn call_at(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    sign: Option<(&Credentials, u64)>,
) -> (u16, String) {
    let http =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let sha = if body.is_empty() { String::new() } else { sha256_hex(body) };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if !sha.is_empty() {
        request = request.header(SHA256_HEADER, &sha);
    }
    if let Some((credentials, at)) = sign {
        let facts =
            RequestFacts { method, path_and_query: path, content_length: body.len() as u64, crc32c: "", sha256: &sha };
        request = request.header(AUTHORIZATION, credentials.authorization_at(&facts, at, rand::random()));
    }
    let response = http.request(request.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn register_as(id: ServerId, addr: &str) -> Vec<u8> {
    serde_json::to_vec(&RegisterRequest { server_id: Some(id.0), addr: addr.to_owned(), rack: "rack-x".into() })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_server_id_moves_only_with_that_servers_key() {
    let c = Cluster::start(2).await;
    let victim = c.nodes[0].server_id;
    let home = c.addr_of(victim);
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = attacker.local_addr().unwrap().to_string();
    let body = register_as(victim, &elsewhere);
    let wrong = Credentials::cluster(&Keyring::generate());
    // Before: 200, and the victim's reads and writes went to `elsewhere`.
    for _ in 0..3 {
        assert_eq!(call(&c.addr, "POST", "/pangu/v1/register", &body, None).await.0, 401);
        assert_eq!(call(&c.addr, "POST", "/pangu/v1/register", &body, Some(&wrong)).await.0, 401);
        // A member of the cluster, or another server, is not the victim.
        let (status, message) = call(&c.addr, "POST", "/pangu/v1/register", &body, Some(&c.member())).await;
        assert_eq!(status, 403, "{message}");
        assert_eq!(call(&c.addr, "POST", "/pangu/v1/register", &body, Some(&c.as_server(1))).await.0, 403);
        assert_eq!(c.addr_of(victim), home);
    }
    // Writes and reads still go to the victim itself; nothing ever reached the attacker.
    let pangu = Pangu::in_process(c.master.clone());
    let mut w = pangu.create().await.unwrap();
    w.append(Bytes::from_static(b"still mine")).await.unwrap();
    let file = w.id();
    w.seal().await.unwrap();
    assert_eq!(&pangu.read(file, 0, 10).await.unwrap()[..], b"still mine");
    assert!(c.master.layout(file).unwrap().chunks[0].replicas.iter().all(|r| r.addr != elsewhere));
    let accepted = tokio::time::timeout(Duration::from_millis(200), attacker.accept()).await;
    assert!(accepted.is_err(), "someone connected to the attacker's address");

    // The server itself may move (it signs with its own key).
    let moved = "127.0.0.1:9".to_owned();
    let (status, message) =
        call(&c.addr, "POST", "/pangu/v1/register", &register_as(victim, &moved), Some(&c.as_server(0))).await;
    assert_eq!(status, 200, "{message}");
    assert!(!message.contains("token"), "a known server is not sent its token again: {message}");
    assert_eq!(c.addr_of(victim), moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_status_and_new_registrations_need_a_signature() {
    let c = Cluster::start(1).await;
    let id = c.nodes[0].server_id;
    let home = c.addr_of(id);
    // A forged heartbeat (an empty replica list, a made-up corrupt one) for the server.
    let hb = serde_json::json!({
        "server_id": id.0, "addr": home,
        "status": {"server_id": id.0, "rack": "r", "capacity_bytes": 1, "used_bytes": 0, "free_bytes": 1,
                   "chunks": 0, "corrupt_chunks": 0},
        "chunks": [], "corrupt": [],
    });
    let hb = serde_json::to_vec(&hb).unwrap();
    serde_json::from_slice::<HeartbeatRequest>(&hb).unwrap();
    assert_eq!(call(&c.addr, "POST", "/pangu/v1/heartbeat", &hb, None).await.0, 401);
    assert_eq!(call(&c.addr, "POST", "/pangu/v1/heartbeat", &hb, Some(&c.member())).await.0, 403);
    assert_eq!(call(&c.addr, "POST", "/pangu/v1/heartbeat", &hb, Some(&c.as_server(0))).await.0, 200);

    assert_eq!(call(&c.addr, "GET", "/pangu/v1/status", b"", None).await.0, 401);
    let (status, answer) = call(&c.addr, "GET", "/pangu/v1/status", b"", Some(&c.member())).await;
    assert_eq!(status, 200);
    assert!(answer.contains(&home));

    // A new server: unsigned (before: accepted, and it got chunks placed on it) or signed with a wrong
    // secret, refused; with the secret, welcome, and given its token.
    let new =
        serde_json::to_vec(&RegisterRequest { server_id: None, addr: "127.0.0.1:9".into(), rack: "r".into() }).unwrap();
    assert_eq!(call(&c.addr, "POST", "/pangu/v1/register", &new, None).await.0, 401);
    let wrong = Credentials::cluster(&Keyring::generate());
    assert_eq!(call(&c.addr, "POST", "/pangu/v1/register", &new, Some(&wrong)).await.0, 401);
    assert_eq!(c.master.status().servers.len(), 1);
    let (status, answer) = call(&c.addr, "POST", "/pangu/v1/register", &new, Some(&c.member())).await;
    assert_eq!(status, 200);
    assert!(answer.contains("\"token\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_body_a_stale_time_and_a_replay_are_refused() {
    let c = Cluster::start(1).await;
    let id = c.nodes[0].server_id;
    let me = c.as_server(0);
    let honest = register_as(id, &c.addr_of(id));
    let evil = register_as(id, "127.0.0.1:9");
    // The head signed for the honest body, sent with another body.
    let http =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let sha = sha256_hex(&honest);
    let facts = RequestFacts {
        method: "POST",
        path_and_query: "/pangu/v1/register",
        content_length: evil.len() as u64,
        crc32c: "",
        sha256: &sha,
    };
    let request = hyper::Request::post(format!("http://{}/pangu/v1/register", c.addr))
        .header(SHA256_HEADER, &sha)
        .header(AUTHORIZATION, me.authorization(&facts))
        .body(Full::new(Bytes::from(evil.clone())))
        .unwrap();
    assert_eq!(http.request(request).await.unwrap().status().as_u16(), 401);
    assert_ne!(c.addr_of(id), "127.0.0.1:9");

    // Stale and future timestamps.
    for at in [now_ms() - 60_000, now_ms() + 60_000] {
        let (status, message) = call_at(&c.addr, "GET", "/pangu/v1/status", b"", Some((&c.member(), at))).await;
        assert_eq!(status, 401, "{message}");
        assert!(message.contains("timestamp"), "{message}");
    }

    // One signed request, sent twice.
    let facts =
        RequestFacts { method: "GET", path_and_query: "/pangu/v1/status", content_length: 0, crc32c: "", sha256: "" };
    let header = c.member().authorization(&facts);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let request = hyper::Request::get(format!("http://{}/pangu/v1/status", c.addr))
            .header(AUTHORIZATION, &header)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = http.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        answers.push((status, String::from_utf8_lossy(&body).into_owned()));
    }
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[1].0, 401);
    assert!(answers[1].1.contains("already received"), "{:?}", answers[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_without_the_secret_cannot_join() {
    let c = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = c.node_config(dir.path(), "rack-z", Some(Keyring::generate()));
    match node::start(config, std::future::pending()).await {
        Err(NodeError::Refused { status: 401, .. }) => {}
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("a chunkserver with another secret joined"),
    }
    assert_eq!(c.master.status().servers.len(), 1);
    assert!(!dir.path().join("server-id").exists());
}
