//! DescribeAccountAttributes: what the account may create in a region, and what it uses.
//!
//! The answer's shape is the SDK's `DescribeAccountAttributesResponseBody`:
//! `AccountAttributeItems.AccountAttributeItem[]`, each an `AttributeName` with
//! `AttributeValues.ValueItem[]` (`Value` a string, `Count` a number). feitian answers the
//! attributes it has a true value for: the quotas it enforces (their limits are the
//! account's, [`feitian_meta::quota`]), what the account uses of them, the network type it
//! offers, and the instance types it sells. `AttributeName.N` (N from 1 to 8) picks some;
//! names feitian has no value for (dedicated hosts, Cloud Assistant, spot instances) are left
//! out of the answer, as the real service leaves out what does not apply.

use crate::{instance_types, Ecs};
use feitian_api::region::{require_region, zone};
use feitian_api::{ApiError, Ctx, Params};
use feitian_meta::instance;
use feitian_meta::quota::{self, Quota};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAccountAttributesResponse {
    pub account_attribute_items: AccountAttributeItems,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountAttributeItems {
    pub account_attribute_item: Vec<AccountAttributeItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountAttributeItem {
    pub attribute_name: String,
    pub attribute_values: AttributeValues,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeValues {
    pub value_item: Vec<ValueItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValueItem {
    /// A number as a string for the counted attributes.
    pub value: String,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_charge_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// The attributes feitian answers, in the order of an unfiltered answer.
const ANSWERED: &[&str] = &[
    "instance-network-type",
    "max-security-groups",
    "max-postpaid-instance-vcpu-count",
    "used-postpaid-instance-vcpu-count",
    "supported-postpay-instance-types",
    "real-name-authentication",
];

/// The one name the API documents in two spellings (the request's list says `postpaid`, the
/// answer's value list `postpay`): both are taken, and answered under the name asked.
fn canonical(name: &str) -> &str {
    match name {
        "supported-postpaid-instance-types" => "supported-postpay-instance-types",
        n => n,
    }
}

fn one(value: impl ToString) -> Vec<ValueItem> {
    vec![ValueItem {
        value: value.to_string(),
        count: 1,
        instance_type: None,
        instance_charge_type: None,
        zone_id: None,
    }]
}

impl Ecs {
    pub async fn describe_account_attributes(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeAccountAttributesResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let zone_id = zone(&region, &p, false)?.map(|z| z.id.clone());
        let asked: Vec<String> = p.list("AttributeName", 8)?.into_iter().map(str::to_owned).collect();
        let names: Vec<String> =
            if asked.is_empty() { ANSWERED.iter().map(|s| s.to_string()).collect() } else { asked };
        let account = ctx.caller.account_id;
        let defaults = self.store.quotas();
        let (groups, vcpus, (_, used_vcpus)) = self
            .store
            .read_async(move |tx| {
                Ok::<_, ApiError>((
                    quota::limit(tx, &defaults, account, Quota::SecurityGroups)?,
                    quota::limit(tx, &defaults, account, Quota::Vcpus)?,
                    instance::account_usage(tx, account, &region.id)?,
                ))
            })
            .await?;
        let mut items = Vec::new();
        for name in names {
            let values = match canonical(&name) {
                "instance-network-type" => one("vpc"),
                "max-security-groups" => one(groups),
                "max-postpaid-instance-vcpu-count" => one(vcpus),
                "used-postpaid-instance-vcpu-count" => one(used_vcpus),
                "supported-postpay-instance-types" => instance_types::CATALOG
                    .iter()
                    .map(|t| ValueItem {
                        value: t.id.to_owned(),
                        count: 1,
                        instance_type: Some(t.id.to_owned()),
                        instance_charge_type: Some("PostPaid"),
                        zone_id: zone_id.clone(),
                    })
                    .collect(),
                // A private cloud asks nobody for a real-name registration.
                "real-name-authentication" => one("unnecessary"),
                _ => continue,
            };
            if items.iter().any(|i: &AccountAttributeItem| i.attribute_name == name) {
                continue;
            }
            items.push(AccountAttributeItem {
                attribute_name: name,
                attribute_values: AttributeValues { value_item: values },
            });
        }
        Ok(DescribeAccountAttributesResponse {
            account_attribute_items: AccountAttributeItems { account_attribute_item: items },
        })
    }
}
