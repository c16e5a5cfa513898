//! Security groups (ECS 2014-05-26): groups, rules, policies, references. Rule validation,
//! identity and semantics come from the pure `feitian-secgroup` crate; this module stores them
//! and enforces what spans resources: peers that must exist, quotas, dependencies.

use crate::Ecs;
use feitian_api::paging::{Page, TokenPage};
use feitian_api::region::require_region;
use feitian_api::service::{client_token, create_once, now, page_fields};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::security_group::{self, SecurityGroup, SgRule};
use feitian_meta::{query, resource, tag, vpc, Filter, Transaction};
use feitian_secgroup::{self as sg, Direction, Peer, Rule, RuleError, RuleInput};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rules per group (ingress and egress together), the real default.
pub const MAX_RULES_PER_GROUP: usize = 100;
/// Groups per network interface, the real default.
pub const MAX_GROUPS_PER_INTERFACE: usize = 5;
/// Groups per region per account.
pub const MAX_GROUPS_PER_REGION: u64 = 100;
/// Instances (interfaces) a normal group may hold.
pub const MAX_MEMBERS: u64 = 2000;

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidSecurityGroupId.NotFound", "The specified security group does not exist.")
}

fn rule_error(e: RuleError) -> ApiError {
    ApiError::new(e.status, e.code, e.message)
}

/// A stored rule as the pure crate's `Rule` (stored rules were validated on the way in).
fn stored_rule(r: &SgRule) -> Result<Rule, ApiError> {
    r.rule().map_err(|e| {
        tracing::error!(rule = %r.id, error = %e, "a stored rule no longer validates");
        ApiError::internal()
    })
}

/// The rule fields of a request: `Permissions.N.*` (current SDKs) or the top-level fields
/// (older clients). Both at once is refused.
fn rule_fields(p: &Params) -> Result<Vec<BTreeMap<&str, &str>>, ApiError> {
    let listed = p.list_of_maps("Permissions", MAX_RULES_PER_GROUP)?;
    const FIELDS: &[&str] = &[
        "IpProtocol",
        "PortRange",
        "SourcePortRange",
        "Policy",
        "Priority",
        "NicType",
        "SourceCidrIp",
        "DestCidrIp",
        "SourceGroupId",
        "DestGroupId",
        "SourceGroupOwnerAccount",
        "SourceGroupOwnerId",
        "DestGroupOwnerAccount",
        "DestGroupOwnerId",
        "Description",
    ];
    let top: BTreeMap<&str, &str> = FIELDS.iter().filter_map(|f| p.opt_str(f).map(|v| (*f, v))).collect();
    match (listed.is_empty(), top.is_empty()) {
        (false, false) => Err(ApiError::invalid_parameter(
            "Permissions",
            "give rules either as Permissions.N or as top-level fields, not both",
        )),
        (false, true) => Ok(listed),
        (true, false) => Ok(vec![top]),
        (true, true) => Ok(vec![BTreeMap::new()]),
    }
}

fn input<'a>(m: &BTreeMap<&'a str, &'a str>) -> RuleInput<'a> {
    let g = |k: &str| m.get(k).copied().filter(|v| !v.is_empty());
    RuleInput {
        ip_protocol: g("IpProtocol"),
        port_range: g("PortRange"),
        source_port_range: g("SourcePortRange"),
        policy: g("Policy"),
        priority: g("Priority"),
        nic_type: g("NicType"),
        source_cidr_ip: g("SourceCidrIp"),
        dest_cidr_ip: g("DestCidrIp"),
        source_group_id: g("SourceGroupId"),
        dest_group_id: g("DestGroupId"),
        source_group_owner_account: g("SourceGroupOwnerAccount"),
        source_group_owner_id: g("SourceGroupOwnerId"),
        dest_group_owner_account: g("DestGroupOwnerAccount"),
        dest_group_owner_id: g("DestGroupOwnerId"),
        description: g("Description"),
    }
}

fn account_name(tx: &Transaction<'_>, id: u64) -> Result<String, ApiError> {
    resource::account_name(tx, id)?.ok_or_else(ApiError::internal)
}

impl Ecs {
    pub(crate) fn group(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        region: &str,
        id: &str,
    ) -> Result<SecurityGroup, ApiError> {
        security_group::get_security_group(tx, account, id)?.filter(|g| g.region_id == region).ok_or_else(not_found)
    }

    /// Checks that a rule's peer group exists: the caller's own, or another account's when the
    /// rule names that account (by name or id).
    fn check_peer(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        rule: &Rule,
        direction: Direction,
    ) -> Result<(), ApiError> {
        let Peer::Group { group_id, owner_account, owner_id } = &rule.peer else { return Ok(()) };
        let code = match direction {
            Direction::Ingress => "InvalidSourceGroupId.NotFound",
            Direction::Egress => "InvalidDestGroupId.NotFound",
        };
        let missing = || ApiError::new(404, code, "The specified peer security group does not exist.");
        if owner_account.is_none() && owner_id.is_none() {
            return security_group::get_security_group(tx, account, group_id)?.map(|_| ()).ok_or_else(missing);
        }
        let g = security_group::get_security_group_any_owner(tx, group_id)?.ok_or_else(missing)?;
        let name = account_name(tx, g.account_id)?;
        let id_ok = owner_id.as_deref().is_none_or(|o| o == g.account_id.to_string());
        let name_ok = owner_account.as_deref().is_none_or(|o| o == name);
        if id_ok && name_ok {
            Ok(())
        } else {
            Err(missing().recommend("the group's owner is not the account the rule names"))
        }
    }

    pub async fn create_security_group(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let vpc_id = p
            .required_str("VpcId")
            .map_err(|e| e.recommend("feitian has VPC-type security groups only: create a VPC and pass its VpcId"))?
            .to_owned();
        let name =
            validate::name(&p, "SecurityGroupName", "InvalidSecurityGroupName.Malformed")?.unwrap_or("").to_owned();
        let description = validate::description(&p, "Description", "InvalidSecurityGroupDiscription.Malformed")?
            .unwrap_or("")
            .to_owned();
        let sg_type = match p.opt_str("SecurityGroupType").unwrap_or("normal") {
            t @ ("normal" | "enterprise") => t.to_owned(),
            other => {
                return Err(ApiError::invalid(
                    "InvalidSecurityGroupType.Malformed",
                    format!("The SecurityGroupType {other:?} is not normal or enterprise."),
                ))
            }
        };
        let tags = validate::tags(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        self.store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let vpc = vpc::get_vpc(tx, account, &vpc_id)?
                        .filter(|v| v.region_id == region.id)
                        .ok_or_else(|| ApiError::new(404, "InvalidVpcId.NotFound", "Specified VPC does not exist."))?;
                    if query::count(tx, "security_groups", &Filter::owned(account, &region.id))?
                        >= MAX_GROUPS_PER_REGION
                    {
                        return Err(ApiError::invalid(
                            "QuotaExceed.SecurityGroup",
                            "The maximum number of security groups is reached.",
                        ));
                    }
                    let id =
                        me.store.scope(account).register(tx, "security_group", "sg", &region.id, &region.id_code)?;
                    security_group::insert_security_group(
                        tx,
                        &SecurityGroup {
                            id: id.clone(),
                            account_id: account,
                            region_id: region.id.clone(),
                            vpc_id: vpc.id,
                            name: name.clone(),
                            description: description.clone(),
                            inner_policy: if sg_type == "enterprise" { "Drop".into() } else { "Accept".into() },
                            sg_type: sg_type.clone(),
                            created_at: now(),
                        },
                    )?;
                    tag::set_tags(tx, &id, &tags)?;
                    Ok(json!({"SecurityGroupId": id}))
                })
            })
            .await
    }

    fn group_json(&self, tx: &Transaction<'_>, g: &SecurityGroup) -> Result<Value, ApiError> {
        let rules = security_group::rules_of(tx, &g.id)?;
        let members = security_group::members_of(tx, &g.id)?.len() as u64;
        let tags = tag::tags_of(tx, &[g.id.as_str()])?.remove(&g.id).unwrap_or_default();
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect();
        Ok(json!({
            "SecurityGroupId": g.id,
            "SecurityGroupName": g.name,
            "Description": g.description,
            "VpcId": g.vpc_id,
            "CreationTime": g.created_at,
            "SecurityGroupType": g.sg_type,
            "ResourceGroupId": "",
            "ServiceManaged": false,
            "EcsCount": members,
            "AvailableInstanceAmount": MAX_MEMBERS.saturating_sub(members),
            "RuleCount": rules.len(),
            "GroupToGroupRuleCount": rules.iter().filter(|r| !r.source_group_id.is_empty() || !r.dest_group_id.is_empty()).count(),
            "Tags": {"Tag": tags},
        }))
    }

    pub async fn describe_security_groups(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let by_token = p.opt_str("NextToken").is_some() || p.opt_str("MaxResults").is_some();
        let page = Page::from_params(&p, 10, 50)?;
        let tpage = TokenPage::from_params(&p, 10, 100)?;
        let mut ids = validate::id_list(&p, "SecurityGroupIds", 100)?;
        if let Some(one) = p.opt_str("SecurityGroupId") {
            ids.push(one.to_owned());
        }
        let tags = validate::tag_filter(&p)?;
        if let Some(t) = p.opt_str("SecurityGroupType") {
            if t != "normal" && t != "enterprise" {
                return Err(ApiError::invalid_parameter(
                    "SecurityGroupType",
                    format!("{t:?} is not normal or enterprise"),
                ));
            }
        }
        match p.opt_str("NetworkType") {
            None | Some("vpc") => {}
            Some("classic") => {} // no classic groups exist: the filter just finds none
            Some(other) => {
                return Err(ApiError::invalid_parameter("NetworkType", format!("{other:?} is not vpc or classic")))
            }
        }
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let tag_args: Vec<(&str, Option<&str>)> =
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                let mut f = Filter::owned(ctx.caller.account_id, &region)
                    .any_of("id", &ids)
                    .eq("vpc_id", p.opt_str("VpcId"))
                    .eq("name", p.opt_str("SecurityGroupName"))
                    .eq("sg_type", p.opt_str("SecurityGroupType"))
                    .tags(&tag_args);
                if p.opt_str("NetworkType") == Some("classic") {
                    f = f.eq("vpc_id", Some(""));
                }
                let (offset, limit) =
                    if by_token { (tpage.offset, u64::from(tpage.max_results)) } else { (page.offset(), page.limit()) };
                let (rows, total) = security_group::list_security_groups(tx, &f, offset, limit)?;
                let items = rows.iter().map(|g| me.group_json(tx, g)).collect::<Result<Vec<_>, _>>()?;
                let mut o = Map::new();
                o.insert("RegionId".into(), json!(region));
                if by_token {
                    o.insert("NextToken".into(), json!(tpage.next_token(items.len(), total).unwrap_or_default()));
                    o.insert("TotalCount".into(), json!(total));
                } else {
                    page_fields(&mut o, page, total);
                }
                o.insert("SecurityGroups".into(), json!({"SecurityGroup": items}));
                Ok(Value::Object(o))
            })
            .await
    }

    fn rule_json(&self, tx: &Transaction<'_>, r: &SgRule) -> Result<Value, ApiError> {
        let group_name = |id: &str| -> Result<String, ApiError> {
            if id.is_empty() {
                return Ok(String::new());
            }
            Ok(security_group::get_security_group_any_owner(tx, id)?.map(|g| g.name).unwrap_or_default())
        };
        Ok(json!({
            "SecurityGroupRuleId": r.id,
            "Direction": r.direction,
            "IpProtocol": r.ip_protocol,
            "PortRange": r.port_range,
            "SourcePortRange": r.source_port_range,
            "Policy": r.policy,
            "Priority": r.priority.to_string(),
            "NicType": r.nic_type,
            "SourceCidrIp": r.source_cidr,
            "DestCidrIp": r.dest_cidr,
            "SourceGroupId": r.source_group_id,
            "SourceGroupName": group_name(&r.source_group_id)?,
            "SourceGroupOwnerAccount": r.source_group_owner_account,
            "DestGroupId": r.dest_group_id,
            "DestGroupName": group_name(&r.dest_group_id)?,
            "DestGroupOwnerAccount": r.dest_group_owner_account,
            "Ipv6SourceCidrIp": "",
            "Ipv6DestCidrIp": "",
            "SourcePrefixListId": "",
            "SourcePrefixListName": "",
            "DestPrefixListId": "",
            "DestPrefixListName": "",
            "PortRangeListId": "",
            "PortRangeListName": "",
            "Description": r.description,
            "CreateTime": r.created_at,
        }))
    }

    pub async fn describe_security_group_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("SecurityGroupId")?.to_owned();
        let direction = match p.opt_str("Direction").unwrap_or("all") {
            d @ ("all" | "ingress" | "egress") => d.to_owned(),
            other => {
                return Err(ApiError::invalid_parameter(
                    "Direction",
                    format!("{other:?} is not all, ingress or egress"),
                ))
            }
        };
        let nic = match p.opt_str("NicType") {
            None => None,
            Some(n @ ("internet" | "intranet")) => Some(n.to_owned()),
            Some(other) => {
                return Err(ApiError::invalid_parameter("NicType", format!("{other:?} is not internet or intranet")))
            }
        };
        let max = p.opt_int("MaxResults", 10, 1000)?;
        let offset: usize = feitian_api::paging::offset_token(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let g = me.group(tx, ctx.caller.account_id, &region, &id)?;
                let rules: Vec<SgRule> = security_group::rules_of(tx, &g.id)?
                    .into_iter()
                    .filter(|r| direction == "all" || r.direction == direction)
                    .filter(|r| nic.as_deref().is_none_or(|n| n == r.nic_type))
                    .collect();
                let take = max.map(|m| m as usize).unwrap_or(usize::MAX);
                let shown =
                    rules.iter().skip(offset).take(take).map(|r| me.rule_json(tx, r)).collect::<Result<Vec<_>, _>>()?;
                let next = match max {
                    Some(_) => feitian_api::paging::next_offset_token(offset, shown.len(), rules.len()),
                    None => String::new(),
                };
                Ok(json!({
                    "RegionId": g.region_id,
                    "SecurityGroupId": g.id,
                    "SecurityGroupName": g.name,
                    "Description": g.description,
                    "VpcId": g.vpc_id,
                    "InnerAccessPolicy": g.inner_policy,
                    "NextToken": next,
                    "Permissions": {"Permission": shown},
                }))
            })
            .await
    }

    pub async fn modify_security_group_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("SecurityGroupId")?.to_owned();
        let name = validate::name(&p, "SecurityGroupName", "InvalidSecurityGroupName.Malformed")?.map(str::to_owned);
        let description =
            validate::description(&p, "Description", "InvalidSecurityGroupDiscription.Malformed")?.map(str::to_owned);
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let mut g = me.group(tx, ctx.caller.account_id, &region, &id)?;
                if let Some(n) = name {
                    g.name = n;
                }
                if let Some(d) = description {
                    g.description = d;
                }
                security_group::update_security_group(tx, &g)?;
                Ok(json!({}))
            })
            .await
    }

    pub async fn modify_security_group_policy(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("SecurityGroupId")?.to_owned();
        let policy = match p.required_str("InnerAccessPolicy")? {
            v if v.eq_ignore_ascii_case("accept") => "Accept",
            v if v.eq_ignore_ascii_case("drop") => "Drop",
            other => {
                return Err(ApiError::invalid(
                    "InvalidInnerAccessPolicy.Malformed",
                    format!("The InnerAccessPolicy {other:?} is not Accept or Drop."),
                ))
            }
        };
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let mut g = me.group(tx, ctx.caller.account_id, &region, &id)?;
                g.inner_policy = policy.into();
                security_group::update_security_group(tx, &g)?;
                Ok::<_, ApiError>(json!({}))
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn delete_security_group(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("SecurityGroupId")?.to_owned();
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let g = me.group(tx, ctx.caller.account_id, &region, &id)?;
                let members = security_group::members_of(tx, &g.id)?;
                if let Some(m) = members.first() {
                    return Err(ApiError::invalid(
                        "DependencyViolation",
                        "There is still instance(s) in the specified security group.",
                    )
                    .recommend(format!(
                        "{} instance(s) are members (e.g. {}); move them to another group first",
                        members.len(),
                        m.instance_id
                    )));
                }
                let refs = security_group::groups_referencing(tx, &g.id)?;
                if let Some(r) = refs.first() {
                    return Err(ApiError::invalid(
                        "DependencyViolation",
                        "There is other security group reference this group.",
                    )
                    .recommend(format!("revoke the rules of {} that name {} first", r.id, g.id)));
                }
                security_group::delete_security_group(tx, &g.id)?;
                Ok(json!({}))
            })
            .await
    }

    pub async fn authorize(self: Arc<Self>, ctx: Ctx, p: Params, direction: Direction) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("SecurityGroupId")?.to_owned();
        let rules = rule_fields(&p)?
            .iter()
            .map(|m| sg::validate(direction, &input(m)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(rule_error)?;
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let g = me.group(tx, account, &region.id, &id)?;
                let mut existing: Vec<Rule> =
                    security_group::rules_of(tx, &g.id)?.iter().map(stored_rule).collect::<Result<_, _>>()?;
                for rule in rules {
                    me.check_peer(tx, account, &rule, direction)?;
                    // Authorizing an identical rule again changes nothing.
                    if existing.iter().any(|r| r.same_rule(&rule)) {
                        continue;
                    }
                    if existing.len() >= MAX_RULES_PER_GROUP {
                        return Err(ApiError::invalid(
                            "AuthorizationLimitExceed",
                            "The limit of authorization records in the security group reaches the upper limit.",
                        )
                        .recommend(format!(
                            "a group holds at most {MAX_RULES_PER_GROUP} rules; revoke some or use another group"
                        )));
                    }
                    let rid = feitian_meta::ids::resource_id("sgr", &region.id_code);
                    security_group::insert_rule(tx, &SgRule::from_rule(&rule, rid, &g.id, now()))?;
                    existing.push(rule);
                }
                Ok(json!({}))
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn revoke(self: Arc<Self>, ctx: Ctx, p: Params, direction: Direction) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("SecurityGroupId")?.to_owned();
        let rule_ids: Vec<String> = p.list("SecurityGroupRuleId", 100)?.into_iter().map(str::to_owned).collect();
        let wanted: Vec<(Rule, bool)> = if rule_ids.is_empty() {
            let fields = rule_fields(&p)?;
            fields
                .iter()
                .map(|m| Ok((sg::validate(direction, &input(m)).map_err(rule_error)?, m.contains_key("Priority"))))
                .collect::<Result<_, ApiError>>()?
        } else {
            vec![]
        };
        let me = self.clone();
        let out = self
            .store
            .write_async(move |tx| {
                let g = me.group(tx, ctx.caller.account_id, &region, &id)?;
                let stored = security_group::rules_of(tx, &g.id)?;
                for rid in &rule_ids {
                    let found = stored.iter().find(|r| &r.id == rid && r.direction == direction.as_api());
                    // The public docs: a missing SecurityGroupRuleId is an error (since 2024);
                    // a missing rule named by its fields is not.
                    let r = found.ok_or_else(|| {
                        ApiError::invalid(
                            "InvalidParam.SecurityGroupRuleId",
                            format!("The security group rule {rid} does not exist in {}.", g.id),
                        )
                    })?;
                    security_group::delete_rule(tx, &r.id)?;
                }
                for (rule, by_priority) in &wanted {
                    for r in &stored {
                        let s = stored_rule(r)?;
                        let hit = if *by_priority { s.same_rule(rule) } else { s.same_rule_except_priority(rule) };
                        if hit {
                            security_group::delete_rule(tx, &r.id)?;
                        }
                    }
                }
                Ok::<_, ApiError>(json!({}))
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn describe_security_group_references(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Value, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let mut ids: Vec<String> = p.list("SecurityGroupId", 10)?.into_iter().map(str::to_owned).collect();
        if ids.is_empty() {
            ids = validate::id_list(&p, "SecurityGroupId", 10)?;
        }
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("SecurityGroupId.N"));
        }
        let me = self.clone();
        self.store.read_async(move |tx| {
            let mut out = Vec::new();
            for id in &ids {
                let g = me.group(tx, ctx.caller.account_id, &region, id)?;
                let refs: Vec<Value> = security_group::groups_referencing(tx, &g.id)?
                    .iter()
                    .map(|r| json!({"SecurityGroupId": r.id, "AliUid": r.account_id.to_string()}))
                    .collect();
                out.push(json!({"SecurityGroupId": g.id, "ReferencingSecurityGroups": {"ReferencingSecurityGroup": refs}}));
            }
            Ok(json!({"SecurityGroupReferences": {"SecurityGroupReference": out}}))
        })
        .await
    }
}
