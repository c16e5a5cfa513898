//! The DescribeInstances shape of an instance, as borrowing structs: a page of 100 instances
//! serializes straight from the store rows, with no intermediate JSON tree.

use crate::{images, instance_types};
use feitian_agent_api::InstanceStatus;
use feitian_meta::instance::{Instance, InstanceExtras};
use serde::Serialize;

#[derive(Serialize)]
pub struct Ips<'a> {
    #[serde(rename = "IpAddress")]
    pub ip_address: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcAttributes<'a> {
    pub vpc_id: &'a str,
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: &'a str,
    pub nat_ip_address: &'a str,
    pub private_ip_address: Ips<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EipAddress<'a> {
    pub allocation_id: &'a str,
    pub ip_address: &'a str,
    pub bandwidth: i64,
    pub internet_charge_type: &'a str,
    pub is_support_unassociate: bool,
}

#[derive(Serialize)]
pub struct SecurityGroupIds<'a> {
    #[serde(rename = "SecurityGroupId")]
    pub ids: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrivateIpSet<'a> {
    pub private_ip_address: &'a str,
    pub primary: bool,
    pub private_dns_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterfaceView<'a> {
    pub network_interface_id: &'a str,
    pub mac_address: &'a str,
    pub primary_ip_address: &'a str,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub private_ip_sets: PrivateIpSets<'a>,
    pub ipv6_sets: Ipv6Sets,
}

#[derive(Serialize)]
pub struct PrivateIpSets<'a> {
    #[serde(rename = "PrivateIpSet")]
    pub sets: [PrivateIpSet<'a>; 1],
}

#[derive(Serialize)]
pub struct Ipv6Sets {
    #[serde(rename = "Ipv6Set")]
    pub sets: [(); 0],
}

#[derive(Serialize)]
pub struct NetworkInterfaces<'a> {
    #[serde(rename = "NetworkInterface")]
    pub list: Vec<NetworkInterfaceView<'a>>,
}

#[derive(Serialize)]
pub struct LockReasons {
    #[serde(rename = "LockReason")]
    pub list: [(); 0],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagView<'a> {
    pub tag_key: &'a str,
    pub tag_value: &'a str,
}

#[derive(Serialize)]
pub struct Tags<'a> {
    #[serde(rename = "Tag")]
    pub list: Vec<TagView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetadataOptions {
    pub http_endpoint: &'static str,
    pub http_tokens: &'static str,
    pub http_put_response_hop_limit: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CpuOptions {
    pub core_count: i64,
    pub threads_per_core: u32,
    pub numa: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Configured {
    pub configured: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageOptions {
    pub login_as_non_root: bool,
}

/// One instance, as DescribeInstances shows it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceView<'a> {
    pub instance_id: &'a str,
    pub instance_name: &'a str,
    pub description: &'a str,
    pub host_name: &'a str,
    pub image_id: &'a str,
    pub instance_type: &'a str,
    pub instance_type_family: &'static str,
    pub cpu: i64,
    pub memory: i64,
    #[serde(rename = "OSName")]
    pub os_name: &'static str,
    #[serde(rename = "OSNameEn")]
    pub os_name_en: &'static str,
    #[serde(rename = "OSType")]
    pub os_type: &'static str,
    pub region_id: &'a str,
    pub zone_id: &'a str,
    pub status: &'a str,
    pub creation_time: &'a str,
    pub start_time: &'a str,
    pub expired_time: &'static str,
    pub auto_release_time: &'static str,
    pub instance_charge_type: &'static str,
    pub internet_charge_type: &'a str,
    pub internet_max_bandwidth_out: i64,
    pub internet_max_bandwidth_in: i64,
    pub instance_network_type: &'static str,
    pub io_optimized: bool,
    pub key_pair_name: &'a str,
    pub deletion_protection: bool,
    pub serial_number: &'a str,
    pub stopped_mode: &'static str,
    pub device_available: bool,
    #[serde(rename = "GPUAmount")]
    pub gpu_amount: u32,
    #[serde(rename = "GPUSpec")]
    pub gpu_spec: &'static str,
    pub recyclable: bool,
    pub resource_group_id: &'static str,
    pub spot_strategy: &'static str,
    pub spot_price_limit: f64,
    pub spot_duration: u32,
    pub credit_specification: &'static str,
    pub local_storage_amount: u32,
    pub local_storage_capacity: u64,
    pub deployment_set_id: &'static str,
    pub vlan_id: &'static str,
    pub cluster_id: &'static str,
    pub hpc_cluster_id: &'static str,
    pub sale_cycle: &'static str,
    #[serde(rename = "ISP")]
    pub isp: &'static str,
    pub vpc_attributes: VpcAttributes<'a>,
    pub inner_ip_address: Ips<'a>,
    pub public_ip_address: Ips<'a>,
    pub rdma_ip_address: Ips<'a>,
    pub eip_address: EipAddress<'a>,
    pub security_group_ids: SecurityGroupIds<'a>,
    pub network_interfaces: NetworkInterfaces<'a>,
    pub operation_locks: LockReasons,
    pub tags: Tags<'a>,
    pub metadata_options: MetadataOptions,
    pub cpu_options: CpuOptions,
    pub hibernation_options: Configured,
    pub image_options: ImageOptions,
}

const NO_GROUPS: &[String] = &[];

impl<'a> InstanceView<'a> {
    /// `None` when the instance has no network interface (never, for a consistent store).
    pub fn new(i: &'a Instance, x: &'a InstanceExtras) -> Option<InstanceView<'a>> {
        let enis = x.enis.get(&i.id)?;
        let eni = enis.first()?;
        let groups = x.groups.get(&eni.id).map(Vec::as_slice).unwrap_or(NO_GROUPS);
        let tags = x.tags.get(&i.id);
        let eip = x.eips.get(&i.id);
        let itype = instance_types::find(&i.instance_type);
        let image = images::find(&i.image_id);
        Some(InstanceView {
            instance_id: &i.id,
            instance_name: &i.name,
            description: &i.description,
            host_name: &i.host_name,
            image_id: &i.image_id,
            instance_type: &i.instance_type,
            instance_type_family: itype.map(|t| t.family).unwrap_or(""),
            cpu: i.cpu,
            memory: i.memory_mib,
            os_name: image.map(|m| m.os_name).unwrap_or(""),
            os_name_en: image.map(|m| m.os_name_en).unwrap_or(""),
            os_type: "linux",
            region_id: &i.region_id,
            zone_id: &i.zone_id,
            status: i.status.as_str(),
            creation_time: &i.created_at,
            start_time: &i.started_at,
            expired_time: "2099-12-31T15:59Z",
            auto_release_time: "",
            instance_charge_type: "PostPaid",
            internet_charge_type: &i.internet_charge_type,
            internet_max_bandwidth_out: i.internet_bandwidth_out,
            internet_max_bandwidth_in: 100,
            instance_network_type: "vpc",
            io_optimized: true,
            key_pair_name: &i.key_pair_name,
            deletion_protection: i.deletion_protection,
            serial_number: &i.serial_number,
            stopped_mode: if i.status == InstanceStatus::Stopped { "KeepCharging" } else { "Not-applicable" },
            device_available: true,
            gpu_amount: 0,
            gpu_spec: "",
            recyclable: false,
            resource_group_id: "",
            spot_strategy: "NoSpot",
            spot_price_limit: 0.0,
            spot_duration: 0,
            credit_specification: "",
            local_storage_amount: 0,
            local_storage_capacity: 0,
            deployment_set_id: "",
            vlan_id: "",
            cluster_id: "",
            hpc_cluster_id: "",
            sale_cycle: "",
            isp: "",
            vpc_attributes: VpcAttributes {
                vpc_id: &i.vpc_id,
                vswitch_id: &i.vswitch_id,
                nat_ip_address: "",
                private_ip_address: Ips { ip_address: vec![&eni.primary_ip] },
            },
            inner_ip_address: Ips { ip_address: vec![] },
            public_ip_address: Ips { ip_address: if i.public_ip.is_empty() { vec![] } else { vec![&i.public_ip] } },
            rdma_ip_address: Ips { ip_address: vec![] },
            eip_address: match eip {
                Some(e) => EipAddress {
                    allocation_id: &e.id,
                    ip_address: &e.ip_address,
                    bandwidth: e.bandwidth,
                    internet_charge_type: &e.internet_charge_type,
                    is_support_unassociate: true,
                },
                None => EipAddress {
                    allocation_id: "",
                    ip_address: "",
                    bandwidth: 0,
                    internet_charge_type: "",
                    is_support_unassociate: false,
                },
            },
            security_group_ids: SecurityGroupIds { ids: groups },
            network_interfaces: NetworkInterfaces {
                list: enis
                    .iter()
                    .enumerate()
                    .map(|(n, e)| NetworkInterfaceView {
                        network_interface_id: &e.id,
                        mac_address: &e.mac,
                        primary_ip_address: &e.primary_ip,
                        kind: if n == 0 { "Primary" } else { "Secondary" },
                        private_ip_sets: PrivateIpSets {
                            sets: [PrivateIpSet {
                                private_ip_address: &e.primary_ip,
                                primary: true,
                                private_dns_name: "",
                            }],
                        },
                        ipv6_sets: Ipv6Sets { sets: [] },
                    })
                    .collect(),
            },
            operation_locks: LockReasons { list: [] },
            tags: Tags {
                list: tags
                    .map(|t| t.iter().map(|(k, v)| TagView { tag_key: k, tag_value: v }).collect())
                    .unwrap_or_default(),
            },
            metadata_options: MetadataOptions {
                http_endpoint: "enabled",
                http_tokens: "optional",
                http_put_response_hop_limit: 1,
            },
            cpu_options: CpuOptions { core_count: i.cpu, threads_per_core: 1, numa: "" },
            hibernation_options: Configured { configured: false },
            image_options: ImageOptions { login_as_non_root: false },
        })
    }
}

/// A page of DescribeInstances, owning its rows so that the views can borrow them while the
/// answer is serialized.
pub struct InstancesPage {
    pub rows: Vec<Instance>,
    pub extras: InstanceExtras,
    pub paging: PageFields,
}

pub enum PageFields {
    Numbered { number: u32, size: u32, total: u64 },
    Token { next: String, total: u64 },
}

impl Serialize for InstancesPage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        #[derive(Serialize)]
        struct Instances<'a> {
            #[serde(rename = "Instance")]
            list: Vec<InstanceView<'a>>,
        }
        let list = self
            .rows
            .iter()
            .map(|i| {
                InstanceView::new(i, &self.extras)
                    .ok_or_else(|| S::Error::custom(format!("{} has no network interface", i.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut m = s.serialize_map(None)?;
        match &self.paging {
            PageFields::Numbered { number, size, total } => {
                m.serialize_entry("PageNumber", number)?;
                m.serialize_entry("PageSize", size)?;
                m.serialize_entry("TotalCount", total)?;
            }
            PageFields::Token { next, total } => {
                m.serialize_entry("NextToken", next)?;
                m.serialize_entry("TotalCount", total)?;
            }
        }
        m.serialize_entry("Instances", &Instances { list })?;
        m.end()
    }
}
