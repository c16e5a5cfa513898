//! Fixtures for the store's tests: an in-memory store with an account, registered ids, and
//! rows to write.

use crate::bucket::{insert_bucket, Bucket};
use crate::extent::Extent;
use crate::object::{Object, ObjectHeaders};
use crate::route_table::{insert_route_table, RouteTable};
use crate::vpc::{Vpc, VpcStatus};
use crate::vswitch::{VSwitch, VSwitchStatus};
use crate::{instance::Instance, MetaError, Store, Transaction};
use feitian_agent_api::{Desired, InstanceStatus};

pub const REGION: &str = "cn-hangzhou";
pub const ZONE: &str = "cn-hangzhou-i";
pub const CREATED: &str = "2024-01-01T00:00:00Z";

/// An in-memory store with one account; the account's id.
pub fn store() -> (Store, u64) {
    let s = Store::open_in_memory().unwrap();
    let a = s.create_account("a").unwrap();
    (s, a.id)
}

/// A fresh id of `kind` in the registry, owned by `account`.
pub fn register(s: &Store, account: u64, kind: &str, prefix: &str) -> String {
    s.write(|tx| s.scope(account).register(tx, kind, prefix, REGION, "bp")).unwrap()
}

/// A VPC row with registered ids (not inserted).
pub fn vpc(s: &Store, account: u64) -> Vpc {
    Vpc {
        id: register(s, account, "vpc", "vpc"),
        account_id: account,
        region_id: REGION.into(),
        cidr_block: "10.0.0.0/8".into(),
        name: String::new(),
        description: String::new(),
        status: VpcStatus::Available,
        is_default: false,
        vrouter_id: register(s, account, "vrouter", "vrt"),
        route_table_id: register(s, account, "route_table", "vtb"),
        user_cidrs: vec!["192.168.0.0/16".into()],
        created_at: CREATED.into(),
    }
}

/// A VPC and its system route table, inserted.
pub fn insert_vpc(s: &Store, account: u64) -> Vpc {
    let v = vpc(s, account);
    let t = RouteTable {
        id: v.route_table_id.clone(),
        account_id: account,
        region_id: REGION.into(),
        vpc_id: v.id.clone(),
        vrouter_id: v.vrouter_id.clone(),
        kind: "System".into(),
        name: String::new(),
        description: String::new(),
        created_at: CREATED.into(),
    };
    s.write(|tx| {
        crate::vpc::insert_vpc(tx, &v)?;
        insert_route_table(tx, &t)
    })
    .unwrap();
    v
}

/// A vSwitch row of `vpc_id` with a registered id (not inserted).
pub fn vswitch(s: &Store, account: u64, vpc_id: &str) -> VSwitch {
    VSwitch {
        id: register(s, account, "vswitch", "vsw"),
        account_id: account,
        region_id: REGION.into(),
        vpc_id: vpc_id.into(),
        zone_id: ZONE.into(),
        cidr_block: "10.0.0.0/24".into(),
        name: String::new(),
        description: String::new(),
        status: VSwitchStatus::Available,
        created_at: CREATED.into(),
    }
}

/// An instance row (not inserted).
pub fn instance(account: u64, id: &str) -> Instance {
    Instance {
        id: id.into(),
        account_id: account,
        region_id: REGION.into(),
        zone_id: ZONE.into(),
        name: id.into(),
        host_name: "host".into(),
        description: String::new(),
        instance_type: "ecs.t6-c1m1.large".into(),
        cpu: 2,
        memory_mib: 2048,
        image_id: "img".into(),
        vpc_id: "vpc-1".into(),
        vswitch_id: "vsw-1".into(),
        key_pair_name: String::new(),
        user_data: String::new(),
        status: InstanceStatus::Pending,
        desired: Desired::Running,
        reboots: 0,
        internet_charge_type: "PayByTraffic".into(),
        internet_bandwidth_out: 0,
        public_ip: String::new(),
        deletion_protection: false,
        serial_number: "s".into(),
        created_at: CREATED.into(),
        started_at: String::new(),
    }
}

/// An in-memory store with one account that owns bucket `name`.
pub fn store_with_bucket(name: &str) -> Store {
    let s = Store::open_in_memory().unwrap();
    let a = s.create_account("a").unwrap();
    let b = Bucket {
        name: name.into(),
        account_id: a.id,
        region_id: REGION.into(),
        acl: "private".into(),
        storage_class: "Standard".into(),
        created_at: CREATED.into(),
        generation: 0,
    };
    s.write::<_, MetaError>(|tx| insert_bucket(tx, &b)).unwrap();
    s
}

pub fn ext(file: u64, offset: u64, len: u64) -> Extent {
    Extent { file, offset, len }
}

pub fn object(bucket: &str, key: &str, size: u64) -> Object {
    Object {
        bucket: bucket.into(),
        key: key.into(),
        size,
        etag: "\"E\"".into(),
        crc64: u64::MAX - 1,
        object_type: "Normal".into(),
        headers: ObjectHeaders {
            content_type: "text/plain".into(),
            cache_control: Some("no-cache".into()),
            user_meta: "{\"a\":\"b\"}".into(),
            ..ObjectHeaders::default()
        },
        acl: "default".into(),
        storage_class: "Standard".into(),
        last_modified_ms: 1_700_000_000_123,
    }
}

/// Runs `f` in a write transaction that must succeed.
/// A 20 GiB ESSD data disk of `account`, `Available` and never attached, with a registered
/// id; not written (callers change what they need and insert it).
pub fn data_disk(s: &Store, account: u64) -> crate::disk::Disk {
    crate::disk::Disk {
        id: register(s, account, "disk", "d"),
        account_id: account,
        region_id: REGION.into(),
        zone_id: ZONE.into(),
        instance_id: String::new(),
        name: String::new(),
        description: String::new(),
        category: "cloud_essd".into(),
        size_gib: 20,
        disk_type: crate::disk::DiskType::Data,
        device: String::new(),
        image_id: String::new(),
        status: crate::disk::DiskStatus::Available,
        delete_with_instance: false,
        created_at: CREATED.into(),
        performance_level: "PL1".into(),
        portable: true,
        delete_auto_snapshot: true,
        enable_auto_snapshot: true,
        attached_at: String::new(),
        detached_at: String::new(),
    }
}

pub fn w<T>(s: &Store, f: impl FnOnce(&Transaction<'_>) -> Result<T, MetaError>) -> T {
    s.write(f).unwrap()
}
