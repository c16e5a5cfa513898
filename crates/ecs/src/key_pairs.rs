//! SSH key pairs (ECS 2014-05-26): create (feitian generates an RSA key and returns the private
//! half once, never storing it), import, describe, delete, attach to and detach from instances.

use crate::answer::Tags;
use crate::Ecs;
use feitian_api::answers::Empty;
use feitian_api::paging::{Page, PageInfo};
use feitian_api::region::require_region;
use feitian_api::service::now;
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::key_pair::{self, KeyPair};
use feitian_meta::quota::{self, Quota, Quotas};
use feitian_meta::{instance, resource, tag, Transaction};
use md5::{Digest, Md5};
use serde::Serialize;
use std::sync::Arc;

/// The fingerprint the API shows: MD5 of the public key blob, as colon-separated hex (RFC 4716).
pub fn fingerprint(blob: &[u8]) -> String {
    Md5::digest(blob).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses an OpenSSH public key line (`ssh-rsa AAAA… comment`) into its canonical form without
/// the comment, and its fingerprint.
pub fn parse_public_key(body: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::invalid("InvalidPublicKeyBody.Malformed", "The specified public key is not valid.")
            .recommend("give one OpenSSH public key line, like the contents of ~/.ssh/id_rsa.pub")
    };
    let key = ssh_key::PublicKey::from_openssh(body.trim()).map_err(|_| bad())?;
    match key.algorithm() {
        ssh_key::Algorithm::Rsa { .. } | ssh_key::Algorithm::Ed25519 | ssh_key::Algorithm::Ecdsa { .. } => {}
        _ => return Err(bad()),
    }
    let blob = key.to_bytes().map_err(|_| bad())?;
    let mut canonical = key.clone();
    canonical.set_comment("");
    let line = canonical.to_openssh().map_err(|_| bad())?;
    Ok((line.trim().to_owned(), fingerprint(&blob)))
}

/// A new RSA-2048 key pair: (PKCS#1 PEM private key, OpenSSH public key line, fingerprint).
pub fn generate() -> Result<(String, String, String), ApiError> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).map_err(|_| ApiError::internal())?;
    let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|_| ApiError::internal())?.to_string();
    let public = ssh_key::public::RsaPublicKey::try_from(private.to_public_key()).map_err(|_| ApiError::internal())?;
    let key = ssh_key::PublicKey::from(ssh_key::public::KeyData::Rsa(public));
    let blob = key.to_bytes().map_err(|_| ApiError::internal())?;
    let line = key.to_openssh().map_err(|_| ApiError::internal())?;
    Ok((pem, line, fingerprint(&blob)))
}

/// Whether the account may add a key pair named `name` in the region: the name is free and
/// the quota is not reached.
fn room_for_key_pair(
    tx: &Transaction<'_>,
    quotas: &Quotas,
    account: u64,
    region: &str,
    name: &str,
) -> Result<(), ApiError> {
    if key_pair::get_key_pair(tx, account, region, name)?.is_some() {
        return Err(ApiError::invalid("KeyPair.AlreadyExist", "The key pair already exist.")
            .recommend("pick another KeyPairName, or delete the existing pair first"));
    }
    let (_, count) = key_pair::list_key_pairs(tx, account, region, None, None, 0, 0)?;
    if !quota::fits(quota::limit(tx, quotas, account, Quota::KeyPairs)?, count, 1) {
        return Err(ApiError::invalid("QuotaExceed.KeyPair", "The maximum number of key pairs is reached."));
    }
    Ok(())
}

fn key_pair_name(p: &Params) -> Result<String, ApiError> {
    let name = p.required_str("KeyPairName")?;
    let n = name.chars().count();
    let ok = (2..=128).contains(&n)
        && name.chars().next().is_some_and(char::is_alphabetic)
        && name.chars().all(|c| c.is_alphanumeric() || "._-:".contains(c))
        && !name.starts_with("http://")
        && !name.starts_with("https://");
    if !ok {
        return Err(ApiError::invalid(
            "InvalidKeyPairName.Malformed",
            "The specified KeyPairName is not valid: 2 to 128 characters, starting with a letter, then letters, digits, '.', '_', '-' or ':'.",
        ));
    }
    Ok(name.to_owned())
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::new(404, "InvalidKeyPair.NotFound", format!("The specified KeyPair {name:?} does not exist."))
}

/// The resource id under which a key pair's tags are kept.
pub(crate) fn tag_id(account: u64, region: &str, name: &str) -> String {
    format!("kp:{account}:{region}:{name}")
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateKeyPairResponse {
    pub key_pair_name: String,
    pub key_pair_id: String,
    pub key_pair_finger_print: String,
    /// The private key, PKCS#1 PEM: shown once, never stored.
    pub private_key_body: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportKeyPairResponse {
    pub key_pair_name: String,
    pub key_pair_finger_print: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyPairsResponse {
    pub key_pairs: KeyPairs,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyPairs {
    pub key_pair: Vec<KeyPairItem>,
}

/// One key pair, as `KeyPairs.KeyPair[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyPairItem {
    pub key_pair_name: String,
    pub key_pair_finger_print: String,
    pub creation_time: String,
    pub resource_group_id: &'static str,
    pub tags: Tags<String>,
    /// With `IncludePublicKey=true` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// AttachKeyPair's answer, and DetachKeyPair's (`DetachKeyPairResponse`, the same fields).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachKeyPairResponse {
    pub key_pair_name: String,
    /// A number, as a string (the API's type); so is `FailCount`.
    pub total_count: String,
    pub fail_count: String,
    pub results: KeyPairResults,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyPairResults {
    pub result: Vec<KeyPairResult>,
}

/// What happened to one instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyPairResult {
    pub instance_id: String,
    /// "true" or "false", a string (the API's type).
    pub success: &'static str,
    pub code: &'static str,
    pub message: &'static str,
}

impl Ecs {
    fn save_key_pair(&self, tx: &Transaction<'_>, k: &KeyPair, tags: &[(String, String)]) -> Result<(), ApiError> {
        room_for_key_pair(tx, &self.store.quotas(), k.account_id, &k.region_id, &k.name)?;
        key_pair::insert_key_pair(tx, k)?;
        if !tags.is_empty() {
            // Key pairs are named, not numbered: their tags hang off a derived id.
            let id = tag_id(k.account_id, &k.region_id, &k.name);
            resource::register_named(tx, &id, k.account_id, "key_pair", &k.region_id, &k.created_at)?;
            tag::set_tags(tx, &id, tags)?;
        }
        Ok(())
    }

    /// Stores a new key pair of the caller and answers `reply(name, fingerprint)`.
    #[allow(clippy::too_many_arguments)]
    async fn add_key_pair<T: Send + 'static>(
        self: Arc<Self>,
        ctx: Ctx,
        region: String,
        name: String,
        public_key: String,
        fingerprint: String,
        tags: Vec<(String, String)>,
        reply: impl FnOnce(String, String) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let k = KeyPair {
                    account_id: ctx.caller.account_id,
                    region_id: region,
                    name,
                    fingerprint,
                    public_key,
                    created_at: now(),
                };
                me.save_key_pair(tx, &k, &tags)?;
                Ok(reply(k.name, k.fingerprint))
            })
            .await
    }

    pub async fn create_key_pair(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<CreateKeyPairResponse, ApiError> {
        self.create_key_pair_with(ctx, p, generate).await
    }

    /// `CreateKeyPair` with `keygen` making the key (tests count its calls).
    async fn create_key_pair_with(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        keygen: fn() -> Result<(String, String, String), ApiError>,
    ) -> Result<CreateKeyPairResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let name = key_pair_name(&p)?;
        let tags = validate::tags(&p)?;
        // A taken name or a full quota is refused before ~0.2 s of CPU goes into an RSA key
        // (the write checks again: a concurrent create may take the name meanwhile).
        let (account, r, n, quotas) = (ctx.caller.account_id, region.clone(), name.clone(), self.store.quotas());
        self.store.read_async(move |tx| room_for_key_pair(tx, &quotas, account, &r, &n)).await?;
        // RSA generation takes a while: off the async workers.
        let (pem, public, fp) = tokio::task::spawn_blocking(keygen).await.map_err(|e| {
            tracing::error!(error = %e, "key generation failed");
            ApiError::internal()
        })??;
        self.add_key_pair(ctx, region, name, public, fp, tags, move |name, fp| CreateKeyPairResponse {
            key_pair_id: name.clone(),
            key_pair_name: name,
            key_pair_finger_print: fp,
            private_key_body: pem,
        })
        .await
    }

    pub async fn import_key_pair(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<ImportKeyPairResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let name = key_pair_name(&p)?;
        let (public, fp) = parse_public_key(p.required_str("PublicKeyBody")?)?;
        let tags = validate::tags(&p)?;
        self.add_key_pair(ctx, region, name, public, fp, tags, |key_pair_name, key_pair_finger_print| {
            ImportKeyPairResponse { key_pair_name, key_pair_finger_print }
        })
        .await
    }

    pub async fn describe_key_pairs(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeKeyPairsResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let page = Page::from_params(&p, 10, 50)?;
        let name = p.opt_str("KeyPairName").map(str::to_owned);
        let fp = p.opt_str("KeyPairFingerPrint").map(str::to_owned);
        let with_key = p.opt_bool("IncludePublicKey")?.unwrap_or(false);
        let tags = validate::tag_filter(&p)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let (rows, _) =
                    key_pair::list_key_pairs(tx, account, &region, name.as_deref(), fp.as_deref(), 0, u64::MAX >> 1)?;
                let mut items = Vec::new();
                for k in rows {
                    let id = tag_id(account, &region, &k.name);
                    let mine = tag::tags_of(tx, &[id.as_str()])?.remove(&id).unwrap_or_default();
                    let all_match = tags
                        .iter()
                        .all(|(tk, tv)| mine.iter().any(|(k, v)| k == tk && tv.as_deref().is_none_or(|tv| tv == v)));
                    if !all_match {
                        continue;
                    }
                    items.push(KeyPairItem {
                        key_pair_name: k.name,
                        key_pair_finger_print: k.fingerprint,
                        creation_time: k.created_at,
                        resource_group_id: "",
                        tags: mine.into_iter().collect(),
                        public_key: with_key.then_some(k.public_key),
                    });
                }
                let total = items.len() as u64;
                let key_pair = items.into_iter().skip(page.offset() as usize).take(page.limit() as usize).collect();
                Ok(DescribeKeyPairsResponse { key_pairs: KeyPairs { key_pair }, page: page.info(total) })
            })
            .await
    }

    pub async fn delete_key_pairs(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let names = validate::id_list(&p, "KeyPairNames", 100)?;
        if names.is_empty() {
            return Err(ApiError::missing_parameter("KeyPairNames"));
        }
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                for n in &names {
                    if key_pair::get_key_pair(tx, account, &region, n)?.is_none() {
                        return Err(not_found(n));
                    }
                }
                for n in &names {
                    key_pair::delete_key_pair(tx, account, &region, n)?;
                    resource::forget_resource(tx, &tag_id(account, &region, n))?;
                    // Instances keep their authorized key (as on the real cloud) but lose the name.
                    instance::forget_key_pair_on_instances(tx, account, &region, n)?;
                }
                Ok(Empty {})
            })
            .await
    }

    /// AttachKeyPair / DetachKeyPair: per-instance results, as the real API gives them.
    pub async fn attach_key_pair(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
        attach: bool,
    ) -> Result<AttachKeyPairResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let name = p.required_str("KeyPairName")?.to_owned();
        let ids = validate::id_list(&p, "InstanceIds", 50)?;
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("InstanceIds"));
        }
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                if key_pair::get_key_pair(tx, account, &region, &name)?.is_none() {
                    return Err(not_found(&name));
                }
                let mut results = Vec::new();
                let mut failed = 0;
                for id in &ids {
                    let outcome = match instance::get_instance(tx, account, id)?.filter(|i| i.region_id == region) {
                        None => Err(("InvalidInstanceId.NotFound", "The specified instance does not exist.")),
                        Some(mut inst) => {
                            if attach {
                                inst.key_pair_name = name.clone();
                                instance::update_instance(tx, &inst)?;
                                Ok(())
                            } else if inst.key_pair_name == name {
                                inst.key_pair_name.clear();
                                instance::update_instance(tx, &inst)?;
                                Ok(())
                            } else {
                                Err(("InvalidKeyPair.NotAttached", "The key pair is not attached to the instance."))
                            }
                        }
                    };
                    let (success, code, message) = match outcome {
                        Ok(()) => ("true", "200", "successful"),
                        Err((c, m)) => {
                            failed += 1;
                            ("false", c, m)
                        }
                    };
                    results.push(KeyPairResult { instance_id: id.clone(), success, code, message });
                }
                Ok(AttachKeyPairResponse {
                    key_pair_name: name,
                    total_count: ids.len().to_string(),
                    fail_count: failed.to_string(),
                    results: KeyPairResults { result: results },
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static GENERATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn counted() -> Result<(String, String, String), ApiError> {
        GENERATED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        generate()
    }

    #[tokio::test]
    async fn a_refused_create_spends_no_key_generation() {
        let store = feitian_meta::Store::open_in_memory().unwrap();
        let account = store.create_account("a").unwrap().id;
        let ecs = Arc::new(Ecs {
            store,
            catalog: Arc::new(feitian_region::Catalog::default()),
            eip_pool: "198.18.0.0/28".parse().unwrap(),
            nudges: Default::default(),
            host: Default::default(),
            admission: Default::default(),
        });
        let ctx = Ctx {
            request_id: "r".into(),
            caller: feitian_api::Caller { account_id: account, account_name: "a".into(), access_key_id: "k".into() },
            product: "ecs",
            action: "CreateKeyPair".into(),
        };
        let p = || Params::from_pairs([("RegionId", "cn-hangzhou"), ("KeyPairName", "kp")]).unwrap();
        ecs.clone().create_key_pair_with(ctx.clone(), p(), counted).await.unwrap();
        assert_eq!(GENERATED.load(std::sync::atomic::Ordering::SeqCst), 1);
        let e = ecs.clone().create_key_pair_with(ctx, p(), counted).await.unwrap_err();
        assert_eq!(e.code, "KeyPair.AlreadyExist");
        assert_eq!(GENERATED.load(std::sync::atomic::Ordering::SeqCst), 1, "a key was generated for a refused create");
    }

    #[test]
    fn generated_keys_parse_back_with_the_same_fingerprint() {
        let (pem, public, fp) = generate().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(public.starts_with("ssh-rsa "));
        let (line, fp2) = parse_public_key(&format!("{public} me@host")).unwrap();
        assert_eq!(fp, fp2);
        assert_eq!(line, public.trim());
        assert_eq!(fp.split(':').count(), 16);
    }

    #[test]
    fn bad_public_keys() {
        for bad in ["", "ssh-rsa", "ssh-rsa !!!notbase64", "hello world", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"] {
            assert_eq!(parse_public_key(bad).unwrap_err().code, "InvalidPublicKeyBody.Malformed", "{bad}");
        }
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";
        assert!(parse_public_key(ed).is_ok());
    }
}
