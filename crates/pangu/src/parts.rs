//! Bytes in several buffers, appended as one: a writer hands over what it received (a
//! request body's frames, say) without first copying it into one buffer. Cloning and
//! splitting are cheap (the buffers are shared `Bytes`).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// A sequence of byte buffers, read as their concatenation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Parts {
    pub fn new() -> Parts {
        Parts::default()
    }

    /// The total length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a buffer (an empty one is dropped).
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push_back(part);
        }
    }

    /// The first `n` bytes (at most all), taken off the front; a buffer that straddles the cut
    /// is split, not copied.
    pub fn split_to(&mut self, n: usize) -> Parts {
        let mut head = Parts::new();
        while head.len < n {
            let Some(mut part) = self.parts.pop_front() else { break };
            let want = n - head.len;
            if part.len() > want {
                self.parts.push_front(part.split_off(want));
            }
            self.len -= part.len();
            head.push(part);
        }
        head
    }

    /// The buffers themselves, in order.
    pub fn buffers(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter()
    }

    /// The buffers, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.parts.iter().map(|p| p.as_ref())
    }

    /// The bytes in one buffer: the buffer itself when there is one, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts[0].clone(),
            _ => {
                let mut all = BytesMut::with_capacity(self.len);
                for p in &self.parts {
                    all.extend_from_slice(p);
                }
                all.freeze()
            }
        }
    }
}

impl From<Bytes> for Parts {
    fn from(b: Bytes) -> Parts {
        let mut p = Parts::new();
        p.push(b);
        p
    }
}

impl FromIterator<Bytes> for Parts {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Parts {
        let mut p = Parts::new();
        for b in iter {
            p.push(b);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(pieces: &[&'static [u8]]) -> Parts {
        pieces.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn splitting_anywhere_keeps_every_byte_in_order() {
        let all = b"abcdefghij";
        for cut in 0..=12 {
            let mut p = parts(&[b"abc", b"", b"defg", b"h", b"ij"]);
            assert_eq!(p.len(), 10);
            let head = p.split_to(cut);
            assert_eq!(head.len(), cut.min(10));
            assert_eq!(p.len(), 10 - cut.min(10));
            assert_eq!(head.to_bytes(), Bytes::from_static(&all[..cut.min(10)]));
            assert_eq!(p.to_bytes(), Bytes::from_static(&all[cut.min(10)..]));
        }
    }

    #[test]
    fn buffers_are_kept_as_they_are_and_joined_only_when_asked() {
        let p = parts(&[b"ab", b"", b"cd"]);
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![&b"ab"[..], &b"cd"[..]]);
        assert_eq!(p.to_bytes(), Bytes::from_static(b"abcd"));
        let one = Parts::from(Bytes::from_static(b"xyz"));
        assert_eq!(one.to_bytes().as_ptr(), one.buffers().next().unwrap().as_ptr());
        assert!(Parts::new().to_bytes().is_empty());
    }
}
