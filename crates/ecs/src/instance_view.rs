//! The DescribeInstances shape of an instance, as borrowing structs: a page of 100 instances
//! serializes straight from the store rows, with no intermediate JSON tree.
//! DescribeInstanceAttribute shows a part of the same view.

use crate::answer::{Paging, Tags};
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
    /// DescribeInstances only: DescribeInstanceAttribute's `EipAddress` has no such field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_support_unassociate: Option<bool>,
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
    pub os_name: &'a str,
    #[serde(rename = "OSNameEn")]
    pub os_name_en: &'a str,
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
    pub tags: Tags<&'a str>,
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
        let custom_os = x.image_os.get(&i.image_id);
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
            os_name: image.map(|m| m.os_name).or_else(|| custom_os.map(|(n, _)| n.as_str())).unwrap_or(""),
            os_name_en: image.map(|m| m.os_name_en).or_else(|| custom_os.map(|(_, n)| n.as_str())).unwrap_or(""),
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
                    is_support_unassociate: Some(true),
                },
                None => EipAddress {
                    allocation_id: "",
                    ip_address: "",
                    bandwidth: 0,
                    internet_charge_type: "",
                    is_support_unassociate: Some(false),
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
            tags: tags.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
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
pub struct DescribeInstancesResponse {
    pub rows: Vec<Instance>,
    pub extras: InstanceExtras,
    pub paging: Paging,
}

impl Serialize for DescribeInstancesResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Page<'a> {
            #[serde(flatten)]
            paging: &'a Paging,
            instances: Instances<'a>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Instances<'a> {
            instance: Vec<InstanceView<'a>>,
        }
        let instance = self
            .rows
            .iter()
            .map(|i| InstanceView::new(i, &self.extras).ok_or_else(|| no_interface(&i.id)))
            .collect::<Result<Vec<_>, _>>()?;
        Page { paging: &self.paging, instances: Instances { instance } }.serialize(s)
    }
}

fn no_interface<E: serde::ser::Error>(id: &str) -> E {
    E::custom(format!("{id} has no network interface"))
}

/// DescribeInstanceAttribute's answer, owning the instance's rows so that its view can borrow
/// them while the answer is serialized.
pub struct DescribeInstanceAttributeResponse {
    instance: Instance,
    extras: InstanceExtras,
}

impl DescribeInstanceAttributeResponse {
    /// `None` when the instance has no view (no network interface).
    pub fn new(instance: Instance, extras: InstanceExtras) -> Option<Self> {
        InstanceView::new(&instance, &extras)?;
        Some(DescribeInstanceAttributeResponse { instance, extras })
    }
}

impl Serialize for DescribeInstanceAttributeResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let view = InstanceView::new(&self.instance, &self.extras).ok_or_else(|| no_interface(&self.instance.id))?;
        InstanceAttributeView::from(view).serialize(s)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DedicatedHostAttribute {
    pub dedicated_host_id: &'static str,
    pub dedicated_host_name: &'static str,
}

/// The fields of an instance DescribeInstanceAttribute shows.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceAttributeView<'a> {
    pub instance_id: &'a str,
    pub instance_name: &'a str,
    pub description: &'a str,
    pub host_name: &'a str,
    pub image_id: &'a str,
    pub instance_type: &'a str,
    pub cpu: i64,
    pub memory: i64,
    pub region_id: &'a str,
    pub zone_id: &'a str,
    pub status: &'a str,
    pub creation_time: &'a str,
    pub expired_time: &'static str,
    pub instance_charge_type: &'static str,
    pub internet_charge_type: &'a str,
    pub internet_max_bandwidth_out: i64,
    pub internet_max_bandwidth_in: i64,
    pub instance_network_type: &'static str,
    /// "optimized" or "none": a string here, where DescribeInstances has a bool.
    pub io_optimized: &'static str,
    pub serial_number: &'a str,
    pub stopped_mode: &'static str,
    pub vlan_id: &'static str,
    pub cluster_id: &'static str,
    pub credit_specification: &'static str,
    pub vpc_attributes: VpcAttributes<'a>,
    pub inner_ip_address: Ips<'a>,
    pub public_ip_address: Ips<'a>,
    pub eip_address: EipAddress<'a>,
    pub security_group_ids: SecurityGroupIds<'a>,
    pub operation_locks: LockReasons,
    pub dedicated_host_attribute: DedicatedHostAttribute,
    pub enable_jumbo_frame: bool,
}

impl<'a> From<InstanceView<'a>> for InstanceAttributeView<'a> {
    fn from(v: InstanceView<'a>) -> Self {
        InstanceAttributeView {
            instance_id: v.instance_id,
            instance_name: v.instance_name,
            description: v.description,
            host_name: v.host_name,
            image_id: v.image_id,
            instance_type: v.instance_type,
            cpu: v.cpu,
            memory: v.memory,
            region_id: v.region_id,
            zone_id: v.zone_id,
            status: v.status,
            creation_time: v.creation_time,
            expired_time: v.expired_time,
            instance_charge_type: v.instance_charge_type,
            internet_charge_type: v.internet_charge_type,
            internet_max_bandwidth_out: v.internet_max_bandwidth_out,
            internet_max_bandwidth_in: v.internet_max_bandwidth_in,
            instance_network_type: v.instance_network_type,
            io_optimized: if v.io_optimized { "optimized" } else { "none" },
            serial_number: v.serial_number,
            stopped_mode: v.stopped_mode,
            vlan_id: v.vlan_id,
            cluster_id: v.cluster_id,
            credit_specification: v.credit_specification,
            vpc_attributes: v.vpc_attributes,
            inner_ip_address: v.inner_ip_address,
            public_ip_address: v.public_ip_address,
            eip_address: EipAddress { is_support_unassociate: None, ..v.eip_address },
            security_group_ids: v.security_group_ids,
            operation_locks: v.operation_locks,
            dedicated_host_attribute: DedicatedHostAttribute { dedicated_host_id: "", dedicated_host_name: "" },
            enable_jumbo_frame: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::TokenInfo;
    use feitian_agent_api::Desired;
    use feitian_meta::network_interface::NetworkInterface;
    use serde_json::{json, Value};

    fn instance() -> Instance {
        Instance {
            id: "i-1".into(),
            account_id: 1,
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-i".into(),
            name: "web".into(),
            host_name: "web".into(),
            description: String::new(),
            instance_type: "ecs.g6.large".into(),
            cpu: 2,
            memory_mib: 8192,
            image_id: images::FEITIAN_LINUX.id.into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            key_pair_name: String::new(),
            user_data: String::new(),
            status: InstanceStatus::Running,
            desired: Desired::Running,
            reboots: 0,
            internet_charge_type: "PayByTraffic".into(),
            internet_bandwidth_out: 0,
            public_ip: String::new(),
            deletion_protection: false,
            serial_number: "s".into(),
            created_at: "2026-11-22T00:00:00Z".into(),
            started_at: String::new(),
        }
    }

    fn extras() -> InstanceExtras {
        let mut x = InstanceExtras::default();
        let eni = NetworkInterface {
            id: "eni-1".into(),
            account_id: 1,
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-i".into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            instance_id: "i-1".into(),
            primary_ip: "10.0.0.1".into(),
            mac: "00:16:3e:00:00:01".into(),
            created_at: String::new(),
        };
        x.enis.insert("i-1".into(), vec![eni]);
        x.groups.insert("eni-1".into(), vec!["sg-1".into()]);
        x.tags.insert("i-1".into(), vec![("k".into(), "v".into())]);
        x
    }

    #[test]
    fn a_page_of_instances() {
        let page = DescribeInstancesResponse {
            rows: vec![instance()],
            extras: extras(),
            paging: Paging::Token(TokenInfo { next_token: String::new(), total_count: 1 }),
        };
        let v = serde_json::to_value(&page).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["NextToken", "TotalCount", "Instances"]);
        let i = &v["Instances"]["Instance"][0];
        assert_eq!(i["IoOptimized"], json!(true));
        assert_eq!(i["EipAddress"]["IsSupportUnassociate"], json!(false));
        assert_eq!(i["Tags"], json!({"Tag": [{"TagKey": "k", "TagValue": "v"}]}));
        assert_eq!(i["SecurityGroupIds"], json!({"SecurityGroupId": ["sg-1"]}));
        let lonely = DescribeInstancesResponse { extras: InstanceExtras::default(), ..page };
        assert!(serde_json::to_value(&lonely).is_err(), "an instance without an interface has no view");
    }

    #[test]
    fn the_attribute_answer_is_a_part_of_the_view() {
        assert!(DescribeInstanceAttributeResponse::new(instance(), InstanceExtras::default()).is_none());
        let answer = DescribeInstanceAttributeResponse::new(instance(), extras()).unwrap();
        let v = serde_json::to_value(&answer).unwrap();
        // The model (DescribeInstanceAttributeResponseBody) has IoOptimized as a string.
        assert_eq!(v["IoOptimized"], json!("optimized"));
        assert_eq!(v["EipAddress"].get("IsSupportUnassociate"), None);
        assert_eq!(v["DedicatedHostAttribute"], json!({"DedicatedHostId": "", "DedicatedHostName": ""}));
        assert_eq!(v["EnableJumboFrame"], json!(false));
        assert_eq!(v["VpcAttributes"]["PrivateIpAddress"], json!({"IpAddress": ["10.0.0.1"]}));
        assert_eq!(v.get("Tags"), None);
        let keys = v.as_object().map(|o| o.len());
        assert_eq!(keys, Some(32));
        assert!(matches!(v["Cpu"], Value::Number(_)));
    }
}
