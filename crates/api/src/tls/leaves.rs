//! Leaf certificates chosen by SNI and minted on demand, signed by the edge's CA.
//!
//! One key serves every leaf (made at start, never written down), so minting a leaf is one
//! signature. Leaves are cached by name; the cache is small and bounded, and only names that
//! [`super::names::leaf_for`] accepts are minted, so no client can make the edge hold or mint
//! without bound. A cached leaf is minted again once it is a week old, long before it expires.

use super::ca::Ca;
use super::names::{leaf_for, Leaf};
use parking_lot::Mutex;
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Leaves kept for cloud host names; the oldest goes first when it is full.
pub const CACHE_SIZE: usize = 256;
/// A leaf is valid this long from its minting.
const LEAF_VALIDITY_DAYS: i64 = 90;
/// A cached leaf older than this is minted again.
const REMINT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

struct Cache {
    by_name: HashMap<String, (Instant, Arc<CertifiedKey>)>,
    order: VecDeque<String>,
}

pub struct Leaves {
    ca: Arc<Ca>,
    key: KeyPair,
    signer: Arc<dyn SigningKey>,
    own: Arc<CertifiedKey>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Leaves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaves").field("cached", &self.cache.lock().by_name.len()).finish_non_exhaustive()
    }
}

impl Leaves {
    /// The resolver for an edge listening on `own_addresses` (its own leaf names them,
    /// `localhost`, and the loopback addresses).
    pub fn new(ca: Arc<Ca>, own_addresses: &[IpAddr]) -> Result<Self, super::TlsError> {
        let key = KeyPair::generate()?;
        let provider = super::provider();
        let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = provider.key_provider.load_private_key(pkcs8)?;
        let mut sans = vec![SanType::DnsName("localhost".try_into()?)];
        let loopback: [IpAddr; 2] = [[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        for ip in own_addresses.iter().chain(loopback.iter()) {
            if !ip.is_unspecified() && !sans.contains(&SanType::IpAddress(*ip)) {
                sans.push(SanType::IpAddress(*ip));
            }
        }
        let own = mint(&ca, &key, &signer, "feitian edge", sans)?;
        Ok(Leaves {
            ca,
            key,
            signer,
            own,
            cache: Mutex::new(Cache { by_name: HashMap::new(), order: VecDeque::new() }),
        })
    }

    /// The leaf for a cloud host name, from the cache or minted now.
    fn cloud(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some((at, leaf)) = self.cache.lock().by_name.get(name) {
            if at.elapsed() < REMINT_AFTER {
                return Some(leaf.clone());
            }
        }
        let san = SanType::DnsName(name.try_into().ok()?);
        let leaf = match mint(&self.ca, &self.key, &self.signer, name, vec![san]) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(name, error = %e, "cannot mint a TLS certificate");
                return None;
            }
        };
        let mut cache = self.cache.lock();
        if cache.by_name.insert(name.to_owned(), (Instant::now(), leaf.clone())).is_none() {
            cache.order.push_back(name.to_owned());
            while cache.order.len() > CACHE_SIZE {
                if let Some(oldest) = cache.order.pop_front() {
                    cache.by_name.remove(&oldest);
                }
            }
        }
        Some(leaf)
    }

    /// The leaf a server name gets, `None` when it is refused.
    pub fn for_name(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        match leaf_for(sni) {
            Ok(Leaf::Own) => Some(self.own.clone()),
            Ok(Leaf::Cloud(name)) => self.cloud(&name),
            Err(why) => {
                tracing::debug!(sni, %why, "TLS handshake refused");
                None
            }
        }
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().by_name.len()
    }
}

impl ResolvesServerCert for Leaves {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_name(hello.server_name())
    }
}

fn mint(
    ca: &Ca,
    key: &KeyPair,
    signer: &Arc<dyn SigningKey>,
    common_name: &str,
    sans: Vec<SanType>,
) -> Result<Arc<CertifiedKey>, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(LEAF_VALIDITY_DAYS);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = ca.sign(params, key)?;
    let chain = vec![CertificateDer::from(cert.der().to_vec()), CertificateDer::from(ca.der().to_vec())];
    Ok(Arc::new(CertifiedKey::new(chain, signer.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves() -> (tempfile::TempDir, Leaves) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(Ca::load_or_create(dir.path()).unwrap());
        let leaves = Leaves::new(ca, &["127.0.0.1".parse().unwrap()]).unwrap();
        (dir, leaves)
    }

    #[test]
    fn a_cloud_name_is_minted_once_and_foreign_names_never() {
        let (_dir, l) = leaves();
        let a = l.for_name(Some("ecs-cn-hangzhou.aliyuncs.com")).unwrap();
        let b = l.for_name(Some("ECS-cn-hangzhou.aliyuncs.com")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(l.for_name(Some("www.example.com")).is_none());
        assert!(l.for_name(Some("bad_name.aliyuncs.com")).is_none());
        assert_eq!(l.cached(), 1);
        assert!(Arc::ptr_eq(&l.for_name(None).unwrap(), &l.for_name(Some("localhost")).unwrap()));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let (_dir, l) = leaves();
        for i in 0..CACHE_SIZE + 10 {
            assert!(l.for_name(Some(&format!("b{i}.oss-cn-hangzhou.aliyuncs.com"))).is_some());
        }
        assert_eq!(l.cached(), CACHE_SIZE);
    }
}
