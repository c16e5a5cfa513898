//! The DescribeAutoSnapshotPolicyEx shape of a policy, built by value from its store row:
//! every field of the SDK's `DescribeAutoSnapshotPolicyExResponseBodyAutoSnapshotPolicies
//! AutoSnapshotPolicy` with its JSON type. `TimePoints`, `RepeatWeekdays` and
//! `TargetCopyRegions` are JSON arrays *as strings* (Terraform decodes them), `RetentionDays`
//! and `DiskNums` are numbers, `Status` is always `Normal` (a policy is usable as soon as it
//! exists), and the lists are always present.

use crate::answer::Tags;
use feitian_api::paging::PageInfo;
use feitian_meta::auto_snapshot_policy::Policy;
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAutoSnapshotPolicyExResponse {
    #[serde(flatten)]
    pub paging: PageInfo,
    pub auto_snapshot_policies: AutoSnapshotPolicies,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutoSnapshotPolicies {
    pub auto_snapshot_policy: Vec<PolicyItem>,
}

/// One policy, as `AutoSnapshotPolicies.AutoSnapshotPolicy[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyItem {
    pub auto_snapshot_policy_id: String,
    pub auto_snapshot_policy_name: String,
    pub region_id: String,
    pub creation_time: String,
    pub time_points: String,
    pub repeat_weekdays: String,
    pub retention_days: i64,
    pub disk_nums: u64,
    pub volume_nums: u64,
    pub status: &'static str,
    pub enable_cross_region_copy: bool,
    pub target_copy_regions: String,
    pub copied_snapshots_retention_days: i64,
    pub copy_encryption_configuration: CopyEncryption,
    pub association_type: &'static str,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub resource_group_id: &'static str,
    pub tags: Tags<String>,
    pub target_tags: TargetTags,
}

#[derive(Debug, Serialize)]
pub struct CopyEncryption {
    #[serde(rename = "Encrypted")]
    pub encrypted: bool,
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: &'static str,
}

/// `TargetTags.TargetTag[]`: feitian applies policies to disks, never by instance tags.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetTags {
    pub target_tag: [(); 0],
}

impl PolicyItem {
    pub fn new(p: Policy, disk_nums: u64, tags: Tags<String>) -> PolicyItem {
        PolicyItem {
            auto_snapshot_policy_id: p.id,
            auto_snapshot_policy_name: p.name,
            region_id: p.region_id,
            creation_time: p.created_at,
            time_points: p.time_points,
            repeat_weekdays: p.repeat_weekdays,
            retention_days: p.retention_days.unwrap_or(-1),
            disk_nums,
            volume_nums: 0,
            status: "Normal",
            enable_cross_region_copy: p.enable_cross_region_copy,
            target_copy_regions: p.target_copy_regions,
            copied_snapshots_retention_days: p.copied_retention_days.unwrap_or(-1),
            copy_encryption_configuration: CopyEncryption { encrypted: false, kms_key_id: "" },
            association_type: "AssociatedWithDisk",
            kind: "Custom",
            resource_group_id: "",
            tags,
            target_tags: TargetTags { target_tag: [] },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_shows_every_field_with_its_json_type() {
        let p = Policy {
            id: "sp-1".into(),
            account_id: 1,
            region_id: "cn-hangzhou".into(),
            name: "nightly".into(),
            time_points: r#"["1","22"]"#.into(),
            repeat_weekdays: r#"["1"]"#.into(),
            retention_days: None,
            enable_cross_region_copy: false,
            target_copy_regions: String::new(),
            copied_retention_days: Some(7),
            created_at: "2026-12-07T00:00:00Z".into(),
            checked_at: "2026-12-07T00:00:00Z".into(),
        };
        let tags: Tags<String> = [("k".to_owned(), "v".to_owned())].into_iter().collect();
        let v = serde_json::to_value(PolicyItem::new(p, 2, tags)).unwrap();
        assert_eq!(
            v,
            json!({
                "AutoSnapshotPolicyId": "sp-1",
                "AutoSnapshotPolicyName": "nightly",
                "RegionId": "cn-hangzhou",
                "CreationTime": "2026-12-07T00:00:00Z",
                "TimePoints": "[\"1\",\"22\"]",
                "RepeatWeekdays": "[\"1\"]",
                "RetentionDays": -1,
                "DiskNums": 2,
                "VolumeNums": 0,
                "Status": "Normal",
                "EnableCrossRegionCopy": false,
                "TargetCopyRegions": "",
                "CopiedSnapshotsRetentionDays": 7,
                "CopyEncryptionConfiguration": {"Encrypted": false, "KMSKeyId": ""},
                "AssociationType": "AssociatedWithDisk",
                "Type": "Custom",
                "ResourceGroupId": "",
                "Tags": {"Tag": [{"TagKey": "k", "TagValue": "v"}]},
                "TargetTags": {"TargetTag": []},
            })
        );
    }
}
