//! Instances (ECS 2014-05-26): create and run, the lifecycle (start, stop, reboot, delete),
//! describe, modify, public IPs, security-group membership, and the system disk record.
//!
//! The control plane decides; the agent does. Every action here changes the store in one
//! transaction and returns: the status a client sees moves at once to the transitional state
//! (`Pending`, `Starting`, `Stopping`), and the instance reconciler (`feitian-agent`) drives
//! the compute driver and reports `Running` or `Stopped`. Creating an instance takes its
//! network interface, private address, disk record and group memberships in the same
//! transaction, so a crash never leaves half an instance.

use crate::answer::Paging;
use crate::instance_view::{DescribeInstanceAttributeResponse, DescribeInstancesResponse};
use crate::security_groups::MAX_GROUPS_PER_INTERFACE;
use crate::{admission, disks, images, instance_types, security_groups, Ecs};
use base64::Engine;
use feitian_agent_api::{Desired, HostCapacity, InstanceStatus};
use feitian_api::answers::Empty;
use feitian_api::paging::{Page, PageInfo, TokenPage};
use feitian_api::region::{require_region, zone};
use feitian_api::service::{client_token, create_once, now};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::disk::{self, Disk, DiskStatus, DiskType};
use feitian_meta::instance::{self, Instance};
use feitian_meta::network_interface::{self, NetworkInterface};
use feitian_meta::quota::{self, Quota};
use feitian_meta::vswitch::{self, VSwitchStatus};
use feitian_meta::{eip, key_pair, query, security_group, tag, Filter, Transaction};
use feitian_region::Region;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// At most this many instances per RunInstances call, as the real API.
pub const MAX_AMOUNT: i64 = 100;
/// UserData after base64 decoding.
pub const MAX_USER_DATA: usize = 32 * 1024;

pub use crate::instance_errors::{incorrect_status, not_found};

/// Stored with its ClientToken, so it reads back too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunInstancesResponse {
    pub instance_id_sets: InstanceIdSets,
    pub order_id: String,
    pub trade_price: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceIdSets {
    pub instance_id_set: Vec<String>,
}

/// Stored with its ClientToken, so it reads back too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateInstanceResponse {
    pub instance_id: String,
    pub order_id: String,
    pub trade_price: f64,
}

/// The answer of StartInstances, StopInstances and RebootInstances (the SDKs'
/// `StartInstancesResponse`, `StopInstancesResponse`, `RebootInstancesResponse`): one result
/// per instance. DeleteInstances (`DeleteInstancesResponse`) answers with none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstancesResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_responses: Option<InstanceResponses>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceResponses {
    pub instance_response: Vec<InstanceResponse>,
}

/// What happened to one instance of a batch.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceResponse {
    pub instance_id: String,
    /// "200", or the error's code.
    pub code: Cow<'static, str>,
    pub message: String,
    /// "" when the action failed; so is `CurrentStatus`.
    pub previous_status: &'static str,
    pub current_status: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceStatusResponse {
    pub instance_statuses: InstanceStatuses,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStatuses {
    pub instance_status: Vec<InstanceStatusItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStatusItem {
    pub instance_id: String,
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetInstanceConsoleOutputResponse {
    pub instance_id: String,
    /// Base64.
    pub console_output: String,
    pub last_update_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocatePublicIpAddressResponse {
    pub ip_address: String,
}

/// The settings of one create call, validated before any store work.
struct Plan {
    region: Region,
    zone: Option<String>,
    /// The image's id, and the public image when it is one (a custom image is resolved with
    /// the store: [`Ecs::resolve_custom_image`]).
    image_id: String,
    public_image: Option<&'static images::PublicImage>,
    /// A custom image's system disk snapshot: the system disk is restored from it.
    system_snapshot: Option<String>,
    /// A custom image's data disks (their snapshots are the image owner's).
    image_disks: Vec<disks::DataDiskSpec>,
    /// `SystemDisk.Size` as given.
    disk_size_given: Option<i64>,
    itype: &'static instance_types::InstanceType,
    vswitch_id: String,
    groups: Vec<String>,
    name: Option<String>,
    host_name: Option<String>,
    description: String,
    key_pair: String,
    user_data: String,
    amount: i64,
    private_ip: Option<Ipv4Addr>,
    bandwidth_out: i64,
    charge: String,
    disk_category: String,
    disk_size: i64,
    data_disks: Vec<disks::DataDiskSpec>,
    deletion_protection: bool,
    tags: Vec<(String, String)>,
    run: bool,
}

fn check_stopped_mode(p: &Params) -> Result<(), ApiError> {
    match p.opt_str("StoppedMode") {
        None | Some("StopCharging" | "KeepCharging") => Ok(()),
        Some(m) => {
            Err(ApiError::invalid_parameter("StoppedMode", format!("{m:?} is not StopCharging or KeepCharging")))
        }
    }
}

fn check_password(p: &Params) -> Result<(), ApiError> {
    let Some(pw) = p.opt_str("Password") else { return Ok(()) };
    let classes = [
        pw.chars().any(|c| c.is_ascii_lowercase()),
        pw.chars().any(|c| c.is_ascii_uppercase()),
        pw.chars().any(|c| c.is_ascii_digit()),
        pw.chars().any(|c| "()`~!@#$%^&*-_+=|{}[]:;'<>,.?/".contains(c)),
    ];
    let ok = (8..=30).contains(&pw.chars().count())
        && pw.chars().all(|c| c.is_ascii_graphic())
        && classes.iter().filter(|b| **b).count() >= 3
        && !pw.starts_with('/');
    if !ok {
        return Err(ApiError::invalid("InvalidPassword.Malformed", "The specified parameter Password is not valid.")
            .recommend("8 to 30 characters with at least three of: lowercase, uppercase, digits, special characters"));
    }
    Ok(())
}

fn user_data(p: &Params) -> Result<String, ApiError> {
    let Some(u) = p.opt_str("UserData") else { return Ok(String::new()) };
    let raw = base64::engine::general_purpose::STANDARD.decode(u.trim()).map_err(|_| {
        ApiError::invalid("InvalidUserData.Base64FormatInvalid", "The specified UserData is not valid Base64.")
    })?;
    if raw.len() > MAX_USER_DATA {
        return Err(ApiError::invalid("InvalidUserData.SizeExceeded", "The specified UserData is larger than 32 KiB."));
    }
    Ok(u.trim().to_owned())
}

fn host_name(p: &Params) -> Result<Option<String>, ApiError> {
    let Some(h) = p.opt_str("HostName") else { return Ok(None) };
    let ok = (2..=64).contains(&h.len())
        && h.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with('-')
                && !part.ends_with('-')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(ApiError::invalid("InvalidHostName.Malformed", "The specified parameter HostName is not valid.")
            .recommend("2 to 64 characters: letters, digits and '-', in dot-separated parts"));
    }
    Ok(Some(h.to_owned()))
}

/// The memory an instance of the type is given, in MiB.
fn instance_memory_mib(t: &instance_types::InstanceType) -> u64 {
    (t.memory_gib * 1024.0) as u64
}

/// A MAC address in Alibaba Cloud's range (00:16:3e).
fn random_mac() -> String {
    let b: [u8; 3] = rand::random();
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

impl Ecs {
    fn plan(&self, p: &Params, run: bool) -> Result<Plan, ApiError> {
        let region = require_region(&self.catalog, p)?.clone();
        let zone = zone(&region, p, false)?.map(|z| z.id.clone());
        let image_id = p.required_str("ImageId")?.to_owned();
        let public_image = images::find(&image_id);
        if public_image.is_none() && !feitian_meta::image::is_custom_id(&image_id) {
            return Err(images::not_found());
        }
        let min_size = public_image.map_or(1, |i| i64::from(i.size_gib));
        let itype = {
            let t = p.required_str("InstanceType")?;
            instance_types::find(t).ok_or_else(|| instance_types::not_found(t))?
        };
        let vswitch_id = p
            .required_str("VSwitchId")
            .map_err(|e| e.recommend("feitian runs VPC instances only: pass the VSwitchId of a vSwitch of your VPC"))?
            .to_owned();
        let mut groups: Vec<String> = p.list("SecurityGroupIds", 16)?.into_iter().map(str::to_owned).collect();
        if let Some(g) = p.opt_str("SecurityGroupId") {
            if !groups.iter().any(|x| x == g) {
                groups.insert(0, g.to_owned());
            }
        }
        if groups.is_empty() {
            return Err(ApiError::missing_parameter("SecurityGroupId").recommend(
                "every instance joins at least one security group: pass SecurityGroupId or SecurityGroupIds.N",
            ));
        }
        let mut seen = HashSet::new();
        groups.retain(|g| seen.insert(g.clone()));
        if groups.len() > MAX_GROUPS_PER_INTERFACE {
            return Err(ApiError::invalid(
                "JoinedGroupLimitExceed",
                "The number of security groups an instance joins exceeds the limit.",
            )
            .recommend(format!("an instance joins at most {MAX_GROUPS_PER_INTERFACE} security groups")));
        }
        let amount = if run {
            let a = p.opt_int("Amount", 1, MAX_AMOUNT)?.unwrap_or(1);
            if let Some(min) = p.opt_int("MinAmount", 1, MAX_AMOUNT)? {
                if min > a {
                    return Err(ApiError::invalid_parameter("MinAmount", "larger than Amount"));
                }
            }
            a
        } else {
            1
        };
        let private_ip = match p.opt_str("PrivateIpAddress") {
            None => None,
            Some(ip) => {
                if amount > 1 {
                    return Err(ApiError::invalid_parameter(
                        "PrivateIpAddress",
                        "only one instance can be given a fixed address",
                    ));
                }
                Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                    ApiError::invalid(
                        "InvalidPrivateIpAddress.Malformed",
                        "The specified PrivateIpAddress is not an IPv4 address.",
                    )
                })?)
            }
        };
        let charge = p.opt_str("InternetChargeType").unwrap_or("PayByTraffic").to_owned();
        if charge != "PayByTraffic" && charge != "PayByBandwidth" {
            return Err(ApiError::invalid_parameter(
                "InternetChargeType",
                format!("{charge:?} is not PayByBandwidth or PayByTraffic"),
            ));
        }
        if let Some(c) = p.opt_str("InstanceChargeType") {
            if c != "PostPaid" && c != "PrePaid" {
                return Err(ApiError::invalid_parameter(
                    "InstanceChargeType",
                    format!("{c:?} is not PostPaid or PrePaid"),
                ));
            }
        }
        let disk_category = p.opt_str("SystemDisk.Category").unwrap_or("cloud_essd").to_owned();
        if !["cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto", "cloud"].contains(&disk_category.as_str()) {
            return Err(ApiError::invalid(
                "InvalidSystemDiskCategory.ValueNotSupported",
                format!("The system disk category {disk_category:?} is not supported."),
            ));
        }
        let disk_size_given = p.opt_int("SystemDisk.Size", 1, 2048)?;
        let disk_size = match disk_size_given {
            Some(s) if s < min_size => {
                return Err(ApiError::invalid(
                    "InvalidSystemDiskSize.LessThanImageSize",
                    "The system disk is smaller than the image.",
                ))
            }
            Some(s) => s,
            None => min_size.max(20),
        };
        check_password(p)?;
        Ok(Plan {
            region,
            zone,
            image_id,
            public_image,
            system_snapshot: None,
            image_disks: Vec::new(),
            disk_size_given,
            itype,
            vswitch_id,
            groups,
            name: validate::name(p, "InstanceName", "InvalidInstanceName.Malformed")?.map(str::to_owned),
            host_name: host_name(p)?,
            description: validate::description(p, "Description", "InvalidDescription.Malformed")?
                .unwrap_or("")
                .to_owned(),
            key_pair: p.opt_str("KeyPairName").unwrap_or("").to_owned(),
            user_data: user_data(p)?,
            amount,
            private_ip,
            bandwidth_out: p.opt_int("InternetMaxBandwidthOut", 0, 100)?.unwrap_or(0),
            charge,
            disk_category,
            disk_size,
            data_disks: disks::data_disks(p)?,
            deletion_protection: p.opt_bool("DeletionProtection")?.unwrap_or(false),
            tags: validate::tags(p)?,
            run,
        })
    }

    /// A free public address from the pool shared with EIPs.
    fn public_address(&self, tx: &Transaction<'_>) -> Result<String, ApiError> {
        let used: HashSet<String> = eip::public_addresses_in_use(tx)?.into_iter().collect();
        self.eip_pool
            .hosts()
            .map(|a| a.to_string())
            .find(|a| !used.contains(a))
            .ok_or_else(|| ApiError::invalid("ResourceNotEnough.PublicIp", "No public address is left in the pool."))
    }

    /// The host's capacity, asked of it through the host contract (before the transaction
    /// that admits against it). No host, or a host that cannot measure itself, admits nothing.
    async fn host_capacity(&self) -> Result<HostCapacity, ApiError> {
        let host = self.host.get().ok_or_else(|| admission::no_stock("no host has joined this region yet"))?;
        host.capacity().await.map_err(|e| {
            tracing::warn!(error = %e, "the host could not report its capacity; refusing to place instances");
            admission::no_stock("the host could not report its capacity")
        })
    }

    /// Whether the host admits `demand` beside what its guests were promised (in the caller's
    /// transaction, which then records the new promise).
    fn admit(&self, tx: &Transaction<'_>, host: &HostCapacity, demand: admission::Demand) -> Result<(), ApiError> {
        let promised = instance::commitment(tx)?;
        admission::admit(host, &promised, demand, &self.admission).map_err(admission::no_stock)
    }

    /// The account's quotas for `amount` more instances like `plan`'s, in the caller's
    /// transaction (so a concurrent create sees these once they commit).
    fn check_instance_quotas(&self, tx: &Transaction<'_>, account: u64, plan: &Plan) -> Result<(), ApiError> {
        let defaults = self.store.quotas();
        let amount = plan.amount.max(0) as u64;
        let (count, vcpus) = instance::account_usage(tx, account, &plan.region.id)?;
        let max = quota::limit(tx, &defaults, account, Quota::Instances)?;
        if !quota::fits(max, count, amount) {
            return Err(ApiError::new(
                403,
                "QuotaExceed.ElasticQuota",
                "The number of the specified ECS instances has exceeded the quota of the specified instance type.",
            )
            .recommend(format!("this account may hold {max} instances in {} and holds {count}", plan.region.id)));
        }
        let max = quota::limit(tx, &defaults, account, Quota::Vcpus)?;
        if !quota::fits(max, vcpus, amount.saturating_mul(u64::from(plan.itype.cpu_cores))) {
            return Err(ApiError::new(
                403,
                "QuotaExceed.ElasticQuota",
                "The number of vCPUs assigned to the ECS instances has exceeded the quota in the zone.",
            )
            .recommend(format!("this account may hold {max} vCPUs in {} and holds {vcpus}", plan.region.id)));
        }
        // Each instance brings its system disk and its data disks.
        let per_instance: u64 = plan.disk_size.max(0) as u64
            + plan.image_disks.iter().chain(&plan.data_disks).map(|d| d.shape.size_gib.max(0) as u64).sum::<u64>();
        disks::check_disk_quotas(
            tx,
            &defaults,
            account,
            &plan.region.id,
            amount.saturating_mul(1 + (plan.image_disks.len() + plan.data_disks.len()) as u64),
            amount.saturating_mul(per_instance),
            &plan.disk_category,
        )?;
        Ok(())
    }

    /// Creates `plan.amount` instances in the caller's transaction; their ids. `host` is the
    /// host's capacity when they are to run (they are admitted against it).
    fn create_instances(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        plan: &Plan,
        host: Option<&HostCapacity>,
    ) -> Result<Vec<String>, ApiError> {
        let vsw =
            vswitch::get_vswitch(tx, account, &plan.vswitch_id)?.filter(|v| v.region_id == plan.region.id).ok_or_else(
                || ApiError::new(404, "InvalidVSwitchId.NotFound", "Specified virtual switch does not exist."),
            )?;
        if vsw.status != VSwitchStatus::Available {
            return Err(ApiError::invalid(
                "IncorrectVSwitchStatus",
                "The current status of the virtual switch does not support this operation.",
            ));
        }
        if let Some(z) = &plan.zone {
            if *z != vsw.zone_id {
                return Err(ApiError::invalid(
                    "InvalidVSwitchId.ZoneMismatch",
                    "The vSwitch is not in the specified zone.",
                )
                .recommend(format!("{} is in {}; omit ZoneId or pass that zone", vsw.id, vsw.zone_id)));
            }
        }
        for g in &plan.groups {
            let group = security_group::get_security_group(tx, account, g)?
                .filter(|x| x.region_id == plan.region.id)
                .ok_or_else(security_groups::not_found)?;
            if group.vpc_id != vsw.vpc_id {
                return Err(ApiError::invalid(
                    "InvalidSecurityGroup.VpcMismatch",
                    "The security group and the vSwitch are in different VPCs.",
                )
                .recommend(format!("{} belongs to {}, the vSwitch to {}", group.id, group.vpc_id, vsw.vpc_id)));
            }
        }
        if !plan.key_pair.is_empty() && key_pair::get_key_pair(tx, account, &plan.region.id, &plan.key_pair)?.is_none()
        {
            return Err(ApiError::new(404, "InvalidKeyPairName.NotFound", "The specified KeyPairName does not exist."));
        }
        self.check_instance_quotas(tx, account, plan)?;
        if let Some(host) = host {
            let n = plan.amount.max(0) as u64;
            let demand = admission::Demand {
                vcpus: n.saturating_mul(u64::from(plan.itype.cpu_cores)),
                memory_mib: n.saturating_mul(instance_memory_mib(plan.itype)),
            };
            self.admit(tx, host, demand)?;
        }
        let net = feitian_cidr::parse(&vsw.cidr_block).map_err(|_| ApiError::internal())?;
        let mut taken: HashSet<String> = network_interface::taken_addresses(tx, &vsw.id)?.into_iter().collect();
        let scope = self.store.scope(account);
        let mut ids = Vec::new();
        for _ in 0..plan.amount {
            let ip = match plan.private_ip {
                Some(ip) => {
                    if !feitian_cidr::is_usable(net, ip) {
                        return Err(ApiError::invalid(
                            "InvalidPrivateIpAddress.Malformed",
                            "The specified PrivateIpAddress is not a usable address of the vSwitch.",
                        )
                        .recommend(format!(
                            "use an address of {} other than the first and the last three",
                            vsw.cidr_block
                        )));
                    }
                    if taken.contains(&ip.to_string()) {
                        return Err(ApiError::invalid(
                            "InvalidPrivateIpAddress.Duplicated",
                            "The specified PrivateIpAddress is already in use.",
                        ));
                    }
                    ip.to_string()
                }
                None => {
                    feitian_cidr::usable(net).map(|a| a.to_string()).find(|a| !taken.contains(a)).ok_or_else(|| {
                        ApiError::invalid(
                            "InvalidVSwitchId.IpNotEnough",
                            "The specified vSwitch does not have enough IP addresses.",
                        )
                        .recommend(format!(
                            "{} has no free address left; use another vSwitch or delete instances",
                            vsw.id
                        ))
                    })?
                }
            };
            taken.insert(ip.clone());
            let id = scope.register(tx, "instance", "i", &plan.region.id, &plan.region.id_code)?;
            let eni_id = scope.register(tx, "eni", "eni", &plan.region.id, &plan.region.id_code)?;
            let disk_id = scope.register(tx, "disk", "d", &plan.region.id, &plan.region.id_code)?;
            if !network_interface::take_address(tx, &vsw.id, &ip, &eni_id)? {
                return Err(ApiError::invalid(
                    "InvalidPrivateIpAddress.Duplicated",
                    "The specified PrivateIpAddress is already in use.",
                ));
            }
            let mut mac = random_mac();
            while network_interface::mac_in_use(tx, &mac)? {
                mac = random_mac();
            }
            let created = now();
            let public_ip = if plan.bandwidth_out > 0 { self.public_address(tx)? } else { String::new() };
            instance::insert_instance(
                tx,
                &Instance {
                    id: id.clone(),
                    account_id: account,
                    region_id: plan.region.id.clone(),
                    zone_id: vsw.zone_id.clone(),
                    name: plan.name.clone().unwrap_or_else(|| id.clone()),
                    host_name: plan.host_name.clone().unwrap_or_else(|| format!("iZ{}Z", &id[2..])),
                    description: plan.description.clone(),
                    instance_type: plan.itype.id.to_owned(),
                    cpu: i64::from(plan.itype.cpu_cores),
                    memory_mib: instance_memory_mib(plan.itype) as i64,
                    image_id: plan.image_id.clone(),
                    vpc_id: vsw.vpc_id.clone(),
                    vswitch_id: vsw.id.clone(),
                    key_pair_name: plan.key_pair.clone(),
                    user_data: plan.user_data.clone(),
                    status: InstanceStatus::Pending,
                    desired: if plan.run { Desired::Running } else { Desired::Stopped },
                    reboots: 0,
                    internet_charge_type: plan.charge.clone(),
                    internet_bandwidth_out: plan.bandwidth_out,
                    public_ip,
                    deletion_protection: plan.deletion_protection,
                    serial_number: uuid_like(),
                    created_at: created.clone(),
                    started_at: String::new(),
                },
            )?;
            network_interface::insert_eni(
                tx,
                &NetworkInterface {
                    id: eni_id.clone(),
                    account_id: account,
                    region_id: plan.region.id.clone(),
                    zone_id: vsw.zone_id.clone(),
                    vpc_id: vsw.vpc_id.clone(),
                    vswitch_id: vsw.id.clone(),
                    instance_id: id.clone(),
                    primary_ip: ip,
                    mac,
                    created_at: created.clone(),
                },
            )?;
            for g in &plan.groups {
                security_group::join_group(tx, &eni_id, g)?;
            }
            if let Some(sid) = &plan.system_snapshot {
                // A custom image: the system disk is filled from the image's snapshot (its
                // owner's, maybe another account's: the fill holds the blocks it reads).
                let s = feitian_meta::snapshot::get_any_owner(tx, sid)?.ok_or_else(crate::snapshots::not_found)?;
                disks::restorable(&s)?;
                feitian_meta::disk_restore::begin(tx, &disk_id, &s)?;
            }
            disk::insert_disk(
                tx,
                &Disk {
                    id: disk_id,
                    account_id: account,
                    region_id: plan.region.id.clone(),
                    zone_id: vsw.zone_id.clone(),
                    instance_id: id.clone(),
                    name: String::new(),
                    description: String::new(),
                    category: plan.disk_category.clone(),
                    size_gib: plan.disk_size,
                    disk_type: DiskType::System,
                    device: "/dev/xvda".into(),
                    image_id: plan.image_id.clone(),
                    status: DiskStatus::InUse,
                    delete_with_instance: true,
                    created_at: created.clone(),
                    performance_level: if plan.disk_category == "cloud_essd" { "PL1".into() } else { String::new() },
                    portable: false,
                    delete_auto_snapshot: true,
                    enable_auto_snapshot: true,
                    attached_at: created.clone(),
                    detached_at: String::new(),
                },
            )?;
            let all_data: Vec<disks::DataDiskSpec> = plan.image_disks.iter().chain(&plan.data_disks).cloned().collect();
            for (n, (d, device)) in all_data.iter().zip(disks::assign_devices(&all_data)).enumerate() {
                let disk_id = scope.register(tx, "disk", "d", &plan.region.id, &plan.region.id_code)?;
                if let Some(sid) = &d.snapshot_id {
                    // The image's disks' snapshots are its owner's; the caller's own otherwise.
                    let s = if n < plan.image_disks.len() {
                        feitian_meta::snapshot::get_any_owner(tx, sid)?
                    } else {
                        feitian_meta::snapshot::get(tx, account, sid)?
                    }
                    .ok_or_else(crate::snapshots::not_found)?;
                    disks::restorable(&s)?;
                    feitian_meta::disk_restore::begin(tx, &disk_id, &s)?;
                }
                disk::insert_disk(
                    tx,
                    &Disk {
                        id: disk_id,
                        account_id: account,
                        region_id: plan.region.id.clone(),
                        zone_id: vsw.zone_id.clone(),
                        instance_id: id.clone(),
                        name: d.name.clone(),
                        description: d.description.clone(),
                        category: d.shape.category.clone(),
                        size_gib: d.shape.size_gib,
                        disk_type: DiskType::Data,
                        device,
                        image_id: String::new(),
                        status: DiskStatus::InUse,
                        delete_with_instance: d.delete_with_instance,
                        created_at: created.clone(),
                        performance_level: d.shape.performance_level.clone(),
                        portable: true,
                        delete_auto_snapshot: true,
                        enable_auto_snapshot: true,
                        attached_at: created.clone(),
                        detached_at: String::new(),
                    },
                )?;
            }
            tag::set_tags(tx, &id, &plan.tags)?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// A custom image the caller may launch from (its own, or shared with it; `Available`,
    /// in the plan's region): the system disk is restored from its system snapshot, sized at
    /// least the image's size, and its data disks come first among the instance's.
    async fn resolve_custom_image(&self, account: u64, plan: &mut Plan) -> Result<(), ApiError> {
        let (id, region) = (plan.image_id.clone(), plan.region.id.clone());
        let (image, snapshots) = self
            .store
            .read_async(move |tx| {
                let image = feitian_meta::image::visible_to(tx, account, &id)?
                    .filter(|i| i.region_id == region)
                    .ok_or_else(crate::image_actions::not_found)?;
                let mut snapshots = Vec::new();
                for d in feitian_meta::image::disks(tx, &image.id)? {
                    let s = feitian_meta::snapshot::get_any_owner(tx, &d.snapshot_id)?;
                    snapshots.push((d, s));
                }
                Ok::<_, ApiError>((image, snapshots))
            })
            .await?;
        if image.status != feitian_meta::image::ImageStatus::Available {
            return Err(crate::image_actions::incorrect_status(&image, "Available"));
        }
        match plan.disk_size_given {
            Some(s) if s < image.size_gib => {
                return Err(ApiError::invalid(
                    "InvalidSystemDiskSize.LessThanImageSize",
                    "The system disk is smaller than the image.",
                )
                .recommend(format!("{} needs a system disk of at least {} GiB", image.id, image.size_gib)))
            }
            Some(_) => {}
            None => plan.disk_size = image.size_gib.max(20),
        }
        for (d, s) in snapshots {
            let s = s.ok_or_else(|| {
                crate::image_actions::incorrect_status(&image, "Available (a snapshot of it is gone)")
            })?;
            disks::restorable(&s)?;
            if d.disk_type == feitian_meta::disk::DiskType::System {
                plan.system_snapshot = Some(s.id);
                continue;
            }
            if plan.data_disks.iter().any(|x| x.device == d.device) {
                return Err(ApiError::invalid_parameter(
                    "DataDisk.N.Device",
                    format!("{} is the image's data disk {}", d.device, s.id),
                ));
            }
            let shape = disks::shape(
                &plan.disk_category,
                None,
                d.size_gib.max(s.source_disk_gib),
                "InvalidDataDiskCategory.ValueNotSupported",
            )?;
            plan.image_disks.push(disks::DataDiskSpec {
                shape,
                name: String::new(),
                description: String::new(),
                device: d.device,
                delete_with_instance: true,
                snapshot_id: Some(s.id),
            });
        }
        if plan.system_snapshot.is_none() {
            return Err(crate::image_actions::incorrect_status(&image, "Available (it has no system disk)"));
        }
        Ok(())
    }

    /// RunInstances (`run`: created to run, any Amount) and CreateInstance (created Stopped,
    /// one instance): the same plan, one transaction, at most once per ClientToken.
    async fn create<T: Serialize + DeserializeOwned + Send + 'static>(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        run: bool,
        answer: fn(Vec<String>) -> T,
    ) -> Result<T, ApiError> {
        let mut plan = self.plan(&p, run)?;
        if plan.public_image.is_none() {
            self.resolve_custom_image(ctx.caller.account_id, &mut plan).await?;
        }
        // Data disks made from snapshots: sized from the caller's snapshots (checked again,
        // and their blocks taken, in the transaction).
        for d in plan.data_disks.iter_mut() {
            if let Some(sid) = d.snapshot_id.clone() {
                let (account, region) = (ctx.caller.account_id, plan.region.id.clone());
                let s = self
                    .store
                    .read_async(move |tx| feitian_meta::snapshot::get(tx, account, &sid))
                    .await?
                    .filter(|s| s.region_id == region)
                    .ok_or_else(crate::snapshots::not_found)?;
                disks::resolve_snapshot(d, &s)?;
            }
        }
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        // Measured before the transaction (the host answers over the contract); the promises
        // it is weighed against are read inside it.
        let host = if run { Some(self.host_capacity().await?) } else { None };
        let me = self.clone();
        let out = self
            .store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let ids = me.create_instances(tx, ctx.caller.account_id, &plan, host.as_ref())?;
                    Ok(answer(ids))
                })
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn run_instances(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<RunInstancesResponse, ApiError> {
        self.create(ctx, p, true, |ids| RunInstancesResponse {
            instance_id_sets: InstanceIdSets { instance_id_set: ids },
            order_id: String::new(),
            trade_price: 0.0,
        })
        .await
    }

    pub async fn create_instance(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<CreateInstanceResponse, ApiError> {
        self.create(ctx, p, false, |ids| CreateInstanceResponse {
            // One instance: `plan` allows no Amount here.
            instance_id: ids.into_iter().next().unwrap_or_default(),
            order_id: String::new(),
            trade_price: 0.0,
        })
        .await
    }

    fn instance(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        region: Option<&str>,
        id: &str,
    ) -> Result<Instance, ApiError> {
        instance::get_instance(tx, account, id)?
            .filter(|i| region.is_none_or(|r| r == i.region_id))
            .ok_or_else(not_found)
    }

    // --- the lifecycle ----------------------------------------------------------------------

    /// Applies one lifecycle action to one instance in the caller's transaction; the status
    /// before and after.
    fn transition(
        &self,
        tx: &Transaction<'_>,
        inst: &Instance,
        action: Lifecycle,
    ) -> Result<(&'static str, &'static str), ApiError> {
        let before = inst.status.as_str();
        let (status, desired, reboots) = match action {
            Lifecycle::Start(ref host) => {
                if inst.status != InstanceStatus::Stopped {
                    return Err(incorrect_status(inst.status, InstanceStatus::Stopped.as_str()));
                }
                // A stopped instance holds nothing of the host: it is admitted again.
                let demand =
                    admission::Demand { vcpus: inst.cpu.max(0) as u64, memory_mib: inst.memory_mib.max(0) as u64 };
                self.admit(tx, host, demand)?;
                (InstanceStatus::Starting, Desired::Running, 0)
            }
            Lifecycle::Stop { force } => match inst.status {
                InstanceStatus::Running => (InstanceStatus::Stopping, Desired::Stopped, 0),
                InstanceStatus::Stopped if !force => return Ok((before, before)),
                InstanceStatus::Starting | InstanceStatus::Pending if force => {
                    (InstanceStatus::Stopping, Desired::Stopped, 0)
                }
                s => return Err(incorrect_status(s, InstanceStatus::Running.as_str())),
            },
            Lifecycle::Reboot { .. } => {
                if inst.status != InstanceStatus::Running {
                    return Err(incorrect_status(inst.status, InstanceStatus::Running.as_str()));
                }
                (InstanceStatus::Stopping, Desired::Running, inst.reboots + 1)
            }
        };
        instance::set_lifecycle(tx, &inst.id, status, desired, reboots)?;
        // A forced stop or reboot powers the guest off at once instead of asking it (ACPI).
        let forced = matches!(action, Lifecycle::Stop { force: true } | Lifecycle::Reboot { force: true });
        instance::set_forced_stop(tx, &inst.id, forced && status == InstanceStatus::Stopping)?;
        Ok((before, status.as_str()))
    }

    /// The status change an action asks for (`None`: a delete). A start carries the host's
    /// capacity, measured now, to be admitted against.
    async fn lifecycle(&self, action: LifecycleAction, force: bool) -> Result<Option<Lifecycle>, ApiError> {
        Ok(match action {
            LifecycleAction::Start => Some(Lifecycle::Start(self.host_capacity().await?)),
            LifecycleAction::Stop => Some(Lifecycle::Stop { force }),
            LifecycleAction::Reboot => Some(Lifecycle::Reboot { force }),
            LifecycleAction::Delete => None,
        })
    }

    fn delete_one(&self, tx: &Transaction<'_>, inst: &Instance, force: bool) -> Result<(), ApiError> {
        if inst.deletion_protection {
            return Err(ApiError::invalid(
                "InvalidOperation.DeletionProtection",
                "The instance is protected from deletion.",
            )
            .recommend("turn DeletionProtection off with ModifyInstanceAttribute first"));
        }
        match inst.status {
            InstanceStatus::Stopped => {}
            InstanceStatus::Running | InstanceStatus::Starting | InstanceStatus::Stopping | InstanceStatus::Pending
                if force => {}
            s => return Err(incorrect_status(s, "Stopped (or pass Force=true)")),
        }
        // The records go now; the agent removes what the host still runs of it.
        instance::delete_instance(tx, &inst.id)?;
        Ok(())
    }

    pub async fn lifecycle_one(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        action: LifecycleAction,
    ) -> Result<Empty, ApiError> {
        let id = p.required_str("InstanceId")?.to_owned();
        let force = p.opt_bool("ForceStop")?.or(p.opt_bool("Force")?).unwrap_or(false);
        check_stopped_mode(&p)?;
        validate::dry_run(&p)?;
        let change = self.lifecycle(action, force).await?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let inst = me.instance(tx, ctx.caller.account_id, None, &id)?;
                match change {
                    Some(l) => me.transition(tx, &inst, l).map(drop),
                    None => me.delete_one(tx, &inst, force),
                }
            })
            .await?;
        self.changed();
        Ok(Empty {})
    }

    /// StartInstances / StopInstances / RebootInstances / DeleteInstances: `InstanceId.N`.
    /// `BatchOptimization=AllTogether` (the default) changes all or none; `SuccessFirst` does
    /// what it can and reports each.
    pub async fn lifecycle_many(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        action: LifecycleAction,
    ) -> Result<InstancesResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let ids: Vec<String> = p.list("InstanceId", 100)?.into_iter().map(str::to_owned).collect();
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("InstanceId.N"));
        }
        let force = match action {
            LifecycleAction::Reboot => p.opt_bool("ForceReboot")?,
            LifecycleAction::Delete => p.opt_bool("Force")?,
            _ => p.opt_bool("ForceStop")?,
        }
        .unwrap_or(false);
        check_stopped_mode(&p)?;
        let all_together = match p.opt_str("BatchOptimization").unwrap_or("AllTogether") {
            "AllTogether" => true,
            "SuccessFirst" => false,
            other => {
                return Err(ApiError::invalid_parameter(
                    "BatchOptimization",
                    format!("{other:?} is not AllTogether or SuccessFirst"),
                ))
            }
        };
        validate::dry_run(&p)?;
        let change = self.lifecycle(action, force).await?;
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let mut responses = Vec::new();
                for id in &ids {
                    let result =
                        me.instance(tx, ctx.caller.account_id, Some(&region), id).and_then(|inst| match change {
                            Some(l) => me.transition(tx, &inst, l),
                            None => me.delete_one(tx, &inst, force).map(|_| (inst.status.as_str(), "Deleted")),
                        });
                    let (code, message, previous_status, current_status) = match result {
                        Ok((prev, cur)) => (Cow::Borrowed("200"), "success".to_owned(), prev, cur),
                        Err(e) if all_together => return Err(e),
                        Err(e) => (e.code, e.message, "", ""),
                    };
                    responses.push(InstanceResponse {
                        instance_id: id.clone(),
                        code,
                        message,
                        previous_status,
                        current_status,
                    });
                }
                Ok(InstancesResponse {
                    instance_responses: match action {
                        LifecycleAction::Delete => None,
                        _ => Some(InstanceResponses { instance_response: responses }),
                    },
                })
            })
            .await?;
        self.changed();
        Ok(out)
    }

    // --- describe ---------------------------------------------------------------------------

    pub async fn describe_instances(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeInstancesResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let by_token = p.opt_str("NextToken").is_some() || p.opt_str("MaxResults").is_some();
        let page = Page::from_params(&p, 10, 100)?;
        let tpage = TokenPage::from_params(&p, 10, 100)?;
        let ids = validate::id_list(&p, "InstanceIds", 100)?;
        let private = validate::id_list(&p, "PrivateIpAddresses", 100)?;
        let public = validate::id_list(&p, "PublicIpAddresses", 100)?;
        let eips = validate::id_list(&p, "EipAddresses", 100)?;
        let zone_id = zone(&region, &p, false)?.map(|z| z.id.clone());
        if let Some(s) = p.opt_str("Status") {
            if InstanceStatus::parse(s).is_none() {
                return Err(ApiError::invalid_parameter("Status", format!("{s:?} is not an instance status")));
            }
        }
        let tags = validate::tag_filter(&p)?;
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let public: Vec<&str> = public.iter().map(String::as_str).collect();
                let tag_args: Vec<(&str, Option<&str>)> =
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                let mut f = Filter::owned(account, &region.id)
                    .any_of("id", &ids)
                    .any_of("public_ip", &public)
                    .eq("vpc_id", p.opt_str("VpcId"))
                    .eq("vswitch_id", p.opt_str("VSwitchId"))
                    .eq("zone_id", zone_id.as_deref())
                    .eq("name", p.opt_str("InstanceName"))
                    .eq("status", p.opt_str("Status"))
                    .eq("instance_type", p.opt_str("InstanceType"))
                    .eq("image_id", p.opt_str("ImageId"))
                    .eq("key_pair_name", p.opt_str("KeyPairName"))
                    .tags(&tag_args);
                if let Some(fam) = p.opt_str("InstanceTypeFamily") {
                    let types: Vec<&str> =
                        instance_types::CATALOG.iter().filter(|t| t.family == fam).map(|t| t.id).collect();
                    f = f.any_of("instance_type", if types.is_empty() { &["-"] } else { &types });
                }
                if !private.is_empty() || p.opt_str("SecurityGroupId").is_some() || !eips.is_empty() {
                    let sub =
                        instance::instance_ids_matching(tx, account, &private, p.opt_str("SecurityGroupId"), &eips)?;
                    let sub: Vec<&str> = sub.iter().map(String::as_str).collect();
                    f = f.any_of("id", if sub.is_empty() { &["-"] } else { &sub });
                }
                let (offset, limit) =
                    if by_token { (tpage.offset, u64::from(tpage.max_results)) } else { (page.offset(), page.limit()) };
                let (rows, total) = instance::list_instances(tx, &f, offset, limit)?;
                let ids: Vec<&str> = rows.iter().map(|i| i.id.as_str()).collect();
                let extras = instance::instance_extras(tx, &ids)?;
                let paging = Paging::new(by_token, page, tpage, rows.len(), total);
                Ok(DescribeInstancesResponse { rows, extras, paging })
            })
            .await
    }

    pub async fn describe_instance_attribute(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeInstanceAttributeResponse, ApiError> {
        let id = p.required_str("InstanceId")?.to_owned();
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let i = me.instance(tx, ctx.caller.account_id, None, &id)?;
                let extras = instance::instance_extras(tx, &[i.id.as_str()])?;
                DescribeInstanceAttributeResponse::new(i, extras).ok_or_else(ApiError::internal)
            })
            .await
    }

    pub async fn describe_instance_status(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeInstanceStatusResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let ids: Vec<String> = p.list("InstanceId", 100)?.into_iter().map(str::to_owned).collect();
        let zone_id = zone(&region, &p, false)?.map(|z| z.id.clone());
        self.store
            .read_async(move |tx| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let f = Filter::owned(ctx.caller.account_id, &region.id)
                    .any_of("id", &ids)
                    .eq("zone_id", zone_id.as_deref());
                let (rows, total) = instance::list_instances(tx, &f, page.offset(), page.limit())?;
                let instance_status = rows
                    .into_iter()
                    .map(|i| InstanceStatusItem { status: i.status.as_str(), instance_id: i.id })
                    .collect();
                Ok(DescribeInstanceStatusResponse {
                    instance_statuses: InstanceStatuses { instance_status },
                    page: page.info(total),
                })
            })
            .await
    }

    /// `GetInstanceConsoleOutput`: the latest boot's serial console, base64, from the host
    /// that runs the instance (the driver keeps the log; an instance never started has none).
    pub async fn get_instance_console_output(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<GetInstanceConsoleOutputResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("InstanceId")?.to_owned();
        let remove_symbols = p.opt_bool("RemoveSymbols")?.unwrap_or(false);
        let me = self.clone();
        let inst =
            self.store.read_async(move |tx| me.instance(tx, ctx.caller.account_id, Some(&region.id), &id)).await?;
        let mut text = match self.host.get() {
            Some(host) => host.console_output(inst.id.clone()).await.unwrap_or_else(|e| {
                // The console is what the host kept; a host that cannot answer now has none to show.
                tracing::warn!(instance = %inst.id, error = %e, "cannot read the console from the host");
                None
            }),
            None => None,
        }
        .unwrap_or_default();
        if remove_symbols {
            // Control characters a console prints (escapes, carriage returns, bells).
            text = text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
        }
        Ok(GetInstanceConsoleOutputResponse {
            instance_id: inst.id,
            console_output: base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            last_update_time: feitian_api::service::now(),
        })
    }

    // --- changes ----------------------------------------------------------------------------

    pub async fn modify_instance_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let id = p.required_str("InstanceId")?.to_owned();
        let name = validate::name(&p, "InstanceName", "InvalidInstanceName.Malformed")?.map(str::to_owned);
        let description = validate::description(&p, "Description", "InvalidDescription.Malformed")?.map(str::to_owned);
        let host = host_name(&p)?;
        check_password(&p)?;
        let ud = if p.opt_str("UserData").is_some() { Some(user_data(&p)?) } else { None };
        let protection = p.opt_bool("DeletionProtection")?;
        let groups: Vec<String> = p.list("SecurityGroupIds", 16)?.into_iter().map(str::to_owned).collect();
        if groups.len() > MAX_GROUPS_PER_INTERFACE {
            return Err(ApiError::invalid(
                "JoinedGroupLimitExceed",
                "The number of security groups an instance joins exceeds the limit.",
            ));
        }
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut i = me.instance(tx, account, None, &id)?;
                if ud.is_some() && i.status != InstanceStatus::Stopped {
                    return Err(incorrect_status(i.status, "Stopped (UserData changes need a stopped instance)"));
                }
                if let Some(n) = name {
                    i.name = n;
                }
                if let Some(d) = description {
                    i.description = d;
                }
                if let Some(h) = host {
                    i.host_name = h;
                }
                if let Some(u) = ud {
                    i.user_data = u;
                }
                if let Some(b) = protection {
                    i.deletion_protection = b;
                }
                if !groups.is_empty() {
                    let eni = network_interface::enis_of_instance(tx, &i.id)?
                        .into_iter()
                        .next()
                        .ok_or_else(ApiError::internal)?;
                    for g in &groups {
                        let group = me.group(tx, account, &i.region_id, g)?;
                        if group.vpc_id != i.vpc_id {
                            return Err(ApiError::invalid(
                                "InvalidSecurityGroup.VpcMismatch",
                                "The security group and the instance are in different VPCs.",
                            ));
                        }
                    }
                    for g in security_group::groups_of_eni(tx, &eni.id)? {
                        security_group::leave_group(tx, &eni.id, &g)?;
                    }
                    for g in &groups {
                        security_group::join_group(tx, &eni.id, g)?;
                    }
                }
                instance::update_instance(tx, &i)?;
                Ok(Empty {})
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn allocate_public_ip_address(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<AllocatePublicIpAddressResponse, ApiError> {
        let id = p.required_str("InstanceId")?.to_owned();
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let mut i = me.instance(tx, ctx.caller.account_id, None, &id)?;
                if !i.public_ip.is_empty() {
                    return Err(ApiError::invalid("AllocatedAlready", "The instance already has a public IP address."));
                }
                if query::count_where(tx, "eips", "instance_id", &i.id)? > 0 {
                    return Err(ApiError::invalid(
                        "InvalidOperation.HasEip",
                        "The instance has an EIP; it cannot also get a public IP.",
                    ));
                }
                if i.status != InstanceStatus::Running && i.status != InstanceStatus::Stopped {
                    return Err(incorrect_status(i.status, "Running or Stopped"));
                }
                i.public_ip = me.public_address(tx)?;
                if i.internet_bandwidth_out == 0 {
                    i.internet_bandwidth_out = 5;
                }
                instance::update_instance(tx, &i)?;
                Ok(AllocatePublicIpAddressResponse { ip_address: i.public_ip })
            })
            .await
    }

    /// JoinSecurityGroup / LeaveSecurityGroup, by InstanceId or NetworkInterfaceId.
    pub async fn membership(self: Arc<Self>, ctx: Ctx, p: Params, join: bool) -> Result<Empty, ApiError> {
        if p.opt_str("RegionId").is_some() {
            require_region(&self.catalog, &p)?;
        }
        let group_id = p.required_str("SecurityGroupId")?.to_owned();
        let instance_id = p.opt_str("InstanceId").map(str::to_owned);
        let eni_id = p.opt_str("NetworkInterfaceId").map(str::to_owned);
        if instance_id.is_none() && eni_id.is_none() {
            return Err(ApiError::missing_parameter("InstanceId"));
        }
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let eni = match (&instance_id, &eni_id) {
                    (Some(i), _) => {
                        let inst = me.instance(tx, account, None, i)?;
                        if ![InstanceStatus::Running, InstanceStatus::Stopped].contains(&inst.status) {
                            return Err(incorrect_status(inst.status, "Running or Stopped"));
                        }
                        network_interface::enis_of_instance(tx, &inst.id)?
                            .into_iter()
                            .next()
                            .ok_or_else(ApiError::internal)?
                    }
                    (None, Some(e)) => network_interface::get_eni(tx, account, e)?.ok_or_else(|| {
                        ApiError::new(404, "InvalidEcsId.NotFound", "The specified network interface does not exist.")
                    })?,
                    (None, None) => unreachable!("checked above"),
                };
                let group = me.group(tx, account, &eni.region_id, &group_id)?;
                let current = security_group::groups_of_eni(tx, &eni.id)?;
                if join {
                    if group.vpc_id != eni.vpc_id {
                        return Err(ApiError::invalid(
                            "InvalidSecurityGroup.VpcMismatch",
                            "The security group and the instance are in different VPCs.",
                        )
                        .recommend("a VPC instance can join only groups of its own VPC"));
                    }
                    if current.contains(&group.id) {
                        return Err(ApiError::invalid(
                            "InvalidInstanceId.AlreadyExists",
                            "The instance is already in the security group.",
                        ));
                    }
                    if current.len() >= MAX_GROUPS_PER_INTERFACE {
                        return Err(ApiError::invalid(
                            "JoinedGroupLimitExceed",
                            "The number of security groups an instance joins exceeds the limit.",
                        )
                        .recommend(format!(
                            "an instance joins at most {MAX_GROUPS_PER_INTERFACE} security groups; leave one first"
                        )));
                    }
                    security_group::join_group(tx, &eni.id, &group.id)?;
                } else {
                    if !current.contains(&group.id) {
                        return Err(ApiError::invalid(
                            "InvalidInstanceId.NotInSecurityGroup",
                            "The instance is not in the security group.",
                        ));
                    }
                    if current.len() == 1 {
                        return Err(ApiError::invalid(
                            "InstanceLastSecurityGroup",
                            "The instance must belong to at least one security group.",
                        )
                        .recommend("join it to another group first, then leave this one"));
                    }
                    security_group::leave_group(tx, &eni.id, &group.id)?;
                }
                Ok(Empty {})
            })
            .await?;
        self.changed();
        Ok(out)
    }
}

/// A lifecycle action on one instance.
#[derive(Debug, Clone, Copy)]
enum Lifecycle {
    /// With the host's capacity, measured for this call.
    Start(HostCapacity),
    Stop {
        force: bool,
    },
    Reboot {
        force: bool,
    },
}

/// Which lifecycle action an API call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    Start,
    Stop,
    Reboot,
    Delete,
}

/// A serial number in the real shape (a UUID).
fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff | 0x4000,
        u16::from_be_bytes([b[8], b[9]]) & 0x3fff | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn passwords() {
        assert!(check_password(&p(&[("Password", "Abcdef12")])).is_ok());
        assert!(check_password(&p(&[("Password", "abcdefgh")])).is_err());
        assert!(check_password(&p(&[("Password", "Ab1")])).is_err());
        assert!(check_password(&p(&[("Password", "Ab1 cdefgh")])).is_err());
    }

    #[test]
    fn user_data_rules() {
        assert_eq!(user_data(&p(&[("UserData", "IyEvYmluL3NoCg==")])).unwrap(), "IyEvYmluL3NoCg==");
        assert_eq!(user_data(&p(&[("UserData", "***")])).unwrap_err().code, "InvalidUserData.Base64FormatInvalid");
        let big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; MAX_USER_DATA + 1]);
        assert_eq!(user_data(&p(&[("UserData", &big)])).unwrap_err().code, "InvalidUserData.SizeExceeded");
    }

    /// Create answers are stored with their ClientToken and read back for a replay.
    fn replays<T: Serialize + DeserializeOwned>(answer: T) -> String {
        let stored = serde_json::to_string(&answer).unwrap();
        let again = serde_json::to_string(&serde_json::from_str::<T>(&stored).unwrap()).unwrap();
        assert_eq!(stored, again);
        stored
    }

    #[test]
    fn create_answers_read_back_as_they_were() {
        let run = RunInstancesResponse {
            instance_id_sets: InstanceIdSets { instance_id_set: vec!["i-1".into(), "i-2".into()] },
            order_id: String::new(),
            trade_price: 0.0,
        };
        assert_eq!(replays(run), r#"{"InstanceIdSets":{"InstanceIdSet":["i-1","i-2"]},"OrderId":"","TradePrice":0.0}"#);
        let one = CreateInstanceResponse { instance_id: "i-1".into(), order_id: String::new(), trade_price: 0.0 };
        assert_eq!(replays(one), r#"{"InstanceId":"i-1","OrderId":"","TradePrice":0.0}"#);
        let group = security_groups::CreateSecurityGroupResponse { security_group_id: "sg-1".into() };
        assert_eq!(replays(group), r#"{"SecurityGroupId":"sg-1"}"#);
    }

    #[test]
    fn batch_answers() {
        let deleted = InstancesResponse { instance_responses: None };
        assert_eq!(serde_json::to_string(&deleted).unwrap(), "{}");
        let started = InstancesResponse {
            instance_responses: Some(InstanceResponses {
                instance_response: vec![InstanceResponse {
                    instance_id: "i-1".into(),
                    code: Cow::Borrowed("200"),
                    message: "success".into(),
                    previous_status: "Stopped",
                    current_status: "Starting",
                }],
            }),
        };
        assert_eq!(
            serde_json::to_string(&started).unwrap(),
            r#"{"InstanceResponses":{"InstanceResponse":[{"InstanceId":"i-1","Code":"200","Message":"success","PreviousStatus":"Stopped","CurrentStatus":"Starting"}]}}"#
        );
    }

    #[test]
    fn host_names_and_macs() {
        assert!(host_name(&p(&[("HostName", "web-1.local")])).is_ok());
        assert!(host_name(&p(&[("HostName", "-bad")])).is_err());
        assert!(host_name(&p(&[("HostName", "a_b")])).is_err());
        assert!(random_mac().starts_with("00:16:3e:"));
        assert_eq!(uuid_like().len(), 36);
    }
}
