//! What a write was allowed against, carried from its head to its commit.
//!
//! A write is authorized when its head arrives, but takes effect when its transaction
//! commits, which for a streamed body or a multipart upload can be minutes or days later.
//! Meanwhile the bucket may have been deleted and its name taken by another account, or its
//! owner may have made the bucket or the object private. So every write's commit
//! transaction asks again, as [`Grant::recheck`]:
//!
//! - **the same bucket**: the bucket of that name now must be the one authorized, by its
//!   generation (`feitian_meta::bucket::Bucket::generation`), not only its name; otherwise
//!   `NoSuchBucket` (404), as if the request had arrived after the delete;
//! - **still allowed**, for callers who are not the bucket's owner (anonymous ones, other
//!   accounts): the bucket's ACL and the object's own ACL as they are now must allow the
//!   write; otherwise `AccessDenied` (403). The owner may do everything, and a bucket of the
//!   same generation has the same owner, so the owner needs only the first check.
//!
//! The decision follows the real service (docs/decisions.md, "OSS objects"): each request
//! is authorized with the ACLs in force when it is served, and a write is served when it
//! commits.

use feitian_api::auth::Caller;
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::object;
use feitian_meta::Transaction;

use crate::access::{self, stored_acl, Need};
use crate::errors::OssError;

/// The bucket a write was authorized against, and who asked.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    bucket: String,
    generation: i64,
    is_owner: bool,
    anonymous: bool,
}

impl Grant {
    /// The grant of a request by `caller` that was allowed on bucket `b`.
    pub fn new(b: &Bucket, caller: Option<&Caller>) -> Grant {
        Grant {
            bucket: b.name.clone(),
            generation: b.generation,
            is_owner: caller.is_some_and(|c| c.account_id == b.account_id),
            anonymous: caller.is_none(),
        }
    }

    /// In the commit's transaction: the bucket as it is now, if it is the one authorized
    /// (`NoSuchBucket` otherwise) and, for anyone but its owner, its ACL and the ACL of the
    /// object at `key` (if one exists) still allow writing it (`AccessDenied` otherwise).
    pub fn recheck(&self, tx: &Transaction<'_>, key: Option<&str>) -> Result<Bucket, OssError> {
        let b = self.same_bucket(tx)?;
        if self.is_owner {
            return Ok(b);
        }
        let object_acl = match key {
            Some(k) => object::get_object(tx, &self.bucket, k)?.map(|o| stored_acl(&o.acl)).transpose()?,
            None => None,
        };
        if !access::allows(false, stored_acl(&b.acl)?, object_acl, Need::Write) {
            return Err(access::denied(self.anonymous));
        }
        Ok(b)
    }

    /// In the commit's transaction: the bucket, if it is the one authorized (for actions
    /// that are the owner's alone, whose permission the generation carries).
    pub fn same_bucket(&self, tx: &Transaction<'_>) -> Result<Bucket, OssError> {
        match bucket::get_bucket(tx, &self.bucket)? {
            Some(b) if b.generation == self.generation => Ok(b),
            _ => Err(OssError::no_such_bucket(&self.bucket)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feitian_meta::object::{Object, ObjectHeaders};
    use feitian_meta::{MetaError, Store};

    fn store_with_bucket(name: &str) -> Store {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("owner").unwrap();
        let b = Bucket {
            name: name.into(),
            account_id: a.id,
            region_id: "cn-hangzhou".into(),
            acl: "private".into(),
            storage_class: "Standard".into(),
            created_at: "2026-11-22T00:00:00Z".into(),
            generation: 0,
        };
        s.write::<_, MetaError>(|tx| bucket::insert_bucket(tx, &b)).unwrap();
        s
    }

    fn object_row(bucket: &str, key: &str) -> Object {
        Object {
            bucket: bucket.into(),
            key: key.into(),
            size: 0,
            etag: "\"D41D8CD98F00B204E9800998ECF8427E\"".into(),
            crc64: 0,
            object_type: "Normal".into(),
            headers: ObjectHeaders::default(),
            acl: "default".into(),
            storage_class: "Standard".into(),
            last_modified_ms: 0,
        }
    }

    fn load(s: &Store, name: &str) -> Bucket {
        s.read::<_, MetaError>(|tx| bucket::get_bucket(tx, name)).unwrap().unwrap()
    }

    fn caller(account_id: u64) -> Caller {
        Caller { account_id, account_name: "x".into(), access_key_id: "ak".into() }
    }

    fn recheck(s: &Store, g: &Grant, key: Option<&str>) -> Result<Bucket, OssError> {
        s.write(|tx| g.recheck(tx, key))
    }

    #[test]
    fn a_bucket_made_again_under_the_same_name_is_not_the_one_authorized() {
        let s = store_with_bucket("b");
        let old = load(&s, "b");
        let owner = caller(old.account_id);
        let g = Grant::new(&old, Some(&owner));
        assert_eq!(recheck(&s, &g, Some("k")).unwrap().generation, old.generation);

        let other = s.create_account("other").unwrap();
        s.write::<_, MetaError>(|tx| {
            bucket::delete_bucket(tx, "b")?;
            bucket::insert_bucket(tx, &Bucket { account_id: other.id, ..old.clone() })?;
            Ok(())
        })
        .unwrap();
        for result in [recheck(&s, &g, Some("k")), s.write(|tx| g.same_bucket(tx))] {
            let e = result.unwrap_err();
            assert_eq!((e.status, e.code), (404, "NoSuchBucket"));
        }
        // Gone altogether: the same answer.
        s.write::<_, MetaError>(|tx| bucket::delete_bucket(tx, "b")).unwrap();
        assert_eq!(recheck(&s, &g, None).unwrap_err().code, "NoSuchBucket");
    }

    #[test]
    fn others_are_asked_again_under_the_acls_of_now() {
        let s = store_with_bucket("b");
        s.write::<_, MetaError>(|tx| bucket::set_bucket_acl(tx, "b", "public-read-write")).unwrap();
        let b = load(&s, "b");
        let anonymous = Grant::new(&b, None);
        let stranger = caller(b.account_id + 1);
        let signed = Grant::new(&b, Some(&stranger));
        let owner = Grant::new(&b, Some(&caller(b.account_id)));
        for g in [&anonymous, &signed, &owner] {
            assert!(recheck(&s, g, Some("k")).is_ok());
        }

        // The key made private while the bucket stays public-read-write.
        s.write::<_, MetaError>(|tx| {
            object::put_object(tx, &object_row("b", "k"), &[])?;
            object::set_object_acl(tx, "b", "k", "private")?;
            Ok(())
        })
        .unwrap();
        for g in [&anonymous, &signed] {
            let e = recheck(&s, g, Some("k")).unwrap_err();
            assert_eq!((e.status, e.code), (403, "AccessDenied"));
            assert!(recheck(&s, g, Some("another-key")).is_ok());
        }
        assert!(recheck(&s, &owner, Some("k")).is_ok());

        // The bucket made private: no key is writable but by the owner.
        s.write::<_, MetaError>(|tx| bucket::set_bucket_acl(tx, "b", "private")).unwrap();
        for g in [&anonymous, &signed] {
            assert_eq!(recheck(&s, g, Some("another-key")).unwrap_err().code, "AccessDenied");
            assert_eq!(recheck(&s, g, None).unwrap_err().code, "AccessDenied");
        }
        assert!(recheck(&s, &owner, Some("another-key")).is_ok());
    }
}
