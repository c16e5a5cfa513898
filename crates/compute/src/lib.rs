//! Compute drivers: the part of the agent that runs instances on a host.
//!
//! The control plane never calls a driver; the instance reconciler does, to bring what runs
//! on the host to what the store says should run. A driver is told the whole
//! [`InstanceSpec`] on every start, so it keeps no state a restart could lose that the store
//! does not also have.
//!
//! Drivers:
//! - [`sim::SimDriver`]: for hosts without QEMU or root. It runs no guest; it models an
//!   instance's life (boot and shutdown take time, a console log is written) so that the API,
//!   state machine and tools above it behave as with real VMs. `feitian up` says when it is in
//!   use, and `feitian doctor` says what to install for real ones.
//! - [`qemu::QemuDriver`]: one `qemu-system-x86_64` per instance, on the built-in image
//!   ([`image`]).

pub mod host;
pub mod image;
pub mod qemu;
pub mod sim;

pub use feitian_agent_api::{DiskPlan, HostCapacity, InstancePlan};
use std::future::Future;
use std::pin::Pin;

/// Everything a driver needs to run an instance: the control plane's plan, and where the
/// host attached its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub plan: InstancePlan,
    /// The network namespace holding the instance's tap (the `qemu` driver runs QEMU there).
    pub netns: Option<String>,
    /// The tap of its network interface; `None` boots it without a network.
    pub tap: Option<String>,
}

/// What a driver sees of an instance on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Running,
    Stopped,
    /// The driver has no trace of it.
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("instance {0} is not known to this driver")]
    Unknown(String),
    #[error("{0}")]
    Failed(String),
}

pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// A host's disk servers, as a driver needs them (`docs/disks.md`): before QEMU boots or
/// hot-plugs a disk, the driver asks for the disk's volume to be served on an NBD socket in
/// the instance's directory, for the uid its QEMU runs as; after the guest let go of it (the
/// QEMU ended, or the disk was hot-unplugged), the driver stops it. Implemented by the disk
/// crate's `DiskHost`, given to the driver by the binary; the driver never opens a volume.
pub trait DiskServers: Send + Sync + 'static {
    /// Serves `volume` with its socket in `dir`, for `uid` (and root); returns the socket's
    /// path. Idempotent.
    fn serve<'a>(
        &'a self,
        disk: &'a DiskPlan,
        dir: &'a std::path::Path,
        uid: u32,
    ) -> DriverFuture<'a, std::path::PathBuf>;
    /// Stops serving `volume`; idempotent.
    fn stop<'a>(&'a self, volume: &'a str) -> DriverFuture<'a, ()>;
}

impl std::fmt::Debug for dyn DiskServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskServers")
    }
}

/// Runs instances on one host.
pub trait Driver: Send + Sync + 'static {
    /// `sim` or `qemu`.
    fn name(&self) -> &'static str;
    /// Boots the instance until its OS is up; idempotent for a running one.
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> DriverFuture<'a, ()>;
    /// Shuts it down (ACPI, then forced after a grace period, or forced at once); idempotent.
    fn stop<'a>(&'a self, id: &'a str, force: bool) -> DriverFuture<'a, ()>;
    /// Restarts a running instance.
    fn reboot<'a>(&'a self, spec: &'a InstanceSpec, force: bool) -> DriverFuture<'a, ()>;
    /// Removes every trace of it (process, disk overlay, console log); idempotent.
    fn destroy<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()>;
    /// What the host has of it right now.
    fn observe(&self, id: &str) -> Observed;
    /// Every instance the host has a trace of (to clean up what the store no longer holds).
    fn known(&self) -> Vec<String>;
    /// The serial console's output so far.
    fn console_output(&self, id: &str) -> Option<String>;
    /// What the host has for guests, now: measured by the `qemu` driver, modelled by `sim`.
    fn capacity(&self) -> Result<HostCapacity, DriverError>;
    /// Hot-plugs a disk into a running instance; idempotent for one already attached. (A
    /// stopped instance gets its disks from its plan at the next start.)
    fn attach_disk<'a>(&'a self, id: &'a str, disk: &'a DiskPlan) -> DriverFuture<'a, ()>;
    /// Hot-unplugs a disk (by its volume's name) from a running instance; idempotent.
    fn detach_disk<'a>(&'a self, id: &'a str, volume: &'a str) -> DriverFuture<'a, ()>;
    /// The volumes the instance's guest has attached right now, by name (empty when it does
    /// not run).
    fn attached_disks(&self, id: &str) -> Vec<String>;
    /// Shows a running guest that its attached disk's volume grew to `size_bytes` (online
    /// `ResizeDisk`: the volume was grown first). Nothing to do for a guest that does not run
    /// or does not have the disk: it sees the size at its next boot or attach.
    fn disk_grown<'a>(&'a self, id: &'a str, volume: &'a str, size_bytes: u64) -> DriverFuture<'a, ()>;
}
