//! The VPC actions: validation and state changes, one store transaction each. The same
//! handlers answer the VPC API (2016-04-28) and the older copies of these actions in the ECS
//! API (2014-05-26); [`Api`] picks which fields an answer carries, so that each answer holds
//! exactly the keys its API's official model knows.

use feitian_agent_api::Nudges;
use feitian_api::paging::Page;
use feitian_api::region::{require_region, zone};
use feitian_api::service::{client_token, create_once, merge, now, page_fields};
use feitian_api::validate;
use feitian_api::{ApiError, Ctx, Params};
use feitian_cidr::{self as cidr, CidrError};
use feitian_meta::eip::{self, Eip, EipStatus};
use feitian_meta::route_table::{self, RouteEntry, RouteEntryStatus, RouteTable};
use feitian_meta::vpc::{self, Vpc, VpcStatus};
use feitian_meta::vswitch::{self, VSwitch, VSwitchStatus};
use feitian_meta::{network_interface, query, tag, Filter, Store, Transaction};
use feitian_region::{Catalog, Region};
use ipnet::Ipv4Net;
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Which API a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Vpc,
    Ecs,
}

/// Per-account quotas (the real defaults).
pub const MAX_VPCS_PER_REGION: u64 = 10;
pub const MAX_VSWITCHES_PER_VPC: u64 = 150;
pub const MAX_CUSTOM_ROUTES_PER_TABLE: u64 = 200;
pub const MAX_EIPS_PER_REGION: u64 = 20;

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

/// `{"Tag": [{"Key", "Value"}]}`, as the VPC API shows tags.
fn tags_json(tags: &[(String, String)]) -> Value {
    json!({"Tag": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()})
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

    pub async fn create_vpc(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
                    if count >= MAX_VPCS_PER_REGION {
                        return Err(ApiError::invalid(
                            "QuotaExceeded.Vpc",
                            format!("VPC quota exceeded: at most {MAX_VPCS_PER_REGION} per region."),
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
                    let mut out = json!({"VpcId": id, "VRouterId": vrouter, "RouteTableId": table});
                    if api == Api::Vpc {
                        out["ResourceGroupId"] = json!("");
                    }
                    Ok(out)
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    fn vpc_json(&self, tx: &Transaction<'_>, v: &Vpc, api: Api, detailed: bool) -> Result<Value, ApiError> {
        let vsws: Vec<String> = vswitch::vswitches_of_vpc(tx, &v.id)?.into_iter().map(|s| s.id).collect();
        let mut o = json!({
            "VpcId": v.id,
            "RegionId": v.region_id,
            "Status": v.status.as_str(),
            "VpcName": v.name,
            "CreationTime": v.created_at,
            "CidrBlock": v.cidr_block,
            "VRouterId": v.vrouter_id,
            "Description": v.description,
            "IsDefault": v.is_default,
            "VSwitchIds": {"VSwitchId": vsws},
            "UserCidrs": {"UserCidr": v.user_cidrs},
        });
        if api == Api::Vpc {
            let tags = tag::tags_of(tx, &[v.id.as_str()])?.remove(&v.id).unwrap_or_default();
            let extra = json!({
                "Ipv6CidrBlock": "",
                "EnabledIpv6": false,
                "ResourceGroupId": "",
                "OwnerId": v.account_id,
                "DhcpOptionsSetId": "",
                "DhcpOptionsSetStatus": "",
                "DnsHostnameStatus": "DISABLED",
                "SecondaryCidrBlocks": {"SecondaryCidrBlock": []},
                "Tags": tags_json(&tags),
            });
            merge(&mut o, extra);
            if detailed {
                merge(
                    &mut o,
                    json!({
                        "ClassicLinkEnabled": false,
                        "SupportIpv4Gateway": false,
                        "Ipv4GatewayId": "",
                        "CloudResources": {"CloudResourceSetType": [
                            {"ResourceType": "VSwitch", "ResourceCount": vsws.len()},
                            {"ResourceType": "VRouter", "ResourceCount": 1},
                            {"ResourceType": "RouteTable", "ResourceCount": 1},
                        ]},
                    }),
                );
            } else {
                merge(
                    &mut o,
                    json!({
                        "CenStatus": "Detached",
                        "RouterTableIds": {"RouterTableIds": [v.route_table_id]},
                        "NatGatewayIds": {"NatGatewayIds": []},
                    }),
                );
            }
        }
        Ok(o)
    }

    pub async fn describe_vpcs(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let ids = validate::id_list(&p, "VpcId", 20)?;
        let name = p.opt_str("VpcName").map(str::to_owned);
        let is_default = p.opt_bool("IsDefault")?;
        let tags = if api == Api::Vpc { validate::tag_filter(&p)? } else { vec![] };
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let f = Filter::owned(ctx.caller.account_id, &region)
                    .any_of("id", &ids)
                    .eq("name", name.as_deref())
                    .eq_bool("is_default", is_default)
                    .tags(&tag_args(&tags));
                let (rows, total) = vpc::list_vpcs(tx, &f, page.offset(), page.limit())?;
                let items = rows.iter().map(|v| me.vpc_json(tx, v, api, false)).collect::<Result<Vec<_>, _>>()?;
                let mut o = Map::new();
                o.insert("Vpcs".into(), json!({"Vpc": items}));
                page_fields(&mut o, page, total);
                Ok(Value::Object(o))
            })
            .await
    }

    pub async fn describe_vpc_attribute(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
                me.vpc_json(tx, &v, api, true)
            })
            .await
    }

    pub async fn modify_vpc_attribute(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await
    }

    pub async fn delete_vpc(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    // --- vSwitches --------------------------------------------------------------------------

    pub async fn create_vswitch(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
                    Ok(json!({"VSwitchId": id}))
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    fn vswitch_json(&self, tx: &Transaction<'_>, s: &VSwitch, api: Api) -> Result<Value, ApiError> {
        let net = cidr::parse(&s.cidr_block).map_err(|_| ApiError::internal())?;
        let available = cidr::usable_count(net).saturating_sub(network_interface::used_addresses(tx, &s.id)?);
        let mut o = json!({
            "VSwitchId": s.id,
            "VpcId": s.vpc_id,
            "Status": s.status.as_str(),
            "CidrBlock": s.cidr_block,
            "ZoneId": s.zone_id,
            "AvailableIpAddressCount": available,
            "Description": s.description,
            "VSwitchName": s.name,
            "CreationTime": s.created_at,
            "IsDefault": false,
            "ResourceGroupId": "",
        });
        if api == Api::Vpc {
            let tags = tag::tags_of(tx, &[s.id.as_str()])?.remove(&s.id).unwrap_or_default();
            let vpc = vpc::get_vpc(tx, s.account_id, &s.vpc_id)?.ok_or_else(ApiError::internal)?;
            merge(
                &mut o,
                json!({
                    "Ipv6CidrBlock": "",
                    "EnabledIpv6": false,
                    "NetworkAclId": "",
                    "ShareType": "Sharing",
                    "OwnerId": s.account_id,
                    "RouteTable": {"RouteTableId": vpc.route_table_id, "RouteTableType": "System"},
                    "Tags": tags_json(&tags),
                }),
            );
        }
        Ok(o)
    }

    pub async fn describe_vswitches(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                if is_default == Some(true) {
                    // feitian has no default vSwitches.
                    let mut o = Map::new();
                    o.insert("VSwitches".into(), json!({"VSwitch": []}));
                    page_fields(&mut o, page, 0);
                    return Ok(Value::Object(o));
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
                let items = rows.iter().map(|s| me.vswitch_json(tx, s, api)).collect::<Result<Vec<_>, _>>()?;
                let mut o = Map::new();
                o.insert("VSwitches".into(), json!({"VSwitch": items}));
                page_fields(&mut o, page, total);
                Ok(Value::Object(o))
            })
            .await
    }

    pub async fn describe_vswitch_attributes(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        api: Api,
    ) -> Result<Value, ApiError> {
        let region = self.region(&p)?.id.clone();
        let id = p.required_str("VSwitchId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let s = me.vswitch(tx, ctx.caller.account_id, &region, &id)?;
                me.vswitch_json(tx, &s, api)
            })
            .await
    }

    pub async fn modify_vswitch_attribute(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await
    }

    pub async fn delete_vswitch(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await?;
        self.wake.notify_one();
        Ok(out)
    }

    // --- route tables -----------------------------------------------------------------------

    fn route_entry_json(e: &RouteEntry, api: Api) -> Value {
        let hops: Vec<Value> = if e.next_hop_id.is_empty() {
            vec![]
        } else {
            vec![json!({"NextHopType": e.next_hop_type, "NextHopId": e.next_hop_id, "Enabled": 1, "Weight": 100})]
        };
        let mut o = json!({
            "RouteTableId": e.route_table_id,
            "DestinationCidrBlock": e.destination,
            "Type": e.kind,
            "Status": e.status.as_str(),
            "InstanceId": e.next_hop_id,
            "NextHopType": e.next_hop_type,
            "NextHops": {"NextHop": hops},
        });
        if api == Api::Vpc {
            merge(&mut o, json!({"RouteEntryId": e.id, "RouteEntryName": e.name, "Description": e.description}));
        }
        o
    }

    fn route_table_json(&self, tx: &Transaction<'_>, t: &RouteTable, api: Api) -> Result<Value, ApiError> {
        let entries: Vec<Value> =
            route_table::route_entries(tx, &t.id)?.iter().map(|e| Self::route_entry_json(e, api)).collect();
        let mut o = json!({
            "RouteTableId": t.id,
            "RouteTableType": t.kind,
            "VRouterId": t.vrouter_id,
            "CreationTime": t.created_at,
            "ResourceGroupId": "",
            "RouteEntrys": {"RouteEntry": entries},
        });
        if api == Api::Vpc {
            let vsws: Vec<String> = vswitch::vswitches_of_vpc(tx, &t.vpc_id)?.into_iter().map(|s| s.id).collect();
            merge(&mut o, json!({"Status": "Available", "VSwitchIds": {"VSwitchId": vsws}}));
        }
        Ok(o)
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

    pub async fn describe_route_tables(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let f = Self::route_table_filter(&p, ctx.caller.account_id, &region)?;
                let (rows, total) = route_table::list_route_tables(tx, &f, page.offset(), page.limit())?;
                let items = rows.iter().map(|t| me.route_table_json(tx, t, api)).collect::<Result<Vec<_>, _>>()?;
                let mut o = Map::new();
                o.insert("RouteTables".into(), json!({"RouteTable": items}));
                page_fields(&mut o, page, total);
                Ok(Value::Object(o))
            })
            .await
    }

    pub async fn describe_route_table_list(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
        let region = self.region(&p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let tags = validate::tag_filter(&p)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let f = Self::route_table_filter(&p, account, &region)?.tags(&tag_args(&tags));
                let (rows, total) = route_table::list_route_tables(tx, &f, page.offset(), page.limit())?;
                let mut items = Vec::new();
                for t in &rows {
                    let vsws: Vec<String> =
                        vswitch::vswitches_of_vpc(tx, &t.vpc_id)?.into_iter().map(|s| s.id).collect();
                    let tags = tag::tags_of(tx, &[t.id.as_str()])?.remove(&t.id).unwrap_or_default();
                    items.push(json!({
                        "VpcId": t.vpc_id,
                        "RouterId": t.vrouter_id,
                        "RouterType": "VRouter",
                        "RouteTableId": t.id,
                        "RouteTableName": t.name,
                        "RouteTableType": t.kind,
                        "Description": t.description,
                        "CreationTime": t.created_at,
                        "Status": "Available",
                        "ResourceGroupId": "",
                        "AssociateType": "VSwitch",
                        "RoutePropagationEnable": false,
                        "VSwitchIds": {"VSwitchId": vsws},
                        "GatewayIds": {"GatewayIds": []},
                        "Tags": tags_json(&tags),
                    }));
                }
                let mut o = Map::new();
                o.insert("RouterTableList".into(), json!({"RouterTableListType": items}));
                page_fields(&mut o, page, total);
                Ok(Value::Object(o))
            })
            .await
    }

    pub async fn create_route_entry(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
                    Ok(if api == Api::Vpc { json!({"RouteEntryId": id}) } else { json!({}) })
                })
            })
            .await
    }

    pub async fn delete_route_entry(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await
    }

    pub async fn describe_route_entry_list(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
        self.store.read_async(move |tx| {
            let t = route_table::get_route_table(tx, ctx.caller.account_id, &table_id)?.filter(|t| t.region_id == region).ok_or_else(route_table_not_found)?;
            let all: Vec<RouteEntry> = route_table::route_entries(tx, &t.id)?
                .into_iter()
                .filter(|e| kind.as_deref().is_none_or(|k| k == e.kind))
                .filter(|e| dest.as_deref().is_none_or(|d| d == e.destination))
                .filter(|e| entry_id.as_deref().is_none_or(|i| i == e.id))
                .filter(|e| name.as_deref().is_none_or(|n| n == e.name))
                .filter(|e| hop_type.as_deref().is_none_or(|h| h == e.next_hop_type))
                .filter(|e| hop_id.as_deref().is_none_or(|h| h == e.next_hop_id))
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(max)
                .map(|e| {
                    let hops: Vec<Value> = if e.next_hop_id.is_empty() {
                        vec![]
                    } else {
                        vec![json!({"NextHopType": e.next_hop_type, "NextHopId": e.next_hop_id, "Enabled": 1, "Weight": 100, "NextHopRegionId": region})]
                    };
                    json!({
                        "RouteEntryId": e.id,
                        "RouteTableId": e.route_table_id,
                        "DestinationCidrBlock": e.destination,
                        "Type": e.kind,
                        "Status": e.status.as_str(),
                        "RouteEntryName": e.name,
                        "Description": e.description,
                        "IpVersion": "ipv4",
                        "GmtModified": e.created_at,
                        "Origin": if e.kind == "System" { "SystemRoute" } else { "StaticRoute" },
                        "NextHops": {"NextHop": hops},
                    })
                })
                .collect();
            let next = feitian_api::paging::next_offset_token(offset, page.len(), all.len());
            Ok(json!({"RouteEntrys": {"RouteEntry": page}, "NextToken": next, "TotalCount": all.len()}))
        })
        .await
    }

    // --- EIPs -------------------------------------------------------------------------------

    pub async fn allocate_eip_address(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
                    if count >= MAX_EIPS_PER_REGION {
                        return Err(ApiError::invalid(
                            "QuotaExceeded.Eip",
                            format!("EIP quota exceeded: at most {MAX_EIPS_PER_REGION} per region."),
                        ));
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
                    let mut out = json!({"AllocationId": id, "EipAddress": ip.to_string()});
                    if api == Api::Vpc {
                        merge(&mut out, json!({"ResourceGroupId": "", "OrderId": ""}));
                    }
                    Ok(out)
                })
            })
            .await
    }

    fn eip(&self, tx: &Transaction<'_>, account: u64, region: &str, id: &str) -> Result<Eip, ApiError> {
        eip::get_eip(tx, account, id)?.filter(|e| e.region_id == region).ok_or_else(eip_not_found)
    }

    pub async fn associate_eip_address(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                        return Ok(json!({}));
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
                Ok(json!({}))
            })
            .await;
        self.nudges.network_changed();
        out
    }

    pub async fn unassociate_eip_address(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await;
        self.nudges.network_changed();
        out
    }

    pub async fn release_eip_address(self: Arc<Self>, ctx: Ctx, p: Params, _api: Api) -> Result<Value, ApiError> {
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
                Ok(json!({}))
            })
            .await;
        self.nudges.network_changed();
        out
    }

    pub async fn describe_eip_addresses(self: Arc<Self>, ctx: Ctx, p: Params, api: Api) -> Result<Value, ApiError> {
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
                let mut items = Vec::new();
                for e in &rows {
                    let mut o = json!({
                        "AllocationId": e.id,
                        "IpAddress": e.ip_address,
                        "Status": e.status.as_str(),
                        "RegionId": e.region_id,
                        "InstanceId": e.instance_id,
                        "InstanceType": e.instance_type,
                        "InternetChargeType": e.internet_charge_type,
                        "ChargeType": "PostPaid",
                        "AllocationTime": e.created_at,
                        "ExpiredTime": "",
                        "EipBandwidth": e.bandwidth.to_string(),
                        "OperationLocks": {"LockReason": []},
                    });
                    if api == Api::Vpc {
                        let tags = tag::tags_of(tx, &[e.id.as_str()])?.remove(&e.id).unwrap_or_default();
                        merge(
                            &mut o,
                            json!({
                                "Bandwidth": e.bandwidth.to_string(),
                                "Name": e.name,
                                "Description": e.description,
                                "ISP": e.isp,
                                "PrivateIpAddress": e.private_ip,
                                "InstanceRegionId": if e.instance_id.is_empty() { "" } else { e.region_id.as_str() },
                                "Mode": "NAT",
                                "Netmode": "public",
                                "DeletionProtection": false,
                                "ResourceGroupId": "",
                                "BandwidthPackageId": "",
                                "BandwidthPackageType": "",
                                "BandwidthPackageBandwidth": "",
                                "HDMonitorStatus": "OFF",
                                "SecondLimited": false,
                                "ServiceManaged": 0,
                                "Tags": tags_json(&tags),
                            }),
                        );
                    } else {
                        o["Bandwidth"] = json!(e.bandwidth);
                    }
                    items.push(o);
                }
                let mut o = Map::new();
                o.insert("EipAddresses".into(), json!({"EipAddress": items}));
                page_fields(&mut o, page, total);
                Ok(Value::Object(o))
            })
            .await
    }
}
