//! The binary's `VolumeService`: where the disk reconciler makes, grows, re-initialises and
//! deletes disks' volumes.
//!
//! Today it keeps a record of each volume in memory (name, size, parent) and no bytes: the
//! compute drivers do not read volumes yet (the `qemu` driver still gives a guest its own
//! system-disk overlay). A restart forgets every record while the store still counts the
//! volumes as made; since no bytes are lost with them, a later call on a forgotten volume
//! (a resize) simply records it again.

use feitian_agent_api::{Fut, VolumeService};
use parking_lot::Mutex;
use std::collections::HashMap;

/// One volume: its size and the volume it started from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Volume {
    size_bytes: u64,
    parent: Option<String>,
}

// LEAD: replace with RAF volumes on Pangu
#[derive(Default)]
pub struct MemoryVolumes {
    volumes: Mutex<HashMap<String, Volume>>,
}

impl MemoryVolumes {
    pub fn new() -> MemoryVolumes {
        MemoryVolumes::default()
    }
}

impl VolumeService for MemoryVolumes {
    fn create(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()> {
        Box::pin(async move {
            let mut v = self.volumes.lock();
            let vol = v.entry(name).or_insert(Volume { size_bytes, parent });
            vol.size_bytes = vol.size_bytes.max(size_bytes);
            Ok(())
        })
    }

    fn resize(&self, name: String, size_bytes: u64) -> Fut<'_, ()> {
        Box::pin(async move {
            let mut v = self.volumes.lock();
            // A volume a restart forgot held no bytes: record it again at its new size.
            let vol = v.entry(name).or_insert(Volume { size_bytes, parent: None });
            vol.size_bytes = vol.size_bytes.max(size_bytes);
            Ok(())
        })
    }

    fn reinit(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()> {
        Box::pin(async move {
            self.volumes.lock().insert(name, Volume { size_bytes, parent });
            Ok(())
        })
    }

    fn delete(&self, name: String) -> Fut<'_, ()> {
        Box::pin(async move {
            self.volumes.lock().remove(&name);
            Ok(())
        })
    }

    fn exists(&self, name: String) -> Fut<'_, bool> {
        Box::pin(async move { Ok(self.volumes.lock().contains_key(&name)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn volumes_are_made_grown_reset_and_deleted_idempotently() {
        let v = MemoryVolumes::new();
        let name = || "d-1".to_string();
        assert!(!v.exists(name()).await.unwrap());
        v.create(name(), 10, Some("img-m".into())).await.unwrap();
        v.create(name(), 5, None).await.unwrap();
        let got = || v.volumes.lock().get("d-1").cloned();
        assert_eq!(got(), Some(Volume { size_bytes: 10, parent: Some("img-m".into()) }), "a second create keeps it");
        v.resize(name(), 20).await.unwrap();
        v.resize(name(), 15).await.unwrap();
        assert_eq!(got().map(|x| x.size_bytes), Some(20), "never shrinks");
        v.reinit(name(), 20, None).await.unwrap();
        assert_eq!(got(), Some(Volume { size_bytes: 20, parent: None }));
        v.delete(name()).await.unwrap();
        v.delete(name()).await.unwrap();
        assert!(!v.exists(name()).await.unwrap());
        v.resize(name(), 30).await.unwrap();
        assert_eq!(got(), Some(Volume { size_bytes: 30, parent: None }), "a forgotten volume is recorded again");
    }
}
