//! The DescribeDisks shape of a disk, built by value from its store row: every field of the
//! SDK's `DescribeDisksResponseBodyDisksDisk`, with its JSON type, and the list wrappers
//! (`Tags.Tag`, `OperationLocks.OperationLock`, `Attachments.Attachment`,
//! `MountInstances.MountInstance`) always present.

use crate::answer::{Paging, Tags};
use feitian_meta::disk::Disk;
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDisksResponse {
    #[serde(flatten)]
    pub paging: Paging,
    pub disks: Disks,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Disks {
    pub disk: Vec<DiskItem>,
}

/// One disk, as `Disks.Disk[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskItem {
    pub disk_id: String,
    pub disk_name: String,
    pub description: String,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub category: String,
    pub size: i64,
    pub image_id: String,
    pub device: String,
    pub instance_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub status: &'static str,
    pub creation_time: String,
    pub attached_time: String,
    pub detached_time: String,
    pub expired_time: &'static str,
    pub delete_with_instance: bool,
    pub delete_auto_snapshot: bool,
    pub enable_auto_snapshot: bool,
    pub enable_automated_snapshot_policy: bool,
    pub auto_snapshot_policy_id: String,
    pub encrypted: bool,
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: &'static str,
    pub portable: bool,
    pub disk_charge_type: &'static str,
    #[serde(rename = "IOPS")]
    pub iops: i64,
    #[serde(rename = "IOPSRead")]
    pub iops_read: i64,
    #[serde(rename = "IOPSWrite")]
    pub iops_write: i64,
    pub throughput: i64,
    pub throughput_read: i64,
    pub throughput_write: i64,
    pub provisioned_iops: i64,
    pub bursting_enabled: bool,
    pub performance_level: String,
    pub serial_number: String,
    pub source_snapshot_id: String,
    pub source_disk_id: &'static str,
    pub resource_group_id: &'static str,
    pub multi_attach: &'static str,
    pub bdf_id: &'static str,
    pub product_code: &'static str,
    pub storage_cluster_id: &'static str,
    pub storage_set_id: &'static str,
    pub storage_set_partition_number: i64,
    pub mount_instance_num: i64,
    pub placement: Placement,
    pub attachments: Attachments,
    pub mount_instances: MountInstances,
    pub operation_locks: DiskOperationLocks,
    pub tags: Tags<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    pub zone_ids: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachments {
    pub attachment: Vec<Attachment>,
}

/// One attachment; `MountInstances.MountInstance[]` has the same fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    pub instance_id: String,
    pub device: String,
    pub attached_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountInstances {
    pub mount_instance: Vec<Attachment>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskOperationLocks {
    pub operation_lock: [(); 0],
}

/// The IOPS a disk of the category and size is rated at (ESSD PL1's formula, capped), as a
/// client sees it; feitian enforces none.
fn iops(category: &str, size_gib: i64) -> i64 {
    match category {
        "cloud" => 1000,
        "cloud_efficiency" => (1800 + 8 * size_gib).min(5000),
        "cloud_ssd" => (1800 + 30 * size_gib).min(25000),
        _ => (1800 + 50 * size_gib).min(50000),
    }
}

impl DiskItem {
    pub fn new(d: Disk, tags: Tags<String>) -> DiskItem {
        let attachment: Vec<Attachment> = if d.instance_id.is_empty() {
            vec![]
        } else {
            vec![Attachment {
                instance_id: d.instance_id.clone(),
                device: d.device.clone(),
                attached_time: d.attached_at.clone(),
            }]
        };
        let rated = iops(&d.category, d.size_gib);
        DiskItem {
            serial_number: d.id.trim_start_matches("d-").to_owned(),
            disk_id: d.id,
            disk_name: d.name,
            description: d.description,
            kind: d.disk_type.as_str(),
            performance_level: d.performance_level,
            iops: rated,
            iops_read: rated,
            iops_write: rated,
            throughput: 0,
            throughput_read: 0,
            throughput_write: 0,
            provisioned_iops: 0,
            bursting_enabled: false,
            category: d.category,
            size: d.size_gib,
            image_id: d.image_id,
            device: d.device,
            instance_id: d.instance_id,
            region_id: d.region_id,
            placement: Placement { zone_ids: d.zone_id.clone() },
            zone_id: d.zone_id,
            status: d.status.as_str(),
            attached_time: d.attached_at,
            detached_time: d.detached_at,
            creation_time: d.created_at,
            expired_time: "",
            delete_with_instance: d.delete_with_instance,
            delete_auto_snapshot: d.delete_auto_snapshot,
            enable_auto_snapshot: d.enable_auto_snapshot,
            enable_automated_snapshot_policy: false,
            auto_snapshot_policy_id: String::new(),
            encrypted: false,
            kms_key_id: "",
            portable: d.portable,
            disk_charge_type: "PostPaid",
            source_snapshot_id: String::new(),
            source_disk_id: "",
            resource_group_id: "",
            multi_attach: "Disabled",
            bdf_id: "",
            product_code: "",
            storage_cluster_id: "",
            storage_set_id: "",
            storage_set_partition_number: 0,
            mount_instance_num: attachment.len() as i64,
            mount_instances: MountInstances { mount_instance: attachment.clone() },
            attachments: Attachments { attachment },
            operation_locks: DiskOperationLocks { operation_lock: [] },
            tags,
        }
    }

    /// The automatic snapshot policy the disk follows, if any.
    pub fn with_policy(mut self, policy_id: Option<String>) -> DiskItem {
        self.enable_automated_snapshot_policy = policy_id.is_some();
        self.auto_snapshot_policy_id = policy_id.unwrap_or_default();
        self
    }
}
