//! Tags across resource types (ECS 2014-05-26): TagResources, UntagResources,
//! ListTagResources. Create calls take `Tag.N` too; every tag lives in one table keyed by the
//! resource's id (key pairs, which are named, by a derived id).

use crate::Ecs;
use feitian_api::answers::Empty;
use feitian_api::region::require_region;
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::{key_pair, resource, tag, Transaction};
use serde::Serialize;
use std::sync::Arc;

/// Tags per resource, the real limit.
pub const MAX_TAGS_PER_RESOURCE: u64 = 20;

/// The API's resource type name → the store's kind.
fn kind(resource_type: &str) -> Result<&'static str, ApiError> {
    Ok(match resource_type {
        "instance" => "instance",
        "disk" => "disk",
        "snapshot" => "snapshot",
        "image" => "image",
        "snapshotpolicy" => crate::auto_snapshot_policies::KIND,
        "securitygroup" => "security_group",
        "eni" => "eni",
        "keypair" => "key_pair",
        other => {
            return Err(ApiError::invalid(
                "InvalidResourceType.NotFound",
                format!(
                    "The ResourceType {other:?} is not supported: use instance, disk, snapshot, image, snapshotpolicy, securitygroup, eni or keypair."
                ),
            ))
        }
    })
}

fn resource_ids(p: &Params, max: usize) -> Result<Vec<String>, ApiError> {
    Ok(p.list("ResourceId", max)?.into_iter().map(str::to_owned).collect())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagResourcesResponse {
    pub tag_resources: TagResources,
    /// "" on the last page.
    pub next_token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResources {
    pub tag_resource: Vec<TagResource>,
}

/// One tag of one resource.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResource {
    pub resource_id: String,
    pub resource_type: String,
    pub tag_key: String,
    pub tag_value: String,
}

impl Ecs {
    /// The store id of a resource of this account, or `InvalidResourceId.NotFound`.
    fn tag_target(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        region: &str,
        kind: &str,
        id: &str,
    ) -> Result<String, ApiError> {
        let store_id = if kind == "key_pair" { crate::key_pairs::tag_id(account, region, id) } else { id.to_owned() };
        if kind == "key_pair" {
            if key_pair::get_key_pair(tx, account, region, id)?.is_none() {
                return Err(ApiError::new(
                    404,
                    "InvalidResourceId.NotFound",
                    format!("The resource {id} does not exist."),
                ));
            }
            if self.store.scope(account).get(tx, kind, &store_id)?.is_none() {
                let at = feitian_api::service::now();
                resource::register_named(tx, &store_id, account, kind, region, &at)?;
            }
            return Ok(store_id);
        }
        match self.store.scope(account).get(tx, kind, id)? {
            Some(r) if r.region_id == region => Ok(store_id),
            _ => Err(ApiError::new(404, "InvalidResourceId.NotFound", format!("The resource {id} does not exist."))),
        }
    }

    pub async fn tag_resources(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let kind = kind(p.required_str("ResourceType")?)?;
        let ids = resource_ids(&p, 50)?;
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("ResourceId.N"));
        }
        let tags = validate::tags(&p)?;
        if tags.is_empty() {
            return Err(ApiError::missing_parameter("Tag.N.Key"));
        }
        self.set_tags_on(ctx, region, kind, ids, tags).await
    }

    /// AddTags, the older single-resource form Packer 1.6.6 sends (`ResourceType`,
    /// `ResourceId`, `Tag.N.Key/Value`): as TagResources on one resource.
    pub async fn add_tags(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let kind = kind(p.required_str("ResourceType")?)?;
        let id = p.required_str("ResourceId")?.to_owned();
        let tags = validate::tags(&p)?;
        if tags.is_empty() {
            return Err(ApiError::missing_parameter("Tag.N.Key"));
        }
        self.set_tags_on(ctx, region, kind, vec![id], tags).await
    }

    /// RemoveTags, AddTags' counterpart: removes the `Tag.N` keys given (with a value, only
    /// where it matches), or every tag when none is given.
    pub async fn remove_tags(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let kind = kind(p.required_str("ResourceType")?)?;
        let id = p.required_str("ResourceId")?.to_owned();
        let wanted = validate::tag_filter(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let target = me.tag_target(tx, ctx.caller.account_id, &region, kind, &id)?;
                let held = tag::tags_of(tx, &[target.as_str()])?.remove(&target).unwrap_or_default();
                let keys: Vec<String> = held
                    .into_iter()
                    .filter(|(k, v)| {
                        wanted.is_empty()
                            || wanted.iter().any(|(wk, wv)| wk == k && wv.as_deref().is_none_or(|wv| wv == v))
                    })
                    .map(|(k, _)| k)
                    .collect();
                tag::remove_tags(tx, &target, &keys)?;
                Ok(Empty {})
            })
            .await
    }

    /// Sets `tags` on each of `ids` (of `kind`, the caller's, in `region`), keeping each
    /// within [`MAX_TAGS_PER_RESOURCE`].
    async fn set_tags_on(
        self: Arc<Self>,
        ctx: Ctx,
        region: String,
        kind: &'static str,
        ids: Vec<String>,
        tags: Vec<(String, String)>,
    ) -> Result<Empty, ApiError> {
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                for id in &ids {
                    let target = me.tag_target(tx, ctx.caller.account_id, &region, kind, id)?;
                    tag::set_tags(tx, &target, &tags)?;
                    if tag::tag_count(tx, &target)? > MAX_TAGS_PER_RESOURCE {
                        return Err(ApiError::invalid("InvalidTagCount", "A resource holds at most 20 tags.")
                            .recommend(format!(
                                "{id} would have more than {MAX_TAGS_PER_RESOURCE} tags; remove some first"
                            )));
                    }
                }
                Ok(Empty {})
            })
            .await
    }

    pub async fn untag_resources(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let kind = kind(p.required_str("ResourceType")?)?;
        let ids = resource_ids(&p, 50)?;
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("ResourceId.N"));
        }
        let keys: Vec<String> = p.list("TagKey", 20)?.into_iter().map(str::to_owned).collect();
        let all = p.opt_bool("All")?.unwrap_or(false);
        if keys.is_empty() && !all {
            return Err(ApiError::missing_parameter("TagKey.N").recommend("name the keys to remove, or pass All=true"));
        }
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                for id in &ids {
                    let target = me.tag_target(tx, ctx.caller.account_id, &region, kind, id)?;
                    let keys = if keys.is_empty() {
                        tag::tags_of(tx, &[target.as_str()])?
                            .remove(&target)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, _)| k)
                            .collect()
                    } else {
                        keys.clone()
                    };
                    tag::remove_tags(tx, &target, &keys)?;
                }
                Ok(Empty {})
            })
            .await
    }

    pub async fn list_tag_resources(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<ListTagResourcesResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let rtype = p.required_str("ResourceType")?.to_owned();
        let kind = kind(&rtype)?;
        let ids = resource_ids(&p, 50)?;
        let filter = validate::tag_filter(&p)?;
        if ids.is_empty() && filter.is_empty() {
            return Err(ApiError::missing_parameter("ResourceId.N").recommend("name resources, or filter by Tag.N"));
        }
        let offset: usize = feitian_api::paging::offset_token(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let targets: Vec<(String, String)> = if ids.is_empty() {
                    let (rows, _) = me.store.scope(account).list(tx, kind, &region, 0, u64::MAX >> 1)?;
                    rows.into_iter().map(|r| (public_id(&r.id), r.id)).collect()
                } else {
                    let mut v = Vec::new();
                    for id in &ids {
                        match me.tag_target(tx, account, &region, kind, id) {
                            Ok(t) => v.push((id.clone(), t)),
                            Err(e) if e.status == 404 => {}
                            Err(e) => return Err(e),
                        }
                    }
                    v
                };
                let mut out = Vec::new();
                for (public, store_id) in &targets {
                    let tags = tag::tags_of(tx, &[store_id.as_str()])?.remove(store_id).unwrap_or_default();
                    let matches = filter
                        .iter()
                        .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && v.as_deref().is_none_or(|v| v == tv)));
                    if !matches {
                        continue;
                    }
                    for (tag_key, tag_value) in tags {
                        out.push(TagResource {
                            resource_id: public.clone(),
                            resource_type: rtype.clone(),
                            tag_key,
                            tag_value,
                        });
                    }
                }
                const PAGE: usize = 50;
                let next = feitian_api::paging::next_offset_token(
                    offset,
                    PAGE.min(out.len().saturating_sub(offset)),
                    out.len(),
                );
                let tag_resource = out.into_iter().skip(offset).take(PAGE).collect();
                Ok(ListTagResourcesResponse { tag_resources: TagResources { tag_resource }, next_token: next })
            })
            .await
    }
}

/// The id clients use for a stored resource id (key pairs are stored as `kp:acct:region:name`).
fn public_id(store_id: &str) -> String {
    match store_id.strip_prefix("kp:") {
        Some(rest) => rest.splitn(3, ':').nth(2).unwrap_or(rest).to_owned(),
        None => store_id.to_owned(),
    }
}
