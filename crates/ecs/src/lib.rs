//! ECS, API version 2014-05-26.
//!
//! Handlers validate typed parameters and answer in the API's own field names; state lives
//! in the control-plane store. Every action is registered in [`register`], by name (the VPC
//! actions that ECS also offers are registered by `feitian-vpc`).

pub mod accounts;
pub mod admission;
pub mod answer;
pub mod auto_snapshot_policies;
pub mod auto_snapshot_policy_view;
pub mod auto_snapshot_scheduler;
pub mod disk_view;
pub mod disks;
pub mod events;
pub mod image_actions;
pub mod image_tasks;
pub mod images;
pub mod instance_errors;
pub mod instance_types;
pub mod instance_view;
pub mod instances;
pub mod key_pairs;
pub mod param_case;
pub mod regions;
pub mod security_groups;
pub mod snapshot_schedule;
pub mod snapshot_view;
pub mod snapshots;
pub mod tags;

use feitian_agent_api::{HostApi, Nudges};
use feitian_api::Registry;
use feitian_meta::Store;
use feitian_region::Catalog;
use feitian_secgroup::Direction;
use instances::LifecycleAction;
use std::sync::Arc;

pub const PRODUCT: &str = "ecs";
pub const VERSION: &str = "2014-05-26";

/// What ECS handlers share.
pub struct Ecs {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    /// Where instances' public IPs come from: the pool EIPs use too.
    pub eip_pool: ipnet::Ipv4Net,
    /// Tells the hosts that their plans changed (instances, interfaces, security groups).
    pub nudges: Nudges,
    /// The host that runs the instances (for their consoles), through the host contract; set
    /// once the host's agent is up.
    pub host: std::sync::OnceLock<Arc<dyn HostApi>>,
    /// How much of the host instances may be promised ([`admission`]).
    pub admission: admission::Policy,
}

impl Ecs {
    /// Tells the hosts that the store changed: their instances, their networks and disks
    /// (an instance's create or delete makes or frees disks).
    pub fn changed(&self) {
        self.nudges.all_changed();
        self.nudges.disks_changed();
    }
}

macro_rules! actions {
    ($r:expr, $ecs:expr, [$($name:literal => $method:ident $(($arg:expr))?),* $(,)?]) => {$(
        {
            let e = $ecs.clone();
            $r.add(PRODUCT, VERSION, $name, move |ctx, p| e.clone().$method(ctx, p $(, $arg)?));
        }
    )*};
}

/// Registers every ECS action.
pub fn register(r: &mut Registry, ecs: Arc<Ecs>) {
    let e = ecs.clone();
    r.add(PRODUCT, VERSION, "DescribeRegions", move |_ctx, p| {
        let out = regions::describe_regions(&e.catalog, &p);
        async move { out }
    });
    let e = ecs.clone();
    r.add(PRODUCT, VERSION, "DescribeZones", move |_ctx, p| {
        let out = regions::describe_zones(&e.catalog, &p);
        async move { out }
    });
    r.add(PRODUCT, VERSION, "DescribeInstanceTypes", move |_ctx, p| {
        let out = instance_types::describe_instance_types(&p);
        async move { out }
    });
    actions!(r, ecs, [
        "DescribeAccountAttributes" => describe_account_attributes,
        "DescribeImages" => describe_images,
        "CreateImage" => create_image,
        "DeleteImage" => delete_image,
        "ModifyImageAttribute" => modify_image_attribute,
        "ModifyImageSharePermission" => modify_image_share_permission,
        "DescribeImageSharePermission" => describe_image_share_permission,
        "CopyImage" => copy_image,
        "CancelCopyImage" => cancel_copy_image,
        "AddTags" => add_tags,
        "ImportImage" => import_image,
        "ExportImage" => export_image,
        "DescribeTasks" => describe_tasks,
        "DescribeTaskAttribute" => describe_task_attribute,
        "CancelTask" => cancel_task,
        "RemoveTags" => remove_tags,
        "RunInstances" => run_instances,
        "CreateInstance" => create_instance,
        "StartInstance" => lifecycle_one(LifecycleAction::Start),
        "StopInstance" => lifecycle_one(LifecycleAction::Stop),
        "RebootInstance" => lifecycle_one(LifecycleAction::Reboot),
        "GetInstanceConsoleOutput" => get_instance_console_output,
        "DescribeInstanceHistoryEvents" => describe_instance_history_events,
        "DeleteInstance" => lifecycle_one(LifecycleAction::Delete),
        "StartInstances" => lifecycle_many(LifecycleAction::Start),
        "StopInstances" => lifecycle_many(LifecycleAction::Stop),
        "RebootInstances" => lifecycle_many(LifecycleAction::Reboot),
        "DeleteInstances" => lifecycle_many(LifecycleAction::Delete),
        "DescribeInstances" => describe_instances,
        "DescribeInstanceAttribute" => describe_instance_attribute,
        "DescribeInstanceStatus" => describe_instance_status,
        "ModifyInstanceAttribute" => modify_instance_attribute,
        "AllocatePublicIpAddress" => allocate_public_ip_address,
        "JoinSecurityGroup" => membership(true),
        "LeaveSecurityGroup" => membership(false),
        "CreateDisk" => create_disk,
        "DescribeDisks" => describe_disks,
        "AttachDisk" => attach_disk,
        "DetachDisk" => detach_disk,
        "DeleteDisk" => delete_disk,
        "ResizeDisk" => resize_disk,
        "ReInitDisk" => reinit_disk,
        "ResetDisk" => reset_disk,
        "ModifyDiskAttribute" => modify_disk_attribute,
        "CreateSnapshot" => create_snapshot,
        "DescribeSnapshots" => describe_snapshots,
        "DeleteSnapshot" => delete_snapshot,
        "ModifySnapshotAttribute" => modify_snapshot_attribute,
        "DescribeSnapshotLinks" => describe_snapshot_links,
        "TagResources" => tag_resources,
        "UntagResources" => untag_resources,
        "ListTagResources" => list_tag_resources,
        "CreateKeyPair" => create_key_pair,
        "ImportKeyPair" => import_key_pair,
        "DescribeKeyPairs" => describe_key_pairs,
        "DeleteKeyPairs" => delete_key_pairs,
        "AttachKeyPair" => attach_key_pair(true),
        "DetachKeyPair" => attach_key_pair(false),
        "CreateSecurityGroup" => create_security_group,
        "DescribeSecurityGroups" => describe_security_groups,
        "DescribeSecurityGroupAttribute" => describe_security_group_attribute,
        "ModifySecurityGroupAttribute" => modify_security_group_attribute,
        "ModifySecurityGroupPolicy" => modify_security_group_policy,
        "DeleteSecurityGroup" => delete_security_group,
        "AuthorizeSecurityGroup" => authorize(Direction::Ingress),
        "AuthorizeSecurityGroupEgress" => authorize(Direction::Egress),
        "RevokeSecurityGroup" => revoke(Direction::Ingress),
        "RevokeSecurityGroupEgress" => revoke(Direction::Egress),
        "DescribeSecurityGroupReferences" => describe_security_group_references,
    ]);
    auto_snapshot_policies::register(r, ecs);
}
