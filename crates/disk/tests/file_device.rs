//! FileDevice under many concurrent operations: every one completes (none is left in its
//! queue without a worker) and lands where it should.

use bytes::Bytes;
use feitian_disk::{BlockDevice, FileDevice};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_all_complete_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dev = Arc::new(FileDevice::create(&dir.path().join("d.raw"), 4 << 20).expect("image"));
    let blocks = (4u64 << 20) / 4096;
    let run = async {
        for round in 0u8..5 {
            let mut tasks = tokio::task::JoinSet::new();
            for b in 0..blocks {
                let dev = dev.clone();
                tasks.spawn(async move {
                    let fill = (b as u8).wrapping_add(round);
                    dev.write(b * 4096, Bytes::from(vec![fill; 4096])).await.expect("write");
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("task");
            }
            dev.flush().await.expect("flush");
            let mut tasks = tokio::task::JoinSet::new();
            for b in 0..blocks {
                let dev = dev.clone();
                tasks.spawn(async move {
                    let d = dev.read(b * 4096, 4096).await.expect("read");
                    assert!(d.iter().all(|&x| x == (b as u8).wrapping_add(round)), "block {b}");
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("task");
            }
        }
        // Out of range is an error, not a panic.
        assert!(dev.read(4 << 20, 4096).await.is_err());
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("every operation completes");
}
