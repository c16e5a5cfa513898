//! Object transfers of one fixed size, closed loop: PUT then GET against feitian's OSS
//! (signature V1), moto_server's S3 (SigV4), or plain files on a disk (the physical limit).
//!
//! The payload is generated once (pseudo-random, so that nothing downstream can compress or
//! skip zeros) and every PUT sends the same `Bytes` (a reference count, never a copy); a GET
//! reads the whole body frame by frame, counts it and drops it, and fails when the length
//! is not the object size. So the load generator's own cost per byte is the socket copy.
//!
//! Keys are `<prefix><index, eight digits>`: a PUT writes indices 0, 1, 2, … (each once), a
//! GET reads 0..N once each, or round and round for a time. Throughput is what completed
//! divided by the wall time from the first request to the last answer; nothing is warm-up.

use crate::{hmac, quantile, Args};
use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use feitian_api::oss_signature;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Service {
    /// feitian's OSS, path style, `Authorization: OSS ak:signature` (V1).
    Oss,
    /// moto_server's S3, path style, SigV4 with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (as
    /// OSS V1 does not hash the body either). moto does not check it; it is computed anyway
    /// so that both clients do the same work per request.
    S3,
    /// Files in a directory: the disk's own limit.
    Disk,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Put,
    Get,
}

/// How long a run goes on.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// Indices 0..n, once each.
    Count(u64),
    /// New indices until the time is up (PUT).
    Time(Duration),
    /// Indices 0..n round and round until the time is up (GET).
    Cycle(u64, Duration),
}

/// Disk reads go through a buffer this large (or the object size, if smaller).
const READ_CHUNK: usize = 1 << 20;

type Body = Full<Bytes>;

struct Objects {
    service: Service,
    client: Client<HttpConnector, Body>,
    target: String,
    bucket: String,
    prefix: String,
    access_key_id: String,
    access_key_secret: String,
    dir: PathBuf,
    size: usize,
    payload: Bytes,
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, the same every run.
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(size);
    Bytes::from(v)
}

/// RFC 1123, as OSS's `Date` header wants it.
fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The OSS V1 string to sign for a request with no `Content-MD5`, no `x-oss-*` headers and no
/// sub-resources, as oss2's `Auth` builds it: `VERB\nContent-MD5\nContent-Type\nDate\n/bucket/key`.
fn oss_v1_string_to_sign(method: &str, content_type: &str, date: &str, bucket: &str, key: &str) -> String {
    format!("{method}\n\n{content_type}\n{date}\n/{bucket}/{key}")
}

/// AWS SigV4 over host, `x-amz-content-sha256: UNSIGNED-PAYLOAD` and `x-amz-date`, for S3 in
/// us-east-1; returns the `Authorization` value.
fn s3_authorization(method: &str, path: &str, host: &str, amz_date: &str, access_key_id: &str, secret: &str) -> String {
    let date = &amz_date[..8];
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz_date}\n\n\
         host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD"
    );
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let sts = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, sts.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
         Signature={signature}"
    )
}

thread_local! {
    /// Each blocking thread's read buffer, allocated once.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Objects {
    fn key(&self, i: u64) -> String {
        format!("{}{i:08}", self.prefix)
    }

    /// A signed request for `key`; `body` is empty for a GET.
    fn request(&self, op: Op, key: &str) -> anyhow::Result<hyper::Request<Body>> {
        let (method, body) = match op {
            Op::Put => (Method::PUT, self.payload.clone()),
            Op::Get => (Method::GET, Bytes::new()),
        };
        let content_type = if op == Op::Put { "application/octet-stream" } else { "" };
        let path = format!("/{}/{key}", self.bucket);
        let mut b = hyper::Request::builder().method(method.clone()).uri(format!("http://{}{path}", self.target));
        let now = chrono::Utc::now();
        match self.service {
            Service::Oss => {
                let date = http_date(now);
                let sts = oss_v1_string_to_sign(method.as_str(), content_type, &date, &self.bucket, key);
                let signature = oss_signature::v1_sign(&self.access_key_secret, &sts);
                b = b.header("date", date).header("authorization", format!("OSS {}:{signature}", self.access_key_id));
            }
            Service::S3 => {
                let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
                let auth = s3_authorization(
                    method.as_str(),
                    &path,
                    &self.target,
                    &amz_date,
                    &self.access_key_id,
                    &self.access_key_secret,
                );
                b = b
                    .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
                    .header("x-amz-date", amz_date)
                    .header("authorization", auth);
            }
            Service::Disk => bail!("a disk has no requests"),
        }
        if op == Op::Put {
            b = b.header("content-type", content_type).header("content-length", body.len());
        }
        Ok(b.body(Full::new(body))?)
    }

    /// Sends one request and reads the whole answer; the number of body bytes.
    async fn exchange(&self, op: Op, key: &str) -> anyhow::Result<usize> {
        let resp = self.client.request(self.request(op, key)?).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let (mut n, mut error_text) = (0usize, Vec::new());
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len();
                if !status.is_success() && error_text.len() < 4096 {
                    error_text.extend_from_slice(&data);
                }
            }
        }
        if !status.is_success() {
            bail!("{} {key}: the server answered {status}: {}", op_name(op), String::from_utf8_lossy(&error_text));
        }
        Ok(n)
    }

    async fn run_one(&self, op: Op, i: u64) -> anyhow::Result<()> {
        let key = self.key(i);
        if self.service == Service::Disk {
            let path = self.dir.join(&key);
            let (payload, size) = (self.payload.clone(), self.size);
            return tokio::task::spawn_blocking(move || {
                let done = match op {
                    Op::Put => std::fs::File::create(&path).and_then(|mut f| {
                        f.write_all(&payload)?;
                        // Durable, as a PUT that answers 200 must be.
                        f.sync_all()
                    }),
                    Op::Get => READ_BUF.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        if buf.is_empty() {
                            buf.resize(READ_CHUNK.min(size), 0);
                        }
                        let mut f = std::fs::File::open(&path)?;
                        let mut n = 0;
                        loop {
                            match f.read(&mut buf)? {
                                0 => break,
                                r => n += r,
                            }
                        }
                        if n != size {
                            return Err(std::io::Error::other(format!("{n} bytes, not {size}")));
                        }
                        Ok(())
                    }),
                };
                done.with_context(|| format!("{} {}", op_name(op), path.display()))
            })
            .await?;
        }
        let n = self.exchange(op, &key).await?;
        if op == Op::Get {
            ensure!(n == self.size, "GET {key}: {n} bytes, not {}", self.size);
        }
        Ok(())
    }
}

/// TCP_NODELAY on, as urllib3 (under oss2 and boto3) sets it on every connection.
fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Put => "PUT",
        Op::Get => "GET",
    }
}

pub async fn run(service: Service, op: Op, a: Arc<Args>) -> anyhow::Result<()> {
    let target = match (service, &a.target) {
        (Service::Disk, _) => String::new(),
        (_, Some(t)) => t.clone(),
        (_, None) => bail!("--target is required for {:?}", a.kind),
    };
    let dir = match (service, &a.dir) {
        (Service::Disk, Some(d)) => {
            std::fs::create_dir_all(d).with_context(|| format!("making {}", d.display()))?;
            d.clone()
        }
        (Service::Disk, None) => bail!("--dir is required for {:?}", a.kind),
        _ => PathBuf::new(),
    };
    let until = match (op, a.objects, a.seconds) {
        (Op::Put, Some(n), _) => Until::Count(n),
        (Op::Put, None, _) => Until::Time(a.seconds_or_default()),
        (Op::Get, None, _) => bail!("--objects is required for a GET: how many objects (keys 0..N) were written"),
        (Op::Get, Some(n), Some(s)) => Until::Cycle(n, Duration::from_secs(s)),
        (Op::Get, Some(n), None) => Until::Count(n),
    };
    if matches!(until, Until::Count(0) | Until::Cycle(0, _)) {
        bail!("--objects must be at least 1");
    }
    let objects = Arc::new(Objects {
        service,
        client: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(a.concurrency).build(connector()),
        target,
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        access_key_id: a.access_key_id.clone(),
        access_key_secret: a.access_key_secret.clone(),
        dir,
        size: a.object_size,
        payload: if op == Op::Put || service == Service::Disk { payload(a.object_size) } else { Bytes::new() },
    });
    // One request first (index 0, which the run then does again): a server that refuses us
    // should fail the run, not be "fast".
    objects.run_one(op, 0).await.context("the first request failed")?;

    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (objects, next) = (objects.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0u64, None::<String>);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let index = match until {
                    Until::Count(n) if i >= n => break,
                    Until::Time(d) | Until::Cycle(_, d) if t0.elapsed() >= d => break,
                    Until::Cycle(n, _) => i % n,
                    _ => i,
                };
                let t = Instant::now();
                match objects.run_one(op, index).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let (mut all, mut errors, mut first_error) = (Vec::new(), 0u64, None);
    for t in tasks {
        let (lat, e, fe) = t.await?;
        all.extend(lat);
        errors += e;
        first_error = first_error.or(fe);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    all.sort();
    let done = all.len() as u64;
    let objects_touched = match until {
        Until::Count(n) | Until::Cycle(n, _) => n,
        Until::Time(_) => done + errors,
    };
    let out = serde_json::json!({
        "kind": format!("{:?}", a.kind),
        "concurrency": a.concurrency,
        "object_size": a.object_size,
        "objects": objects_touched,
        "seconds": elapsed,
        "requests": done,
        "errors": errors,
        "rps": done as f64 / elapsed,
        "mb_s": (done as f64 * a.object_size as f64) / elapsed / 1e6,
        "p50_ms": quantile(&all, 0.50).as_secs_f64() * 1e3,
        "p99_ms": quantile(&all, 0.99).as_secs_f64() * 1e3,
        "first_error": first_error,
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_deterministic_and_not_zeros() {
        let p = payload(4099);
        assert_eq!(p.len(), 4099);
        assert_eq!(p, payload(4099));
        assert!(p.iter().filter(|&&b| b == 0).count() < 100);
        assert_eq!(&payload(64)[..], &p[..64]);
    }

    #[test]
    fn oss_v1_matches_oss2() {
        // oss2 2.19.1: `Auth("ak", "secret")._sign_request` on a PUT of /b/obj-00000000 with
        // `Content-Type: application/octet-stream` and the Date pinned gave this signature.
        let date = "Sun, 22 Nov 2026 08:00:00 GMT";
        let sts = oss_v1_string_to_sign("PUT", "application/octet-stream", date, "b", "obj-00000000");
        assert_eq!(sts, "PUT\n\napplication/octet-stream\nSun, 22 Nov 2026 08:00:00 GMT\n/b/obj-00000000");
        assert_eq!(oss_signature::v1_sign("secret", &sts), "VDLGUnwQhYHLhER4IZUWgKt6X8Q=");
    }

    #[test]
    fn http_dates() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(http_date(t), "Sun, 22 Nov 2026 08:00:00 GMT");
    }
}
