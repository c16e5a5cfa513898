//! Which volumes the driver had served for each instance's QEMU.
//!
//! A host's disk servers live in the feitian process (`docs/disks.md`), so this record lives
//! in memory with them: after a restart neither exists, and `start`, which the reconciler
//! calls for every guest it adopts, serves the guest's disks again and records them. The
//! record says which servers to stop once a guest's QEMU has ended (never before: a QEMU
//! whose disk server is gone waits for it), and which disks a running guest has.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};

/// Instance id → the volumes served for its QEMU.
#[derive(Debug, Default)]
pub struct Served {
    by_instance: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Served {
    /// Records that `volume` is served for `instance`. A volume is served for one instance at
    /// a time (a disk is attached to one instance): it leaves any other's record.
    pub fn add(&self, instance: &str, volume: &str) {
        let mut map = self.by_instance.lock();
        for (other, volumes) in map.iter_mut() {
            if other != instance {
                volumes.remove(volume);
            }
        }
        map.retain(|_, v| !v.is_empty());
        map.entry(instance.to_owned()).or_default().insert(volume.to_owned());
    }

    /// Forgets `volume` of `instance`.
    pub fn remove(&self, instance: &str, volume: &str) {
        let mut map = self.by_instance.lock();
        if let Some(v) = map.get_mut(instance) {
            v.remove(volume);
            if v.is_empty() {
                map.remove(instance);
            }
        }
    }

    /// The volumes served for `instance`, by name.
    pub fn of(&self, instance: &str) -> Vec<String> {
        self.by_instance.lock().get(instance).map(|v| v.iter().cloned().collect()).unwrap_or_default()
    }

    /// Whether `volume` is served for `instance`.
    pub fn has(&self, instance: &str, volume: &str) -> bool {
        self.by_instance.lock().get(instance).is_some_and(|v| v.contains(volume))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_recorded_per_instance_and_move_between_them() {
        let s = Served::default();
        s.add("i-1", "d-sys");
        s.add("i-1", "d-data");
        s.add("i-1", "d-data");
        assert_eq!(s.of("i-1"), vec!["d-data".to_string(), "d-sys".to_string()]);
        assert!(s.has("i-1", "d-data") && !s.has("i-2", "d-data"));
        // Detached from i-1 while it was stopped, attached to i-2: only i-2 has it now.
        s.add("i-2", "d-data");
        assert_eq!(s.of("i-1"), vec!["d-sys".to_string()]);
        assert_eq!(s.of("i-2"), vec!["d-data".to_string()]);
        s.remove("i-1", "d-sys");
        s.remove("i-1", "d-sys");
        assert!(s.of("i-1").is_empty());
        assert!(s.of("i-3").is_empty());
        assert!(s.by_instance.lock().get("i-1").is_none(), "an instance with no volume leaves no entry");
    }
}
