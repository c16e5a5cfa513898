//! Who may do what: the bucket owner, and everybody else as the ACLs allow.
//!
//! OSS's canned ACLs (Bucket ACL and Object ACL pages):
//! - The bucket owner may do everything with the bucket and its objects.
//! - Anyone else — another account or an anonymous request — gets what the **effective ACL**
//!   allows: the object's own ACL when it has one, the bucket's when the object's is `default`
//!   (or when the request is about the bucket, or about a key with no object yet).
//!   `public-read` lets them read (GetObject, HeadObject, GetObjectMeta, ListObjects, the
//!   source of a copy, listing uploads and parts); `public-read-write` also lets them write
//!   (PutObject, AppendObject, CopyObject's destination, DeleteObject, multipart uploads).
//!   An object's own `private` overrides a public bucket: it is the owner's only.
//! - Configuration (ACLs, bucket settings) is the owner's alone.
//!
//! Everything else is `AccessDenied` (403).

use crate::errors::OssError;
use crate::model::Acl;

/// A stored ACL back as the enum (`default` included); a value the store could never hold
/// is feitian's fault.
pub(crate) fn stored_acl(s: &str) -> Result<Acl, OssError> {
    Acl::parse_object(s).map_err(|_| OssError::internal_error())
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Configuration: the owner only.
    Owner,
    /// Reading an object or listing a bucket.
    Read,
    /// Creating, changing or deleting an object.
    Write,
}

/// Whether a request may proceed. `object_acl` is the ACL of the object concerned, if the
/// request concerns an existing one.
pub fn allows(is_owner: bool, bucket_acl: Acl, object_acl: Option<Acl>, need: Need) -> bool {
    if is_owner {
        return true;
    }
    let effective = match object_acl {
        Some(Acl::Default) | None => bucket_acl,
        Some(acl) => acl,
    };
    match need {
        Need::Owner => false,
        Need::Read => matches!(effective, Acl::PublicRead | Acl::PublicReadWrite),
        Need::Write => effective == Acl::PublicReadWrite,
    }
}

/// The 403 for a refused request, worded for anonymous and signed callers.
pub fn denied(anonymous: bool) -> OssError {
    OssError::access_denied(if anonymous {
        "You have no right to access this bucket: the request is anonymous and the bucket is not public."
    } else {
        "You have no right to access this bucket."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Acl::*;

    #[test]
    fn the_owner_may_do_everything() {
        for bucket in [Private, PublicRead, PublicReadWrite] {
            for object in [None, Some(Default), Some(Private), Some(PublicRead), Some(PublicReadWrite)] {
                for need in [Need::Owner, Need::Read, Need::Write] {
                    assert!(allows(true, bucket, object, need));
                }
            }
        }
    }

    #[test]
    fn others_get_what_the_effective_acl_allows() {
        let cases = [
            // (bucket, object, read, write)
            (Private, None, false, false),
            (PublicRead, None, true, false),
            (PublicReadWrite, None, true, true),
            (Private, Some(Default), false, false),
            (PublicRead, Some(Default), true, false),
            (PublicReadWrite, Some(Default), true, true),
            // The object's own ACL wins, both ways.
            (Private, Some(PublicRead), true, false),
            (Private, Some(PublicReadWrite), true, true),
            (PublicRead, Some(Private), false, false),
            (PublicReadWrite, Some(Private), false, false),
            (PublicReadWrite, Some(PublicRead), true, false),
        ];
        for (bucket, object, read, write) in cases {
            assert_eq!(allows(false, bucket, object, Need::Read), read, "{bucket:?} {object:?}");
            assert_eq!(allows(false, bucket, object, Need::Write), write, "{bucket:?} {object:?}");
            assert!(!allows(false, bucket, object, Need::Owner));
        }
    }

    #[test]
    fn denial_is_403_access_denied() {
        for anonymous in [true, false] {
            let e = denied(anonymous);
            assert_eq!((e.status, e.code), (403, "AccessDenied"));
        }
        assert!(denied(true).message.contains("anonymous"));
    }
}
