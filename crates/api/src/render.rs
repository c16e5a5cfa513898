//! Rendering answers and errors in the two formats the RPC APIs speak.
//!
//! JSON is the default. XML (`Format=XML`) follows the real service's mapping of the same
//! document: the root is `<{Action}Response>`; an object field becomes an element; a list
//! field repeats its element once per item (`"Region": [a, b]` is `<Region>a</Region>
//! <Region>b</Region>`); nulls are left out.

use crate::ApiError;
use quick_xml::escape::escape;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// From the `Format` parameter: `XML` in any case is XML, anything else JSON. The real
    /// gateway is this lenient, and clients rely on it: aliyun-python-sdk-core sends
    /// `Format=None` when the caller chose no format.
    pub fn parse(v: Option<&str>) -> Format {
        match v {
            Some(s) if s.eq_ignore_ascii_case("xml") => Format::Xml,
            _ => Format::Json,
        }
    }

    /// The exact content type the official SDKs test for (the V3 SDK parses an error body as
    /// XML only when it sees `text/xml;charset=utf-8`).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json;charset=utf-8",
            Format::Xml => "text/xml;charset=utf-8",
        }
    }
}

/// A successful answer: `RequestId` first, then the handler's fields.
pub fn success(
    format: Format,
    action: &str,
    request_id: &str,
    body: &crate::Reply,
) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        Format::Json => body.to_json(request_id),
        Format::Xml => {
            let fields = body.to_object()?;
            let mut doc = Map::with_capacity(fields.len() + 1);
            doc.insert("RequestId".into(), Value::String(request_id.into()));
            doc.extend(fields.into_iter().filter(|(k, _)| k != "RequestId"));
            Ok(xml_document(&format!("{action}Response"), &doc))
        }
    }
}

/// An error in the Alibaba envelope.
pub fn error(format: Format, request_id: &str, host_id: &str, e: &ApiError) -> Vec<u8> {
    let mut doc = Map::new();
    doc.insert("RequestId".into(), request_id.into());
    doc.insert("HostId".into(), host_id.into());
    doc.insert("Code".into(), e.code.as_ref().into());
    doc.insert("Message".into(), e.message.clone().into());
    doc.insert("Recommend".into(), e.recommend.clone().unwrap_or_default().into());
    match format {
        Format::Json => serde_json::to_vec(&doc).unwrap_or_default(),
        Format::Xml => xml_document("Error", &doc),
    }
}

fn xml_document(root: &str, doc: &Map<String, Value>) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    element(&mut out, root, &Value::Object(doc.clone()));
    out.into_bytes()
}

fn element(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                element(out, name, item);
            }
        }
        Value::Object(fields) => {
            open(out, name);
            for (k, v) in fields {
                element(out, k, v);
            }
            close(out, name);
        }
        Value::String(s) => {
            open(out, name);
            out.push_str(&escape(xml_chars(s).as_ref()));
            close(out, name);
        }
        Value::Bool(b) => {
            open(out, name);
            out.push_str(if *b { "true" } else { "false" });
            close(out, name);
        }
        Value::Number(n) => {
            open(out, name);
            out.push_str(&n.to_string());
            close(out, name);
        }
    }
}

/// XML 1.0 cannot carry most control characters even escaped (a parser refuses `&#1;`):
/// they become U+FFFD, so that an answer that echoes odd input stays well-formed.
fn xml_chars(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}';
    if s.chars().any(bad) {
        s.chars().map(|c| if bad(c) { '\u{FFFD}' } else { c }).collect::<String>().into()
    } else {
        s.into()
    }
}

fn open(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_parse() {
        assert_eq!(Format::parse(None), Format::Json);
        assert_eq!(Format::parse(Some("xml")), Format::Xml);
        assert_eq!(Format::parse(Some("JSON")), Format::Json);
        assert_eq!(Format::parse(Some("None")), Format::Json);
    }

    #[test]
    fn json_puts_request_id_first() {
        let body = json!({"Regions": {"Region": [{"RegionId": "cn-hangzhou"}]}});
        let out = success(Format::Json, "DescribeRegions", "RID", &crate::Reply::new(body)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"RequestId":"RID","Regions":{"Region":[{"RegionId":"cn-hangzhou"}]}}"#
        );
    }

    #[test]
    fn xml_repeats_list_elements_and_escapes() {
        let body =
            json!({"Regions": {"Region": [{"RegionId": "a<b", "N": 1}, {"RegionId": "c", "Ok": true}]}, "Gone": null});
        let out = success(Format::Xml, "DescribeRegions", "RID", &crate::Reply::new(body)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeRegionsResponse><RequestId>RID</RequestId><Regions><Region><RegionId>a&lt;b</RegionId><N>1</N></Region><Region><RegionId>c</RegionId><Ok>true</Ok></Region></Regions></DescribeRegionsResponse>"
        );
    }

    #[test]
    fn control_characters_never_break_xml() {
        let e = ApiError::new(404, "X", "id \u{1}\u{7}\u{1b}[2J\u{7f} tab\there");
        let x = String::from_utf8(error(Format::Xml, "R", "h", &e)).unwrap();
        assert!(!x.chars().any(|c| c < ' ' && c != '\t'), "{x:?}");
        assert!(x.contains("id \u{FFFD}\u{FFFD}\u{FFFD}[2J\u{7f} tab\there"));
    }

    #[test]
    fn errors_in_both_formats() {
        let e = ApiError::missing_parameter("RegionId");
        let j: Value = serde_json::from_slice(&error(Format::Json, "R", "ecs.aliyuncs.com", &e)).unwrap();
        assert_eq!(j["Code"], "MissingParameter");
        assert_eq!(j["RequestId"], "R");
        assert_eq!(j["HostId"], "ecs.aliyuncs.com");
        let x = String::from_utf8(error(Format::Xml, "R", "h", &e)).unwrap();
        assert!(x.contains("<Error><RequestId>R</RequestId><HostId>h</HostId><Code>MissingParameter</Code>"));
        assert!(x.contains("&quot;RegionId&quot;"));
    }
}
