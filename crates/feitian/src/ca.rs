//! `feitian ca`: the certificate of the edge's own CA, for clients to trust (docs/https.md).
//!
//! The CA lives in `DATA_DIR/ca`; `feitian up` and `feitian ca` load it through the same
//! function, so whichever runs first makes it and both see the same one.

use anyhow::Context;
use feitian_api::tls::Ca;
use std::path::{Path, PathBuf};

/// The CA's directory inside the data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ca")
}

/// The data directory's CA, made first if there is none.
pub fn load(data_dir: &Path) -> anyhow::Result<Ca> {
    let dir = dir(data_dir);
    Ca::load_or_create(&dir).with_context(|| format!("cannot load or make the edge's CA in {}", dir.display()))
}

/// Prints the CA certificate (PEM), or writes it to `export`.
pub fn run(data_dir: &Path, export: Option<&Path>) -> anyhow::Result<()> {
    let ca = load(data_dir)?;
    match export {
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(ca.pem().as_bytes())?;
            out.flush()?;
        }
        Some(file) => {
            std::fs::write(file, ca.pem()).with_context(|| format!("cannot write {}", file.display()))?;
            // A certificate is public, and clients run as other users; the umask says 0600.
            crate::accounts::set_mode(file, 0o644)?;
            eprintln!("wrote feitian's CA certificate to {}", file.display());
        }
    }
    Ok(())
}
