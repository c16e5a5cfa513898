//! Images (ECS 2014-05-26): the public image catalog. Custom images (from snapshots) come with
//! the storage issues and will be listed here beside these.

use feitian_api::paging::Page;
use feitian_api::region::require_region;
use feitian_api::service::page_fields;
use feitian_api::{validate, ApiError, Params};
use feitian_region::Catalog;
use serde_json::{json, Map, Value};

/// One public image.
#[derive(Debug, Clone, Copy)]
pub struct PublicImage {
    pub id: &'static str,
    pub name: &'static str,
    pub os_name: &'static str,
    pub os_name_en: &'static str,
    pub platform: &'static str,
    pub family: &'static str,
    pub version: &'static str,
    pub size_gib: u32,
    pub description: &'static str,
    pub created: &'static str,
}

/// feitian's built-in image: a Debian cloud kernel with a busybox userland and an SSH server,
/// built from Debian packages at setup time (the compute issue builds and boots it; the `sim`
/// driver runs it as a model).
pub const FEITIAN_LINUX: PublicImage = PublicImage {
    id: "feitian_linux_x64_1G_alibase_20261122.vhd",
    name: "feitian_linux_x64_1G_alibase_20261122.vhd",
    os_name: "Feitian Linux 1.0 64位",
    os_name_en: "Feitian Linux 1.0 64 bit",
    platform: "Others Linux",
    family: "acs:feitian_linux_1_x64",
    version: "1.0",
    size_gib: 1,
    description: "Debian 12 cloud kernel, busybox, dropbear SSH; fetches keys and UserData from 100.100.100.200",
    created: "2026-11-22T00:00:00Z",
};

pub const PUBLIC: &[PublicImage] = &[FEITIAN_LINUX];

pub fn find(id: &str) -> Option<&'static PublicImage> {
    PUBLIC.iter().find(|i| i.id == id)
}

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
        .recommend(format!("public images here: {}", PUBLIC.iter().map(|i| i.id).collect::<Vec<_>>().join(", ")))
}

fn image_json(i: &PublicImage) -> Value {
    json!({
        "ImageId": i.id,
        "ImageName": i.name,
        "ImageFamily": i.family,
        "ImageVersion": i.version,
        "ImageOwnerAlias": "system",
        "Description": i.description,
        "OSName": i.os_name,
        "OSNameEn": i.os_name_en,
        "OSType": "linux",
        "Platform": i.platform,
        "Architecture": "x86_64",
        "Size": i.size_gib,
        "Status": "Available",
        "Progress": "100%",
        "Usage": "instance",
        "IsPublic": true,
        "IsCopied": false,
        "IsSelfShared": "",
        "IsSubscribed": false,
        "IsSupportCloudinit": true,
        "IsSupportIoOptimized": true,
        "LoginAsNonRootSupported": false,
        "BootMode": "BIOS",
        "CreationTime": i.created,
        "ProductCode": "",
        "ResourceGroupId": "",
        "SupplierName": "",
        "LicenseType": "",
        "Features": {"NvmeSupport": "unsupported"},
        "DiskDeviceMappings": {"DiskDeviceMapping": [
            {"Device": "/dev/xvda", "Size": i.size_gib.to_string(), "Type": "system", "SnapshotId": "", "Format": "", "ImportOSSBucket": "", "ImportOSSObject": "", "Progress": "100%", "RemainTime": 0, "Encrypted": "false"}
        ]},
        "Tags": {"Tag": []},
    })
}

/// `DescribeImages`.
pub fn describe_images(catalog: &Catalog, p: &Params) -> Result<Value, ApiError> {
    let region = require_region(catalog, p)?;
    let page = Page::from_params(p, 10, 100)?;
    let ids = validate::id_list(p, "ImageId", 100)?;
    let owner = p.opt_str("ImageOwnerAlias");
    if let Some(o) = owner {
        if !["system", "self", "others", "marketplace"].contains(&o) {
            return Err(ApiError::invalid_parameter(
                "ImageOwnerAlias",
                format!("{o:?} is not system, self, others or marketplace"),
            ));
        }
    }
    let status = p.opt_str("Status").unwrap_or("Available");
    for s in status.split(',') {
        if !["Creating", "Waiting", "Available", "UnAvailable", "CreateFailed", "Deprecated"].contains(&s) {
            return Err(ApiError::invalid_parameter("Status", format!("{s:?} is not an image status")));
        }
    }
    if let Some(t) = p.opt_str("InstanceType") {
        if crate::instance_types::find(t).is_none() {
            return Err(crate::instance_types::not_found(t));
        }
    }
    let is_public = p.opt_bool("IsPublic")?;
    validate::dry_run(p)?;
    let matches = |i: &&PublicImage| {
        (ids.is_empty() || ids.iter().any(|x| x == i.id))
            && owner.is_none_or(|o| o == "system")
            && is_public.is_none_or(|b| b)
            && status.split(',').any(|s| s == "Available")
            && p.opt_str("ImageName")
                .is_none_or(|n| n == i.name || (n.ends_with('*') && i.name.starts_with(n.trim_end_matches('*'))))
            && p.opt_str("OSType").is_none_or(|t| t.eq_ignore_ascii_case("linux"))
            && p.opt_str("Architecture").is_none_or(|a| a == "x86_64")
            && p.opt_str("ImageFamily").is_none_or(|f| f == i.family)
            && p.opt_str("Usage").is_none_or(|u| u == "instance" || u == "none")
    };
    let found: Vec<&PublicImage> = PUBLIC.iter().filter(matches).collect();
    let shown: Vec<Value> =
        found.iter().skip(page.offset() as usize).take(page.limit() as usize).map(|i| image_json(i)).collect();
    let mut o = Map::new();
    o.insert("RegionId".into(), json!(region.id));
    o.insert("Images".into(), json!({"Image": shown}));
    page_fields(&mut o, page, found.len() as u64);
    Ok(Value::Object(o))
}
