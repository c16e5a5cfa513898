//! Cloud disks on a host: the per-disk NBD server QEMU attaches a guest's disk to, the
//! [`BlockDevice`] seam it serves (a RAF volume in the product, [`FileDevice`] in tests and
//! benchmarks), and the per-category performance limits it enforces ([`qos`]).
//!
//! One server per disk, on a unix socket only the guest's QEMU (and root, and feitian itself)
//! may use; see [`nbd`] for how it authenticates and what it bounds, and `docs/disks.md` for
//! the disk design around it.

mod device;
mod file;
mod host;
pub mod nbd;
pub mod qos;
mod raf;

pub use device::{BlockDevice, DeviceError, DeviceFuture};
pub use file::FileDevice;
pub use host::{DiskHost, HostError};
pub use nbd::{NbdServer, ServerConfig, ServerError};
pub use raf::RafDevice;
