//! `feitian-bench-space`: issue 15's space promise at its literal scale, for `scripts/bench
//! space`.
//!
//! `docs/disks.md` promises: a 20 GiB disk with 1 GiB written takes about 1 GiB of log;
//! overwriting that 1 GiB ten times takes under 2 GiB once compaction ran; trimmed blocks
//! are freed. The test suite proves it at 64 MiB (`crates/raf/tests/on_pangu.rs`); this runs
//! it at 1 GiB on the product's configuration: a Pangu master and one chunkserver in this
//! process, as `feitian up` runs them (the chunkserver beside the master, its data path in
//! process), replication 1 (the ratio of log to live data is what is measured, and one copy
//! keeps 11 GiB of writes within a small disk), and a RAF volume opened with
//! `feitian_raf::Config::default()`, what `feitian up`'s disk host uses.
//!
//! Everything lives in a temporary directory (under `/var/tmp` by default: `/tmp` may be a
//! small tmpfs), removed on every way out, a failed bound, an error, a panic or Ctrl-C.
//! Nothing runs outside this process, so there is no child to stop.
//!
//! The log is measured in the registry with the volume closed (every segment then sealed,
//! so its length is final); the disk as the blocks the chunkserver's files take (`du`).
//! The exit status is non-zero when a bound of the promise is broken; the bounds are
//! [`Bounds`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use feitian_pangu::client::Pangu;
use feitian_pangu::master::Master;
use feitian_raf::pangu::PanguStore;
use feitian_raf::{LogStore, Raf};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const VOLUME: &str = "d-space";

#[derive(Parser)]
struct Args {
    /// Where the temporary directory goes (it needs a little over the data written, once).
    #[arg(long, default_value = "/var/tmp")]
    parent: PathBuf,
    /// The volume's size.
    #[arg(long, default_value_t = 20 * GIB)]
    size: u64,
    /// Live data written, in `--piece` pieces spread evenly over the volume.
    #[arg(long, default_value_t = GIB)]
    written: u64,
    /// One write; a multiple of 4 KiB.
    #[arg(long, default_value_t = MIB)]
    piece: u64,
    /// How often the same places are overwritten with new bytes.
    #[arg(long, default_value_t = 10)]
    overwrites: u64,
    /// Writes in flight at once, as a guest's queue.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Every this-many-th piece is read back and compared after the last reopen.
    #[arg(long, default_value_t = 8)]
    sample_every: u64,
}

/// What is measured at the end of a phase.
struct Row {
    phase: String,
    live: u64,
    /// The registry's segment lengths (all sealed: the volume is closed).
    log: u64,
    /// The registry's current checkpoint file.
    checkpoint: u64,
    /// Blocks allocated under the chunkserver's directory.
    disk: u64,
    took: Duration,
}

/// The promise's bounds, as checked. `written` is the live data, `segment` the engine's
/// segment size, `threshold` its compaction threshold (live fraction).
struct Bounds {
    written: u64,
    segment: u64,
    threshold: f64,
}

impl Bounds {
    /// 1 GiB written takes "about 1 GiB": at most 10% more (record headers are 64 bytes per
    /// 1 MiB piece; the rest is the last segment's slack, which the closed volume does not
    /// have).
    fn first_write(&self, log: u64) -> Result<(), String> {
        let max = self.written + self.written / 10;
        (log <= max).then_some(()).ok_or(format!("1 GiB written: {log} bytes of log, over {max}"))
    }

    /// After ten overwrites and compaction: under twice the live data.
    fn after_overwrites(&self, log: u64) -> Result<(), String> {
        let max = 2 * self.written;
        (log < max)
            .then_some(())
            .ok_or(format!("after the overwrites and compaction: {log} bytes of log, not under {max}"))
    }

    /// Trimming `trimmed` bytes and compacting shrinks the log by at least `trimmed`, less
    /// what compaction may rightly keep of it: the trimmed bytes in a segment that holds
    /// both halves stay while more than `threshold` of it is live (so at most `1 -
    /// threshold` of a segment), and the newest segment is never compacted (at most one
    /// segment, which may hold trimmed blocks a compaction moved there).
    fn after_trim(&self, before: u64, after: u64, trimmed: u64) -> Result<(), String> {
        let kept = ((1.0 - self.threshold) * self.segment as f64) as u64 + self.segment;
        let min_shrink = trimmed.saturating_sub(kept);
        let shrink = before.saturating_sub(after);
        (shrink >= min_shrink).then_some(()).ok_or(format!(
            "trimming {trimmed} bytes shrank the log by {shrink} ({before} to {after}), under {min_shrink}"
        ))
    }
}

/// The bytes of piece `i` in round `round`: random, and the same for the same seed, so a
/// read can be checked without keeping what was written.
fn piece(len: u64, round: u64, i: u64) -> Bytes {
    let mut v = vec![0u8; len as usize];
    StdRng::seed_from_u64(round << 32 | i).fill_bytes(&mut v);
    Bytes::from(v)
}

/// Blocks allocated to the files under `dir` (what `du` counts).
fn allocated(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { allocated(&entry.path())? } else { meta.blocks() * 512 };
    }
    Ok(total)
}

/// The chunkserver's disk once deletions settled: dropped files' replicas go through the
/// next heartbeats, so it is read until it has not changed for three of them (or 60 s).
async fn settled_disk(chunks: &Path) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut last = allocated(chunks)?;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = allocated(chunks)?;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    Ok(last)
}

struct Bench {
    args: Args,
    master: Arc<Master>,
    chunks: PathBuf,
    store: Arc<PanguStore>,
    stride: u64,
    pieces: u64,
}

impl Bench {
    async fn open(&self) -> anyhow::Result<Raf> {
        Ok(Raf::open(self.store.clone(), VOLUME, feitian_raf::Config::default()).await?)
    }

    /// Writes every piece once with round `round`'s bytes, `in_flight` at a time.
    async fn fill(&self, raf: &Raf, round: u64) -> anyhow::Result<()> {
        let (len, stride) = (self.args.piece, self.stride);
        stream::iter(0..self.pieces)
            .map(|i| async move { raf.write(i * stride, piece(len, round, i)).await })
            .buffer_unordered(self.args.in_flight)
            .try_collect::<()>()
            .await?;
        raf.flush().await?;
        Ok(())
    }

    /// Runs compaction passes until one drops nothing; returns (passes, bytes freed).
    async fn compact(&self, raf: &Raf) -> anyhow::Result<(usize, u64)> {
        let (mut passes, mut freed) = (0, 0);
        loop {
            let report = raf.compact().await?;
            passes += 1;
            freed += report.bytes_freed;
            if report.dropped.is_empty() {
                return Ok((passes, freed));
            }
        }
    }

    /// Closes the volume and measures the phase.
    async fn measure(&self, raf: Raf, phase: String, started: Instant) -> anyhow::Result<Row> {
        let live = raf.stats().live_bytes;
        raf.close().await?;
        let took = started.elapsed();
        let lease = Pangu::in_process(self.master.clone()).volume_describe(VOLUME).await?;
        let log = lease.segments.iter().map(|s| s.len).sum();
        let checkpoint = match lease.checkpoint {
            Some(c) => self.master.layout(c.file)?.sealed_len.unwrap_or(0),
            None => 0,
        };
        let disk = settled_disk(&self.chunks).await?;
        eprintln!(
            "space: {phase}: {} MiB live, {} MiB of log in {} segments, {} MiB on disk ({:.1} s)",
            live / MIB,
            log / MIB,
            lease.segments.len(),
            disk / MIB,
            took.as_secs_f64()
        );
        Ok(Row { phase, live, log, checkpoint, disk, took })
    }

    /// Reads every `sample_every`-th piece and compares it with the last round's bytes, or
    /// zeros for the trimmed half.
    async fn verify(&self, raf: &Raf, trimmed_pieces: u64) -> anyhow::Result<u64> {
        let mut checked = 0;
        for i in (0..self.pieces).step_by(self.args.sample_every.max(1) as usize) {
            let got = raf.read(i * self.stride, self.args.piece).await?;
            let want = if i < trimmed_pieces {
                Bytes::from(vec![0u8; self.args.piece as usize])
            } else {
                piece(self.args.piece, self.args.overwrites, i)
            };
            if got != want {
                let at = got.iter().zip(want.iter()).position(|(a, b)| a != b).unwrap_or(0);
                bail!("piece {i}: byte {} differs from what was written last", i * self.stride + at as u64);
            }
            checked += 1;
        }
        Ok(checked)
    }
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64().max(1e-9)
}

/// The whole run: returns the table and the broken bounds (empty when all hold).
async fn run(args: Args, dir: &Path) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let block = 4096;
    if args.piece == 0 || !args.piece.is_multiple_of(block) || args.written < args.piece || args.size < args.written {
        bail!("--piece must be a non-zero multiple of 4 KiB, --written at least one piece, --size at least --written");
    }
    let (master, chunks) = feitian_pangu::test_support::single_node(dir).await;
    let store = Arc::new(PanguStore::new(Pangu::in_process(master.clone())));
    store.create(VOLUME, args.size, None).await.context("create the volume")?;
    let pieces = args.written / args.piece;
    // The pieces are spread evenly over the whole volume, each aligned to a block.
    let stride = args.size / pieces / block * block;
    let config = feitian_raf::Config::default();
    let bounds = Bounds {
        written: pieces * args.piece,
        segment: config.segment_bytes,
        threshold: config.compaction.live_fraction,
    };
    let bench = Bench { args, master, chunks, store, stride, pieces };
    let written = bounds.written;
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    eprintln!(
        "space: {} MiB in {pieces} pieces {} MiB apart on a {} GiB volume, under {}",
        written / MIB,
        stride / MIB,
        bench.args.size / GIB,
        dir.display()
    );

    let t = Instant::now();
    let raf = bench.open().await?;
    bench.fill(&raf, 0).await?;
    eprintln!("space: wrote {} MiB at {:.0} MiB/s", written / MIB, rate(written, t.elapsed()));
    let row = bench.measure(raf, format!("{} MiB written", written / MIB), t).await?;
    broken.extend(bounds.first_write(row.log).err());
    rows.push(row);

    let t = Instant::now();
    let raf = bench.open().await?;
    for round in 1..=bench.args.overwrites {
        let r = Instant::now();
        bench.fill(&raf, round).await?;
        let s = raf.stats();
        eprintln!(
            "space: overwrite {round}: {:.0} MiB/s; {} MiB of log in {} segments (background compaction runs meanwhile)",
            rate(written, r.elapsed()),
            s.log_bytes / MIB,
            s.segments
        );
    }
    let c = Instant::now();
    let (passes, freed) = bench.compact(&raf).await?;
    eprintln!("space: {passes} compaction passes freed {} MiB in {:.1} s", freed / MIB, c.elapsed().as_secs_f64());
    let row = bench.measure(raf, format!("{} overwrites + compaction", bench.args.overwrites), t).await?;
    broken.extend(bounds.after_overwrites(row.log).err());
    let before_trim = row.log;
    rows.push(row);

    let t = Instant::now();
    let raf = bench.open().await?;
    let trimmed_pieces = pieces / 2;
    for i in 0..trimmed_pieces {
        raf.trim(i * stride, bench.args.piece).await?;
    }
    raf.flush().await?;
    let (passes, freed) = bench.compact(&raf).await?;
    eprintln!("space: trimmed half; {passes} compaction passes freed {} MiB", freed / MIB);
    let row = bench.measure(raf, "half trimmed + compaction".into(), t).await?;
    let trimmed = trimmed_pieces * bench.args.piece;
    broken.extend(bounds.after_trim(before_trim, row.log, trimmed).err());
    rows.push(row);

    let t = Instant::now();
    let raf = bench.open().await?;
    let checked = bench.verify(&raf, trimmed_pieces).await?;
    eprintln!("space: reopened; {checked} sampled pieces read back exactly (the trimmed ones as zeros)");
    let row = bench.measure(raf, "reopened, sample verified".into(), t).await?;
    rows.push(row);

    let want_live = [written, written, written - trimmed, written - trimmed];
    for (row, want) in rows.iter().zip(want_live) {
        if row.live != want {
            broken.push(format!("{}: {} live bytes, expected {want}", row.phase, row.live));
        }
    }
    Ok((rows, broken))
}

fn print_table(rows: &[Row]) {
    println!("| phase | live | log | checkpoint | on disk | log / live | took |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        let ratio = if r.live == 0 { "-".to_string() } else { format!("{:.3}", r.log as f64 / r.live as f64) };
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.0} KiB | {:.1} MiB | {ratio} | {:.1} s |",
            r.phase,
            r.live as f64 / MIB as f64,
            r.log as f64 / MIB as f64,
            r.checkpoint as f64 / 1024.0,
            r.disk as f64 / MIB as f64,
            r.took.as_secs_f64()
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The guard: dropped (and the directory removed) on every way out of `main`.
    let dir = tempfile::Builder::new()
        .prefix("feitian-bench-space-")
        .tempdir_in(&args.parent)
        .with_context(|| format!("a temporary directory under {}", args.parent.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = run(args, dir.path()) => r,
            _ = term.recv() => bail!("terminated"),
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    // The Pangu tasks stop before their directory goes.
    rt.shutdown_timeout(Duration::from_secs(5));
    dir.close().context("remove the temporary directory")?;
    let (rows, broken) = outcome?;
    print_table(&rows);
    if !broken.is_empty() {
        for b in &broken {
            eprintln!("space: bound broken: {b}");
        }
        std::process::exit(1);
    }
    eprintln!("space: every bound holds");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds { written: GIB, segment: 64 * MIB, threshold: 0.5 }
    }

    #[test]
    fn the_bounds_are_the_promise() {
        let b = bounds();
        assert!(b.first_write(GIB + 100 * MIB).is_ok());
        assert!(b.first_write(GIB + 110 * MIB).is_err());
        assert!(b.after_overwrites(2 * GIB - 1).is_ok());
        assert!(b.after_overwrites(2 * GIB).is_err());
        // Half a segment in the boundary one and the whole newest segment may stay.
        assert!(b.after_trim(GIB, 512 * MIB + 96 * MIB, 512 * MIB).is_ok());
        assert!(b.after_trim(GIB, 512 * MIB + 97 * MIB, 512 * MIB).is_err());
        assert!(b.after_trim(GIB, GIB, 512 * MIB).is_err());
    }

    #[test]
    fn pieces_are_reproducible_and_differ_by_round() {
        assert_eq!(piece(8192, 3, 7), piece(8192, 3, 7));
        assert_ne!(piece(8192, 3, 7), piece(8192, 4, 7));
        assert_ne!(piece(8192, 3, 7), piece(8192, 3, 8));
    }
}
