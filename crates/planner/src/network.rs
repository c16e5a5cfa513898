//! VPC networks: what each VPC's network on a host holds, and its security-group world.

use base64::Engine;
use feitian_agent_api::{InstanceMetadata, NicAttachment, VpcPlan};
use feitian_meta::{eip, instance, key_pair, network_interface, resource, security_group, vpc, vswitch};
use feitian_meta::{MetaError, Transaction};
use feitian_secgroup::{Group, Nic, Peer, Policy, World};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// The VPCs that hold at least one instance's interface: those a host realizes.
pub fn vpcs(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    network_interface::vpcs_with_instances(tx)
}

/// What one VPC's network should hold, or `None` when no instance is in it.
pub fn plan(tx: &Transaction<'_>, vpc_id: &str) -> Result<Option<VpcPlan>, MetaError> {
    let enis: Vec<_> =
        network_interface::enis_of_vpc(tx, vpc_id)?.into_iter().filter(|e| !e.instance_id.is_empty()).collect();
    let Some(first) = enis.first() else { return Ok(None) };
    let vpc_cidr = vpc::get_vpc(tx, first.account_id, vpc_id)?.map(|v| v.cidr_block).unwrap_or_default();
    let mut gateways = Vec::new();
    let mut vswitch_cidrs = HashMap::new();
    for v in vswitch::vswitches_of_vpc(tx, vpc_id)? {
        if let Ok(net) = feitian_cidr::parse(&v.cidr_block) {
            let gw = feitian_cidr::gateway(net);
            gateways.push(ipnet::Ipv4Net::new(gw, net.prefix_len()).map_err(|e| MetaError::Invalid(e.to_string()))?);
            vswitch_cidrs.insert(v.id.clone(), (v.cidr_block.clone(), gw.to_string()));
        }
    }
    let ids: Vec<&str> = enis.iter().map(|e| e.instance_id.as_str()).collect();
    let eips = eip::eips_of_instances(tx, &ids)?;
    let mut plan = VpcPlan { vpc_id: vpc_id.to_owned(), gateways, ..Default::default() };
    for eni in &enis {
        let Ok(ip) = eni.primary_ip.parse::<Ipv4Addr>() else { continue };
        let Some(inst) = instance::get_instance(tx, eni.account_id, &eni.instance_id)? else { continue };
        plan.nics.push(NicAttachment { nic_id: eni.id.clone(), ip, mac: eni.mac.clone() });
        let mut public = eips.iter().find(|e| e.instance_id == inst.id).map(|e| e.ip_address.clone());
        if public.is_none() && !inst.public_ip.is_empty() {
            public = Some(inst.public_ip.clone());
        }
        if let Some(p) = public.as_deref().and_then(|p| p.parse::<Ipv4Addr>().ok()) {
            plan.nat.insert(p, ip);
        }
        let (vsw_cidr, gw) = vswitch_cidrs.get(&eni.vswitch_id).cloned().unwrap_or_default();
        plan.metadata.insert(
            ip,
            InstanceMetadata {
                instance_id: inst.id.clone(),
                hostname: inst.host_name.clone(),
                region_id: inst.region_id.clone(),
                zone_id: inst.zone_id.clone(),
                private_ipv4: eni.primary_ip.clone(),
                eipv4: public.unwrap_or_default(),
                mac: eni.mac.clone(),
                vpc_id: vpc_id.to_owned(),
                vswitch_id: eni.vswitch_id.clone(),
                vpc_cidr_block: vpc_cidr.clone(),
                vswitch_cidr_block: vsw_cidr,
                image_id: inst.image_id.clone(),
                instance_type: inst.instance_type.clone(),
                owner_account_id: inst.account_id.to_string(),
                serial_number: inst.serial_number.clone(),
                gateway: gw,
                public_keys: key_pair::public_keys_of(tx, &inst)?,
                // The store keeps UserData as the API took it: base64 (validated on the way in).
                user_data: base64::engine::general_purpose::STANDARD
                    .decode(inst.user_data.trim())
                    .ok()
                    .filter(|u| !u.is_empty()),
            },
        );
    }
    plan.security = world(tx, vpc_id)?;
    Ok(Some(plan))
}

/// The security-group world of one VPC: its instances' interfaces, the groups they are in,
/// and the groups those groups' rules name as peers (a group peer matches its members here).
/// The data plane is compiled from it, and `feitian security-group evaluate` asks the pure
/// evaluator about it.
pub fn world(tx: &Transaction<'_>, vpc_id: &str) -> Result<World, MetaError> {
    let mut world = World::new();
    let mut group_ids = BTreeSet::new();
    for eni in network_interface::enis_of_vpc(tx, vpc_id)?.into_iter().filter(|e| !e.instance_id.is_empty()) {
        let Ok(ip) = eni.primary_ip.parse::<Ipv4Addr>() else { continue };
        let groups = security_group::groups_of_eni(tx, &eni.id)?;
        group_ids.extend(groups.iter().cloned());
        world.add_nic(Nic { id: eni.id.clone(), owner: eni.account_id.to_string(), ip, groups });
    }
    let mut pending: Vec<String> = group_ids.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    while let Some(gid) = pending.pop() {
        if !seen.insert(gid.clone()) {
            continue;
        }
        let Some(g) = security_group::get_security_group_any_owner(tx, &gid)? else { continue };
        if let Some(name) = resource::account_name(tx, g.account_id)? {
            names.insert(name, g.account_id.to_string());
        }
        let mut rules = Vec::new();
        for r in security_group::rules_of(tx, &gid)? {
            match r.rule() {
                Ok(rule) => {
                    if let Peer::Group { group_id, .. } = &rule.peer {
                        pending.push(group_id.clone());
                    }
                    rules.push(rule);
                }
                Err(e) => {
                    tracing::error!(rule = %r.id, error = %e, "a stored rule does not validate; it is left out of the data plane")
                }
            }
        }
        let inner_policy = if g.inner_policy.eq_ignore_ascii_case("drop") { Policy::Drop } else { Policy::Accept };
        world.add_group(Group { id: g.id.clone(), owner: g.account_id.to_string(), inner_policy, rules });
    }
    // A cross-account rule may name the owner by account name; the world knows accounts by id.
    for g in world.groups.values_mut() {
        for r in &mut g.rules {
            if let Peer::Group { owner_account, owner_id, .. } = &mut r.peer {
                if let Some(id) = owner_account.as_ref().and_then(|n| names.get(n)) {
                    *owner_id = Some(id.clone());
                    *owner_account = None;
                }
            }
        }
    }
    Ok(world)
}
