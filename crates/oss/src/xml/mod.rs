//! XML, both ways: the answers `oss2` parses ([`answers`]) and the request bodies it sends
//! ([`requests`]).
//!
//! This file holds the two small tools they share: a writer that escapes everything it is
//! given, and a tree reader over `quick-xml` that turns any malformed, oversized or
//! DTD-bearing body into `MalformedXML` instead of a panic. No XML here is pretty-printed;
//! `oss2` parses with ElementTree, which does not care.

pub mod answers;
pub mod requests;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::errors::OssError;

/// Builds a document as a string. Element names are the crate's own constants; text is
/// escaped, including characters XML 1.0 cannot carry literally.
pub(crate) struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// A document starting with the declaration the real service writes.
    pub(crate) fn document() -> Self {
        XmlWriter { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") }
    }

    pub(crate) fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    pub(crate) fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `<name>text</name>`, text escaped.
    pub(crate) fn text_element(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_text_into(text, &mut self.out);
        self.close(name);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Escapes `s` as XML character data (never used in attributes, so quotes stay literal, as in
/// OSS's `<ETag>"…"</ETag>`). Besides `& < >`, every control character is written as a
/// character reference: `\r` would otherwise be normalised to `\n` by the client's parser.
/// Keys may contain any control character (OSS does not forbid them), but XML 1.0 cannot carry
/// C0 characters other than TAB, LF and CR even as references; they are written as references
/// anyway, as S3 does, and strict parsers (Python's expat, hence `oss2`) reject such a
/// document. Clients listing such keys must ask for `encoding-type=url` — `oss2` always does.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_text_into(s, &mut out);
    out
}

fn escape_text_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push_str(&format!("&#x{:X};", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Deepest nesting accepted; the request bodies OSS defines are 3 levels deep.
const MAX_DEPTH: usize = 16;
/// Most elements accepted in one body: a `CompleteMultipartUpload` of 10,000 parts has
/// 30,001, and nothing OSS takes is larger.
const MAX_ELEMENTS: usize = 65_536;

/// One element of a parsed request body: its local name (namespace prefix dropped), its own
/// text (entities resolved, not trimmed: an object key may begin or end with spaces), and its
/// child elements in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The first child called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child called `name`, in document order.
    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses a whole request body into its root element. Anything that is not one well-formed,
/// UTF-8, DTD-free element tree within the limits above is `MalformedXML`.
pub(crate) fn parse_document(body: &[u8]) -> Result<Element, OssError> {
    let text = std::str::from_utf8(body).map_err(|_| OssError::malformed_xml())?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        let event = reader.read_event().map_err(|_| OssError::malformed_xml())?;
        match event {
            Event::Start(start) => {
                let element = new_element(&start, root.is_some(), stack.len(), &mut count)?;
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = new_element(&start, root.is_some(), stack.len(), &mut count)?;
                attach(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(OssError::malformed_xml)?;
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|_| OssError::malformed_xml())?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    // Whitespace around the root is fine; anything else is not XML.
                    None if s.trim().is_empty() => {}
                    None => return Err(OssError::malformed_xml()),
                }
            }
            Event::CData(c) => {
                let top = stack.last_mut().ok_or_else(OssError::malformed_xml)?;
                let s = std::str::from_utf8(&c).map_err(|_| OssError::malformed_xml())?;
                top.text.push_str(s);
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            // A DTD is the door to entity expansion tricks; no OSS body has one.
            Event::DocType(_) => return Err(OssError::malformed_xml()),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(OssError::malformed_xml());
    }
    root.ok_or_else(OssError::malformed_xml)
}

/// An element just opened, refused if it would be a second root, too deep, or one too many.
fn new_element(
    start: &quick_xml::events::BytesStart<'_>,
    have_root: bool,
    depth: usize,
    count: &mut usize,
) -> Result<Element, OssError> {
    *count += 1;
    if have_root || *count > MAX_ELEMENTS || depth >= MAX_DEPTH {
        return Err(OssError::malformed_xml());
    }
    let name = std::str::from_utf8(start.local_name().as_ref()).map_err(|_| OssError::malformed_xml())?.to_owned();
    Ok(Element { name, ..Element::default() })
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        // Quotes stay literal in text: OSS writes `<ETag>"…"</ETag>`.
        assert_eq!(escape_text("a<b>&\"c\"\r\n\t\u{1}é"), "a&lt;b&gt;&amp;\"c\"&#xD;&#xA;&#x9;&#x1;é");
    }

    #[test]
    fn parses_a_tree_with_declaration_namespaces_and_entities() {
        let doc = br#"<?xml version='1.0' encoding='utf-8'?>
            <x:Delete xmlns:x="http://example.com/doc"><Quiet>true</Quiet>
            <Object><Key> a&amp;b&#x41; </Key></Object><Object><Key><![CDATA[<c>]]></Key></Object><Empty/></x:Delete>"#;
        let root = parse_document(doc).unwrap();
        assert_eq!(root.name, "Delete");
        assert_eq!(root.child("Quiet").unwrap().text, "true");
        let keys: Vec<&str> = root.children_named("Object").map(|o| o.child("Key").unwrap().text.as_str()).collect();
        assert_eq!(keys, vec![" a&bA ", "<c>"]);
        assert!(root.child("Empty").is_some());
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let root = parse_document("\u{feff}<?xml version=\"1.0\"?><Delete/>".as_bytes()).unwrap();
        assert_eq!(root.name, "Delete");
    }

    #[test]
    fn malformed_bodies_are_malformed_xml() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        let cases: Vec<&[u8]> = vec![
            b"",
            b"   ",
            b"not xml",
            b"<a>",
            b"<a></b>",
            b"<a></a><b></b>",
            b"<a></a>trailing",
            b"</a>",
            b"<a>&unknown;</a>",
            b"<a>\xff</a>",
            b"<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
            b"<a><b></a></b>",
            deep.as_bytes(),
        ];
        for body in cases {
            let err = parse_document(body).unwrap_err();
            assert_eq!(err.code, "MalformedXML", "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: every prefix and many byte mutations of a valid body.
        let body = b"<?xml version=\"1.0\"?><CompleteMultipartUpload><Part><PartNumber>1</PartNumber>\
            <ETag>\"A\"</ETag></Part></CompleteMultipartUpload>";
        for i in 0..=body.len() {
            let _ = parse_document(&body[..i]);
        }
        let mut seed: u32 = 7;
        for _ in 0..2000 {
            let mut b = body.to_vec();
            for _ in 0..3 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (seed as usize >> 8) % b.len();
                b[i] = (seed >> 16) as u8;
            }
            let _ = parse_document(&b);
        }
    }
}
