//! RPC calls: feitian (V1 query signature) beside moto_server (EC2, SigV4), timed, after a
//! second of warm-up.

use crate::{hmac, quantile, Args};
use anyhow::{bail, Context};
use bytes::Bytes;
use feitian_api::signature as sig;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum Call {
    FeitianDescribeRegions,
    MotoDescribeRegions,
    FeitianDescribeInstances,
    MotoDescribeInstances,
}

type Body = Full<Bytes>;

fn build(call: Call, a: &Args, target: &str) -> anyhow::Result<hyper::Request<Body>> {
    match call {
        Call::FeitianDescribeRegions | Call::FeitianDescribeInstances => {
            let action =
                if matches!(call, Call::FeitianDescribeRegions) { "DescribeRegions" } else { "DescribeInstances" };
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let nonce = uuid::Uuid::new_v4().to_string();
            let mut params = vec![
                ("AccessKeyId", a.access_key_id.as_str()),
                ("Action", action),
                ("Format", "JSON"),
                ("RegionId", "cn-hangzhou"),
                ("SignatureMethod", "HMAC-SHA1"),
                ("SignatureNonce", nonce.as_str()),
                ("SignatureVersion", "1.0"),
                ("Timestamp", now.as_str()),
                ("Version", "2014-05-26"),
            ];
            if action == "DescribeInstances" {
                params.push(("PageSize", "100"));
            }
            let sts = sig::v1_string_to_sign("GET", params.iter().copied());
            let signature = sig::v1_sign(&a.access_key_secret, &sts);
            params.push(("Signature", &signature));
            let query = params
                .iter()
                .map(|(k, v)| format!("{}={}", sig::percent_encode(k), sig::percent_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            Ok(hyper::Request::get(format!("http://{target}/?{query}")).body(Body::new(Bytes::new()))?)
        }
        Call::MotoDescribeRegions | Call::MotoDescribeInstances => {
            let t = chrono::Utc::now();
            let amz_date = t.format("%Y%m%dT%H%M%SZ").to_string();
            let date = t.format("%Y%m%d").to_string();
            let body = if matches!(call, Call::MotoDescribeRegions) {
                "Action=DescribeRegions&Version=2016-11-15"
            } else {
                "Action=DescribeInstances&Version=2016-11-15&MaxResults=100"
            };
            let ct = "application/x-www-form-urlencoded; charset=utf-8";
            let canonical = format!(
                "POST\n/\n\ncontent-type:{ct}\nhost:{target}\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-date\n{}",
                hex::encode(Sha256::digest(body.as_bytes()))
            );
            let scope = format!("{date}/us-east-1/ec2/aws4_request");
            let sts =
                format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
            let mut key = hmac(format!("AWS4{}", a.access_key_secret).as_bytes(), date.as_bytes());
            for part in ["us-east-1", "ec2", "aws4_request"] {
                key = hmac(&key, part.as_bytes());
            }
            let signature = hex::encode(hmac(&key, sts.as_bytes()));
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={signature}",
                a.access_key_id
            );
            Ok(hyper::Request::post(format!("http://{target}/"))
                .header("content-type", ct)
                .header("x-amz-date", amz_date)
                .header("authorization", auth)
                .body(Body::new(Bytes::from_static(body.as_bytes())))?)
        }
    }
}

pub async fn run(call: Call, a: Arc<Args>) -> anyhow::Result<()> {
    let Some(target) = a.target.clone() else { bail!("--target is required for {:?}", a.kind) };
    let target: Arc<str> = target.into();
    let client: Client<_, Body> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(a.concurrency).build_http();
    // One request first: a server that refuses us should fail the run, not be "fast".
    let resp = client.request(build(call, &a, &target)?).await.context("the first request failed")?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("the server answered {status}: {}", String::from_utf8_lossy(&body));
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, a, target, measuring, stop) =
            (client.clone(), a.clone(), target.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let ok = match client.request(build(call, &a, &target)?).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        resp.into_body().collect().await.is_ok() && ok
                    }
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(t0.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(a.seconds_or_default()).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    all.sort();
    let out = serde_json::json!({
        "kind": format!("{:?}", a.kind),
        "concurrency": a.concurrency,
        "seconds": elapsed.as_secs_f64(),
        "requests": all.len(),
        "errors": errors,
        "rps": all.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": quantile(&all, 0.50).as_secs_f64() * 1e3,
        "p99_ms": quantile(&all, 0.99).as_secs_f64() * 1e3,
    });
    println!("{out}");
    Ok(())
}
