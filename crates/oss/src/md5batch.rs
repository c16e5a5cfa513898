//! The MD5 of many uploads at once.
//!
//! An object's ETag is the MD5 of its bytes, and MD5 cannot be split: each 64-byte block of a
//! stream depends on the one before, so one core hashes one stream at about 0.5 GB/s, far
//! below what the disk and the network take. Independent streams can share a core, though:
//! the compressor of [`md5_many`] runs 16 of them side by side in the lanes of AVX-512
//! registers (8 with AVX2), at more than ten times the speed of one stream.
//!
//! So large bodies are not hashed on their request's task. Each upload opens an
//! [`Md5Stream`] and hands it the pieces it reads (the same `Bytes` that go to Pangu, so
//! nothing is copied); one hasher thread advances every stream with bytes waiting in one pass
//! of the multi-buffer compressor. To fill its lanes it holds waiting bytes until every stream
//! that is sending has some (up to the lane count), for at most [`GATHER`]; a stream that is
//! finishing is hashed at once, and one whose client went quiet is not waited for. A stream
//! with [`QUEUE_LIMIT`] bytes waiting makes its writer wait, which bounds the memory held.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5_many::{Md5Many, Md5State};
use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

/// A stream with this many bytes waiting to be hashed makes its writer wait.
pub const QUEUE_LIMIT: usize = 24 << 20;
/// The longest the hasher holds waiting bytes for other streams to fill its lanes.
pub const GATHER: Duration = Duration::from_millis(250);

/// The hasher and its streams (one per process: [`Md5Batcher::global`]).
#[derive(Clone)]
pub struct Md5Batcher {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Md5Many,
    queue: Mutex<Queue>,
    /// The hasher waits on this for bytes.
    work: Condvar,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    streams: HashMap<u64, Slot>,
}

struct Slot {
    /// `None` while the hasher is advancing it.
    state: Option<Md5State>,
    waiting: Vec<Bytes>,
    waiting_bytes: usize,
    /// When the oldest of `waiting` came.
    since: Option<Instant>,
    /// When the stream last had bytes appended.
    last_data: Instant,
    /// The stream's owner waits for its digest: hash it without gathering.
    finishing: bool,
    /// Wakes the stream's owner after a pass over it.
    passed: Arc<Notify>,
}

impl Md5Batcher {
    /// The process's batcher; its hasher thread starts on first use.
    pub fn global() -> &'static Md5Batcher {
        static GLOBAL: OnceLock<Md5Batcher> = OnceLock::new();
        GLOBAL.get_or_init(Md5Batcher::start)
    }

    /// A batcher with a hasher thread of its own (the thread lives as long as the process).
    pub fn start() -> Md5Batcher {
        let shared =
            Arc::new(Shared { engine: Md5Many::new(), queue: Mutex::new(Queue::default()), work: Condvar::new() });
        let hasher = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("md5-batcher".into())
            .spawn(move || hasher.run())
            .expect("cannot start the MD5 hasher thread");
        Md5Batcher { shared }
    }

    /// A new stream (an empty MD5).
    pub fn open(&self) -> Md5Stream {
        let passed = Arc::new(Notify::new());
        let mut q = self.shared.queue.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.streams.insert(
            id,
            Slot {
                state: Some(Md5State::new()),
                waiting: Vec::new(),
                waiting_bytes: 0,
                since: None,
                last_data: Instant::now(),
                finishing: false,
                passed: Arc::clone(&passed),
            },
        );
        Md5Stream { shared: Arc::clone(&self.shared), id, passed }
    }
}

impl Shared {
    /// The hasher thread: forever, take the streams with bytes waiting and advance them.
    fn run(&self) {
        let lanes = self.engine.lanes().max(1);
        let mut q = self.queue.lock();
        loop {
            let mut ready: Vec<(bool, Instant, u64)> = q
                .streams
                .iter()
                .filter(|(_, s)| s.state.is_some() && !s.waiting.is_empty())
                .map(|(id, s)| (!s.finishing, s.since.unwrap_or_else(Instant::now), *id))
                .collect();
            if ready.is_empty() {
                self.work.wait(&mut q);
                continue;
            }
            // Hash now if a stream is finishing, every stream that is sending (sent bytes in
            // the last GATHER) has bytes waiting or every lane is taken, or bytes have waited
            // GATHER; else gather more. A stream whose client went quiet is not waited for.
            let now = Instant::now();
            let finishing = ready.iter().any(|r| !r.0);
            let sending = q.streams.values().filter(|s| !s.waiting.is_empty() || now < s.last_data + GATHER).count();
            let full = ready.len() >= sending.min(lanes);
            let deadline = ready.iter().map(|r| r.1).min().unwrap_or(now) + GATHER;
            if !(finishing || full) && now < deadline {
                self.work.wait_until(&mut q, deadline);
                continue;
            }
            // Finishing streams first, then the longest waiting.
            ready.sort_unstable();
            ready.truncate(lanes);
            // Each stream not finishing hashes as many bytes as the one of them with the
            // fewest waiting (whole blocks), so that the lanes run dry together, not one by
            // one; the rest waits for the next pass.
            let budget =
                ready.iter().filter(|r| r.0).map(|r| q.streams[&r.2].waiting_bytes / 64 * 64).min().filter(|&b| b > 0);
            let mut ids = Vec::with_capacity(ready.len());
            let mut states = Vec::with_capacity(ready.len());
            let mut pieces = Vec::with_capacity(ready.len());
            let mut must_finish = Vec::with_capacity(ready.len());
            for (gather, _, id) in ready {
                let slot = q.streams.get_mut(&id).expect("a ready stream is in the queue");
                states.push(slot.state.take().expect("a ready stream has its state"));
                pieces.push(match budget {
                    Some(n) if gather => take_front(&mut slot.waiting, n),
                    _ => std::mem::take(&mut slot.waiting),
                });
                if slot.waiting.is_empty() {
                    slot.since = None;
                }
                ids.push(id);
                must_finish.push(!gather);
            }
            let rests = parking_lot::MutexGuard::unlocked(&mut q, || self.advance(&mut states, &pieces, &must_finish));
            for ((id, state), (pieces, rest)) in ids.into_iter().zip(states).zip(pieces.into_iter().zip(rests)) {
                // A stream dropped meanwhile is simply gone.
                if let Some(slot) = q.streams.get_mut(&id) {
                    slot.state = Some(state);
                    let total: usize = pieces.iter().map(Bytes::len).sum();
                    let left: usize = rest.iter().map(Bytes::len).sum();
                    slot.waiting_bytes -= total - left;
                    if !rest.is_empty() {
                        // Bytes no other stream kept company wait for the next pass.
                        slot.since = Some(slot.since.unwrap_or_else(Instant::now));
                        slot.waiting.splice(0..0, rest);
                    }
                    slot.passed.notify_one();
                }
            }
        }
    }

    /// Appends each stream's pieces to its state, the streams side by side; returns, per
    /// stream, the bytes left for a later pass.
    ///
    /// The compressor is fastest when every lane is used, every state sits on a block
    /// boundary and every input has the same whole number of blocks, so each round is cut to
    /// that shape: bytes up to a block boundary (where pieces meet) are hashed one stream at a
    /// time, then the longest run of whole blocks all streams have is hashed side by side,
    /// with unused lanes hashing a copy into throwaway states. Once half the streams or fewer
    /// have bytes left, the rest waits for the next pass and other streams' company, unless
    /// one of them is finishing (`must_finish`); a pass over one stream alone hashes it all.
    fn advance(&self, states: &mut [Md5State], pieces: &[Vec<Bytes>], must_finish: &[bool]) -> Vec<Vec<Bytes>> {
        let lanes = self.engine.lanes().max(1);
        debug_assert!(pieces.len() <= lanes, "a pass takes at most one stream per lane");
        let mut cursors: Vec<Cursor> = pieces.iter().map(|p| Cursor { pieces: p, piece: 0, at: 0 }).collect();
        loop {
            let mut runs: Vec<(usize, &[u8])> = Vec::with_capacity(lanes);
            for (lane, cursor) in cursors.iter_mut().enumerate() {
                if let Some(run) = cursor.align(&mut states[lane]) {
                    runs.push((lane, run));
                }
            }
            // Once half the streams or fewer have bytes left, the rest waits for the next
            // pass, where other streams fill the lanes, unless one of them is finishing.
            let few = pieces.len() > 1 && runs.len() * 2 <= pieces.len();
            if runs.is_empty() || (few && !runs.iter().any(|r| must_finish[r.0])) {
                break;
            }
            match runs.len() {
                1 => {
                    let (lane, run) = runs[0];
                    states[lane].update(run);
                    cursors[lane].at += run.len();
                }
                _ => {
                    let len = runs.iter().map(|r| r.1.len()).min().unwrap_or(0);
                    let mut side: Vec<Md5State> = runs.iter().map(|&(lane, _)| states[lane]).collect();
                    side.resize(lanes, Md5State::new());
                    let mut inputs: Vec<&[u8]> = runs.iter().map(|r| &r.1[..len]).collect();
                    inputs.resize(lanes, inputs[0]);
                    self.engine.update_many(&mut side, &inputs);
                    for (&(lane, _), state) in runs.iter().zip(side) {
                        states[lane] = state;
                        cursors[lane].at += len;
                    }
                }
            }
        }
        cursors.iter().map(Cursor::rest).collect()
    }
}

/// The first `n` bytes of `waiting` (all of it if it is shorter), taken off the front; a
/// buffer across the cut is split, not copied.
fn take_front(waiting: &mut Vec<Bytes>, n: usize) -> Vec<Bytes> {
    let mut taken = 0;
    let mut whole = 0;
    while whole < waiting.len() && taken + waiting[whole].len() <= n {
        taken += waiting[whole].len();
        whole += 1;
    }
    let mut front: Vec<Bytes> = waiting.drain(..whole).collect();
    if taken < n {
        if let Some(first) = waiting.first_mut() {
            front.push(first.split_to(n - taken));
        }
    }
    front
}

/// Where one stream is in its pieces during a pass.
struct Cursor<'a> {
    pieces: &'a [Bytes],
    piece: usize,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The bytes not hashed yet.
    fn rest(&self) -> Vec<Bytes> {
        let mut rest = Vec::new();
        if let Some(piece) = self.pieces.get(self.piece) {
            if self.at < piece.len() {
                rest.push(piece.slice(self.at..));
            }
            rest.extend(self.pieces[self.piece + 1..].iter().cloned());
        }
        rest
    }

    /// Hashes, one stream alone, the bytes up to the next point where the state is on a
    /// block boundary and the current piece has at least a block left; that piece's whole
    /// blocks from there, or `None` once every byte is hashed.
    fn align(&mut self, state: &mut Md5State) -> Option<&'a [u8]> {
        loop {
            let piece: &'a [u8] = self.pieces.get(self.piece)?;
            let rest = &piece[self.at..];
            if rest.is_empty() {
                self.piece += 1;
                self.at = 0;
                continue;
            }
            let partial = (state.bytes_hashed() % 64) as usize;
            let take = if partial != 0 {
                (64 - partial).min(rest.len())
            } else if rest.len() < 64 {
                rest.len()
            } else {
                0
            };
            if take == 0 {
                return Some(&rest[..rest.len() / 64 * 64]);
            }
            state.update(&rest[..take]);
            self.at += take;
        }
    }
}

/// One body's MD5, computed by the batcher's thread. Dropping it abandons the hash.
pub struct Md5Stream {
    shared: Arc<Shared>,
    id: u64,
    passed: Arc<Notify>,
}

impl Md5Stream {
    /// Appends `data` to the stream. Returns at once unless [`QUEUE_LIMIT`] bytes are
    /// already waiting; then once the hasher has taken them.
    pub async fn update(&mut self, data: Bytes) {
        self.update_all([data]).await
    }

    /// Appends each of `buffers`, in order, as [`Md5Stream::update`].
    pub async fn update_all(&mut self, buffers: impl IntoIterator<Item = Bytes>) {
        let buffers: Vec<Bytes> = buffers.into_iter().filter(|b| !b.is_empty()).collect();
        if buffers.is_empty() {
            return;
        }
        let len: usize = buffers.iter().map(Bytes::len).sum();
        loop {
            {
                let mut q = self.shared.queue.lock();
                let slot = q.streams.get_mut(&self.id).expect("an open stream is in the queue");
                if slot.waiting_bytes < QUEUE_LIMIT {
                    slot.waiting_bytes += len;
                    slot.waiting.extend(buffers);
                    slot.last_data = Instant::now();
                    slot.since.get_or_insert(slot.last_data);
                    drop(q);
                    self.shared.work.notify_one();
                    return;
                }
            }
            self.passed.notified().await;
        }
    }

    /// The MD5 of everything appended, once the hasher has caught up.
    pub async fn finish(self) -> [u8; 16] {
        loop {
            {
                let mut q = self.shared.queue.lock();
                let slot = q.streams.get_mut(&self.id).expect("an open stream is in the queue");
                if let (true, Some(state)) = (slot.waiting.is_empty(), slot.state.as_ref()) {
                    return state.finalize();
                }
                slot.finishing = true;
                drop(q);
                self.shared.work.notify_one();
            }
            self.passed.notified().await;
        }
    }
}

impl Drop for Md5Stream {
    fn drop(&mut self) {
        self.shared.queue.lock().streams.remove(&self.id);
        // One fewer stream to wait for.
        self.shared.work.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn md5(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_streams_of_odd_pieces_hash_as_md5_does() {
        let batcher = Md5Batcher::start();
        let mut tasks = Vec::new();
        // Lengths around block boundaries, empty pieces, one stream with nothing.
        for s in 0..40u64 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                let data = bytes(s, (s as usize * 37_411) % 3_000_000);
                let mut stream = batcher.open();
                let mut at = 0;
                let mut step = 1 + (s as usize * 7919) % 200_000;
                while at < data.len() {
                    let end = (at + step).min(data.len());
                    stream.update(Bytes::copy_from_slice(&data[at..end])).await;
                    stream.update(Bytes::new()).await;
                    at = end;
                    step = step * 3 % 300_007 + 1;
                    if s % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (stream.finish().await, md5(&data))
            }));
        }
        for t in tasks {
            let (got, want) = t.await.unwrap();
            assert_eq!(got, want);
        }
        assert!(batcher.shared.queue.lock().streams.is_empty());
    }

    #[test]
    fn a_pass_side_by_side_equals_each_stream_alone() {
        // One pass over as many streams as lanes, each in odd pieces that leave its state
        // off block boundaries, some streams already part-way into a block.
        let shared = Shared { engine: Md5Many::new(), queue: Mutex::new(Queue::default()), work: Condvar::new() };
        let lanes = shared.engine.lanes();
        for n in [2, lanes] {
            let data: Vec<Vec<u8>> = (0..n).map(|s| bytes(s as u64 + 100, 200_000 + s * 4_099)).collect();
            let mut states: Vec<Md5State> = vec![Md5State::new(); n];
            for (s, state) in states.iter_mut().enumerate() {
                state.update(&data[s][..s * 7]);
            }
            let pieces: Vec<Vec<Bytes>> = data
                .iter()
                .enumerate()
                .map(|(s, d)| {
                    let mut cuts = vec![s * 7, s * 7 + 1 + s * 13, 70_001, 70_064, 150_000 - s];
                    cuts.push(d.len());
                    cuts.windows(2).map(|w| Bytes::copy_from_slice(&d[w[0]..w[1]])).collect()
                })
                .collect();
            // Streams not finishing may keep bytes for a later pass: they are hashed then.
            let rests = shared.advance(&mut states, &pieces, &vec![false; n]);
            let finishing = vec![true; n];
            let rests = shared.advance(&mut states, &rests, &finishing);
            assert!(rests.iter().all(Vec::is_empty));
            for (state, d) in states.iter().zip(&data) {
                assert_eq!(state.finalize(), md5(d));
            }
        }
    }

    #[test]
    fn take_front_cuts_anywhere_and_keeps_the_order() {
        let all: Vec<u8> = (0..30u8).collect();
        for n in 0..=32 {
            let mut waiting: Vec<Bytes> =
                [0..4, 4..5, 5..20, 20..30].iter().map(|r| Bytes::copy_from_slice(&all[r.clone()])).collect();
            let front = take_front(&mut waiting, n);
            let joined = |v: &[Bytes]| v.iter().flat_map(|b| b.iter().copied()).collect::<Vec<u8>>();
            assert_eq!(joined(&front), all[..n.min(30)].to_vec(), "n = {n}");
            assert_eq!(joined(&waiting), all[n.min(30)..].to_vec(), "n = {n}");
            assert!(front.iter().chain(&waiting).all(|b| !b.is_empty()));
        }
    }

    #[tokio::test]
    async fn an_empty_stream_is_the_md5_of_nothing() {
        let stream = Md5Batcher::global().open();
        assert_eq!(stream.finish().await, md5(b""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_past_the_limit_waits_for_the_hasher_and_loses_nothing() {
        let batcher = Md5Batcher::start();
        let data = bytes(7, QUEUE_LIMIT * 3 + 12_345);
        let mut stream = batcher.open();
        for piece in data.chunks(QUEUE_LIMIT / 2 + 1) {
            stream.update(Bytes::copy_from_slice(piece)).await;
            assert!(batcher.shared.queue.lock().streams[&stream.id].waiting_bytes <= QUEUE_LIMIT * 2);
        }
        assert_eq!(stream.finish().await, md5(&data));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_stream_leaves_the_others_alone() {
        let batcher = Md5Batcher::start();
        let mut gone = batcher.open();
        gone.update(Bytes::from(bytes(1, 1 << 20))).await;
        let mut kept = batcher.open();
        let data = bytes(2, 5 << 20);
        kept.update(Bytes::copy_from_slice(&data[..1 << 20])).await;
        drop(gone);
        kept.update(Bytes::copy_from_slice(&data[1 << 20..])).await;
        assert_eq!(kept.finish().await, md5(&data));
        assert!(batcher.shared.queue.lock().streams.is_empty());
    }
}
