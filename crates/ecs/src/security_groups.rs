//! Security groups (ECS 2014-05-26): groups, rules, policies, references. Rule validation,
//! identity and semantics come from the pure `feitian-secgroup` crate; this module stores them
//! and enforces what spans resources: peers that must exist, quotas, dependencies.

use crate::answer::{Paging, Tags};
use crate::Ecs;
use feitian_api::answers::Empty;
use feitian_api::paging::{Page, TokenPage};
use feitian_api::region::require_region;
use feitian_api::service::{client_token, create_once, now};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::quota::{self, Quota};
use feitian_meta::security_group::{self, SecurityGroup, SgRule};
use feitian_meta::{query, resource, tag, vpc, Filter, Transaction};
use feitian_secgroup::{self as sg, Direction, Peer, Rule, RuleError, RuleInput};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rules per group (ingress and egress together), the real default.
pub const MAX_RULES_PER_GROUP: usize = 100;
/// Groups per network interface, the real default.
pub const MAX_GROUPS_PER_INTERFACE: usize = 5;
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

/// Stored with its ClientToken, so it reads back too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSecurityGroupResponse {
    pub security_group_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSecurityGroupsResponse {
    pub region_id: String,
    #[serde(flatten)]
    pub paging: Paging,
    pub security_groups: SecurityGroups,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroups {
    pub security_group: Vec<SecurityGroupItem>,
}

/// One group, as `SecurityGroups.SecurityGroup[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupItem {
    pub security_group_id: String,
    pub security_group_name: String,
    pub description: String,
    pub vpc_id: String,
    pub creation_time: String,
    pub security_group_type: String,
    pub resource_group_id: &'static str,
    pub service_managed: bool,
    pub ecs_count: u64,
    pub available_instance_amount: u64,
    pub rule_count: usize,
    pub group_to_group_rule_count: usize,
    pub tags: Tags<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSecurityGroupAttributeResponse {
    pub region_id: String,
    pub security_group_id: String,
    pub security_group_name: String,
    pub description: String,
    pub vpc_id: String,
    pub inner_access_policy: String,
    /// "" on the last page, and without `MaxResults`.
    pub next_token: String,
    pub permissions: Permissions,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permissions {
    pub permission: Vec<Permission>,
}

/// One rule, as `Permissions.Permission[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permission {
    pub security_group_rule_id: String,
    pub direction: String,
    pub ip_protocol: String,
    pub port_range: String,
    pub source_port_range: String,
    pub policy: String,
    /// A number, as a string (the API's type).
    pub priority: String,
    pub nic_type: String,
    pub source_cidr_ip: String,
    pub dest_cidr_ip: String,
    pub source_group_id: String,
    pub source_group_name: String,
    pub source_group_owner_account: String,
    pub dest_group_id: String,
    pub dest_group_name: String,
    pub dest_group_owner_account: String,
    pub ipv6_source_cidr_ip: &'static str,
    pub ipv6_dest_cidr_ip: &'static str,
    pub source_prefix_list_id: &'static str,
    pub source_prefix_list_name: &'static str,
    pub dest_prefix_list_id: &'static str,
    pub dest_prefix_list_name: &'static str,
    pub port_range_list_id: &'static str,
    pub port_range_list_name: &'static str,
    pub description: String,
    pub create_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSecurityGroupReferencesResponse {
    pub security_group_references: SecurityGroupReferences,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupReferences {
    pub security_group_reference: Vec<SecurityGroupReference>,
}

/// The groups whose rules name one group.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupReference {
    pub security_group_id: String,
    pub referencing_security_groups: ReferencingSecurityGroups,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReferencingSecurityGroups {
    pub referencing_security_group: Vec<ReferencingSecurityGroup>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReferencingSecurityGroup {
    pub security_group_id: String,
    /// The owner's account id, as a string (the API's type).
    pub ali_uid: String,
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

    pub async fn create_security_group(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<CreateSecurityGroupResponse, ApiError> {
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
                    let used = query::count(tx, "security_groups", &Filter::owned(account, &region.id))?;
                    if !quota::fits(quota::limit(tx, &me.store.quotas(), account, Quota::SecurityGroups)?, used, 1) {
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
                    Ok(CreateSecurityGroupResponse { security_group_id: id })
                })
            })
            .await
    }

    fn group_item(&self, tx: &Transaction<'_>, g: SecurityGroup) -> Result<SecurityGroupItem, ApiError> {
        let rules = security_group::rules_of(tx, &g.id)?;
        let members = security_group::members_of(tx, &g.id)?.len() as u64;
        let tags = tag::tags_of(tx, &[g.id.as_str()])?.remove(&g.id).unwrap_or_default();
        Ok(SecurityGroupItem {
            security_group_id: g.id,
            security_group_name: g.name,
            description: g.description,
            vpc_id: g.vpc_id,
            creation_time: g.created_at,
            security_group_type: g.sg_type,
            resource_group_id: "",
            service_managed: false,
            ecs_count: members,
            available_instance_amount: MAX_MEMBERS.saturating_sub(members),
            rule_count: rules.len(),
            group_to_group_rule_count: rules
                .iter()
                .filter(|r| !r.source_group_id.is_empty() || !r.dest_group_id.is_empty())
                .count(),
            tags: tags.into_iter().collect(),
        })
    }

    pub async fn describe_security_groups(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeSecurityGroupsResponse, ApiError> {
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
                let items = rows.into_iter().map(|g| me.group_item(tx, g)).collect::<Result<Vec<_>, _>>()?;
                Ok(DescribeSecurityGroupsResponse {
                    region_id: region,
                    paging: Paging::new(by_token, page, tpage, items.len(), total),
                    security_groups: SecurityGroups { security_group: items },
                })
            })
            .await
    }

    fn permission(&self, tx: &Transaction<'_>, r: SgRule) -> Result<Permission, ApiError> {
        let group_name = |id: &str| -> Result<String, ApiError> {
            if id.is_empty() {
                return Ok(String::new());
            }
            Ok(security_group::get_security_group_any_owner(tx, id)?.map(|g| g.name).unwrap_or_default())
        };
        Ok(Permission {
            source_group_name: group_name(&r.source_group_id)?,
            dest_group_name: group_name(&r.dest_group_id)?,
            security_group_rule_id: r.id,
            direction: r.direction,
            ip_protocol: r.ip_protocol,
            port_range: r.port_range,
            source_port_range: r.source_port_range,
            policy: r.policy,
            priority: r.priority.to_string(),
            nic_type: r.nic_type,
            source_cidr_ip: r.source_cidr,
            dest_cidr_ip: r.dest_cidr,
            source_group_id: r.source_group_id,
            source_group_owner_account: r.source_group_owner_account,
            dest_group_id: r.dest_group_id,
            dest_group_owner_account: r.dest_group_owner_account,
            ipv6_source_cidr_ip: "",
            ipv6_dest_cidr_ip: "",
            source_prefix_list_id: "",
            source_prefix_list_name: "",
            dest_prefix_list_id: "",
            dest_prefix_list_name: "",
            port_range_list_id: "",
            port_range_list_name: "",
            description: r.description,
            create_time: r.created_at,
        })
    }

    pub async fn describe_security_group_attribute(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeSecurityGroupAttributeResponse, ApiError> {
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
                let total = rules.len();
                let shown = rules
                    .into_iter()
                    .skip(offset)
                    .take(take)
                    .map(|r| me.permission(tx, r))
                    .collect::<Result<Vec<_>, _>>()?;
                let next = match max {
                    Some(_) => feitian_api::paging::next_offset_token(offset, shown.len(), total),
                    None => String::new(),
                };
                Ok(DescribeSecurityGroupAttributeResponse {
                    region_id: g.region_id,
                    security_group_id: g.id,
                    security_group_name: g.name,
                    description: g.description,
                    vpc_id: g.vpc_id,
                    inner_access_policy: g.inner_policy,
                    next_token: next,
                    permissions: Permissions { permission: shown },
                })
            })
            .await
    }

    pub async fn modify_security_group_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
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
                Ok(Empty {})
            })
            .await
    }

    pub async fn modify_security_group_policy(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
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
                Ok::<_, ApiError>(Empty {})
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn delete_security_group(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
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
                Ok(Empty {})
            })
            .await
    }

    pub async fn authorize(self: Arc<Self>, ctx: Ctx, p: Params, direction: Direction) -> Result<Empty, ApiError> {
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
                Ok(Empty {})
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn revoke(self: Arc<Self>, ctx: Ctx, p: Params, direction: Direction) -> Result<Empty, ApiError> {
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
                Ok::<_, ApiError>(Empty {})
            })
            .await?;
        self.changed();
        Ok(out)
    }

    pub async fn describe_security_group_references(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeSecurityGroupReferencesResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let mut ids: Vec<String> = p.list("SecurityGroupId", 10)?.into_iter().map(str::to_owned).collect();
        if ids.is_empty() {
            ids = validate::id_list(&p, "SecurityGroupId", 10)?;
        }
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("SecurityGroupId.N"));
        }
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let mut out = Vec::new();
                for id in &ids {
                    let g = me.group(tx, ctx.caller.account_id, &region, id)?;
                    let referencing_security_group = security_group::groups_referencing(tx, &g.id)?
                        .into_iter()
                        .map(|r| ReferencingSecurityGroup {
                            ali_uid: r.account_id.to_string(),
                            security_group_id: r.id,
                        })
                        .collect();
                    out.push(SecurityGroupReference {
                        security_group_id: g.id,
                        referencing_security_groups: ReferencingSecurityGroups { referencing_security_group },
                    });
                }
                Ok(DescribeSecurityGroupReferencesResponse {
                    security_group_references: SecurityGroupReferences { security_group_reference: out },
                })
            })
            .await
    }
}
