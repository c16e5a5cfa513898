//! `feitian-bench`: closed-loop load generators for docs/benchmarks.md.
//!
//! Every request is signed afresh (new nonce, timestamp and signature), as a real client
//! does, so that the server's authentication cost is part of what is measured. The client
//! runs on one thread so that it takes the same share of the machine whichever server it
//! measures.
//!
//! Two families of kinds: RPC calls (`rpc`: timed, after a second of warm-up) and object
//! transfers (`objects`: PUT/GET of fixed-size objects to feitian's OSS, moto's S3, or plain
//! files on a disk, counted or timed). Each run prints one JSON line.

mod objects;
mod rpc;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Kind {
    /// feitian: ECS DescribeRegions, V1 signature (HMAC-SHA1), GET.
    FeitianDescribeRegions,
    /// moto_server: EC2 DescribeRegions, AWS SigV4, POST form.
    MotoDescribeRegions,
    /// feitian: ECS DescribeInstances, PageSize=100, V1 signature, GET.
    FeitianDescribeInstances,
    /// moto_server: EC2 DescribeInstances, MaxResults=100, AWS SigV4, POST form.
    MotoDescribeInstances,
    /// feitian OSS: PutObject, path style, signature V1.
    OssPut,
    /// feitian OSS: GetObject, path style, signature V1; the whole body is read.
    OssGet,
    /// moto_server S3: PutObject, path style, SigV4 with an unsigned payload.
    S3Put,
    /// moto_server S3: GetObject, path style, SigV4; the whole body is read.
    S3Get,
    /// Files in --dir: create, write, fsync, close (the disk's limit for a durable PUT).
    DiskPut,
    /// Files in --dir: open, read to the end, close.
    DiskGet,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    kind: Kind,
    /// host:port of the server (loopback only); not used by the disk kinds.
    #[arg(long)]
    target: Option<String>,
    #[arg(long, default_value = "LTAIbenchmarkbenchmark01")]
    access_key_id: String,
    #[arg(long, default_value = "benchmark-secret")]
    access_key_secret: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of measurement (RPC kinds: after one second of warm-up; default 10). Object
    /// kinds: a PUT without --objects writes new objects for this long (default 10); a GET
    /// with it reads the --objects objects round and round for this long, without it reads
    /// each once.
    #[arg(long)]
    seconds: Option<u64>,
    /// Object size in bytes, or with a suffix: 4KiB, 64MiB, 1GiB.
    #[arg(long, value_parser = parse_size, default_value = "4KiB")]
    object_size: usize,
    /// Object kinds: how many objects a PUT writes, or how many (written before, keys
    /// 0..N) a GET reads.
    #[arg(long)]
    objects: Option<u64>,
    /// Bucket of the object kinds (it must exist).
    #[arg(long, default_value = "feitian-bench")]
    bucket: String,
    /// Object names are this prefix and an eight-digit index.
    #[arg(long, default_value = "obj-")]
    prefix: String,
    /// Directory of the disk kinds (made if missing).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl Args {
    fn seconds_or_default(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(10))
    }
}

/// `4096`, `4KiB`, `64MiB`, `1GiB` (also `K`, `M`, `G`, binary all the same).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("not a size: {s}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(|| format!("size out of range: {s}"))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The `p`-quantile of sorted latencies.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let a = Arc::new(Args::parse());
    if let Some(target) = &a.target {
        let host = target.split(':').next().unwrap_or_default();
        if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
            bail!("benchmarks only target loopback addresses, not {target}");
        }
    }
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rpc = |k| rt.block_on(rpc::run(k, a.clone()));
    let object = |s, op| rt.block_on(objects::run(s, op, a.clone()));
    use objects::{Op, Service};
    match a.kind {
        Kind::FeitianDescribeRegions => rpc(rpc::Call::FeitianDescribeRegions),
        Kind::MotoDescribeRegions => rpc(rpc::Call::MotoDescribeRegions),
        Kind::FeitianDescribeInstances => rpc(rpc::Call::FeitianDescribeInstances),
        Kind::MotoDescribeInstances => rpc(rpc::Call::MotoDescribeInstances),
        Kind::OssPut => object(Service::Oss, Op::Put),
        Kind::OssGet => object(Service::Oss, Op::Get),
        Kind::S3Put => object(Service::S3, Op::Put),
        Kind::S3Get => object(Service::S3, Op::Get),
        Kind::DiskPut => object(Service::Disk, Op::Put),
        Kind::DiskGet => object(Service::Disk, Op::Get),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4kb").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn quantiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&d, 0.99), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
