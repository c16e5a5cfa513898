//! HTTPS beside HTTP on one listener: sniffing, certificates by name, tunnels, and the bounds
//! on connections that never finish a handshake. Loopback only; every wait has a bound.

use super::*;
use crate::tls::{Ca, TlsEdge};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    ca_der: Vec<u8>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.done.abort();
    }
}

/// Answers `METHOD PATH HOST` of every request (`403` for a `CONNECT`, as the edge does: a
/// `2xx` would open the tunnel).
async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let ca_der = ca.der().to_vec();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = TlsEdge::new(ca, &[addr.ip()]).unwrap();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(600),
        keep_alive_idle_timeout: Duration::from_millis(2000),
        ..Limits::default()
    };
    let handler = |req: Request<Body>| async move {
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        let mut resp = Response::new(Body::from(format!("{} {} {host}", req.method(), req.uri())));
        if req.method() == Method::CONNECT {
            *resp.status_mut() = StatusCode::FORBIDDEN;
        }
        resp
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(serve_with_tls(listener, limits, Some(tls), handler, async move {
        let _ = rx.await;
    }));
    Server { addr, ca_der, stop: Some(tx), done, _dir: dir }
}

fn connector(ca_der: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends one request (with `Connection: close`) and reads the answer to the end.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, host: &str) -> String {
    let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut out)).await.expect("no answer").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn tls_to(srv: &Server, name: &str) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(srv.addr).await?;
    let name = ServerName::try_from(name.to_owned()).map_err(|e| io::Error::other(e.to_string()))?;
    tokio::time::timeout(BOUND, connector(&srv.ca_der).connect(name, tcp)).await?
}

#[tokio::test]
async fn https_and_http_share_the_port() {
    let srv = start().await;
    let mut plain = TcpStream::connect(srv.addr).await.unwrap();
    assert!(ask(&mut plain, "a").await.ends_with("GET /x a"));
    for name in ["127.0.0.1", "localhost", "ecs-cn-hangzhou.aliyuncs.com", "b.oss-cn-hangzhou.aliyuncs.com"] {
        let mut s = tls_to(&srv, name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(ask(&mut s, name).await.ends_with(&format!("GET /x {name}")), "{name}");
    }
}

#[tokio::test]
async fn a_foreign_name_gets_no_certificate() {
    let srv = start().await;
    assert!(tls_to(&srv, "www.example.com").await.is_err());
}

#[tokio::test]
async fn a_connect_to_a_cloud_host_is_a_tunnel_served_here() {
    let srv = start().await;
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(b"CONNECT ecs.aliyuncs.com:443 HTTP/1.1\r\nHost: ecs.aliyuncs.com:443\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tokio::time::timeout(BOUND, tcp.read(&mut byte)).await.unwrap().unwrap(), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 Connection established\r\n"), "{head}");
    let name = ServerName::try_from("ecs.aliyuncs.com").unwrap();
    let mut s = connector(&srv.ca_der).connect(name, tcp).await.unwrap();
    assert!(ask(&mut s, "ecs.aliyuncs.com").await.ends_with("GET /x ecs.aliyuncs.com"));
}

#[tokio::test]
async fn other_connects_go_to_the_handler() {
    let srv = start().await;
    for target in ["example.com:443", "ecs.aliyuncs.com:80"] {
        let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
        tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(BOUND, tcp.read(&mut buf)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("HTTP/1.1 403") && text.contains(&format!("CONNECT {target}")), "{text}");
    }
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_cut() {
    let srv = start().await;
    // A record header and nothing more: the ClientHello never arrives.
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a stalled handshake kept its connection");
    // A connection that sends nothing at all is cut too.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    let n = tokio::time::timeout(BOUND, silent.read(&mut buf)).await.expect("a silent connection was kept");
    assert!(matches!(n, Ok(0) | Err(_)));
}

#[tokio::test]
async fn a_handshake_sent_a_byte_at_a_time_is_cut_at_the_head_deadline() {
    let srv = start().await;
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    // A handshake record announcing 512 bytes, trickled: every byte is progress, but the
    // handshake as a whole has one request-head time (600 ms here).
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    hello.resize(517, 0);
    let t0 = tokio::time::Instant::now();
    let mut cut = false;
    for b in hello {
        if tcp.write_all(&[b]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            _ => {}
        }
        assert!(t0.elapsed() < BOUND, "still open after {:?}", t0.elapsed());
    }
    assert!(cut, "the whole trickled ClientHello was taken");
    // Cut near the deadline, well before the 26 s the trickle would have taken.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
