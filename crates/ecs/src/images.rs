//! Images (ECS 2014-05-26): the public image catalog. Custom images (from snapshots) come with
//! the storage issues and will be listed here beside these.

use crate::answer::Tags;
use feitian_api::paging::{Page, PageInfo};
use feitian_api::region::require_region;
use feitian_api::{validate, ApiError, Params};
use feitian_region::Catalog;
use serde::Serialize;

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

/// Debian 12 (bookworm), installed from Debian's packages at first start (systemd, OpenSSH,
/// Python 3, sudo, curl; `feitian_compute::image::debian`), named and described as Alibaba
/// Cloud names its own Debian images (`debian_12_…_x64_20G_alibase_DATE.vhd`, OS names with
/// two spaces). Its first boot takes the network, hostname, root's key and UserData from the
/// metadata service and grows the root file system, as cloud-init does on Alibaba's.
pub const DEBIAN_12: PublicImage = PublicImage {
    id: "debian_12_x64_20G_alibase_20261207.vhd",
    name: "debian_12_x64_20G_alibase_20261207.vhd",
    os_name: "Debian  12 64位",
    os_name_en: "Debian  12 64 bit",
    platform: "Debian",
    family: "acs:debian_12_x64",
    version: "12",
    size_gib: 20,
    description: "Debian 12 (bookworm) from Debian's packages: systemd, OpenSSH, Python 3, sudo, curl; \
                  keys and UserData from 100.100.100.200",
    created: "2026-12-07T00:00:00Z",
};

pub const PUBLIC: &[PublicImage] = &[FEITIAN_LINUX, DEBIAN_12];

pub fn find(id: &str) -> Option<&'static PublicImage> {
    PUBLIC.iter().find(|i| i.id == id)
}

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
        .recommend(format!("public images here: {}", PUBLIC.iter().map(|i| i.id).collect::<Vec<_>>().join(", ")))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImagesResponse {
    pub region_id: String,
    pub images: Images,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Images {
    pub image: Vec<Image>,
}

/// One image, as `Images.Image[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub image_id: &'static str,
    pub image_name: &'static str,
    pub image_family: &'static str,
    pub image_version: &'static str,
    pub image_owner_alias: &'static str,
    pub description: &'static str,
    #[serde(rename = "OSName")]
    pub os_name: &'static str,
    #[serde(rename = "OSNameEn")]
    pub os_name_en: &'static str,
    #[serde(rename = "OSType")]
    pub os_type: &'static str,
    pub platform: &'static str,
    pub architecture: &'static str,
    pub size: u32,
    pub status: &'static str,
    pub progress: &'static str,
    pub usage: &'static str,
    pub is_public: bool,
    pub is_copied: bool,
    pub is_self_shared: &'static str,
    pub is_subscribed: bool,
    pub is_support_cloudinit: bool,
    pub is_support_io_optimized: bool,
    pub login_as_non_root_supported: bool,
    pub boot_mode: &'static str,
    pub creation_time: &'static str,
    pub product_code: &'static str,
    pub resource_group_id: &'static str,
    pub supplier_name: &'static str,
    pub license_type: &'static str,
    pub features: Features,
    pub disk_device_mappings: DiskDeviceMappings,
    pub tags: Tags<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Features {
    pub nvme_support: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskDeviceMappings {
    pub disk_device_mapping: Vec<DiskDeviceMapping>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskDeviceMapping {
    pub device: &'static str,
    /// GiB, as a string (the API's type).
    pub size: String,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub snapshot_id: &'static str,
    pub format: &'static str,
    #[serde(rename = "ImportOSSBucket")]
    pub import_oss_bucket: &'static str,
    #[serde(rename = "ImportOSSObject")]
    pub import_oss_object: &'static str,
    pub progress: &'static str,
    pub remain_time: u32,
    pub encrypted: bool,
}

impl From<&PublicImage> for Image {
    fn from(i: &PublicImage) -> Self {
        Image {
            image_id: i.id,
            image_name: i.name,
            image_family: i.family,
            image_version: i.version,
            image_owner_alias: "system",
            description: i.description,
            os_name: i.os_name,
            os_name_en: i.os_name_en,
            os_type: "linux",
            platform: i.platform,
            architecture: "x86_64",
            size: i.size_gib,
            status: "Available",
            progress: "100%",
            usage: "instance",
            is_public: true,
            is_copied: false,
            is_self_shared: "",
            is_subscribed: false,
            is_support_cloudinit: true,
            is_support_io_optimized: true,
            login_as_non_root_supported: false,
            boot_mode: "BIOS",
            creation_time: i.created,
            product_code: "",
            resource_group_id: "",
            supplier_name: "",
            license_type: "",
            features: Features { nvme_support: "unsupported" },
            disk_device_mappings: DiskDeviceMappings {
                disk_device_mapping: vec![DiskDeviceMapping {
                    device: "/dev/xvda",
                    size: i.size_gib.to_string(),
                    kind: "system",
                    snapshot_id: "",
                    format: "",
                    import_oss_bucket: "",
                    import_oss_object: "",
                    progress: "100%",
                    remain_time: 0,
                    encrypted: false,
                }],
            },
            tags: Tags { tag: vec![] },
        }
    }
}

/// `DescribeImages`.
pub fn describe_images(catalog: &Catalog, p: &Params) -> Result<DescribeImagesResponse, ApiError> {
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
    let image =
        found.iter().skip(page.offset() as usize).take(page.limit() as usize).map(|i| Image::from(*i)).collect();
    Ok(DescribeImagesResponse {
        region_id: region.id.clone(),
        images: Images { image },
        page: page.info(found.len() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_image_in_the_types_of_the_model() {
        let v = serde_json::to_value(Image::from(&FEITIAN_LINUX)).unwrap();
        assert_eq!(v["OSType"], json!("linux"));
        assert_eq!(v["Size"], json!(1));
        let mapping = &v["DiskDeviceMappings"]["DiskDeviceMapping"][0];
        // DescribeImagesResponseBodyImagesImageDiskDeviceMappingsDiskDeviceMapping: Size is a
        // string, RemainTime a number, Encrypted a bool.
        assert_eq!(mapping["Size"], json!("1"));
        assert_eq!(mapping["RemainTime"], json!(0));
        assert_eq!(mapping["Encrypted"], json!(false));
        assert_eq!(mapping["ImportOSSBucket"], json!(""));
        assert_eq!(v["Tags"], json!({"Tag": []}));
    }

    #[test]
    fn debian_12_is_listed_as_alibaba_lists_its_debian_images() {
        let catalog = Catalog::default();
        let describe = |pairs: &[(&str, &str)]| {
            let p = Params::from_pairs(pairs.iter().copied()).unwrap();
            serde_json::to_value(describe_images(&catalog, &p).unwrap()).unwrap()
        };
        let v = describe(&[("RegionId", "cn-hangzhou"), ("ImageId", DEBIAN_12.id)]);
        assert_eq!(v["TotalCount"], json!(1));
        let image = &v["Images"]["Image"][0];
        assert_eq!(image["ImageId"], json!("debian_12_x64_20G_alibase_20261207.vhd"));
        assert_eq!(image["Platform"], json!("Debian"));
        assert_eq!(image["OSType"], json!("linux"));
        assert_eq!(image["Architecture"], json!("x86_64"));
        assert_eq!(image["Size"], json!(20));
        assert_eq!(image["OSName"], json!("Debian  12 64位"));
        assert_eq!(image["DiskDeviceMappings"]["DiskDeviceMapping"][0]["Size"], json!("20"));
        // Both public images without a filter; the family filter finds Debian's alone.
        assert_eq!(describe(&[("RegionId", "cn-hangzhou")])["TotalCount"], json!(2));
        let v = describe(&[("RegionId", "cn-hangzhou"), ("ImageFamily", "acs:debian_12_x64")]);
        assert_eq!(v["TotalCount"], json!(1));
        assert_eq!(v["Images"]["Image"][0]["ImageId"], json!(DEBIAN_12.id));
    }
}
