//! Images (ECS 2014-05-26): the public image catalog, and how DescribeImages lists images
//! (public ones beside custom ones, `image_actions.rs`) and filters them.

use crate::answer::Tags;
use feitian_api::paging::{Page, PageInfo};
use feitian_api::{validate, ApiError, Params};
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
    pub image_id: String,
    pub image_name: String,
    pub image_family: String,
    pub image_version: String,
    pub image_owner_alias: String,
    /// The owner's account id (0 for public images).
    pub image_owner_id: u64,
    pub description: String,
    #[serde(rename = "OSName")]
    pub os_name: String,
    #[serde(rename = "OSNameEn")]
    pub os_name_en: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub platform: String,
    pub architecture: String,
    pub size: u32,
    pub status: String,
    pub progress: String,
    pub usage: String,
    pub usable: bool,
    pub is_public: bool,
    pub is_copied: bool,
    pub is_self_shared: String,
    pub is_subscribed: bool,
    pub is_support_cloudinit: bool,
    pub is_support_io_optimized: bool,
    pub login_as_non_root_supported: bool,
    pub boot_mode: String,
    pub creation_time: String,
    pub product_code: String,
    pub resource_group_id: String,
    pub supplier_name: String,
    pub license_type: String,
    pub features: Features,
    pub disk_device_mappings: DiskDeviceMappings,
    pub tags: Tags<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Features {
    pub nvme_support: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskDeviceMappings {
    pub disk_device_mapping: Vec<DiskDeviceMapping>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskDeviceMapping {
    pub device: String,
    /// GiB, as a string (the API's type).
    pub size: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub snapshot_id: String,
    pub format: String,
    #[serde(rename = "ImportOSSBucket")]
    pub import_oss_bucket: String,
    #[serde(rename = "ImportOSSObject")]
    pub import_oss_object: String,
    pub progress: String,
    pub remain_time: u32,
    pub encrypted: bool,
}

impl From<&PublicImage> for Image {
    fn from(i: &PublicImage) -> Self {
        Image {
            image_id: i.id.into(),
            image_name: i.name.into(),
            image_family: i.family.into(),
            image_version: i.version.into(),
            image_owner_alias: "system".into(),
            image_owner_id: 0,
            description: i.description.into(),
            os_name: i.os_name.into(),
            os_name_en: i.os_name_en.into(),
            os_type: "linux".into(),
            platform: i.platform.into(),
            architecture: "x86_64".into(),
            size: i.size_gib,
            status: "Available".into(),
            progress: "100%".into(),
            usage: "instance".into(),
            usable: true,
            is_public: true,
            is_copied: false,
            is_self_shared: String::new(),
            is_subscribed: false,
            is_support_cloudinit: true,
            is_support_io_optimized: true,
            login_as_non_root_supported: false,
            boot_mode: "BIOS".into(),
            creation_time: i.created.into(),
            product_code: String::new(),
            resource_group_id: String::new(),
            supplier_name: String::new(),
            license_type: String::new(),
            features: Features { nvme_support: "unsupported".into() },
            disk_device_mappings: DiskDeviceMappings {
                disk_device_mapping: vec![DiskDeviceMapping {
                    device: "/dev/xvda".into(),
                    size: i.size_gib.to_string(),
                    kind: "system".into(),
                    snapshot_id: String::new(),
                    format: String::new(),
                    import_oss_bucket: String::new(),
                    import_oss_object: String::new(),
                    progress: "100%".into(),
                    remain_time: 0,
                    encrypted: false,
                }],
            },
            tags: Tags { tag: vec![] },
        }
    }
}

/// What a `DescribeImages` call asks for (checked before the store is read).
pub struct Query {
    ids: Vec<String>,
    owner: Option<String>,
    statuses: Vec<String>,
    name: Option<String>,
    os_type: Option<String>,
    architecture: Option<String>,
    family: Option<String>,
    usage: Option<String>,
    is_public: Option<bool>,
    snapshot_id: Option<String>,
    tags: Vec<(String, Option<String>)>,
    page: Page,
}

impl Query {
    pub fn from_params(p: &Params) -> Result<Query, ApiError> {
        let page = Page::from_params(p, 10, 100)?;
        let ids = validate::id_list(p, "ImageId", 100)?;
        let owner = p.opt_str("ImageOwnerAlias").filter(|v| !v.is_empty());
        if let Some(o) = owner {
            if !["system", "self", "others", "marketplace"].contains(&o) {
                return Err(ApiError::invalid_parameter(
                    "ImageOwnerAlias",
                    format!("{o:?} is not system, self, others or marketplace"),
                ));
            }
        }
        let status = p.opt_str("Status").filter(|v| !v.is_empty()).unwrap_or("Available");
        let mut statuses = Vec::new();
        for s in status.split(',').map(str::trim) {
            if s == "ALL" || s == "All" {
                statuses.clear();
                break;
            }
            if !["Creating", "Waiting", "Available", "UnAvailable", "CreateFailed", "Deprecated"].contains(&s) {
                return Err(ApiError::invalid_parameter("Status", format!("{s:?} is not an image status")));
            }
            statuses.push(s.to_owned());
        }
        if let Some(t) = p.opt_str("InstanceType") {
            if crate::instance_types::find(t).is_none() {
                return Err(crate::instance_types::not_found(t));
            }
        }
        let usage = p.opt_str("Usage").filter(|v| !v.is_empty());
        if let Some(u) = usage {
            if u != "instance" && u != "none" {
                return Err(ApiError::invalid_parameter("Usage", "use instance or none"));
            }
        }
        let q = Query {
            ids,
            owner: owner.map(str::to_owned),
            statuses,
            name: p.opt_str("ImageName").filter(|v| !v.is_empty()).map(str::to_owned),
            os_type: p.opt_str("OSType").filter(|v| !v.is_empty()).map(str::to_owned),
            architecture: p.opt_str("Architecture").filter(|v| !v.is_empty()).map(str::to_owned),
            family: p.opt_str("ImageFamily").filter(|v| !v.is_empty()).map(str::to_owned),
            usage: usage.map(str::to_owned),
            is_public: p.opt_bool("IsPublic")?,
            snapshot_id: p.opt_str("SnapshotId").filter(|v| !v.is_empty()).map(str::to_owned),
            tags: validate::tag_filter(p)?,
            page,
        };
        validate::dry_run(p)?;
        Ok(q)
    }

    /// Whether an image (as listed) is asked for.
    pub fn matches(&self, i: &Image) -> bool {
        (self.ids.is_empty() || self.ids.contains(&i.image_id))
            && self.owner.as_deref().is_none_or(|o| o == i.image_owner_alias)
            && self.is_public.is_none_or(|b| b == i.is_public)
            && (self.statuses.is_empty() || self.statuses.contains(&i.status))
            && self.name.as_deref().is_none_or(|n| name_matches(n, &i.image_name))
            && self.os_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(&i.os_type))
            && self.architecture.as_deref().is_none_or(|a| a == i.architecture)
            && self.family.as_deref().is_none_or(|f| f == i.image_family)
            && self.usage.as_deref().is_none_or(|u| u == i.usage)
            && self
                .snapshot_id
                .as_deref()
                .is_none_or(|sid| i.disk_device_mappings.disk_device_mapping.iter().any(|m| m.snapshot_id == sid))
            && self.tags.iter().all(|(k, v)| {
                i.tags.tag.iter().any(|t| t.tag_key == *k && v.as_deref().is_none_or(|v| v == t.tag_value))
            })
    }

    /// One page of what matched, and the response.
    pub fn answer(&self, region_id: &str, listed: Vec<Image>) -> DescribeImagesResponse {
        let found: Vec<Image> = listed.into_iter().filter(|i| self.matches(i)).collect();
        let total = found.len() as u64;
        let image = found.into_iter().skip(self.page.offset() as usize).take(self.page.limit() as usize).collect();
        DescribeImagesResponse {
            region_id: region_id.to_owned(),
            images: Images { image },
            page: self.page.info(total),
        }
    }
}

/// `ImageName`: the exact name, or a pattern where `*` stands for any run of characters (the
/// API's fuzzy search; an exact name never matches a longer one, which Packer's check that
/// no image of its name exists relies on).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// What DescribeImages shows of a custom image, for the account that asks.
pub struct CustomListing<'a> {
    pub image: &'a feitian_meta::image::Image,
    pub disks: &'a [feitian_meta::image::ImageDisk],
    pub viewer: u64,
    pub progress: i64,
    pub in_use: bool,
    pub shared: bool,
    pub tags: &'a [(String, String)],
}

impl From<CustomListing<'_>> for Image {
    fn from(c: CustomListing<'_>) -> Self {
        let i = c.image;
        let own = i.account_id == c.viewer;
        let creating = i.status == feitian_meta::image::ImageStatus::Creating;
        let progress = if creating { format!("{}%", c.progress.clamp(0, 99)) } else { "100%".into() };
        Image {
            image_id: i.id.clone(),
            image_name: i.name.clone(),
            image_family: i.family.clone(),
            image_version: i.version.clone(),
            image_owner_alias: if own { "self" } else { "others" }.into(),
            image_owner_id: i.account_id,
            description: i.description.clone(),
            os_name: i.os_name.clone(),
            os_name_en: i.os_name_en.clone(),
            os_type: i.os_type.clone(),
            platform: i.platform.clone(),
            architecture: i.architecture.clone(),
            size: u32::try_from(i.size_gib.max(0)).unwrap_or(u32::MAX),
            status: i.status.as_str().into(),
            progress: progress.clone(),
            usage: if c.in_use { "instance" } else { "none" }.into(),
            usable: i.status == feitian_meta::image::ImageStatus::Available,
            is_public: false,
            is_copied: !i.copied_from.is_empty(),
            is_self_shared: if !own {
                String::new()
            } else if c.shared {
                "True".into()
            } else {
                "False".into()
            },
            is_subscribed: false,
            is_support_cloudinit: true,
            is_support_io_optimized: true,
            login_as_non_root_supported: false,
            boot_mode: i.boot_mode.clone(),
            creation_time: i.created_at.clone(),
            product_code: String::new(),
            resource_group_id: String::new(),
            supplier_name: String::new(),
            license_type: String::new(),
            features: Features { nvme_support: "unsupported".into() },
            disk_device_mappings: DiskDeviceMappings {
                disk_device_mapping: c
                    .disks
                    .iter()
                    .map(|d| DiskDeviceMapping {
                        device: d.device.clone(),
                        size: d.size_gib.to_string(),
                        kind: d.disk_type.as_str().into(),
                        snapshot_id: d.snapshot_id.clone(),
                        format: String::new(),
                        import_oss_bucket: String::new(),
                        import_oss_object: String::new(),
                        progress: progress.clone(),
                        remain_time: 0,
                        encrypted: false,
                    })
                    .collect(),
            },
            tags: c.tags.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_pattern_matches_exactly_or_by_stars() {
        assert!(name_matches("packer-a", "packer-a"));
        assert!(!name_matches("packer-a", "packer-a-2"), "an exact name never matches a longer one");
        assert!(!name_matches("packer-a", "packer-"));
        assert!(name_matches("packer*", "packer-a-2"));
        assert!(name_matches("*-a-*", "packer-a-2"));
        assert!(name_matches("p*a*2", "packer-a-2"));
        assert!(!name_matches("p*a*3", "packer-a-2"));
        assert!(!name_matches("ab*ba", "aba"), "the ends may not overlap");
        assert!(name_matches("*", ""));
    }

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
        let describe = |pairs: &[(&str, &str)]| {
            let p = Params::from_pairs(pairs.iter().copied()).unwrap();
            let listed = PUBLIC.iter().map(Image::from).collect();
            serde_json::to_value(Query::from_params(&p).unwrap().answer("cn-hangzhou", listed)).unwrap()
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
