//! The VPC actions: validation and state changes, one store transaction each. The same
//! handlers answer the VPC API (2016-04-28) and the older copies of these actions in the ECS
//! API (2014-05-26); [`Api`] picks which fields an answer carries, so that each answer holds
//! exactly the keys its API's official model knows. The answer types are in
//! [`answers`](crate::answers).

use crate::answers::*;
use feitian_agent_api::Nudges;
use feitian_api::answers::Empty;
use feitian_api::paging::Page;
use feitian_api::region::{require_region, zone};
use feitian_api::service::{client_token, create_once, now};
use feitian_api::validate;
use feitian_api::{ApiError, Ctx, Params};
use feitian_cidr::{self as cidr, CidrError};
use feitian_meta::eip::{self, Eip, EipStatus};
use feitian_meta::quota::{self, Quota};
use feitian_meta::route_table::{self, RouteEntry, RouteEntryStatus, RouteTable};
use feitian_meta::vpc::{self, Vpc, VpcStatus};
use feitian_meta::vswitch::{self, VSwitch, VSwitchStatus};
use feitian_meta::{network_interface, query, tag, Filter, Store, Transaction};
use feitian_region::{Catalog, Region};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Which API a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Vpc,
    Ecs,
}

/// Per-VPC limits (the real defaults). The per-account ones (VPCs, EIPs) are quotas
/// (`feitian_meta::quota`), configurable and overridable per account.
pub const MAX_VSWITCHES_PER_VPC: u64 = 150;
pub const MAX_CUSTOM_ROUTES_PER_TABLE: u64 = 200;

pub struct Network {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    /// Where public addresses (EIPs) come from. It exists only inside feitian's own network
    /// namespaces; nothing is routed to an outside network.
    pub eip_pool: Ipv4Net,
    /// Wakes the network reconciler after a change.
    pub wake: Arc<Notify>,
    /// Tells the hosts that a VPC's network changed (EIP NAT).
    pub nudges: Nudges,
}

fn vpc_not_found() -> ApiError {
    ApiError::new(404, "InvalidVpcId.NotFound", "Specified VPC does not exist.")
}

fn vswitch_not_found() -> ApiError {
    ApiError::new(404, "InvalidVSwitchId.NotFound", "Specified virtual switch does not exist.")
}

fn route_table_not_found() -> ApiError {
    ApiError::new(404, "InvalidRouteTableId.NotFound", "Specified route table does not exist.")
}

fn eip_not_found() -> ApiError {
    ApiError::new(404, "InvalidAllocationId.NotFound", "Specified allocation ID is not found.")
}

fn cidr_error(param: &str, e: CidrError) -> ApiError {
    match e {
        CidrError::Malformed => ApiError::invalid("InvalidCidrBlock.Malformed", format!("Specified {param} is not a valid CIDR block (a.b.c.d/n, host bits clear).")),
        CidrError::NotPrivate => ApiError::invalid(
            "InvalidCidrBlock.Malformed",
            format!("Specified {param} is not valid: use 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or a subnet of one of them, prefix /8 to /24."),
        ),
        CidrError::BadSwitchPrefix => ApiError::invalid("InvalidCidrBlock.Malformed", format!("Specified {param} is not valid: a vSwitch's prefix is /16 to /29.")),
        CidrError::OutsideVpc => ApiError::invalid("InvalidParameter", "Specified CIDR block is not valid in VPC.")
            .recommend("a vSwitch's CidrBlock must lie inside its VPC's CidrBlock"),
        CidrError::Overlaps(other) => ApiError::invalid("InvalidCidrBlock.Overlapped", "Specified CIDR block overlapped with other subnets.")
            .recommend(format!("it overlaps {other}; pick a block no other vSwitch of this VPC uses")),
    }
}

/// A resource's tags, as the VPC API shows them.
fn tags_of(tx: &Transaction<'_>, id: &str) -> Result<Tags, ApiError> {
    Ok(tag::tags_of(tx, &[id])?.remove(id).unwrap_or_default().into())
}

/// The ids of a VPC's vSwitches.
fn vswitch_ids(tx: &Transaction<'_>, vpc_id: &str) -> Result<VSwitchIds, ApiError> {
    Ok(vswitch::vswitches_of_vpc(tx, vpc_id)?.into_iter().map(|s| s.id).collect::<Vec<_>>().into())
}

/// A route entry's next hop (none for a system route). `region` is shown by
/// `DescribeRouteEntryList` only.
fn next_hops(e: &RouteEntry, region: Option<&str>) -> NextHops {
    if e.next_hop_id.is_empty() {
        return NextHops::default();
    }
    vec![NextHop {
        next_hop_type: e.next_hop_type.clone(),
        next_hop_id: e.next_hop_id.clone(),
        enabled: 1,
        weight: 100,
        next_hop_region_id: region.map(str::to_owned),
    }]
    .into()
}

fn tag_args(tags: &[(String, Option<String>)]) -> Vec<(&str, Option<&str>)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect()
}

impl Network {
    fn region<'a>(&'a self, p: &Params) -> Result<&'a Region, ApiError> {
        require_region(&self.catalog, p)
    }

    fn vpc(&self, tx: &Transaction<'_>, account: u64, region: &str, id: &str) -> Result<Vpc, ApiError> {
        vpc::get_vpc(tx, account, id)?.filter(|v| v.region_id == region).ok_or_else(vpc_not_found)
    }

    fn vswitch(&self, tx: &Transaction<'_>, account: u64, region: &str, id: &str) -> Result<VSwitch, ApiError> {
        vswitch::get_vswitch(tx, account, id)?.filter(|v| v.region_id == region).ok_or_else(vswitch_not_found)
    }

    // --- VPCs -------------------------------------------------------------------------------

    pub async fn create_vpc(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<CreateVpcResponse, ApiError> {
        let region = self.region(&p)?.clone();
        let block = cidr::vpc_block(p.opt_str("CidrBlock").unwrap_or(cidr::DEFAULT_VPC_CIDR))
            .map_err(|e| cidr_error("CidrBlock", e))?;
        let name = validate::name(&p, "VpcName", "InvalidVpcName.Malformed")?.unwrap_or("").to_owned();
        let description =
            validate::description(&p, "Description", "InvalidDescription.Malformed")?.unwrap_or("").to_owned();
        let mut user_cidrs = Vec::new();
        if let Some(u) = p.opt_str("UserCidr") {
            for c in u.split(',').filter(|s| !s.is_empty()) {
                let net = cidr::parse(c).map_err(|e| cidr_error("UserCidr", e))?;
                user_cidrs.push(net.to_string());
            }
            if user_cidrs.len() > 3 {
                return Err(ApiError::invalid_parameter("UserCidr", "at most 3 blocks"));
            }
        }
        let tags = if api == Api::Vpc { validate::tags(&p)? } else { vec![] };
        if p.opt_str("ResourceGroupId").is_some() {
            return Err(ApiError::new(
                404,
                "InvalidResourceGroupId.NotFound",
                "The specified resource group does not exist.",
            )
            .recommend("feitian has no resource groups yet: leave ResourceGroupId out"));
        }
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        let out = self
            .store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let scope = me.store.scope(account);
                    let (_, count) = vpc::list_vpcs(tx, &Filter::owned(account, &region.id), 0, 0)?;
                    let max = quota::limit(tx, &me.store.quotas(), account, Quota::Vpcs)?;
                    if !quota::fits(max, count, 1) {
                        return Err(ApiError::invalid(
                            "QuotaExceeded.Vpc",
                            format!("VPC quota exceeded: at most {max} per region."),
                        ));
                    }
                    let id = scope.register(tx, "vpc", "vpc", &region.id, &region.id_code)?;
                    let vrouter = scope.register(tx, "vrouter", "vrt", &region.id, &region.id_code)?;
                    let table = scope.register(tx, "route_table", "vtb", &region.id, &region.id_code)?;
                    let created = now();
                    vpc::insert_vpc(
                        tx,
                        &Vpc {
                            id: id.clone(),
                            account_id: account,
                            region_id: region.id.clone(),
                            cidr_block: block.to_string(),
                            name: name.clone(),
                            description: description.clone(),
                            status: VpcStatus::Pending,
                            is_default: false,
                            vrouter_id: vrouter.clone(),
                            route_table_id: table.clone(),
                            user_cidrs: user_cidrs.clone(),
                            created_at: created.clone(),
                        },
                    )?;
                    route_table::insert_route_table(
                        tx,
                        &RouteTable {
                            id: table.clone(),
                            account_id: account,
                            region_id: region.id.clone(),
                            vpc_id: id.clone(),
                            vrouter_id: vrouter.clone(),
                            kind: "System".into(),
                            name: String::new(),
                            description: String::new(),
                            created_at: created,
                        },
                    )?;
                    tag::set_tags(tx, &id, &tags)?;
                    Ok(CreateVpcResponse {
                        vpc_id: id,
                        vrouter_id: vrouter,
                        route_table_id: table,
                        resource_group_id: (api == Api::Vpc).then(String::new),
                    })
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    /// What both VPC answers show of `v`, with the VPC API's fields for [`Api::Vpc`].
    fn vpc_attributes(
        tx: &Transaction<'_>,
        v: Vpc,
        vswitch_ids: VSwitchIds,
        api: Api,
    ) -> Result<VpcAttributes, ApiError> {
        let vpc_api = match api {
            Api::Vpc => Some(VpcExtension {
                ipv6_cidr_block: "",
                enabled_ipv6: false,
                resource_group_id: "",
                owner_id: v.account_id,
                dhcp_options_set_id: "",
                dhcp_options_set_status: "",
                dns_hostname_status: "DISABLED",
                secondary_cidr_blocks: SecondaryCidrBlocks::default(),
                tags: tags_of(tx, &v.id)?,
            }),
            Api::Ecs => None,
        };
        Ok(VpcAttributes {
            vpc_id: v.id,
            region_id: v.region_id,
            status: v.status.as_str(),
            vpc_name: v.name,
            creation_time: v.created_at,
            cidr_block: v.cidr_block,
            vrouter_id: v.vrouter_id,
            description: v.description,
            is_default: v.is_default,
            vswitch_ids,
            user_cidrs: v.user_cidrs.into(),
            vpc_api,
        })
    }

    pub async fn describe_vpcs(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<DescribeVpcsResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let ids = validate::id_list(&p, "VpcId", 20)?;
        let name = p.opt_str("VpcName").map(str::to_owned);
        let is_default = p.opt_bool("IsDefault")?;
        let tags = if api == Api::Vpc { validate::tag_filter(&p)? } else { vec![] };
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let f = Filter::owned(ctx.caller.account_id, &region)
                    .any_of("id", &ids)
                    .eq("name", name.as_deref())
                    .eq_bool("is_default", is_default)
                    .tags(&tag_args(&tags));
                let (rows, total) = vpc::list_vpcs(tx, &f, page.offset(), page.limit())?;
                let mut items = Vec::with_capacity(rows.len());
                for v in rows {
                    let vpc_api = (api == Api::Vpc).then(|| VpcListExtension {
                        cen_status: "Detached",
                        router_table_ids: vec![v.route_table_id.clone()].into(),
                        nat_gateway_ids: NatGatewayIds::default(),
                    });
                    let vswitch_ids = vswitch_ids(tx, &v.id)?;
                    items.push(VpcItem { vpc: Self::vpc_attributes(tx, v, vswitch_ids, api)?, vpc_api });
                }
                Ok(DescribeVpcsResponse { vpcs: items.into(), page: page.info(total) })
            })
            .await
    }

    pub async fn describe_vpc_attribute(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<DescribeVpcAttributeResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VpcId")?.to_owned();
        let is_default = p.opt_bool("IsDefault")?;
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let v = me.vpc(tx, ctx.caller.account_id, &region, &id)?;
                if is_default.is_some_and(|d| d != v.is_default) {
                    return Err(vpc_not_found());
                }
                let vswitch_ids = vswitch_ids(tx, &v.id)?;
                let vpc_api = (api == Api::Vpc).then(|| VpcAttributeExtension {
                    classic_link_enabled: false,
                    support_ipv4_gateway: false,
                    ipv4_gateway_id: "",
                    cloud_resources: vec![
                        CloudResource { resource_type: "VSwitch", resource_count: vswitch_ids.items.len() as u64 },
                        CloudResource { resource_type: "VRouter", resource_count: 1 },
                        CloudResource { resource_type: "RouteTable", resource_count: 1 },
                    ]
                    .into(),
                });
                Ok(DescribeVpcAttributeResponse { vpc: Self::vpc_attributes(tx, v, vswitch_ids, api)?, vpc_api })
            })
            .await
    }

    pub async fn modify_vpc_attribute(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<ModifyVpcAttributeResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VpcId")?.to_owned();
        let name = validate::name(&p, "VpcName", "InvalidVpcName.Malformed")?.map(str::to_owned);
        let description = validate::description(&p, "Description", "InvalidDescription.Malformed")?.map(str::to_owned);
        let new_cidr = match p.opt_str("CidrBlock") {
            Some(c) => Some(cidr::vpc_block(c).map_err(|e| cidr_error("CidrBlock", e))?),
            None => None,
        };
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let mut v = me.vpc(tx, ctx.caller.account_id, &region, &id)?;
                if let Some(n) = name {
                    v.name = n;
                }
                if let Some(d) = description {
                    v.description = d;
                }
                if let Some(c) = new_cidr {
                    // Only widening to a block that still holds every vSwitch is allowed.
                    let fits = vswitch::vswitches_of_vpc(tx, &v.id)?
                        .iter()
                        .all(|s| cidr::parse(&s.cidr_block).is_ok_and(|b| c.contains(&b)));
                    if !fits {
                        return Err(ApiError::invalid(
                            "InvalidCidrBlock.Malformed",
                            "The new CidrBlock must contain the blocks of every vSwitch of the VPC.",
                        ));
                    }
                    v.cidr_block = c.to_string();
                }
                vpc::update_vpc(tx, &v)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn delete_vpc(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<DeleteVpcResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VpcId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let v = me.vpc(tx, ctx.caller.account_id, &region, &id)?;
                if v.status != VpcStatus::Available {
                    return Err(ApiError::invalid(
                        "IncorrectVpcStatus",
                        "The current status of the VPC does not support this operation.",
                    )
                    .recommend("wait until DescribeVpcs shows the VPC Available"));
                }
                let vsws = vswitch::vswitches_of_vpc(tx, &v.id)?;
                if let Some(s) = vsws.first() {
                    return Err(ApiError::invalid("DependencyViolation", "Specified object has dependent resources.")
                        .recommend(format!("delete its vSwitches first ({} left, e.g. {})", vsws.len(), s.id)));
                }
                let groups = query::count_where(tx, "security_groups", "vpc_id", &v.id)?;
                if groups > 0 {
                    return Err(ApiError::invalid(
                        "DependencyViolation.SecurityGroup",
                        "Specified object has dependent resources.",
                    )
                    .recommend(format!("{groups} security group(s) still belong to this VPC; delete them first")));
                }
                let custom = route_table::route_entries(tx, &v.route_table_id)?
                    .into_iter()
                    .filter(|e| e.kind == "Custom")
                    .count();
                if custom > 0 {
                    return Err(ApiError::invalid(
                        "DependencyViolation.RouteEntry",
                        "Specified object has dependent resources.",
                    )
                    .recommend("delete the custom route entries of its route table first"));
                }
                vpc::delete_vpc(tx, &v)?;
                Ok(Empty {})
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    // --- vSwitches --------------------------------------------------------------------------

    pub async fn create_vswitch(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<CreateVSwitchResponse, ApiError> {
        let region = self.region(&p)?.clone();
        let zone_id = zone(&region, &p, true)?.map(|z| z.id.clone()).unwrap_or_default();
        let vpc_id = p.required_str("VpcId")?.to_owned();
        let block = p.required_str("CidrBlock")?.to_owned();
        let name = validate::name(&p, "VSwitchName", "InvalidVSwitchName.Malformed")?.unwrap_or("").to_owned();
        let description =
            validate::description(&p, "Description", "InvalidDescription.Malformed")?.unwrap_or("").to_owned();
        let tags = if api == Api::Vpc { validate::tags(&p)? } else { vec![] };
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        let out = self
            .store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let vpc = me.vpc(tx, account, &region.id, &vpc_id)?;
                    if vpc.status != VpcStatus::Available {
                        return Err(ApiError::invalid(
                            "IncorrectVpcStatus",
                            "The current status of the VPC does not support this operation.",
                        )
                        .recommend("wait until DescribeVpcs shows the VPC Available"));
                    }
                    let vpc_net = cidr::parse(&vpc.cidr_block).map_err(|_| ApiError::internal())?;
                    let others = vswitch::vswitches_of_vpc(tx, &vpc.id)?;
                    if others.len() as u64 >= MAX_VSWITCHES_PER_VPC {
                        return Err(ApiError::invalid("QuotaExceeded.VSwitch", "Virtual switch quota exceeded."));
                    }
                    let net = cidr::vswitch_block(
                        &block,
                        vpc_net,
                        others.iter().map(|s| (s.id.as_str(), s.cidr_block.as_str())),
                    )
                    .map_err(|e| cidr_error("CidrBlock", e))?;
                    // A vSwitch's block may not collide with a custom route's destination.
                    for e in route_table::route_entries(tx, &vpc.route_table_id)?.iter().filter(|e| e.kind == "Custom")
                    {
                        if cidr::parse(&e.destination).is_ok_and(|d| cidr::overlaps(d, net)) {
                            return Err(ApiError::invalid(
                                "InvalidCidrBlock.Overlapped",
                                "Specified CIDR block overlapped with other subnets.",
                            )
                            .recommend(format!("it overlaps the custom route to {}", e.destination)));
                        }
                    }
                    let id = me.store.scope(account).register(tx, "vswitch", "vsw", &region.id, &region.id_code)?;
                    let created = now();
                    vswitch::insert_vswitch(
                        tx,
                        &VSwitch {
                            id: id.clone(),
                            account_id: account,
                            region_id: region.id.clone(),
                            vpc_id: vpc.id.clone(),
                            zone_id: zone_id.clone(),
                            cidr_block: net.to_string(),
                            name: name.clone(),
                            description: description.clone(),
                            status: VSwitchStatus::Pending,
                            created_at: created.clone(),
                        },
                    )?;
                    route_table::insert_route_entry(
                        tx,
                        &RouteEntry {
                            id: feitian_meta::ids::resource_id("rte", &region.id_code),
                            route_table_id: vpc.route_table_id.clone(),
                            account_id: account,
                            destination: net.to_string(),
                            next_hop_type: "local".into(),
                            next_hop_id: String::new(),
                            kind: "System".into(),
                            status: RouteEntryStatus::Available,
                            name: String::new(),
                            description: String::new(),
                            created_at: created,
                        },
                    )?;
                    tag::set_tags(tx, &id, &tags)?;
                    Ok(CreateVSwitchResponse { vswitch_id: id })
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    fn vswitch_attributes(tx: &Transaction<'_>, s: VSwitch, api: Api) -> Result<VSwitchAttributes, ApiError> {
        let net = cidr::parse(&s.cidr_block).map_err(|_| ApiError::internal())?;
        let available = cidr::usable_count(net).saturating_sub(network_interface::used_addresses(tx, &s.id)?);
        let vpc_api = match api {
            Api::Vpc => {
                let vpc = vpc::get_vpc(tx, s.account_id, &s.vpc_id)?.ok_or_else(ApiError::internal)?;
                Some(VSwitchExtension {
                    ipv6_cidr_block: "",
                    enabled_ipv6: false,
                    network_acl_id: "",
                    share_type: "Sharing",
                    owner_id: s.account_id,
                    route_table: VSwitchRouteTable { route_table_id: vpc.route_table_id, route_table_type: "System" },
                    tags: tags_of(tx, &s.id)?,
                })
            }
            Api::Ecs => None,
        };
        Ok(VSwitchAttributes {
            vswitch_id: s.id,
            vpc_id: s.vpc_id,
            status: s.status.as_str(),
            cidr_block: s.cidr_block,
            zone_id: s.zone_id,
            available_ip_address_count: available,
            description: s.description,
            vswitch_name: s.name,
            creation_time: s.created_at,
            is_default: false,
            resource_group_id: "",
            vpc_api,
        })
    }

    pub async fn describe_vswitches(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<DescribeVSwitchesResponse, ApiError> {
        let region = self.region(&p)?.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let zone_id = zone(&region, &p, false)?.map(|z| z.id.clone());
        let vsw_id = p.opt_str("VSwitchId").map(str::to_owned);
        let vpc_id = p.opt_str("VpcId").map(str::to_owned);
        let name = p.opt_str("VSwitchName").map(str::to_owned);
        let is_default = p.opt_bool("IsDefault")?;
        let tags = if api == Api::Vpc { validate::tag_filter(&p)? } else { vec![] };
        let route_table = if api == Api::Vpc { p.opt_str("RouteTableId").map(str::to_owned) } else { None };
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                if is_default == Some(true) {
                    // feitian has no default vSwitches.
                    return Ok(DescribeVSwitchesResponse { vswitches: VSwitches::default(), page: page.info(0) });
                }
                let rt_vpc = match &route_table {
                    Some(rt) => Some(
                        route_table::get_route_table(tx, account, rt)?.map(|t| t.vpc_id).unwrap_or_else(|| "-".into()),
                    ),
                    None => None,
                };
                let f = Filter::owned(account, &region.id)
                    .eq("id", vsw_id.as_deref())
                    .eq("vpc_id", vpc_id.as_deref())
                    .eq("vpc_id", rt_vpc.as_deref())
                    .eq("zone_id", zone_id.as_deref())
                    .eq("name", name.as_deref())
                    .tags(&tag_args(&tags));
                let (rows, total) = vswitch::list_vswitches(tx, &f, page.offset(), page.limit())?;
                let items =
                    rows.into_iter().map(|s| Self::vswitch_attributes(tx, s, api)).collect::<Result<Vec<_>, _>>()?;
                Ok(DescribeVSwitchesResponse { vswitches: items.into(), page: page.info(total) })
            })
            .await
    }

    pub async fn describe_vswitch_attributes(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<DescribeVSwitchAttributesResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VSwitchId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let s = me.vswitch(tx, ctx.caller.account_id, &region, &id)?;
                Self::vswitch_attributes(tx, s, api)
            })
            .await
    }

    pub async fn modify_vswitch_attribute(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<ModifyVSwitchAttributeResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VSwitchId")?.to_owned();
        let name = validate::name(&p, "VSwitchName", "InvalidVSwitchName.Malformed")?.map(str::to_owned);
        let description = validate::description(&p, "Description", "InvalidDescription.Malformed")?.map(str::to_owned);
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let mut s = me.vswitch(tx, ctx.caller.account_id, &region, &id)?;
                if let Some(n) = name {
                    s.name = n;
                }
                if let Some(d) = description {
                    s.description = d;
                }
                vswitch::update_vswitch(tx, &s)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn delete_vswitch(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<DeleteVSwitchResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VSwitchId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let s = me.vswitch(tx, account, &region, &id)?;
                if s.status != VSwitchStatus::Available {
                    return Err(ApiError::invalid(
                        "IncorrectVSwitchStatus",
                        "The current status of the virtual switch does not support this operation.",
                    ));
                }
                let used = network_interface::used_addresses(tx, &s.id)?;
                if used > 0 {
                    return Err(ApiError::invalid("DependencyViolation", "Specified object has dependent resources.")
                        .recommend(format!(
                            "{used} network interfaces (instances) still use this vSwitch; delete them first"
                        )));
                }
                let vpc = vpc::get_vpc(tx, account, &s.vpc_id)?.ok_or_else(ApiError::internal)?;
                for e in route_table::route_entries(tx, &vpc.route_table_id)? {
                    if e.kind == "System" && e.destination == s.cidr_block {
                        route_table::delete_route_entry(tx, &e.id)?;
                    }
                }
                vswitch::delete_vswitch(tx, &s)?;
                Ok(Empty {})
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    // --- route tables -----------------------------------------------------------------------

    fn route_entry_item(e: RouteEntry, api: Api) -> RouteEntryItem {
        let next_hops = next_hops(&e, None);
        let vpc_api = (api == Api::Vpc).then_some(RouteEntryExtension {
            route_entry_id: e.id,
            route_entry_name: e.name,
            description: e.description,
        });
        RouteEntryItem {
            route_table_id: e.route_table_id,
            destination_cidr_block: e.destination,
            kind: e.kind,
            status: e.status.as_str(),
            instance_id: e.next_hop_id,
            next_hop_type: e.next_hop_type,
            next_hops,
            vpc_api,
        }
    }

    fn route_table_item(tx: &Transaction<'_>, t: RouteTable, api: Api) -> Result<RouteTableItem, ApiError> {
        let entries: Vec<RouteEntryItem> =
            route_table::route_entries(tx, &t.id)?.into_iter().map(|e| Self::route_entry_item(e, api)).collect();
        let vpc_api = match api {
            Api::Vpc => Some(RouteTableExtension { status: "Available", vswitch_ids: vswitch_ids(tx, &t.vpc_id)? }),
            Api::Ecs => None,
        };
        Ok(RouteTableItem {
            route_table_id: t.id,
            route_table_type: t.kind,
            vrouter_id: t.vrouter_id,
            creation_time: t.created_at,
            resource_group_id: "",
            route_entrys: entries.into(),
            vpc_api,
        })
    }

    fn route_table_filter(p: &Params, account: u64, region: &str) -> Result<Filter, ApiError> {
        let kind = p.opt_str("Type").or(p.opt_str("RouteTableType"));
        if let Some(k) = kind {
            if k != "System" && k != "Custom" {
                return Err(ApiError::invalid_parameter("Type", format!("{k:?} is not System or Custom")));
            }
        }
        if let Some(rt) = p.opt_str("RouterType") {
            if rt != "VRouter" && rt != "VBR" {
                return Err(ApiError::invalid_parameter("RouterType", format!("{rt:?} is not VRouter or VBR")));
            }
        }
        Ok(Filter::owned(account, region)
            .eq("id", p.opt_str("RouteTableId"))
            .eq("vrouter_id", p.opt_str("VRouterId").or(p.opt_str("RouterId")))
            .eq("vpc_id", p.opt_str("VpcId"))
            .eq("name", p.opt_str("RouteTableName"))
            .eq("kind", kind)
            .eq("kind", p.opt_str("RouterType").filter(|t| *t == "VBR").map(|_| "-")))
    }

    pub async fn describe_route_tables(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<DescribeRouteTablesResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        self.store
            .read_async(move |tx| {
                let f = Self::route_table_filter(&p, ctx.caller.account_id, &region)?;
                let (rows, total) = route_table::list_route_tables(tx, &f, page.offset(), page.limit())?;
                let items =
                    rows.into_iter().map(|t| Self::route_table_item(tx, t, api)).collect::<Result<Vec<_>, _>>()?;
                Ok(DescribeRouteTablesResponse { route_tables: items.into(), page: page.info(total) })
            })
            .await
    }

    pub async fn describe_route_table_list(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<DescribeRouteTableListResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let tags = validate::tag_filter(&p)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let f = Self::route_table_filter(&p, account, &region)?.tags(&tag_args(&tags));
                let (rows, total) = route_table::list_route_tables(tx, &f, page.offset(), page.limit())?;
                let mut items = Vec::with_capacity(rows.len());
                for t in rows {
                    items.push(RouterTableListItem {
                        vswitch_ids: vswitch_ids(tx, &t.vpc_id)?,
                        tags: tags_of(tx, &t.id)?,
                        vpc_id: t.vpc_id,
                        router_id: t.vrouter_id,
                        router_type: "VRouter",
                        route_table_id: t.id,
                        route_table_name: t.name,
                        route_table_type: t.kind,
                        description: t.description,
                        creation_time: t.created_at,
                        status: "Available",
                        resource_group_id: "",
                        associate_type: "VSwitch",
                        route_propagation_enable: false,
                        gateway_ids: GatewayIds::default(),
                    });
                }
                Ok(DescribeRouteTableListResponse { router_table_list: items.into(), page: page.info(total) })
            })
            .await
    }

    pub async fn create_route_entry(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<CreateRouteEntryResponse, ApiError> {
        let region = self.region(&p)?.clone();
        let table_id = p.required_str("RouteTableId")?.to_owned();
        let dest = cidr::parse(p.required_str("DestinationCidrBlock")?).map_err(|_| {
            ApiError::invalid(
                "InvalidDestinationCidrBlock.Malformed",
                "Specified DestinationCidrBlock is not a valid CIDR block (a.b.c.d/n, host bits clear).",
            )
        })?;
        let hop_type = p.opt_str("NextHopType").unwrap_or("Instance").to_owned();
        let hop_kind = match hop_type.as_str() {
            "Instance" => "instance",
            "NetworkInterface" => "eni",
            "HaVip" | "RouterInterface" | "VpnGateway" | "IPv6Gateway" | "NatGateway" | "Attachment" | "VpcPeer"
            | "Ipv4Gateway" | "GatewayEndpoint" | "Ecr" => {
                return Err(ApiError::invalid(
                    "InvalidNextHopType.NotSupported",
                    format!(
                        "feitian does not offer next hops of type {hop_type} yet; use Instance or NetworkInterface."
                    ),
                ))
            }
            other => {
                return Err(ApiError::invalid_parameter("NextHopType", format!("{other:?} is not a next hop type")))
            }
        };
        let hop_id = p.required_str("NextHopId")?.to_owned();
        let name = if api == Api::Vpc {
            validate::name(&p, "RouteEntryName", "InvalidRouteEntryName.Malformed")?.unwrap_or("").to_owned()
        } else {
            String::new()
        };
        let description = if api == Api::Vpc {
            validate::description(&p, "Description", "InvalidDescription.Malformed")?.unwrap_or("").to_owned()
        } else {
            String::new()
        };
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        self.store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let table = route_table::get_route_table(tx, account, &table_id)?
                        .filter(|t| t.region_id == region.id)
                        .ok_or_else(route_table_not_found)?;
                    if me.store.scope(account).get(tx, hop_kind, &hop_id)?.is_none() {
                        return Err(ApiError::new(
                            404,
                            "InvalidNextHopId.NotFound",
                            "Specified next hop does not exist.",
                        )
                        .recommend(format!("{hop_id} is not a {hop_type} of this account")));
                    }
                    let entries = route_table::route_entries(tx, &table.id)?;
                    if entries.iter().any(|e| e.destination == dest.to_string()) {
                        return Err(ApiError::invalid(
                            "InvalidCIDRBlock.Duplicate",
                            "Specified CIDR block is already in use by another route entry.",
                        ));
                    }
                    for e in entries.iter().filter(|e| e.kind == "System") {
                        if cidr::parse(&e.destination).is_ok_and(|d| d.contains(&dest)) {
                            return Err(ApiError::invalid(
                                "InvalidDestinationCidrBlock.Conflict",
                                "Specified destination is inside a vSwitch's block.",
                            )
                            .recommend(format!(
                            "{dest} lies within the system route {}; a custom route may cover, not split, a vSwitch",
                            e.destination
                        )));
                        }
                    }
                    if entries.iter().filter(|e| e.kind == "Custom").count() as u64 >= MAX_CUSTOM_ROUTES_PER_TABLE {
                        return Err(ApiError::invalid("QuotaExceeded.RouteEntry", "Route entry quota exceeded."));
                    }
                    let id = feitian_meta::ids::resource_id("rte", &region.id_code);
                    route_table::insert_route_entry(
                        tx,
                        &RouteEntry {
                            id: id.clone(),
                            route_table_id: table.id.clone(),
                            account_id: account,
                            destination: dest.to_string(),
                            next_hop_type: hop_type.clone(),
                            next_hop_id: hop_id.clone(),
                            kind: "Custom".into(),
                            status: RouteEntryStatus::Available,
                            name: name.clone(),
                            description: description.clone(),
                            created_at: now(),
                        },
                    )?;
                    Ok(CreateRouteEntryResponse { route_entry_id: (api == Api::Vpc).then_some(id) })
                })
            })
            .await
    }

    pub async fn delete_route_entry(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<DeleteRouteEntryResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let table_id = p.opt_str("RouteTableId").map(str::to_owned);
        let entry_id = p.opt_str("RouteEntryId").map(str::to_owned);
        let dest = p.opt_str("DestinationCidrBlock").map(str::to_owned);
        let hop = p.opt_str("NextHopId").map(str::to_owned);
        if entry_id.is_none() && (table_id.is_none() || dest.is_none()) {
            return Err(ApiError::missing_parameter(if table_id.is_none() {
                "RouteTableId"
            } else {
                "DestinationCidrBlock"
            }));
        }
        validate::dry_run(&p)?;
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let tables = match &table_id {
                    Some(t) => vec![route_table::get_route_table(tx, account, t)?
                        .filter(|t| t.region_id == region)
                        .ok_or_else(route_table_not_found)?],
                    None => route_table::list_route_tables(tx, &Filter::owned(account, &region), 0, u64::MAX >> 1)?.0,
                };
                let mut found = None;
                for t in &tables {
                    for e in route_table::route_entries(tx, &t.id)? {
                        let by_id = entry_id.as_deref().is_some_and(|id| id == e.id);
                        let by_dest = dest.as_deref().is_some_and(|d| d == e.destination)
                            && hop.as_deref().is_none_or(|h| h == e.next_hop_id);
                        if by_id || (entry_id.is_none() && by_dest) {
                            found = Some(e);
                        }
                    }
                }
                let e = found.ok_or_else(|| {
                    ApiError::new(404, "InvalidRouteEntry.NotFound", "Specified route entry does not exist.")
                })?;
                if e.kind == "System" {
                    return Err(ApiError::invalid(
                        "OperationDenied.SystemRouteEntry",
                        "A system route entry cannot be deleted.",
                    )
                    .recommend("system routes go away with their vSwitch"));
                }
                route_table::delete_route_entry(tx, &e.id)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn describe_route_entry_list(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<DescribeRouteEntryListResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let table_id = p.required_str("RouteTableId")?.to_owned();
        let max = p.opt_int("MaxResult", 20, 100)?.unwrap_or(50) as usize;
        let offset: usize = feitian_api::paging::offset_token(&p)?;
        let kind = p.opt_str("RouteEntryType").map(str::to_owned);
        let dest = p.opt_str("DestinationCidrBlock").map(str::to_owned);
        let entry_id = p.opt_str("RouteEntryId").map(str::to_owned);
        let name = p.opt_str("RouteEntryName").map(str::to_owned);
        let hop_type = p.opt_str("NextHopType").map(str::to_owned);
        let hop_id = p.opt_str("NextHopId").map(str::to_owned);
        self.store
            .read_async(move |tx| {
                let t = route_table::get_route_table(tx, ctx.caller.account_id, &table_id)?
                    .filter(|t| t.region_id == region)
                    .ok_or_else(route_table_not_found)?;
                let all: Vec<RouteEntry> = route_table::route_entries(tx, &t.id)?
                    .into_iter()
                    .filter(|e| kind.as_deref().is_none_or(|k| k == e.kind))
                    .filter(|e| dest.as_deref().is_none_or(|d| d == e.destination))
                    .filter(|e| entry_id.as_deref().is_none_or(|i| i == e.id))
                    .filter(|e| name.as_deref().is_none_or(|n| n == e.name))
                    .filter(|e| hop_type.as_deref().is_none_or(|h| h == e.next_hop_type))
                    .filter(|e| hop_id.as_deref().is_none_or(|h| h == e.next_hop_id))
                    .collect();
                let total = all.len();
                let page: Vec<RouteEntryListItem> = all
                    .into_iter()
                    .skip(offset)
                    .take(max)
                    .map(|e| RouteEntryListItem {
                        next_hops: next_hops(&e, Some(&region)),
                        origin: if e.kind == "System" { "SystemRoute" } else { "StaticRoute" },
                        route_entry_id: e.id,
                        route_table_id: e.route_table_id,
                        destination_cidr_block: e.destination,
                        kind: e.kind,
                        status: e.status.as_str(),
                        route_entry_name: e.name,
                        description: e.description,
                        ip_version: "ipv4",
                        gmt_modified: e.created_at,
                    })
                    .collect();
                let next_token = feitian_api::paging::next_offset_token(offset, page.len(), total);
                Ok(DescribeRouteEntryListResponse { route_entrys: page.into(), next_token, total_count: total as u64 })
            })
            .await
    }

    // --- EIPs -------------------------------------------------------------------------------

    pub async fn allocate_eip_address(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<AllocateEipAddressResponse, ApiError> {
        let region = self.region(&p)?.clone();
        let bandwidth = p.opt_int("Bandwidth", 1, 500)?.unwrap_or(5);
        let charge = p.opt_str("InternetChargeType").unwrap_or("PayByBandwidth").to_owned();
        if charge != "PayByBandwidth" && charge != "PayByTraffic" {
            return Err(ApiError::invalid_parameter(
                "InternetChargeType",
                format!("{charge:?} is not PayByBandwidth or PayByTraffic"),
            ));
        }
        let isp = p.opt_str("ISP").unwrap_or("BGP").to_owned();
        if !["BGP", "BGP_PRO", "ChinaTelecom", "ChinaUnicom", "ChinaMobile"].contains(&isp.as_str()) {
            return Err(ApiError::invalid_parameter("ISP", format!("{isp:?} is not a line type")));
        }
        let (name, description, tags) = if api == Api::Vpc {
            (
                validate::name(&p, "Name", "InvalidName.Malformed")?.unwrap_or("").to_owned(),
                validate::description(&p, "Description", "InvalidDescription.Malformed")?.unwrap_or("").to_owned(),
                validate::tags(&p)?,
            )
        } else {
            (String::new(), String::new(), vec![])
        };
        let wanted_ip = if api == Api::Vpc { p.opt_str("IpAddress").map(str::to_owned) } else { None };
        let token = client_token(&p)?;
        let me = self.clone();
        self.store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let (_, count) = eip::list_eips(tx, &Filter::owned(account, &region.id), 0, 0)?;
                    let max = quota::limit(tx, &me.store.quotas(), account, Quota::Eips)?;
                    if !quota::fits(max, count, 1) {
                        return Err(ApiError::invalid("QuotaExceeded.Eip", "Elastic IP address quota exceeded")
                            .recommend(format!("at most {max} EIPs per region; release one first")));
                    }
                    let used: std::collections::HashSet<String> =
                        eip::public_addresses_in_use(tx)?.into_iter().collect();
                    let ip = match &wanted_ip {
                        Some(w) => {
                            let a: Ipv4Addr = w
                                .parse()
                                .map_err(|_| ApiError::invalid_parameter("IpAddress", "not an IPv4 address"))?;
                            if !me.eip_pool.contains(&a)
                                || a == me.eip_pool.network()
                                || a == me.eip_pool.broadcast()
                                || used.contains(w)
                            {
                                return Err(ApiError::invalid(
                                    "InvalidIpAddress.NotAvailable",
                                    "The specified IP address is not available.",
                                )
                                .recommend(format!("pick a free address of the pool {}", me.eip_pool)));
                            }
                            a
                        }
                        None => me.eip_pool.hosts().find(|a| !used.contains(&a.to_string())).ok_or_else(|| {
                            ApiError::invalid("ResourceNotEnough.EipAddress", "No public address is left in the pool.")
                                .recommend("release unused EIPs or widen eip_pool in the configuration")
                        })?,
                    };
                    let id = me.store.scope(account).register(tx, "eip", "eip", &region.id, &region.id_code)?;
                    eip::insert_eip(
                        tx,
                        &Eip {
                            id: id.clone(),
                            account_id: account,
                            region_id: region.id.clone(),
                            ip_address: ip.to_string(),
                            bandwidth,
                            internet_charge_type: charge.clone(),
                            isp: isp.clone(),
                            name: name.clone(),
                            description: description.clone(),
                            status: EipStatus::Available,
                            instance_id: String::new(),
                            instance_type: String::new(),
                            private_ip: String::new(),
                            created_at: now(),
                        },
                    )?;
                    tag::set_tags(tx, &id, &tags)?;
                    Ok(AllocateEipAddressResponse {
                        allocation_id: id,
                        eip_address: ip.to_string(),
                        resource_group_id: (api == Api::Vpc).then(String::new),
                    })
                })
            })
            .await
    }

    fn eip(&self, tx: &Transaction<'_>, account: u64, region: &str, id: &str) -> Result<Eip, ApiError> {
        eip::get_eip(tx, account, id)?.filter(|e| e.region_id == region).ok_or_else(eip_not_found)
    }

    pub async fn associate_eip_address(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<AssociateEipAddressResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("AllocationId")?.to_owned();
        let instance = p.required_str("InstanceId")?.to_owned();
        let kind = match p.opt_str("InstanceType").unwrap_or("EcsInstance") {
            "EcsInstance" => ("instance", "EcsInstance"),
            "NetworkInterface" => ("eni", "NetworkInterface"),
            "Nat" | "SlbInstance" | "HaVip" | "IpAddress" => {
                return Err(ApiError::invalid(
                    "InvalidInstanceType.NotSupported",
                    "feitian associates EIPs with EcsInstance and NetworkInterface only.",
                ))
            }
            other => {
                return Err(ApiError::invalid_parameter("InstanceType", format!("{other:?} is not an instance type")))
            }
        };
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut e = me.eip(tx, account, &region, &id)?;
                if me.store.scope(account).get(tx, kind.0, &instance)?.is_none() {
                    return Err(ApiError::new(
                        404,
                        "InvalidInstanceId.NotFound",
                        "The specified instance does not exist.",
                    ));
                }
                if e.status == EipStatus::InUse {
                    if e.instance_id == instance {
                        return Ok(Empty {});
                    }
                    return Err(ApiError::invalid(
                        "IncorrectEipStatus",
                        "The current status of the EIP does not support this operation.",
                    )
                    .recommend(format!("it is associated with {}; unassociate it first", e.instance_id)));
                }
                if query::count_where(tx, "eips", "instance_id", &instance)? > 0 {
                    return Err(ApiError::invalid("InvalidAssociation.Duplicated", "The instance already has an EIP."));
                }
                e.status = EipStatus::InUse;
                e.instance_id = instance.clone();
                e.instance_type = kind.1.into();
                eip::update_eip(tx, &e)?;
                Ok(Empty {})
            })
            .await;
        self.nudges.network_changed();
        out
    }

    pub async fn unassociate_eip_address(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<UnassociateEipAddressResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("AllocationId")?.to_owned();
        let instance = p.required_str("InstanceId")?.to_owned();
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let mut e = me.eip(tx, ctx.caller.account_id, &region, &id)?;
                if e.status != EipStatus::InUse || e.instance_id != instance {
                    return Err(ApiError::invalid(
                        "IncorrectEipStatus",
                        "The current status of the EIP does not support this operation.",
                    )
                    .recommend(format!("{id} is not associated with {instance}")));
                }
                e.status = EipStatus::Available;
                e.instance_id.clear();
                e.instance_type.clear();
                e.private_ip.clear();
                eip::update_eip(tx, &e)?;
                Ok(Empty {})
            })
            .await;
        self.nudges.network_changed();
        out
    }

    pub async fn release_eip_address(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        _api: Api,
    ) -> Result<ReleaseEipAddressResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("AllocationId")?.to_owned();
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let e = me.eip(tx, ctx.caller.account_id, &region, &id)?;
                if e.status != EipStatus::Available {
                    return Err(ApiError::invalid(
                        "IncorrectEipStatus",
                        "The current status of the EIP does not support this operation.",
                    )
                    .recommend("unassociate it before releasing it"));
                }
                eip::delete_eip(tx, &e.id)?;
                Ok(Empty {})
            })
            .await;
        self.nudges.network_changed();
        out
    }

    pub async fn describe_eip_addresses(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<DescribeEipAddressesResponse, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 100)?;
        let ids = validate::id_list(&p, "AllocationId", 50)?;
        let ips = validate::id_list(&p, "EipAddress", 50)?;
        if let Some(s) = p.opt_str("Status") {
            if EipStatus::parse(s).is_none() {
                return Err(ApiError::invalid_parameter("Status", format!("{s:?} is not an EIP status")));
            }
        }
        let tags = if api == Api::Vpc { validate::tag_filter(&p)? } else { vec![] };
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
                let f = Filter::owned(ctx.caller.account_id, &region)
                    .any_of("id", &ids)
                    .any_of("ip_address", &ips)
                    .eq("status", p.opt_str("Status"))
                    .eq("instance_id", p.opt_str("AssociatedInstanceId"))
                    .eq("instance_type", p.opt_str("AssociatedInstanceType"))
                    .eq("isp", p.opt_str("ISP"))
                    .eq("name", if api == Api::Vpc { p.opt_str("EipName") } else { None })
                    .tags(&tag_args(&tags));
                let (rows, total) = eip::list_eips(tx, &f, page.offset(), page.limit())?;
                let mut items = Vec::with_capacity(rows.len());
                for e in rows {
                    let vpc_api = match api {
                        Api::Vpc => Some(EipAddressExtension {
                            tags: tags_of(tx, &e.id)?,
                            name: e.name,
                            description: e.description,
                            isp: e.isp,
                            private_ip_address: e.private_ip,
                            instance_region_id: if e.instance_id.is_empty() {
                                String::new()
                            } else {
                                e.region_id.clone()
                            },
                            mode: "NAT",
                            netmode: "public",
                            deletion_protection: false,
                            resource_group_id: "",
                            bandwidth_package_id: "",
                            bandwidth_package_type: "",
                            bandwidth_package_bandwidth: "",
                            hd_monitor_status: "OFF",
                            second_limited: false,
                            service_managed: 0,
                        }),
                        Api::Ecs => None,
                    };
                    items.push(EipAddressItem {
                        allocation_id: e.id,
                        ip_address: e.ip_address,
                        status: e.status.as_str(),
                        region_id: e.region_id,
                        instance_id: e.instance_id,
                        instance_type: e.instance_type,
                        internet_charge_type: e.internet_charge_type,
                        charge_type: "PostPaid",
                        allocation_time: e.created_at,
                        expired_time: "",
                        bandwidth: e.bandwidth.to_string(),
                        eip_bandwidth: e.bandwidth.to_string(),
                        operation_locks: OperationLocks::default(),
                        vpc_api,
                    });
                }
                Ok(DescribeEipAddressesResponse { eip_addresses: items.into(), page: page.info(total) })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feitian_api::Caller;
    use serde::Serialize;
    use serde_json::{json, Value};

    const R: (&str, &str) = ("RegionId", "cn-hangzhou");

    struct World {
        net: Arc<Network>,
        account: u64,
    }

    impl World {
        fn new() -> World {
            let store = Store::open_in_memory().unwrap();
            let account = store.create_account("a").unwrap().id;
            let net = Arc::new(Network {
                store,
                catalog: Arc::new(Catalog::default()),
                eip_pool: "203.0.113.0/28".parse().unwrap(),
                wake: Arc::new(Notify::new()),
                nudges: Nudges::default(),
            });
            World { net, account }
        }

        fn ctx(&self, action: &str) -> Ctx {
            Ctx {
                request_id: "R".into(),
                caller: Caller { account_id: self.account, account_name: "a".into(), access_key_id: "k".into() },
                product: "vpc",
                action: action.into(),
            }
        }

        /// What the reconciler does: new VPCs and vSwitches become Available.
        fn settle(&self) {
            self.net
                .store
                .write(|tx| {
                    vpc::activate_pending_vpcs(tx)?;
                    vswitch::activate_pending_vswitches(tx)
                })
                .unwrap();
        }
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    fn to_json(answer: impl Serialize) -> Value {
        serde_json::to_value(answer).unwrap()
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[tokio::test]
    async fn each_api_answers_the_keys_of_its_own_model() {
        let w = World::new();
        let net = || w.net.clone();
        let vpc = net().create_vpc(w.ctx("CreateVpc"), p(&[R, ("Tag.1.Key", "k")]), Api::Vpc).await.unwrap();
        assert_eq!(vpc.resource_group_id.as_deref(), Some(""));
        let ecs_vpc = net().create_vpc(w.ctx("CreateVpc"), p(&[R]), Api::Ecs).await.unwrap();
        assert_eq!(keys(&to_json(&ecs_vpc)), ["RouteTableId", "VRouterId", "VpcId"]);
        w.settle();
        let sw = p(&[R, ("VpcId", &vpc.vpc_id), ("CidrBlock", "172.16.0.0/24"), ("ZoneId", "cn-hangzhou-h")]);
        net().create_vswitch(w.ctx("CreateVSwitch"), sw, Api::Vpc).await.unwrap();
        w.settle();

        let listed = |api| {
            let f = net().describe_vpcs(w.ctx("DescribeVpcs"), p(&[R, ("VpcId", &vpc.vpc_id)]), api);
            async { to_json(f.await.unwrap()) }
        };
        let (by_ecs, by_vpc) = (listed(Api::Ecs).await, listed(Api::Vpc).await);
        let common = [
            "CidrBlock",
            "CreationTime",
            "Description",
            "IsDefault",
            "RegionId",
            "Status",
            "UserCidrs",
            "VRouterId",
            "VSwitchIds",
            "VpcId",
            "VpcName",
        ];
        assert_eq!(keys(&by_ecs["Vpcs"]["Vpc"][0]), common);
        assert_eq!(by_ecs["Vpcs"]["Vpc"][0]["VSwitchIds"]["VSwitchId"].as_array().unwrap().len(), 1);
        assert_eq!(keys(&by_vpc["Vpcs"]["Vpc"][0]).len(), common.len() + 12);
        assert_eq!(by_vpc["Vpcs"]["Vpc"][0]["Tags"], json!({"Tag": [{"Key": "k", "Value": ""}]}));
        assert_eq!(by_vpc["Vpcs"]["Vpc"][0]["RouterTableIds"], json!({"RouterTableIds": [vpc.route_table_id]}));
        assert_eq!(
            (&by_vpc["PageNumber"], &by_vpc["PageSize"], &by_vpc["TotalCount"]),
            (&json!(1), &json!(10), &json!(1))
        );

        let attr = to_json(
            net()
                .describe_vpc_attribute(w.ctx("DescribeVpcAttribute"), p(&[R, ("VpcId", &vpc.vpc_id)]), Api::Vpc)
                .await
                .unwrap(),
        );
        assert_eq!(
            attr["CloudResources"]["CloudResourceSetType"][0],
            json!({"ResourceType": "VSwitch", "ResourceCount": 1})
        );
        assert!(attr.get("CenStatus").is_none() && attr.get("OwnerId").is_some());

        let tables = |api| {
            let f = net().describe_route_tables(w.ctx("DescribeRouteTables"), p(&[R, ("VpcId", &vpc.vpc_id)]), api);
            async { to_json(f.await.unwrap()) }
        };
        let (by_ecs, by_vpc) = (tables(Api::Ecs).await, tables(Api::Vpc).await);
        let (t_ecs, t_vpc) = (&by_ecs["RouteTables"]["RouteTable"][0], &by_vpc["RouteTables"]["RouteTable"][0]);
        assert!(t_ecs.get("Status").is_none() && t_vpc["Status"] == "Available");
        assert_eq!(
            keys(&t_ecs["RouteEntrys"]["RouteEntry"][0]).len() + 3,
            keys(&t_vpc["RouteEntrys"]["RouteEntry"][0]).len()
        );
        assert_eq!(t_vpc["RouteEntrys"]["RouteEntry"][0]["NextHops"], json!({"NextHop": []}));

        let eip = net()
            .allocate_eip_address(w.ctx("AllocateEipAddress"), p(&[R, ("Bandwidth", "7")]), Api::Vpc)
            .await
            .unwrap();
        assert_eq!(keys(&to_json(&eip)), ["AllocationId", "EipAddress", "ResourceGroupId"]);
        let eips = |api| {
            let f = net().describe_eip_addresses(w.ctx("DescribeEipAddresses"), p(&[R]), api);
            async { to_json(f.await.unwrap()) }
        };
        let (by_ecs, by_vpc) = (eips(Api::Ecs).await, eips(Api::Vpc).await);
        let (e_ecs, e_vpc) = (&by_ecs["EipAddresses"]["EipAddress"][0], &by_vpc["EipAddresses"]["EipAddress"][0]);
        // A String in both models (ECS's answer had it as a number).
        assert_eq!((&e_ecs["Bandwidth"], &e_vpc["Bandwidth"]), (&json!("7"), &json!("7")));
        let ecs_eip = [
            "AllocationId",
            "AllocationTime",
            "Bandwidth",
            "ChargeType",
            "EipBandwidth",
            "ExpiredTime",
            "InstanceId",
            "InstanceType",
            "InternetChargeType",
            "IpAddress",
            "OperationLocks",
            "RegionId",
            "Status",
        ];
        assert_eq!(keys(e_ecs), ecs_eip);
        assert!(e_ecs.get("ISP").is_none() && e_vpc["ISP"] == "BGP" && e_vpc["HDMonitorStatus"] == "OFF");
        assert_eq!(e_ecs["OperationLocks"], json!({"LockReason": []}));
    }

    #[tokio::test]
    async fn client_token_replays_give_the_typed_answer_again() {
        let w = World::new();
        let alloc = |api| {
            let f =
                w.net.clone().allocate_eip_address(w.ctx("AllocateEipAddress"), p(&[R, ("ClientToken", "t1")]), api);
            async { to_json(f.await.unwrap()) }
        };
        let first = alloc(Api::Vpc).await;
        assert_eq!(alloc(Api::Vpc).await, first);
        // Replies stored before the answers were typed still read back (OrderId is dropped).
        let old = r#"{"AllocationId": "eip-1", "EipAddress": "203.0.113.1", "ResourceGroupId": "", "OrderId": ""}"#;
        let back: AllocateEipAddressResponse = serde_json::from_str(old).unwrap();
        assert_eq!(to_json(back), json!({"AllocationId": "eip-1", "EipAddress": "203.0.113.1", "ResourceGroupId": ""}));
        let back: CreateRouteEntryResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(to_json(back), json!({}));
        let back: CreateVpcResponse =
            serde_json::from_str(r#"{"VpcId": "v", "VRouterId": "r", "RouteTableId": "t"}"#).unwrap();
        assert!(back.resource_group_id.is_none());
    }
}
