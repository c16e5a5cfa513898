//! The Debian packages the image is made of: their candidate versions and dependencies
//! (`apt-cache show`, parsed here), their `.deb` files (`apt-get download` into a cache that
//! later builds reuse, each checked against the SHA-256 the package lists give, so a damaged
//! or stale file is fetched again) and their contents (`dpkg-deb -x`). Nothing is installed
//! on the host; the packages come from whatever Debian 12 sources its apt is configured with.

use super::fsutil::mkdirs;
use super::tools::{run, stderr_of, tool};
use super::ImageError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A package's candidate version, as `apt-cache show` describes it.
#[derive(Debug, Clone)]
pub(super) struct AptPackage {
    pub(super) name: String,
    pub(super) version: String,
    arch: String,
    sha256: String,
    /// Depends and Pre-Depends, the first alternative of each, without versions.
    pub(super) depends: Vec<String>,
}

impl AptPackage {
    /// The file name `apt-get download` gives it.
    fn deb_file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

/// The candidate versions of `names`, in that order.
pub(super) fn apt_show(names: &[String]) -> Result<Vec<AptPackage>, ImageError> {
    let o = run(tool("apt-cache").args(["show", "--no-all-versions"]).args(names), "apt-cache show", "apt")?;
    let found = parse_show(&String::from_utf8_lossy(&o.stdout));
    names
        .iter()
        .map(|n| {
            found.get(n).cloned().ok_or_else(|| {
                let detail = if o.status.success() { "no candidate version".to_string() } else { stderr_of(&o) };
                ImageError::PackageUnknown { package: n.clone(), detail }
            })
        })
        .collect()
}

/// The packages in `apt-cache show` output, by name (the first stanza of each name).
fn parse_show(text: &str) -> HashMap<String, AptPackage> {
    let mut found: HashMap<String, AptPackage> = HashMap::new();
    for stanza in text.split("\n\n") {
        let fields = parse_stanza(stanza);
        let (Some(name), Some(version), Some(arch)) =
            (fields.get("Package"), fields.get("Version"), fields.get("Architecture"))
        else {
            continue;
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(v) = fields.get(key) {
                depends.extend(parse_depends(v));
            }
        }
        found.entry(name.clone()).or_insert_with(|| AptPackage {
            name: name.clone(),
            version: version.clone(),
            arch: arch.clone(),
            sha256: fields.get("SHA256").cloned().unwrap_or_default(),
            depends,
        });
    }
    found
}

/// A Debian control stanza's fields (continuation lines joined).
fn parse_stanza(stanza: &str) -> HashMap<String, String> {
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for line in stanza.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(k) = &last {
                let v = fields.get_mut(k).expect("field exists");
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    fields
}

/// `a (>= 1), b:any | c, d` → `[a, b, d]`.
fn parse_depends(v: &str) -> Vec<String> {
    v.split(',')
        .filter_map(|alt| {
            let first = alt.split('|').next()?.trim();
            let name = first.split(|c: char| c.is_whitespace() || c == '(').next()?.trim();
            let name = name.split(':').next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The packages' `.deb` files in `cache`, downloading the ones missing (or damaged).
pub(super) fn download(
    pkgs: &[AptPackage],
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, ImageError> {
    let files: Vec<PathBuf> = pkgs.iter().map(|p| cache.join(p.deb_file_name())).collect();
    let mut missing = Vec::new();
    for (p, f) in pkgs.iter().zip(&files) {
        if f.is_file() && sha256_matches(f, &p.sha256)? {
            continue;
        }
        let _ = fs::remove_file(f);
        missing.push(p);
    }
    if missing.is_empty() {
        progress(&format!("all {} packages are in the cache {}", pkgs.len(), cache.display()));
        return Ok(files);
    }
    let names = missing.iter().map(|p| format!("{} {}", p.name, p.version)).collect::<Vec<_>>().join(", ");
    progress(&format!("downloading {names}"));
    let o = run(
        tool("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(missing.iter().map(|p| format!("{}={}", p.name, p.version)))
            .current_dir(cache),
        "apt-get download",
        "apt",
    )?;
    if !o.status.success() {
        return Err(ImageError::Download { packages: names, stderr: stderr_of(&o) });
    }
    for p in missing {
        let f = cache.join(p.deb_file_name());
        if !f.is_file() {
            return Err(ImageError::Download {
                packages: p.name.clone(),
                stderr: format!("apt-get reported success but {} is not there", f.display()),
            });
        }
        if !sha256_matches(&f, &p.sha256)? {
            let _ = fs::remove_file(&f);
            return Err(ImageError::Checksum { file: f });
        }
    }
    Ok(files)
}

/// Unpacks a `.deb` into `dir` (`dpkg-deb -x`: files only, no maintainer scripts run).
pub(super) fn unpack(deb: &Path, dir: &Path) -> Result<(), ImageError> {
    mkdirs(dir)?;
    let o = run(tool("dpkg-deb").arg("-x").arg(deb).arg(dir), "dpkg-deb", "dpkg")?;
    if !o.status.success() {
        return Err(ImageError::Unpack { deb: deb.to_path_buf(), stderr: stderr_of(&o) });
    }
    Ok(())
}

/// Whether `file` has the SHA-256 `want` (hex, any case); an empty `want` (the package lists
/// gave none) matches any file.
fn sha256_matches(file: &Path, want: &str) -> Result<bool, ImageError> {
    if want.is_empty() {
        return Ok(true);
    }
    let mut f = fs::File::open(file).map_err(|e| ImageError::io(format!("reading {}", file.display()), e))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(|e| ImageError::io(format!("reading {}", file.display()), e))?;
    Ok(hex::encode(h.finalize()).eq_ignore_ascii_case(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_take_first_alternatives_without_versions() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), a:any | b, zlib1g (>= 1:1.1.4)"),
            vec!["libc6", "libcrypt1", "a", "zlib1g"]
        );
    }

    #[test]
    fn stanza_fields_and_deb_names() {
        let f = parse_stanza("Package: busybox-static\nVersion: 1:1.35.0-4\nArchitecture: amd64\nDescription: x\n y\n");
        assert_eq!(f["Version"], "1:1.35.0-4");
        assert_eq!(f["Description"], "x y");
        let p = AptPackage {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            arch: "amd64".into(),
            sha256: String::new(),
            depends: vec![],
        };
        assert_eq!(p.deb_file_name(), "busybox-static_1%3a1.35.0-4_amd64.deb");
    }

    #[test]
    fn show_output_gives_each_packages_first_stanza_with_pre_depends_first() {
        let text = "Package: dropbear-bin\nVersion: 2022.83-1\nArchitecture: amd64\n\
                    Depends: libc6 (>= 2.34), zlib1g\nPre-Depends: init-system-helpers\nSHA256: AB12\n\n\
                    Package: dropbear-bin\nVersion: 2020.81-3\nArchitecture: amd64\n\n\
                    Package: no-version\nArchitecture: amd64\n\n\
                    Package: e2fsprogs\nVersion: 1.47.0-2\nArchitecture: amd64\n";
        let found = parse_show(text);
        assert_eq!(found.len(), 2, "{found:?}");
        let db = &found["dropbear-bin"];
        assert_eq!((db.version.as_str(), db.sha256.as_str()), ("2022.83-1", "AB12"));
        assert_eq!(db.depends, ["init-system-helpers", "libc6", "zlib1g"]);
        assert!(found["e2fsprogs"].depends.is_empty() && found["e2fsprogs"].sha256.is_empty());
    }

    #[test]
    fn checksums_compare_in_any_case_and_none_given_matches() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("x.deb");
        fs::write(&f, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(sha256_matches(&f, abc).unwrap());
        assert!(sha256_matches(&f, &abc.to_uppercase()).unwrap());
        assert!(!sha256_matches(&f, &abc.replace('b', "c")).unwrap());
        assert!(sha256_matches(&f, "").unwrap());
    }
}
