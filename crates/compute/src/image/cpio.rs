//! A cpio archive writer in the "newc" format (magic `070701`), the one the kernel unpacks as
//! an initramfs. Written here rather than by running `cpio`, so the build needs one tool
//! fewer and can put device nodes (`/dev/console`) in the archive without being root. Pure:
//! entries in, bytes out. Every entry belongs to root; a path's parent directories are added
//! before it, once.

use std::collections::BTreeSet;

/// A cpio archive in the "newc" format the kernel unpacks as initramfs.
#[derive(Default)]
pub(super) struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields =
            [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        let len = self.out.len().next_multiple_of(4);
        self.out.resize(len, 0);
    }
    pub(super) fn dir(&mut self, name: &str) {
        if !self.dirs.contains(name) {
            self.parents(name);
        }
        if self.dirs.insert(name.to_string()) {
            self.entry(name, 0o040755, &[], (0, 0));
        }
    }
    fn parents(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
    }
    pub(super) fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.parents(name);
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }
    pub(super) fn symlink(&mut self, name: &str, target: &str) {
        self.parents(name);
        self.entry(name, 0o120777, target.as_bytes(), (0, 0));
    }
    pub(super) fn node(&mut self, name: &str, mode: u32, rdev: (u32, u32)) {
        self.parents(name);
        self.entry(name, mode, &[], rdev);
    }
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        // Whole 512-byte blocks, as cpio(1) writes them.
        let len = self.out.len().next_multiple_of(512);
        self.out.resize(len, 0);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_newc_entries_are_aligned() {
        let mut c = Cpio::default();
        c.file("a/b", b"hello", 0o644);
        c.symlink("bin/sh", "/bin/busybox");
        let out = c.finish();
        assert_eq!(out.len() % 512, 0);
        assert_eq!(&out[..6], b"070701");
        // "a" (a directory) comes before "a/b".
        assert_eq!(&out[110..112], b"a\0");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("a/b\0") && text.contains("hello") && text.contains("TRAILER!!!"));
    }

    /// The entries of a newc archive: (name, the 13 header fields, data).
    fn entries(mut b: &[u8]) -> Vec<(String, Vec<u32>, Vec<u8>)> {
        let pad = |n: usize| n.next_multiple_of(4);
        let mut out = Vec::new();
        loop {
            assert_eq!(&b[..6], b"070701");
            let fields: Vec<u32> = (0..13)
                .map(|i| u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap())
                .collect();
            let (size, namesize) = (fields[6] as usize, fields[11] as usize);
            let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = pad(110 + namesize);
            let data = b[data_at..data_at + size].to_vec();
            b = &b[pad(data_at + size)..];
            let last = name == "TRAILER!!!";
            out.push((name, fields, data));
            if last {
                assert!(b.iter().all(|&c| c == 0), "only padding after the trailer");
                return out;
            }
        }
    }

    #[test]
    fn headers_carry_mode_size_links_and_devices_and_parents_come_once() {
        let mut c = Cpio::default();
        c.dir("dev");
        c.node("dev/console", 0o020600, (5, 1));
        c.file("lib/modules/x.ko", b"abc", 0o644);
        c.file("lib/modules/y.ko", b"", 0o600);
        c.symlink("bin/sh", "/bin/busybox");
        let e = entries(&c.finish());
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "lib",
                "lib/modules",
                "lib/modules/x.ko",
                "lib/modules/y.ko",
                "bin",
                "bin/sh",
                "TRAILER!!!"
            ]
        );
        // Fields: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check.
        let (_, dev, _) = &e[0];
        assert_eq!((dev[0], dev[1], dev[4]), (1, 0o040755, 2));
        let (_, console, _) = &e[1];
        assert_eq!((console[1], console[4], console[9], console[10]), (0o020600, 1, 5, 1));
        let (_, x, data) = &e[4];
        assert_eq!((x[1], x[6], x[11], data.as_slice()), (0o100644, 3, 17, b"abc".as_slice()));
        let (_, sh, target) = &e[7];
        assert_eq!((sh[1], target.as_slice()), (0o120777, b"/bin/busybox".as_slice()));
        let inos: BTreeSet<u32> = e.iter().map(|(_, f, _)| f[0]).collect();
        assert_eq!(inos.len(), e.len(), "every entry has its own inode number");
    }
}
