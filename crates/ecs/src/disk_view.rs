//! The DescribeDisks shape of a disk, built by value from its store row. Disks are instances'
//! system disks today, created and deleted with them (`instances.rs`).

use crate::answer::{Paging, Tags};
use feitian_meta::disk::{Disk, DiskStatus};
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
    pub detached_time: &'static str,
    pub expired_time: &'static str,
    pub delete_with_instance: bool,
    pub delete_auto_snapshot: bool,
    pub enable_auto_snapshot: bool,
    pub enable_automated_snapshot_policy: bool,
    pub auto_snapshot_policy_id: &'static str,
    pub encrypted: bool,
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: &'static str,
    pub portable: bool,
    pub disk_charge_type: &'static str,
    #[serde(rename = "IOPS")]
    pub iops: i64,
    pub performance_level: &'static str,
    pub serial_number: String,
    pub source_snapshot_id: &'static str,
    pub resource_group_id: &'static str,
    pub multi_attach: &'static str,
    pub attachments: Attachments,
    pub operation_locks: DiskOperationLocks,
    pub tags: Tags<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachments {
    pub attachment: Vec<Attachment>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    pub instance_id: String,
    pub device: String,
    pub attached_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskOperationLocks {
    pub operation_lock: [(); 0],
}

impl DiskItem {
    pub fn new(d: Disk, tags: Tags<String>) -> DiskItem {
        let attachment = if d.instance_id.is_empty() {
            vec![]
        } else {
            vec![Attachment {
                instance_id: d.instance_id.clone(),
                device: d.device.clone(),
                attached_time: d.created_at.clone(),
            }]
        };
        // A disk no instance holds is Available, whatever its row says.
        let status = if d.instance_id.is_empty() { DiskStatus::Available } else { d.status };
        DiskItem {
            serial_number: d.id.trim_start_matches("d-").to_owned(),
            disk_id: d.id,
            disk_name: d.name,
            description: d.description,
            kind: d.disk_type.as_str(),
            performance_level: if d.category == "cloud_essd" { "PL1" } else { "" },
            category: d.category,
            size: d.size_gib,
            image_id: d.image_id,
            device: d.device,
            instance_id: d.instance_id,
            region_id: d.region_id,
            zone_id: d.zone_id,
            status: status.as_str(),
            attached_time: d.created_at.clone(),
            creation_time: d.created_at,
            detached_time: "",
            expired_time: "",
            delete_with_instance: d.delete_with_instance,
            delete_auto_snapshot: true,
            enable_auto_snapshot: true,
            enable_automated_snapshot_policy: false,
            auto_snapshot_policy_id: "",
            encrypted: false,
            kms_key_id: "",
            portable: false,
            disk_charge_type: "PostPaid",
            iops: 1800 + 50 * d.size_gib,
            source_snapshot_id: "",
            resource_group_id: "",
            multi_attach: "Disabled",
            attachments: Attachments { attachment },
            operation_locks: DiskOperationLocks { operation_lock: [] },
            tags,
        }
    }
}
