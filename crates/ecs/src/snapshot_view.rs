//! The answer shapes of the snapshot actions, built by value from store rows: every field of
//! the SDK's `DescribeSnapshotsResponseBodySnapshotsSnapshot` and
//! `DescribeSnapshotLinksResponseBodySnapshotLinksSnapshotLink`, with their JSON types
//! (`Progress` a string `"NN%"`, `SourceDiskSize` a string of GiB in a snapshot but a number
//! in a link, `Available` a bool that is true once the snapshot is `accomplished`).

use crate::answer::{Paging, Tags};
use feitian_meta::snapshot::{Link, Snapshot, SnapshotStatus};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotsResponse {
    #[serde(flatten)]
    pub paging: Paging,
    pub snapshots: Snapshots,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshots {
    pub snapshot: Vec<SnapshotItem>,
}

/// One snapshot, as `Snapshots.Snapshot[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotItem {
    pub snapshot_id: String,
    pub snapshot_name: String,
    pub description: String,
    pub status: &'static str,
    /// `"NN%"`.
    pub progress: String,
    pub available: bool,
    /// Seconds the upload still needs, as far as known (feitian does not estimate: 0).
    pub remain_time: i64,
    pub creation_time: String,
    pub last_modified_time: String,
    pub region_id: String,
    pub source_region_id: &'static str,
    pub source_snapshot_id: &'static str,
    pub source_disk_id: String,
    /// GiB, as a string (the model's type).
    pub source_disk_size: String,
    pub source_disk_type: &'static str,
    pub source_storage_type: &'static str,
    pub snapshot_type: &'static str,
    pub snapshot_link_id: String,
    #[serde(rename = "SnapshotSN")]
    pub snapshot_sn: String,
    pub usage: String,
    pub category: &'static str,
    pub encrypted: bool,
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: &'static str,
    pub instant_access: bool,
    pub instant_access_retention_days: i64,
    /// Absent when the snapshot is kept until deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    pub full_snapshot_size_in_bytes: u64,
    pub product_code: &'static str,
    pub resource_group_id: &'static str,
    pub tags: Tags<String>,
}

impl SnapshotItem {
    /// `full_size`: the bytes of its contents (`FullSnapshotSizeInBytes`).
    pub fn new(s: Snapshot, full_size: u64, tags: Tags<String>) -> SnapshotItem {
        SnapshotItem {
            snapshot_sn: s.id.trim_start_matches("s-").to_owned(),
            snapshot_id: s.id,
            snapshot_name: s.name,
            description: s.description,
            status: s.status.as_str(),
            progress: format!("{}%", s.progress.clamp(0, 100)),
            available: s.status == SnapshotStatus::Accomplished,
            remain_time: 0,
            creation_time: s.creation_time,
            last_modified_time: s.modified_at,
            region_id: s.region_id,
            source_region_id: "",
            source_snapshot_id: "",
            source_disk_id: s.disk_id,
            source_disk_size: s.source_disk_gib.to_string(),
            source_disk_type: s.source_disk_type.as_str(),
            source_storage_type: "disk",
            snapshot_type: s.snapshot_type.as_str(),
            snapshot_link_id: s.link_id,
            usage: s.usage,
            category: "standard",
            encrypted: false,
            kms_key_id: "",
            instant_access: false,
            instant_access_retention_days: 0,
            retention_days: s.retention_days,
            full_snapshot_size_in_bytes: full_size,
            product_code: "",
            resource_group_id: "",
            tags,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotLinksResponse {
    #[serde(flatten)]
    pub paging: Paging,
    pub snapshot_links: SnapshotLinks,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotLinks {
    pub snapshot_link: Vec<LinkItem>,
}

/// One snapshot chain, as `SnapshotLinks.SnapshotLink[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LinkItem {
    pub snapshot_link_id: String,
    pub region_id: String,
    pub source_disk_id: String,
    /// The disk's name now; empty once the disk is deleted.
    pub source_disk_name: String,
    /// GiB, a number here (the model's type).
    pub source_disk_size: i64,
    pub source_disk_type: String,
    /// The instance the disk is attached to now; empty when detached or deleted.
    pub instance_id: String,
    pub instance_name: String,
    pub category: &'static str,
    pub instant_access: bool,
    pub total_count: u64,
    /// Bytes the chain's snapshots stored.
    pub total_size: u64,
}

impl LinkItem {
    pub fn new(l: Link, disk_name: String, instance_id: String, instance_name: String) -> LinkItem {
        LinkItem {
            snapshot_link_id: l.link_id,
            region_id: l.region_id,
            source_disk_id: l.disk_id,
            source_disk_name: disk_name,
            source_disk_size: l.source_disk_gib,
            source_disk_type: l.source_disk_type,
            instance_id,
            instance_name,
            category: "standard",
            instant_access: false,
            total_count: l.total_count,
            total_size: l.total_bytes,
        }
    }
}
