//! The nouns of OSS that answers and requests share: storage classes, object types, ACLs,
//! redundancy types, and the summaries of buckets, objects, uploads and parts that listings
//! return. Their string forms are the API's own spellings.

use chrono::{DateTime, Utc};

use crate::errors::OssError;

/// A bucket's or object's storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StorageClass {
    #[default]
    Standard,
    /// Infrequent Access.
    IA,
    Archive,
    ColdArchive,
    DeepColdArchive,
}

impl StorageClass {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "Standard",
            StorageClass::IA => "IA",
            StorageClass::Archive => "Archive",
            StorageClass::ColdArchive => "ColdArchive",
            StorageClass::DeepColdArchive => "DeepColdArchive",
        }
    }

    /// Reads the API spelling (case-sensitive, as OSS is); `InvalidArgument` otherwise.
    pub fn parse(s: &str) -> Result<Self, OssError> {
        match s {
            "Standard" => Ok(StorageClass::Standard),
            "IA" => Ok(StorageClass::IA),
            "Archive" => Ok(StorageClass::Archive),
            "ColdArchive" => Ok(StorageClass::ColdArchive),
            "DeepColdArchive" => Ok(StorageClass::DeepColdArchive),
            _ => Err(OssError::invalid_argument("StorageClass", s, "The storage class you specified is not valid.")),
        }
    }
}

/// How an object was written (`x-oss-object-type`, `<Type>` in listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// PutObject, CopyObject.
    Normal,
    /// CompleteMultipartUpload.
    Multipart,
    /// AppendObject.
    Appendable,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Normal => "Normal",
            ObjectType::Multipart => "Multipart",
            ObjectType::Appendable => "Appendable",
        }
    }

    /// Reads the API spelling (as stored); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Normal" => Some(ObjectType::Normal),
            "Multipart" => Some(ObjectType::Multipart),
            "Appendable" => Some(ObjectType::Appendable),
            _ => None,
        }
    }
}

/// A canned ACL (`x-oss-acl`, `<Grant>`). Objects also have `default`: inherit the bucket's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acl {
    #[default]
    Private,
    PublicRead,
    PublicReadWrite,
    /// Objects only: the bucket's ACL applies.
    Default,
}

impl Acl {
    pub fn as_str(self) -> &'static str {
        match self {
            Acl::Private => "private",
            Acl::PublicRead => "public-read",
            Acl::PublicReadWrite => "public-read-write",
            Acl::Default => "default",
        }
    }

    /// Reads a bucket ACL; `default` is not one (`InvalidArgument`).
    pub fn parse_bucket(s: &str) -> Result<Self, OssError> {
        match Self::parse_object(s)? {
            Acl::Default => Err(Self::invalid(s)),
            acl => Ok(acl),
        }
    }

    /// Reads an object ACL.
    pub fn parse_object(s: &str) -> Result<Self, OssError> {
        match s {
            "private" => Ok(Acl::Private),
            "public-read" => Ok(Acl::PublicRead),
            "public-read-write" => Ok(Acl::PublicReadWrite),
            "default" => Ok(Acl::Default),
            _ => Err(Self::invalid(s)),
        }
    }

    fn invalid(s: &str) -> OssError {
        OssError::invalid_argument("x-oss-acl", s, "no such bucket access control exists")
    }
}

/// Locally or zone-redundant storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DataRedundancyType {
    #[default]
    LRS,
    ZRS,
}

impl DataRedundancyType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataRedundancyType::LRS => "LRS",
            DataRedundancyType::ZRS => "ZRS",
        }
    }

    pub fn parse(s: &str) -> Result<Self, OssError> {
        match s {
            "LRS" => Ok(DataRedundancyType::LRS),
            "ZRS" => Ok(DataRedundancyType::ZRS),
            _ => Err(OssError::invalid_argument(
                "DataRedundancyType",
                s,
                "The data redundancy type you specified is not valid.",
            )),
        }
    }
}

/// The owner shown in listings and ACLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
}

/// One bucket as ListBuckets shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSummary {
    pub name: String,
    pub creation_date: DateTime<Utc>,
    /// `oss-cn-hangzhou`.
    pub location: String,
    /// `cn-hangzhou`.
    pub region: String,
    pub extranet_endpoint: String,
    pub intranet_endpoint: String,
    pub storage_class: StorageClass,
}

/// One object as ListObjects shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub last_modified: DateTime<Utc>,
    /// As served, with its quotes.
    pub etag: String,
    pub size: u64,
    pub object_type: ObjectType,
    pub storage_class: StorageClass,
}

/// One multipart upload in progress, as ListMultipartUploads shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    pub key: String,
    pub upload_id: String,
    pub initiated: DateTime<Utc>,
}

/// One uploaded part, as ListParts shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSummary {
    pub part_number: u32,
    pub last_modified: DateTime<Utc>,
    /// As served, with its quotes.
    pub etag: String,
    pub size: u64,
    pub crc64: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for c in [
            StorageClass::Standard,
            StorageClass::IA,
            StorageClass::Archive,
            StorageClass::ColdArchive,
            StorageClass::DeepColdArchive,
        ] {
            assert_eq!(StorageClass::parse(c.as_str()), Ok(c));
        }
        assert_eq!(StorageClass::parse("standard").unwrap_err().code, "InvalidArgument");
        for a in [Acl::Private, Acl::PublicRead, Acl::PublicReadWrite, Acl::Default] {
            assert_eq!(Acl::parse_object(a.as_str()), Ok(a));
        }
        assert_eq!(Acl::parse_bucket("default").unwrap_err().code, "InvalidArgument");
        assert_eq!(Acl::parse_bucket("public-read"), Ok(Acl::PublicRead));
        assert_eq!(DataRedundancyType::parse("ZRS"), Ok(DataRedundancyType::ZRS));
        assert!(DataRedundancyType::parse("XRS").is_err());
        assert_eq!(ObjectType::Appendable.as_str(), "Appendable");
        for t in [ObjectType::Normal, ObjectType::Multipart, ObjectType::Appendable] {
            assert_eq!(ObjectType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ObjectType::parse("normal"), None);
    }
}
