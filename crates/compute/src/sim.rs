//! The `sim` driver: a model of instances for hosts that cannot run VMs.
//!
//! Boot and shutdown take a configurable time (`FEITIAN_SIM_BOOT_MS`, default 300 ms; a stop
//! takes half of it), so clients see the real sequence of states (Starting before Running,
//! Stopping before Stopped). A console log records what a guest would print. State lives in
//! memory: after a feitian restart the reconciler starts again whatever the store says should
//! be running, which for this driver is instant bookkeeping.

use crate::{DiskPlan, Driver, DriverError, DriverFuture, HostCapacity, InstanceSpec, Observed};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

#[derive(Debug, Clone)]
struct SimVm {
    running: bool,
    console: String,
    /// What the guest was given (it takes it from the modelled host while it runs).
    memory_mib: u64,
    /// The disks the guest has, by volume: those of its plan at boot, then hot-plugged ones.
    disks: BTreeMap<String, DiskPlan>,
}

pub struct SimDriver {
    boot: Duration,
    vms: Mutex<HashMap<String, SimVm>>,
    /// The modelled host: its CPUs and memory.
    vcpus: u32,
    memory_mib: u64,
}

/// The host `sim` models unless told otherwise: large enough that only quotas, not the
/// model, limit what a test or a demo creates.
pub const DEFAULT_VCPUS: u32 = 256;
pub const DEFAULT_MEMORY_MIB: u64 = 1 << 20;

impl SimDriver {
    pub fn new(boot: Duration) -> Self {
        SimDriver { boot, vms: Mutex::new(HashMap::new()), vcpus: DEFAULT_VCPUS, memory_mib: DEFAULT_MEMORY_MIB }
    }

    /// Models a host of `vcpus` CPUs and `memory_mib` of memory (admission tests use a
    /// small one; the `qemu` driver measures the real host instead).
    pub fn with_host(mut self, vcpus: u32, memory_mib: u64) -> Self {
        self.vcpus = vcpus;
        self.memory_mib = memory_mib;
        self
    }

    /// The boot time from `FEITIAN_SIM_BOOT_MS`, else 300 ms.
    pub fn from_env() -> Self {
        let ms = std::env::var("FEITIAN_SIM_BOOT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
        Self::new(Duration::from_millis(ms))
    }

    /// Models a guest that stops without being asked: a shutdown from inside (`clean`; it
    /// prints the shutdown line, as the built-in image does), or its virtual machine's process
    /// dying under it. `false` if the driver has no such instance running.
    pub fn halt(&self, id: &str, clean: bool) -> bool {
        let mut vms = self.vms.lock();
        let Some(vm) = vms.get_mut(id).filter(|v| v.running) else { return false };
        vm.running = false;
        vm.disks.clear();
        if clean {
            vm.console.push_str(crate::image::SHUTDOWN_LINE);
            vm.console.push('\n');
        }
        true
    }

    fn log(&self, id: &str, line: &str) {
        if let Some(vm) = self.vms.lock().get_mut(id) {
            vm.console.push_str(line);
            vm.console.push('\n');
        }
    }
}

impl Driver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            {
                let mut vms = self.vms.lock();
                let vm = vms.entry(spec.plan.id.clone()).or_insert_with(|| SimVm {
                    running: false,
                    console: String::new(),
                    memory_mib: 0,
                    disks: BTreeMap::new(),
                });
                vm.memory_mib = u64::from(spec.plan.memory_mib);
                if vm.running {
                    return Ok(());
                }
                vm.disks = spec.plan.disks.iter().map(|d| (d.volume.clone(), d.clone())).collect();
            }
            self.log(
                &spec.plan.id,
                &format!(
                    "[sim] booting {} ({} vCPU, {} MiB) from {}",
                    spec.plan.id, spec.plan.cpu, spec.plan.memory_mib, spec.plan.image_id
                ),
            );
            tokio::time::sleep(self.boot).await;
            self.log(
                &spec.plan.id,
                &format!(
                    "[sim] eth0 {} mac {} ip {}/{} gw {}",
                    spec.plan.vpc_id,
                    spec.plan.nic.mac,
                    spec.plan.nic.ip,
                    spec.plan.nic.prefix_len,
                    spec.plan.nic.gateway
                ),
            );
            self.log(
                &spec.plan.id,
                &format!(
                    "[sim] {} authorized key(s); user-data {} bytes",
                    spec.plan.public_keys.len(),
                    spec.plan.user_data.len()
                ),
            );
            for d in &spec.plan.disks {
                self.log(&spec.plan.id, &format!("[sim] disk {} ({} GiB) serial {}", d.device, d.size_gib, d.serial));
            }
            self.log(&spec.plan.id, &format!("{} login:", spec.plan.host_name));
            if let Some(vm) = self.vms.lock().get_mut(&spec.plan.id) {
                vm.running = true;
            }
            Ok(())
        })
    }

    fn stop<'a>(&'a self, id: &'a str, force: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let running = self.vms.lock().get(id).map(|v| v.running);
            match running {
                None => return Err(DriverError::Unknown(id.to_owned())),
                Some(false) => return Ok(()),
                Some(true) => {}
            }
            self.log(id, if force { "[sim] power off (forced)" } else { "[sim] ACPI shutdown" });
            if !force {
                tokio::time::sleep(self.boot / 2).await;
            }
            if let Some(vm) = self.vms.lock().get_mut(id) {
                vm.running = false;
                vm.disks.clear();
            }
            Ok(())
        })
    }

    fn reboot<'a>(&'a self, spec: &'a InstanceSpec, force: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if self.observe(&spec.plan.id) == Observed::Running {
                self.stop(&spec.plan.id, force).await?;
            }
            self.start(spec).await
        })
    }

    fn destroy<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.vms.lock().remove(id);
            Ok(())
        })
    }

    fn observe(&self, id: &str) -> Observed {
        match self.vms.lock().get(id) {
            None => Observed::Absent,
            Some(v) if v.running => Observed::Running,
            Some(_) => Observed::Stopped,
        }
    }

    fn known(&self) -> Vec<String> {
        self.vms.lock().keys().cloned().collect()
    }

    fn console_output(&self, id: &str) -> Option<String> {
        self.vms.lock().get(id).map(|v| v.console.clone())
    }

    fn attach_disk<'a>(&'a self, id: &'a str, disk: &'a DiskPlan) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut vms = self.vms.lock();
            let vm = vms.get_mut(id).filter(|v| v.running).ok_or_else(|| DriverError::Unknown(id.to_owned()))?;
            if vm.disks.insert(disk.volume.clone(), disk.clone()).is_none() {
                vm.console.push_str(&format!("[sim] disk {} hot-plugged ({} GiB)\n", disk.device, disk.size_gib));
            }
            Ok(())
        })
    }

    fn detach_disk<'a>(&'a self, id: &'a str, volume: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut vms = self.vms.lock();
            let Some(vm) = vms.get_mut(id) else { return Err(DriverError::Unknown(id.to_owned())) };
            if let Some(d) = vm.disks.remove(volume) {
                vm.console.push_str(&format!("[sim] disk {} unplugged\n", d.device));
            }
            Ok(())
        })
    }

    fn attached_disks(&self, id: &str) -> Vec<String> {
        self.vms.lock().get(id).filter(|v| v.running).map(|v| v.disks.keys().cloned().collect()).unwrap_or_default()
    }

    /// The model has no bytes to show: a disk's size is what its plan says at the next boot.
    fn disk_grown<'a>(&'a self, id: &'a str, volume: &'a str, size_bytes: u64) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if self.attached_disks(id).iter().any(|v| v == volume) {
                self.log(id, &format!("[sim] disk {volume} grown to {size_bytes} bytes"));
            }
            Ok(())
        })
    }

    /// The modelled host: its running guests use all the memory they were given.
    fn capacity(&self) -> Result<HostCapacity, DriverError> {
        let used: u64 = self.vms.lock().values().filter(|v| v.running).map(|v| v.memory_mib).sum();
        Ok(HostCapacity {
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            memory_available_mib: self.memory_mib.saturating_sub(used),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstancePlan;

    fn disk(volume: &str, device: &str) -> DiskPlan {
        DiskPlan {
            volume: volume.into(),
            size_gib: 20,
            device: device.into(),
            serial: volume.into(),
            read_only: false,
            category: "cloud_efficiency".into(),
            performance_level: String::new(),
        }
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            plan: InstancePlan {
                id: "i-1".into(),
                host_name: "h".into(),
                cpu: 1,
                memory_mib: 512,
                system_disk_gib: 40,
                disks: vec![disk("d-sys", "/dev/xvda")],
                image_id: "img".into(),
                vpc_id: "vpc-1".into(),
                nic: feitian_agent_api::NicPlan {
                    id: "eni-1".into(),
                    mac: "00:16:3e:00:00:01".into(),
                    ip: "192.168.1.1".parse().unwrap(),
                    gateway: "192.168.1.253".parse().unwrap(),
                    prefix_len: 24,
                },
                user_data: String::new(),
                public_keys: vec![],
            },
            netns: None,
            tap: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lifecycle() {
        let d = SimDriver::new(Duration::from_millis(100));
        assert_eq!(d.observe("i-1"), Observed::Absent);
        assert!(d.stop("i-1", false).await.is_err());
        d.start(&spec()).await.unwrap();
        assert_eq!(d.observe("i-1"), Observed::Running);
        d.start(&spec()).await.unwrap();
        d.reboot(&spec(), false).await.unwrap();
        assert_eq!(d.observe("i-1"), Observed::Running);
        d.stop("i-1", false).await.unwrap();
        assert_eq!(d.observe("i-1"), Observed::Stopped);
        assert!(d.console_output("i-1").unwrap().contains("ACPI shutdown"));
        assert_eq!(d.known(), vec!["i-1".to_string()]);
        d.start(&spec()).await.unwrap();
        assert!(d.halt("i-1", true));
        assert_eq!(d.observe("i-1"), Observed::Stopped);
        assert!(d.console_output("i-1").unwrap().contains(crate::image::SHUTDOWN_LINE));
        assert!(!d.halt("i-1", false), "a stopped guest cannot halt again");
        assert!(d.attach_disk("i-1", &disk("d-2", "/dev/xvdb")).await.is_err(), "a stopped guest takes no hot-plug");
        assert!(d.attached_disks("i-1").is_empty());
        d.start(&spec()).await.unwrap();
        assert_eq!(d.attached_disks("i-1"), vec!["d-sys".to_string()], "its plan's disks at boot");
        d.attach_disk("i-1", &disk("d-2", "/dev/xvdb")).await.unwrap();
        d.attach_disk("i-1", &disk("d-2", "/dev/xvdb")).await.unwrap();
        assert_eq!(d.attached_disks("i-1"), vec!["d-2".to_string(), "d-sys".to_string()]);
        d.detach_disk("i-1", "d-2").await.unwrap();
        d.detach_disk("i-1", "d-2").await.unwrap();
        assert_eq!(d.attached_disks("i-1"), vec!["d-sys".to_string()]);
        assert!(d.console_output("i-1").unwrap().contains("/dev/xvdb hot-plugged"));
        d.destroy("i-1").await.unwrap();
        assert_eq!(d.observe("i-1"), Observed::Absent);
        assert!(d.known().is_empty());
    }
}
