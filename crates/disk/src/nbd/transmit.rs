//! The transmission phase of one connection.
//!
//! One reader takes requests off the socket and starts each as its own task; one writer sends
//! the replies in the order they complete (the client matches them by handle). Bounds: at
//! most [`MAX_IN_FLIGHT`] requests and [`MAX_BYTES_IN_FLIGHT`] bytes of payload (read data
//! and write data together) between the request's header and its reply being written; at the
//! limit the reader stops reading the socket, so a client that sends faster than the device
//! (or the QoS limiter) admits waits in its own socket buffer, not in our memory.
//!
//! Ordering: FLUSH runs the device's flush, which covers every write completed before it,
//! so it covers every write the client had a reply for; a FUA write or zeroing is followed by
//! a flush before its reply.
//!
//! When the connection ends (the client's DISC, a closed socket, a protocol violation, or a
//! newer connection replacing this one), no new request starts and the function returns only
//! after every started device operation has finished: a replacing connection thus never
//! races the old one's writes.

use super::proto::{self, Command, Verdict};
use crate::device::{BlockDevice, DeviceError};
use crate::qos::Limiter;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Requests between their header and their reply.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Payload bytes between a request's header and its reply (two maximum-size requests).
pub(crate) const MAX_BYTES_IN_FLIGHT: u32 = 2 * proto::MAX_PAYLOAD;
/// How long queued replies may take to reach a client that ended the connection itself.
const REPLY_DRAIN: Duration = Duration::from_secs(10);

/// A reply ready to be written; its permits are released once it is.
struct Reply {
    handle: u64,
    errno: u32,
    data: Option<Bytes>,
    _op: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// Why the reader stopped.
#[derive(Debug)]
enum End {
    /// The client sent DISC.
    Disconnect,
    /// The socket closed or failed.
    Socket,
    /// The client broke the protocol, or sent a payload too large to read.
    Violation,
    /// A newer connection took over, or the server is shutting down.
    Stopped,
}

/// Resolves once `stop` says so (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Serves requests on `stream` for an export of `size` bytes (as the handshake announced it)
/// until the connection ends; returns after every device operation it started has finished.
pub(crate) async fn serve(
    stream: UnixStream,
    size: u64,
    device: Arc<dyn BlockDevice>,
    limiter: Option<Arc<Mutex<Limiter>>>,
    stop: &mut watch::Receiver<bool>,
) {
    let (rd, wr) = stream.into_split();
    // Buffered: a 28-byte header and a 4 KiB payload would otherwise be two system calls.
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    // Never full: every reply holds one of the MAX_IN_FLIGHT operation permits.
    let (tx, rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(wr, rx));
    let ops = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bytes = Arc::new(Semaphore::new(MAX_BYTES_IN_FLIGHT as usize));
    let mut tasks = JoinSet::new();
    let end = loop {
        while tasks.try_join_next().is_some() {}
        let op = tokio::select! {
            p = ops.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break End::Stopped },
            _ = stopped(stop) => break End::Stopped,
        };
        let mut header = [0u8; proto::REQUEST_LEN];
        tokio::select! {
            r = rd.read_exact(&mut header) => if r.is_err() { break End::Socket },
            _ = stopped(stop) => break End::Stopped,
        }
        let req = match proto::request(&header) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("nbd: closing the connection: {e}");
                break End::Violation;
            }
        };
        let cmd = match proto::judge(&req, size) {
            Verdict::Run(Command::Disconnect) => break End::Disconnect,
            Verdict::Run(cmd) => cmd,
            Verdict::Refuse { errno, discard, close } => {
                tokio::select! {
                    r = discard_bytes(&mut rd, discard) => if r.is_err() { break End::Socket },
                    _ = stopped(stop) => break End::Stopped,
                }
                let _ = tx.send(Reply { handle: req.handle, errno, data: None, _op: op, _bytes: None }).await;
                if close {
                    tracing::warn!("nbd: closing the connection after a {}-byte write", req.length);
                    break End::Violation;
                }
                continue;
            }
        };
        let payload = match cmd {
            Command::Read { length, .. } | Command::Write { length, .. } => length,
            _ => 0,
        };
        let byte_permit = if payload > 0 {
            tokio::select! {
                p = bytes.clone().acquire_many_owned(payload) => match p { Ok(p) => Some(p), Err(_) => break End::Stopped },
                _ = stopped(stop) => break End::Stopped,
            }
        } else {
            None
        };
        let data = if let Command::Write { length, .. } = cmd {
            let mut buf = BytesMut::zeroed(length as usize);
            tokio::select! {
                r = rd.read_exact(&mut buf) => if r.is_err() { break End::Socket },
                _ = stopped(stop) => break End::Stopped,
            }
            buf.freeze()
        } else {
            Bytes::new()
        };
        let (device, limiter, tx) = (device.clone(), limiter.clone(), tx.clone());
        tasks.spawn(async move {
            if let Some(l) = limiter.as_ref().filter(|_| charged(cmd)) {
                // The lock is held only to charge; the wait happens outside it.
                let wait = l.lock().admit(Instant::now(), charged_bytes(cmd));
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let (errno, data) = match execute(device.as_ref(), cmd, data).await {
                Ok(d) => (0, d),
                Err(e) => {
                    tracing::warn!("nbd: {cmd:?} failed: {e}");
                    (e.errno(), None)
                }
            };
            let _ = tx.send(Reply { handle: req.handle, errno, data, _op: op, _bytes: byte_permit }).await;
        });
    };
    // Every started operation finishes (its reply queued) before the connection is let go.
    while tasks.join_next().await.is_some() {}
    drop(tx);
    if matches!(end, End::Stopped) {
        writer.abort();
    } else if tokio::time::timeout(REPLY_DRAIN, writer).await.is_err() {
        tracing::warn!("nbd: the client did not take its last replies within {REPLY_DRAIN:?}");
    }
    tracing::debug!("nbd: connection ended: {end:?}");
}

/// Whether the QoS limiter counts the command (data operations; not FLUSH or CACHE).
fn charged(cmd: Command) -> bool {
    matches!(cmd, Command::Read { .. } | Command::Write { .. } | Command::Trim { .. } | Command::WriteZeroes { .. })
}

/// The bytes the limiter charges: data moved (trims and zeroings move none).
fn charged_bytes(cmd: Command) -> u64 {
    match cmd {
        Command::Read { length, .. } | Command::Write { length, .. } => u64::from(length),
        _ => 0,
    }
}

/// Runs one command on the device; a read returns its data.
async fn execute(dev: &dyn BlockDevice, cmd: Command, data: Bytes) -> Result<Option<Bytes>, DeviceError> {
    match cmd {
        Command::Read { offset, length } => {
            let d = dev.read(offset, length).await?;
            if d.len() != length as usize {
                // A short read would desynchronise the stream: the client expects `length`.
                return Err(DeviceError::Io(std::io::Error::other(format!(
                    "device returned {} bytes for a {length}-byte read",
                    d.len()
                ))));
            }
            Ok(Some(d))
        }
        Command::Write { offset, fua, .. } => {
            dev.write(offset, data).await?;
            if fua {
                dev.flush().await?;
            }
            Ok(None)
        }
        Command::Trim { offset, length, fua } => {
            dev.trim(offset, u64::from(length)).await?;
            if fua {
                dev.flush().await?;
            }
            Ok(None)
        }
        Command::WriteZeroes { offset, length, fua } => {
            dev.write_zeroes(offset, u64::from(length)).await?;
            if fua {
                dev.flush().await?;
            }
            Ok(None)
        }
        Command::Flush => dev.flush().await.map(|()| None),
        Command::Cache | Command::Disconnect => Ok(None),
    }
}

/// Reads and drops `n` payload bytes of a refused write (at most [`proto::MAX_PAYLOAD`]).
async fn discard_bytes(rd: &mut BufReader<OwnedReadHalf>, n: u32) -> std::io::Result<()> {
    let mut left = n as usize;
    let mut buf = vec![0u8; left.min(64 << 10)];
    while left > 0 {
        let k = left.min(buf.len());
        rd.read_exact(&mut buf[..k]).await?;
        left -= k;
    }
    Ok(())
}

/// Writes replies as they come; flushes when none is waiting, so that replies completing
/// together share a system call.
async fn write_replies(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) {
    let mut w = BufWriter::with_capacity(64 << 10, wr);
    while let Some(r) = rx.recv().await {
        if w.write_all(&proto::simple_reply(r.handle, r.errno)).await.is_err() {
            return;
        }
        if let Some(d) = &r.data {
            if w.write_all(d).await.is_err() {
                return;
            }
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
}
