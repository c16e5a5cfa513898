//! Keys on disk: the cluster secret (`DATA_DIR/pangu/cluster.key`), the master's key
//! (`DATA_DIR/pangu/master.key`) and a chunkserver's token (`server-token` beside its
//! `server-id`). Each is hex text, one key per line, readable by its owner only: a file that
//! others may read is refused, as ssh refuses such a private key.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{KeyError, Keyring, Secret, ServerToken, TokenIssuer};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot use the key file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the key file {} is readable by others (mode {mode:o}); `chmod 600` it", path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the key file {}: {source}", path.display())]
    Bad { path: PathBuf, source: KeyError },
}

const CLUSTER_HEADER: &str = "\
# The feitian Pangu cluster secret. The master, every chunkserver (feitian chunkserver
# --secret-file) and every file client of this cluster need this file; keep it mode 0600.
# The first key signs; every key listed is accepted (docs/security.md: rotating it).
";

const MASTER_HEADER: &str = "\
# The feitian Pangu master's own key: chunkservers' identity tokens are made from it.
# It never leaves the master's host.
";

/// The cluster secret in `path`.
pub fn load_keyring(path: &Path) -> Result<Keyring, KeyFileError> {
    let text = read_private(path)?;
    Keyring::parse(&text).map_err(|source| KeyFileError::Bad { path: path.to_owned(), source })
}

/// The cluster secret in `path`, made (random) if the file does not exist; `true` if made.
pub fn load_or_create_keyring(path: &Path) -> Result<(Keyring, bool), KeyFileError> {
    if path.exists() {
        return Ok((load_keyring(path)?, false));
    }
    let keys = Keyring::generate();
    write_private(path, &format!("{CLUSTER_HEADER}{}", keys.to_text()))?;
    Ok((keys, true))
}

/// The master's key in `path`, made (random) if the file does not exist.
pub fn load_or_create_issuer(path: &Path) -> Result<TokenIssuer, KeyFileError> {
    if path.exists() {
        let keys = load_keyring(path)?;
        return Ok(TokenIssuer::new(keys.signing().clone()));
    }
    let key = Secret::generate();
    write_private(path, &format!("{MASTER_HEADER}{}\n", key.to_hex()))?;
    Ok(TokenIssuer::new(key))
}

/// A chunkserver's token, if the file exists.
pub fn read_token(path: &Path) -> Result<Option<ServerToken>, KeyFileError> {
    if !path.exists() {
        return Ok(None);
    }
    let keys = load_keyring(path)?;
    Ok(Some(ServerToken(keys.signing().clone())))
}

/// Writes a chunkserver's token (replacing the file atomically).
pub fn write_token(path: &Path, token: &ServerToken) -> Result<(), KeyFileError> {
    write_private(path, &format!("{}\n", token.to_hex()))
}

/// Reads a file that only its owner may read.
fn read_private(path: &Path) -> Result<String, KeyFileError> {
    let io_error = |source| KeyFileError::Io { path: path.to_owned(), source };
    let mode = std::fs::metadata(path).map_err(io_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { path: path.to_owned(), mode: mode & 0o777 });
    }
    std::fs::read_to_string(path).map_err(io_error)
}

/// Writes `text` to `path` through a temporary file created with mode 0600, synced and
/// renamed into place (so a crash leaves the old file or the new one, never half of one).
fn write_private(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let io_error = |source| KeyFileError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io_error)?;
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(&tmp, path).map_err(io_error)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)?;
    }
    Ok(())
}
