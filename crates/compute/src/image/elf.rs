//! A reader for the little ELF the build needs to know, 64-bit little-endian only (what
//! x86-64 Debian ships): a kernel module's `.modinfo` strings (its `depends=`), a program's
//! `DT_NEEDED` libraries and its `PT_INTERP` loader. Enough to copy a program with its
//! libraries into the image and to order modules without running `ldd` or `modinfo` on the
//! host (whose kernel and libraries are not the guest's). Pure: bytes in, names out; a
//! malformed file reads as having nothing, never as an error.

/// An ELF file's bytes, known to be 64-bit little-endian.
pub(super) struct Elf<'a> {
    b: &'a [u8],
}

/// A section header's fields that the reader uses.
struct Section {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

impl<'a> Elf<'a> {
    pub(super) fn parse(b: &'a [u8]) -> Option<Elf<'a>> {
        (b.len() >= 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1).then_some(Elf { b })
    }
    // Offsets come from the file: every sum is checked, so a crafted file reads as nothing
    // instead of overflowing.
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.b.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(at)?))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(at)?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(at)?))
    }
    /// Where entry `i` of a table at `off` with entries of `size` bytes starts.
    fn entry(off: u64, size: u16, i: usize) -> Option<usize> {
        usize::try_from(off).ok()?.checked_add(i.checked_mul(size as usize)?)
    }
    fn sections(&self) -> Vec<Section> {
        let (Some(off), Some(size), Some(num)) = (self.u64(0x28), self.u16(0x3A), self.u16(0x3C)) else {
            return Vec::new();
        };
        (0..num as usize)
            .filter_map(|i| {
                let at = Self::entry(off, size, i)?;
                Some(Section {
                    name: self.u32(at)?,
                    kind: self.u32(at.checked_add(4)?)?,
                    offset: self.u64(at.checked_add(24)?)?,
                    size: self.u64(at.checked_add(32)?)?,
                    link: self.u32(at.checked_add(40)?)?,
                })
            })
            .collect()
    }
    fn data(&self, s: &Section) -> &'a [u8] {
        let start = (s.offset as usize).min(self.b.len());
        let end = (s.offset.saturating_add(s.size) as usize).min(self.b.len());
        &self.b[start..end]
    }
    fn section_named(&self, want: &str) -> Option<&'a [u8]> {
        let secs = self.sections();
        let shstrndx = self.u16(0x3E)? as usize;
        let names = self.data(secs.get(shstrndx)?);
        secs.iter().find(|s| cstr_at(names, s.name as usize) == Some(want)).map(|s| self.data(s))
    }
    /// DT_NEEDED entries.
    pub(super) fn needed(&self) -> Vec<String> {
        let secs = self.sections();
        let mut out = Vec::new();
        for s in secs.iter().filter(|s| s.kind == 6) {
            let Some(strtab) = secs.get(s.link as usize) else { continue };
            let strs = self.data(strtab);
            for entry in self.data(s).chunks_exact(16) {
                let tag = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
                let val = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
                if tag == 0 {
                    break;
                }
                if tag == 1 {
                    if let Some(n) = cstr_at(strs, val as usize) {
                        out.push(n.to_string());
                    }
                }
            }
        }
        out
    }
    /// The PT_INTERP program interpreter.
    pub(super) fn interp(&self) -> Option<String> {
        let (off, size, num) = (self.u64(0x20)?, self.u16(0x36)?, self.u16(0x38)?);
        (0..num as usize).find_map(|i| {
            let at = Self::entry(off, size, i)?;
            if self.u32(at)? != 3 {
                return None;
            }
            let o = usize::try_from(self.u64(at.checked_add(8)?)?).ok()?;
            let n = usize::try_from(self.u64(at.checked_add(32)?)?).ok()?;
            cstr_at(self.b.get(o..o.checked_add(n)?)?, 0).map(str::to_string)
        })
    }
}

fn cstr_at(b: &[u8], at: usize) -> Option<&str> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// A kernel module's `.modinfo` strings (`key=value`).
pub(super) fn modinfo(bytes: &[u8]) -> Vec<String> {
    Elf::parse(bytes)
        .and_then(|e| e.section_named(".modinfo"))
        .map(|d| {
            d.split(|&c| c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default()
}

/// A synthetic 64-bit little-endian ELF file for tests: `sections` as (name, `sh_type`,
/// content, `sh_link`) after the null section, then `.shstrtab`; with `interp`, one `PT_LOAD`
/// and one `PT_INTERP` program header.
#[cfg(test)]
pub(super) fn synthetic(sections: &[(&str, u32, &[u8], u32)], interp: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..6].copy_from_slice(b"\x7fELF\x02\x01");
    let put = |b: &mut Vec<u8>, data: &[u8]| {
        let at = b.len();
        b.extend_from_slice(data);
        at as u64
    };
    let mut names = vec![0u8];
    let mut headers = vec![[0u8; 64]];
    for (name, kind, data, link) in sections.iter().copied().chain([(".shstrtab", 3, &[][..], 0)]) {
        let name_at = names.len() as u32;
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        let data = if name == ".shstrtab" { names.clone() } else { data.to_vec() };
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(&name_at.to_le_bytes());
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[24..32].copy_from_slice(&put(&mut b, &data).to_le_bytes());
        h[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        h[40..44].copy_from_slice(&link.to_le_bytes());
        headers.push(h);
    }
    let mut programs = Vec::new();
    if let Some(path) = interp {
        let path_at = put(&mut b, format!("{path}\0").as_bytes());
        for (kind, offset, size) in [(1u32, 0u64, 64u64), (3, path_at, path.len() as u64 + 1)] {
            let mut h = [0u8; 56];
            h[..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            programs.push(h);
        }
    }
    let phoff = put(&mut b, &programs.concat());
    let shoff = put(&mut b, &headers.concat());
    b[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
    b[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3A].copy_from_slice(&(programs.len() as u16).to_le_bytes());
    b[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    b[0x3C..0x3E].copy_from_slice(&(headers.len() as u16).to_le_bytes());
    b[0x3E..0x40].copy_from_slice(&(headers.len() as u16 - 1).to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_bit_little_endian_elf_is_read() {
        let good = synthetic(&[], None);
        assert!(Elf::parse(&good).is_some());
        for (at, byte) in [(0, b'E'), (4, 1), (5, 2)] {
            let mut bad = good.clone();
            bad[at] = byte;
            assert!(Elf::parse(&bad).is_none(), "byte {at} = {byte}");
        }
        assert!(Elf::parse(&good[..63]).is_none());
    }

    #[test]
    fn modinfo_is_the_modinfo_sections_strings() {
        let ko = synthetic(
            &[
                (".text", 1, b"\x90\x90", 0),
                (".modinfo", 1, b"license=GPL\0depends=virtio,virtio_ring\0\0vermagic=6.1\0", 0),
            ],
            None,
        );
        assert_eq!(modinfo(&ko), ["license=GPL", "depends=virtio,virtio_ring", "vermagic=6.1"]);
        assert!(modinfo(&synthetic(&[(".text", 1, b"x", 0)], None)).is_empty());
        assert!(modinfo(b"not an ELF file").is_empty());
    }

    #[test]
    fn needed_libraries_and_the_loader() {
        let dyn_entry = |tag: u64, val: u64| [tag.to_le_bytes(), val.to_le_bytes()].concat();
        // DT_NEEDED (1) entries up to DT_NULL (0); other tags (DT_STRTAB, 5) are skipped.
        let dynamic = [dyn_entry(1, 1), dyn_entry(5, 0), dyn_entry(1, 11), dyn_entry(0, 0), dyn_entry(1, 1)].concat();
        let prog = synthetic(
            &[(".dynstr", 3, b"\0libc.so.6\0libz.so.1\0", 0), (".dynamic", 6, &dynamic, 1)],
            Some("/lib64/ld-linux-x86-64.so.2"),
        );
        let elf = Elf::parse(&prog).expect("an ELF file");
        assert_eq!(elf.needed(), ["libc.so.6", "libz.so.1"]);
        assert_eq!(elf.interp().as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        let lib = synthetic(&[(".dynstr", 3, b"\0", 0)], None);
        let elf = Elf::parse(&lib).expect("an ELF file");
        assert!(elf.needed().is_empty() && elf.interp().is_none());
    }

    #[test]
    fn headers_past_the_end_read_as_nothing() {
        let mut ko = synthetic(&[(".modinfo", 1, b"depends=a\0", 0)], Some("/lib/ld.so"));
        let len = ko.len();
        ko.truncate(len - 64 * 2);
        let elf = Elf::parse(&ko).expect("the ELF header is whole");
        assert!(modinfo(&ko).is_empty());
        assert!(elf.needed().is_empty());
        assert_eq!(elf.interp().as_deref(), Some("/lib/ld.so"));
    }

    #[test]
    fn huge_offsets_read_as_nothing_instead_of_overflowing() {
        let mut elf = synthetic(&[(".modinfo", 1, b"depends=a\0", 0)], Some("/lib/ld.so"));
        // e_shoff and e_phoff at the top of the address space.
        elf[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        elf[0x20..0x28].copy_from_slice(&(u64::MAX - 4).to_le_bytes());
        let parsed = Elf::parse(&elf).expect("the ELF header is whole");
        assert!(modinfo(&elf).is_empty());
        assert!(parsed.needed().is_empty());
        assert_eq!(parsed.interp(), None);
    }
}
