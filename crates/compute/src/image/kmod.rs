//! The guest's kernel modules, taken from the unpacked kernel package: which release it is,
//! which `.ko` files the wanted modules and their dependencies are (read from each module's
//! `.modinfo`, since the host's `modprobe`/`depmod` know the host's kernel, not the guest's),
//! in an order that loads each after what it needs, and the `modules.dep` that lets busybox
//! `modprobe` in the guest find them.

use super::elf::modinfo;
use super::ImageError;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

/// The release (`uname -r`) of the unpacked kernel package `kroot`: the one
/// `lib/modules/RELEASE` that has a `boot/vmlinuz-RELEASE`.
pub(super) fn kernel_release(kroot: &Path) -> Result<String, ImageError> {
    let dir = kroot.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| ImageError::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|r| kroot.join("boot").join(format!("vmlinuz-{r}")).is_file())
        .collect();
    releases.sort();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        _ => Err(ImageError::Recipe(format!(
            "the kernel package should have one lib/modules/RELEASE with boot/vmlinuz-RELEASE, found {releases:?}"
        ))),
    }
}

#[derive(Debug, Clone)]
/// A kernel module of the guest's.
pub(super) struct Module {
    pub(super) name: String,
    /// Relative to `lib/modules/RELEASE`, e.g. `kernel/drivers/block/virtio_blk.ko`.
    pub(super) rel: String,
    /// Direct dependencies (module names).
    deps: Vec<String>,
}

/// The name the kernel knows a module file by: `virtio-blk.ko` → `virtio_blk`.
fn module_name(file_name: &str) -> String {
    file_name.trim_end_matches(".ko").replace('-', "_")
}

/// The `wanted` modules (name, and whether the build fails without it) and their
/// dependencies, dependencies first. Modules built into the kernel (`modules.builtin`) are
/// left out.
pub(super) fn resolve_modules(kroot: &Path, release: &str, wanted: &[(&str, bool)]) -> Result<Vec<Module>, ImageError> {
    let base = kroot.join("lib/modules").join(release);
    let builtin: BTreeSet<String> = fs::read_to_string(base.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(module_name)
        .collect();
    let mut index: HashMap<String, String> = HashMap::new();
    let mut stack = vec![base.join("kernel")];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| ImageError::io(format!("reading {}", dir.display()), e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ko") {
                let rel = p.strip_prefix(&base).expect("under base").to_string_lossy().into_owned();
                index.insert(module_name(&e.file_name().to_string_lossy()), rel);
            }
        }
    }
    let mut order: Vec<Module> = Vec::new();
    let mut visiting = BTreeSet::new();
    for (name, required) in wanted {
        if builtin.contains(*name) {
            continue;
        }
        if !index.contains_key(*name) {
            if *required {
                return Err(ImageError::Recipe(format!("kernel module {name} is neither built in nor in the package")));
            }
            continue;
        }
        add_module(name, &base, &index, &builtin, &mut order, &mut visiting)?;
    }
    Ok(order)
}

/// Adds `name` to `order` after its dependencies (read from its `.modinfo`).
fn add_module(
    name: &str,
    base: &Path,
    index: &HashMap<String, String>,
    builtin: &BTreeSet<String>,
    order: &mut Vec<Module>,
    visiting: &mut BTreeSet<String>,
) -> Result<(), ImageError> {
    if builtin.contains(name) || order.iter().any(|m| m.name == name) {
        return Ok(());
    }
    if !visiting.insert(name.to_string()) {
        return Err(ImageError::Recipe(format!("kernel module dependency cycle through {name}")));
    }
    let rel = index
        .get(name)
        .ok_or_else(|| ImageError::Recipe(format!("kernel module {name} (a dependency) is not in the package")))?;
    let path = base.join(rel);
    let bytes = fs::read(&path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    let deps: Vec<String> = modinfo(&bytes)
        .into_iter()
        .filter_map(|kv| kv.strip_prefix("depends=").map(str::to_string))
        .flat_map(|v| v.split(',').map(|d| d.trim().replace('-', "_")).collect::<Vec<_>>())
        .filter(|d| !d.is_empty())
        .collect();
    for d in &deps {
        add_module(d, base, index, builtin, order, visiting)?;
    }
    visiting.remove(name);
    order.push(Module { name: name.to_string(), rel: rel.clone(), deps });
    Ok(())
}

/// `modules.dep` for the modules (depmod's format: dependencies listed last-loaded first).
pub(super) fn modules_dep(modules: &[Module]) -> String {
    let by_name: HashMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut out = String::new();
    for m in modules {
        // The transitive closure, in load order, then reversed.
        let mut closure: Vec<&Module> = Vec::new();
        let mut todo: Vec<&str> = m.deps.iter().map(String::as_str).collect();
        while let Some(d) = todo.pop() {
            if let Some(dm) = by_name.get(d) {
                if !closure.iter().any(|c| c.name == dm.name) {
                    closure.push(dm);
                    todo.extend(dm.deps.iter().map(String::as_str));
                }
            }
        }
        closure.sort_by_key(|c| modules.iter().position(|x| x.name == c.name));
        closure.reverse();
        out.push_str(&m.rel);
        out.push(':');
        for c in closure {
            out.push(' ');
            out.push_str(&c.rel);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::elf;

    #[test]
    fn modules_dep_lists_dependencies_last_loaded_first() {
        let m = |n: &str, deps: &[&str]| Module {
            name: n.into(),
            rel: format!("kernel/{n}.ko"),
            deps: deps.iter().map(|d| d.to_string()).collect(),
        };
        let mods = vec![m("failover", &[]), m("net_failover", &["failover"]), m("virtio_net", &["net_failover"])];
        assert_eq!(
            modules_dep(&mods),
            "kernel/failover.ko:\nkernel/net_failover.ko: kernel/failover.ko\n\
             kernel/virtio_net.ko: kernel/net_failover.ko kernel/failover.ko\n"
        );
    }

    const RELEASE: &str = "6.1.0-9-cloud-amd64";

    /// An unpacked kernel package with `modules` (file under `kernel/`, its `depends=`) and
    /// `modules.builtin` listing `builtin`.
    fn kernel_package(modules: &[(&str, &str)], builtin: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("lib/modules").join(RELEASE);
        fs::create_dir_all(&base).unwrap();
        for (file, depends) in modules {
            let p = base.join("kernel").join(file);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let info = format!("license=GPL\0depends={depends}\0");
            fs::write(p, elf::synthetic(&[(".modinfo", 1, info.as_bytes(), 0)], None)).unwrap();
        }
        let list: String = builtin.iter().map(|b| format!("kernel/drivers/{b}.ko\n")).collect();
        fs::write(base.join("modules.builtin"), list).unwrap();
        fs::create_dir_all(t.path().join("boot")).unwrap();
        fs::write(t.path().join("boot").join(format!("vmlinuz-{RELEASE}")), b"").unwrap();
        t
    }

    #[test]
    fn wanted_modules_come_after_their_dependencies_and_builtins_are_left_out() {
        let k = kernel_package(
            &[
                ("drivers/block/virtio-blk.ko", "virtio,virtio_ring"),
                ("drivers/virtio/virtio_ring.ko", "virtio"),
                ("drivers/virtio/virtio.ko", ""),
                ("drivers/input/evdev.ko", ""),
            ],
            &["button"],
        );
        assert_eq!(kernel_release(k.path()).unwrap(), RELEASE);
        let wanted = [("virtio_blk", true), ("button", true), ("virtio_rng", false), ("evdev", true)];
        let mods = resolve_modules(k.path(), RELEASE, &wanted).unwrap();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["virtio", "virtio_ring", "virtio_blk", "evdev"]);
        assert_eq!(mods[2].rel, "kernel/drivers/block/virtio-blk.ko");
        assert_eq!(mods[2].deps, ["virtio", "virtio_ring"]);
    }

    #[test]
    fn missing_required_modules_and_cycles_are_recipe_errors() {
        let k = kernel_package(&[("a.ko", "b"), ("b.ko", "a"), ("c.ko", "gone")], &[]);
        for wanted in [[("virtio_net", true)], [("a", true)], [("c", false)]] {
            let err = resolve_modules(k.path(), RELEASE, &wanted).unwrap_err();
            assert!(matches!(err, ImageError::Recipe(_)), "{wanted:?}: {err}");
        }
    }

    #[test]
    fn the_release_is_the_one_with_a_kernel() {
        let k = kernel_package(&[], &[]);
        fs::create_dir_all(k.path().join("lib/modules/6.1.0-8-cloud-amd64")).unwrap();
        assert_eq!(kernel_release(k.path()).unwrap(), RELEASE);
        fs::write(k.path().join("boot/vmlinuz-6.1.0-8-cloud-amd64"), b"").unwrap();
        assert!(matches!(kernel_release(k.path()), Err(ImageError::Recipe(_))));
    }
}
