//! The edge's own certificate authority: made once under the data directory, reused after.
//!
//! `DIR/ca.key` (mode 0600) holds the CA's ECDSA P-256 key, `DIR/ca.pem` its self-signed
//! certificate, the file users trust. Each is written to a temporary file, synced and renamed,
//! so a crash never leaves half a key; a lock file keeps a `feitian ca` and a `feitian up`
//! starting together from making two different CAs.
//!
//! Only the key must be read back: an issuer is its distinguished name, its key identifier
//! and its key, and the name is derived from the key (its hash is in the common name, which
//! tells one installation's CA from another's in a trust store). So the issuer is rebuilt from
//! the key without parsing `ca.pem`, and `ca.pem` is served as it is on disk.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const CERT_FILE: &str = "ca.pem";
pub const KEY_FILE: &str = "ca.key";
const LOCK_FILE: &str = "ca.lock";
/// The CA certificate is valid this many years from its making.
const CA_YEARS: i64 = 10;

#[derive(Debug, Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a PEM private key feitian can use: {source}")]
    BadKey { path: PathBuf, source: rcgen::Error },
    #[error("{cert} does not belong to the key in {key}; move both away to make a new CA")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaError + '_ {
    move |source| CaError::Io { path: path.to_owned(), source }
}

/// A loaded CA: what signs leaf certificates, and the certificate clients trust.
pub struct Ca {
    key: KeyPair,
    issuer: rcgen::Certificate,
    pem: String,
    der: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("subject", &common_name(&self.key)).finish_non_exhaustive()
    }
}

impl Ca {
    /// The CA in `dir`, made there first if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Ca, CaError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|source| CaError::BadKey { path: key_path.clone(), source })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = KeyPair::generate()?;
                write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                // A certificate left from an older key is useless: it is replaced below.
                let _ = std::fs::remove_file(&cert_path);
                key
            }
            Err(e) => return Err(CaError::Io { path: key_path, source: e }),
        };
        let issuer = ca_params(&key, time::OffsetDateTime::now_utc()).self_signed(&key)?;
        let pem = match std::fs::read_to_string(&cert_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let pem = issuer.pem();
                write_atomically(&cert_path, pem.as_bytes(), 0o644)?;
                pem
            }
            Err(e) => return Err(CaError::Io { path: cert_path, source: e }),
        };
        let der = certificate_der(&pem)
            .ok_or_else(|| CaError::Mismatch { cert: cert_path.clone(), key: key_path.clone() })?;
        // The certificate on disk must carry this key, or the leaves would not chain to it.
        let public = key.public_key_der();
        if !der.windows(public.len()).any(|w| w == public.as_slice()) {
            return Err(CaError::Mismatch { cert: cert_path, key: key_path });
        }
        drop(lock);
        Ok(Ca { key, issuer, pem, der })
    }

    /// The CA certificate, PEM (what users trust).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Signs a leaf certificate's parameters for `public_key`.
    pub(crate) fn sign(
        &self,
        params: CertificateParams,
        public_key: &KeyPair,
    ) -> Result<rcgen::Certificate, rcgen::Error> {
        params.signed_by(public_key, &self.issuer, &self.key)
    }
}

/// `feitian CA <first 8 bytes of the key's SHA-256, hex>`.
fn common_name(key: &KeyPair) -> String {
    let digest = Sha256::digest(key.public_key_der());
    format!("feitian CA {}", hex::encode(&digest[..8]))
}

/// The CA's parameters, all derived from its key (and the time of making).
fn ca_params(key: &KeyPair, now: time::OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "feitian");
    dn.push(DnType::CommonName, common_name(key));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365 * CA_YEARS);
    let digest = Sha256::digest(key.public_key_der());
    params.serial_number = Some(SerialNumber::from_slice(&digest[..16]));
    params
}

/// The DER of the first certificate in a PEM text.
fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok().map(|c| c.to_vec())
}

/// Writes `path` whole or not at all: a temporary file beside it, synced, then renamed, and
/// the directory synced so the rename survives a crash.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f =
        OpenOptions::new().create(true).truncate(true).write(true).mode(mode).open(&tmp).map_err(io_err(&tmp))?;
    // Exactly `mode`, whatever the umask (feitian runs with 077; the certificate is public).
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let first = Ca::load_or_create(&ca_dir).unwrap();
        let mode = std::fs::metadata(ca_dir.join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let second = Ca::load_or_create(&ca_dir).unwrap();
        assert_eq!(first.pem(), second.pem());
        assert_eq!(
            std::fs::read_to_string(ca_dir.join(KEY_FILE)).unwrap(),
            first.key.serialize_pem(),
            "the key was replaced"
        );
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(&ca_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        Ca::load_or_create(&a).unwrap();
        Ca::load_or_create(&b).unwrap();
        std::fs::copy(b.join(CERT_FILE), a.join(CERT_FILE)).unwrap();
        assert!(matches!(Ca::load_or_create(&a), Err(CaError::Mismatch { .. })));
    }

    #[test]
    fn a_lost_certificate_is_made_again_from_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ca::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let second = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(common_name(&first.key), common_name(&second.key));
    }
}
