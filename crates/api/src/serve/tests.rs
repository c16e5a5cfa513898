//! The listener on an ephemeral loopback port, attacked the ways issue 14 found: partial
//! heads, one byte at a time, silent connections, stalled bodies, unread answers, more
//! sockets than the caps. Timers are short here; every wait has a generous bound, and no
//! test asserts how fast anything happened.

use super::*;
use std::net::{IpAddr, Ipv4Addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// How long anything that should happen may take before a test fails.
const BOUND: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<io::Result<()>>,
    /// Lets the `/hold` requests go.
    release: Arc<Notify>,
    /// One message per `/hold` request that reached the handler.
    entered: tokio::sync::mpsc::UnboundedReceiver<()>,
}

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(600),
        keep_alive_idle_timeout: Duration::from_millis(400),
        body_idle_timeout: Duration::from_millis(600),
        max_connections: 64,
        max_connections_per_client: 32,
        ..Limits::default()
    }
}

/// `/hold` answers once `release` is notified (and says it entered); `/echo` answers the length of its body (or
/// `408` when it stalled); `/big` answers 64 MiB; anything else answers `ok`.
async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(Notify::new());
    let (entered_tx, entered) = tokio::sync::mpsc::unbounded_channel();
    let r = release.clone();
    let handler = move |req: Request<Body>| {
        let r = r.clone();
        let entered = entered_tx.clone();
        async move {
            match req.uri().path() {
                "/hold" => {
                    let released = r.notified();
                    tokio::pin!(released);
                    released.as_mut().enable();
                    let _ = entered.send(());
                    released.await;
                    Response::new(Body::from("released\n"))
                }
                "/echo" => match axum::body::to_bytes(req.into_body(), usize::MAX).await {
                    Ok(b) => Response::new(Body::from(format!("{}\n", b.len()))),
                    Err(e) => {
                        let mut resp = Response::new(Body::from(format!("{e}\n")));
                        *resp.status_mut() =
                            if is_body_idle(&e) { StatusCode::REQUEST_TIMEOUT } else { StatusCode::BAD_REQUEST };
                        resp
                    }
                },
                "/big" => Response::new(Body::from(vec![7u8; 64 << 20])),
                _ => Response::new(Body::from("ok\n")),
            }
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, limits, handler, async move {
        let _ = rx.await;
    }));
    Server { addr, stop: Some(tx), done, release, entered }
}

/// A connection from 127.0.0.`last` (all of 127/8 is loopback).
async fn connect_from(addr: SocketAddr, last: u8) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)).unwrap();
    s.connect(addr).await.unwrap()
}

/// Everything the server sends until it closes the connection (a reset counts as a close).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    out
}

/// One answer's head and body, read on a kept-alive connection (the body has a length).
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
        }
    })
    .await
    .expect("no answer")
}

async fn healthz_from(addr: SocketAddr, last: u8) -> String {
    let mut s = connect_from(addr, last).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    read_answer(&mut s).await
}

#[test]
fn canned_refusal_is_well_formed() {
    let text = std::str::from_utf8(REFUSED).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503 "));
    assert!(head.contains(&format!("content-length: {}", body.len())));
}

#[tokio::test]
async fn partial_heads_and_trickled_heads_are_closed() {
    let srv = start(limits()).await;
    // A head that stops before its end.
    let mut partial = connect_from(srv.addr, 2).await;
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    // A head sent one byte at a time, each well within the idle timers, never finishing.
    let mut trickle = connect_from(srv.addr, 2).await;
    let trickler = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
        {
            if trickle.write_all(&[*b]).await.is_err() {
                return trickle;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    });
    // While they hang, others are served.
    assert!(healthz_from(srv.addr, 1).await.starts_with("HTTP/1.1 200"));
    assert!(read_to_close(&mut partial).await.is_empty());
    let mut trickle = tokio::time::timeout(BOUND, trickler).await.expect("the trickled head was never cut").unwrap();
    read_to_close(&mut trickle).await;
}

#[tokio::test]
async fn a_head_over_the_buffer_limit_is_refused() {
    // Long timers: only the size can end this connection within the test's bound.
    let mut l = limits();
    l.header_read_timeout = Duration::from_secs(120);
    l.keep_alive_idle_timeout = Duration::from_secs(120);
    let srv = start(l).await;
    let mut s = connect_from(srv.addr, 2).await;
    let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    while head.len() < 600 * 1024 {
        head.extend_from_slice(line.as_bytes());
    }
    let _ = s.write_all(&head).await; // may fail once the server has closed
    let rest = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 431"), "{rest}");
    // A large head within it is served.
    let mut ok = connect_from(srv.addr, 2).await;
    let pad = line.repeat(60);
    ok.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{pad}\r\n").as_bytes()).await.unwrap();
    assert!(read_answer(&mut ok).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn silent_and_kept_alive_idle_connections_are_closed() {
    let srv = start(limits()).await;
    let mut silent = connect_from(srv.addr, 2).await;
    assert!(read_to_close(&mut silent).await.is_empty());
    let mut kept = connect_from(srv.addr, 2).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(read_answer(&mut kept).await.starts_with("HTTP/1.1 200"));
    // Nothing more is sent: the kept-alive connection is closed.
    assert!(read_to_close(&mut kept).await.is_empty());
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_a_moving_one_is_not() {
    let srv = start(limits()).await;
    let mut s = connect_from(srv.addr, 2).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
    let answer = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");

    // 20 bytes, one every 50 ms: slow, but never idle for the 600 ms timer.
    let mut s = connect_from(srv.addr, 2).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n").await.unwrap();
    for _ in 0..20 {
        s.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n20\n"), "{answer}");
}

#[tokio::test]
async fn an_answer_nobody_reads_closes_its_connection() {
    let srv = start(limits()).await;
    let mut s = connect_from(srv.addr, 2).await;
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Read nothing until the server has given up on writing: then what was buffered, and the end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = read_to_close(&mut s).await;
    assert!(got.len() < 64 << 20, "the whole answer went out: the socket buffers are larger than the test thought");
}

#[tokio::test]
async fn a_full_client_gives_its_oldest_idle_slot_then_refuses() {
    let mut l = limits();
    l.max_connections_per_client = 2;
    l.header_read_timeout = Duration::from_secs(60);
    l.keep_alive_idle_timeout = Duration::from_secs(60);
    let mut srv = start(l).await;
    let mut first = connect_from(srv.addr, 2).await;
    let _second = connect_from(srv.addr, 2).await;
    // Both idle: a third connection from the same address takes the oldest's slot, and is served.
    assert!(healthz_from(srv.addr, 2).await.starts_with("HTTP/1.1 200"));
    assert!(read_to_close(&mut first).await.is_empty());
    // Both inside a request: refused with a 503, at once.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(srv.addr, 2).await;
        s.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        busy.push(s);
    }
    for _ in 0..2 {
        tokio::time::timeout(BOUND, srv.entered.recv()).await.unwrap();
    }
    let mut s = connect_from(srv.addr, 2).await;
    let refused = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(refused.starts_with("HTTP/1.1 503") && refused.contains("retry-after"), "{refused}");
    // Another address is not affected.
    assert!(healthz_from(srv.addr, 3).await.starts_with("HTTP/1.1 200"));
    srv.release.notify_waiters();
}

#[tokio::test]
async fn a_full_table_gives_the_oldest_idle_slot_to_healthz() {
    let mut l = limits();
    l.max_connections = 8;
    l.max_connections_per_client = 8;
    l.header_read_timeout = Duration::from_secs(60);
    l.keep_alive_idle_timeout = Duration::from_secs(60);
    let srv = start(l).await;
    // Eight sockets from four addresses, each with a head that never ends.
    let mut loris = Vec::new();
    for i in 0..8u8 {
        let mut s = connect_from(srv.addr, 10 + i % 4).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        loris.push(s);
    }
    for _ in 0..3 {
        assert!(healthz_from(srv.addr, 1).await.starts_with("HTTP/1.1 200"));
    }
    // The oldest were closed to make room.
    assert!(read_to_close(&mut loris[0]).await.is_empty());
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let mut srv = start(limits()).await;
    let mut s = connect_from(srv.addr, 2).await;
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::timeout(BOUND, srv.entered.recv()).await.unwrap();
    let _ = srv.stop.take().unwrap().send(());
    tokio::time::timeout(BOUND, async {
        while TcpStream::connect(srv.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("still accepting after shutdown");
    assert!(!srv.done.is_finished());
    srv.release.notify_waiters();
    let answer = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("released\n"), "{answer}");
    tokio::time::timeout(BOUND, srv.done).await.unwrap().unwrap().unwrap();
}
