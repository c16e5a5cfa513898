//! Request parameters, with typed access that fails with the right error code.
//!
//! RPC parameters arrive flat: `RegionId=…`, lists as `SecurityGroupIds.1=…`, maps as
//! `Tag.1.Key=…&Tag.1.Value=…`. A handler reads them through these getters, which never
//! panic and turn every malformed value into a 4xx `InvalidParameter`/`MissingParameter`.

use crate::error::echo;
use crate::ApiError;
use std::collections::BTreeMap;

/// The longest value feitian accepts in any single parameter (UserData is the largest real
/// one: 32 KiB after base64).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The longest parameter name feitian accepts. The real ones are short (the longest are like
/// `NetworkInterface.1.SecurityGroupIds.1`, under 64 bytes).
pub const MAX_NAME_LEN: usize = 256;

/// The parameters of one request, unique by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// Parameters that the protocol layer consumes; they never reach a service as data.
pub const COMMON: &[&str] = &[
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
    "SecurityToken",
    "BearerToken",
];

impl Params {
    /// Builds from decoded pairs. A name given twice, a name over [`MAX_NAME_LEN`] or a value
    /// over [`MAX_VALUE_LEN`] is an `InvalidParameter`. The edge builds these before the
    /// request's nonce is claimed, so that a request refused here can be retried as it is.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ApiError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            if k.len() > MAX_NAME_LEN {
                return Err(ApiError::invalid_parameter(&k, format!("the name is longer than {MAX_NAME_LEN} bytes")));
            }
            if v.len() > MAX_VALUE_LEN {
                return Err(ApiError::invalid_parameter(&k, format!("longer than {MAX_VALUE_LEN} bytes")));
            }
            if map.contains_key(&k) {
                return Err(ApiError::invalid_parameter(&k, "given more than once"));
            }
            map.insert(k, v);
        }
        Ok(Params { map })
    }

    /// The raw value, if given (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value if given and not empty: the real API treats an empty value as absent.
    pub fn opt_str(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        self.opt_str(name).ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// An optional string of at most `max` characters.
    pub fn opt_str_max(&self, name: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.opt_str(name) {
            Some(v) if v.chars().count() > max => {
                Err(ApiError::invalid_parameter(name, format!("longer than {max} characters")))
            }
            v => Ok(v),
        }
    }

    /// An optional integer in `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.opt_str(name) else {
            return Ok(None);
        };
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid_parameter(name, format!("{:?} is not an integer", echo(v))))?;
        if n < min || n > max {
            return Err(ApiError::invalid_parameter(name, format!("{n} is outside {min}..{max}")));
        }
        Ok(Some(n))
    }

    /// An optional boolean, `true`/`false` in any case.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.opt_str(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_parameter(name, format!("{:?} is neither true nor false", echo(v)))),
        }
    }

    /// A repeated list `Name.1`, `Name.2`, …: values in index order. Indexes must be whole
    /// numbers from 1 to `max`; gaps are allowed (clients drop empty entries).
    pub fn list(&self, name: &str, max: usize) -> Result<Vec<&str>, ApiError> {
        let prefix = format!("{name}.");
        let mut items: Vec<(usize, &str)> = Vec::new();
        for (k, v) in self.map.range(prefix.clone()..) {
            let Some(idx) = k.strip_prefix(&prefix) else {
                break;
            };
            if idx.contains('.') {
                continue; // a map entry like Tag.1.Key: see `list_of_maps`
            }
            let i: usize = idx.parse().map_err(|_| ApiError::invalid_parameter(k, "the index is not a number"))?;
            if i == 0 || i > max {
                return Err(ApiError::invalid_parameter(k, format!("the index must be between 1 and {max}")));
            }
            if !v.is_empty() {
                items.push((i, v.as_str()));
            }
        }
        items.sort_by_key(|(i, _)| *i);
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// Repeated maps `Name.N.Field`: one `BTreeMap` of fields per index, in index order.
    pub fn list_of_maps(&self, name: &str, max: usize) -> Result<Vec<BTreeMap<&str, &str>>, ApiError> {
        let prefix = format!("{name}.");
        let mut items: BTreeMap<usize, BTreeMap<&str, &str>> = BTreeMap::new();
        for (k, v) in self.map.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            let Some((idx, field)) = rest.split_once('.') else {
                continue;
            };
            let i: usize = idx.parse().map_err(|_| ApiError::invalid_parameter(k, "the index is not a number"))?;
            if i == 0 || i > max {
                return Err(ApiError::invalid_parameter(k, format!("the index must be between 1 and {max}")));
            }
            items.entry(i).or_default().insert(field, v.as_str());
        }
        Ok(items.into_values().collect())
    }

    /// Every parameter that is not a protocol one, for idempotency fingerprints.
    pub fn business(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().filter(|(k, _)| !COMMON.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn duplicates_and_huge_values_are_rejected() {
        let e = Params::from_pairs([("A", "1"), ("A", "2")]).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        let big = "x".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(Params::from_pairs([("A", big)]).unwrap_err().status, 400);
        let long_name = "N".repeat(MAX_NAME_LEN + 1);
        let e = Params::from_pairs([(long_name.as_str(), "1")]).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        assert!(e.message.len() < 600, "the name is echoed cut: {}", e.message.len());
        assert!(Params::from_pairs([("N".repeat(MAX_NAME_LEN), "1".to_owned())]).is_ok());
    }

    #[test]
    fn values_in_errors_are_echoed_bounded() {
        // Debug escaping makes a control character six bytes: the echo is cut first.
        let q = p(&[("N", &"\u{1}".repeat(MAX_VALUE_LEN)), ("B", &"y".repeat(MAX_VALUE_LEN))]);
        assert!(q.opt_int("N", 0, 1).unwrap_err().message.len() < 2048);
        assert!(q.opt_bool("B").unwrap_err().message.len() < 2048);
    }

    #[test]
    fn typed_getters() {
        let q = p(&[("N", "5"), ("Big", "99999999999999999999"), ("B", "TRUE"), ("E", ""), ("S", "héllo")]);
        assert_eq!(q.opt_int("N", 1, 10).unwrap(), Some(5));
        assert_eq!(q.opt_int("N", 6, 10).unwrap_err().code, "InvalidParameter");
        assert_eq!(q.opt_int("Big", 0, i64::MAX).unwrap_err().code, "InvalidParameter");
        assert_eq!(q.opt_int("Missing", 0, 1).unwrap(), None);
        assert_eq!(q.opt_bool("B").unwrap(), Some(true));
        assert!(q.opt_bool("S").is_err());
        assert_eq!(q.opt_str("E"), None);
        assert_eq!(q.required_str("E").unwrap_err().code, "MissingParameter");
        assert_eq!(q.opt_str_max("S", 5).unwrap(), Some("héllo"));
        assert!(q.opt_str_max("S", 4).is_err());
    }

    #[test]
    fn lists_and_maps() {
        let q = p(&[
            ("Id.2", "b"),
            ("Id.1", "a"),
            ("Id.10", "j"),
            ("Tag.1.Key", "k1"),
            ("Tag.1.Value", "v1"),
            ("Tag.2.Key", "k2"),
            ("Idx", "not-in-list"),
        ]);
        assert_eq!(q.list("Id", 100).unwrap(), vec!["a", "b", "j"]);
        assert!(q.list("Id", 5).is_err());
        let tags = q.list_of_maps("Tag", 20).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0]["Key"], "k1");
        assert_eq!(tags[0]["Value"], "v1");
        assert_eq!(tags[1].get("Value"), None);
        let bad = p(&[("Id.x", "a")]);
        assert!(bad.list("Id", 10).is_err());
        let zero = p(&[("Id.0", "a")]);
        assert!(zero.list("Id", 10).is_err());
    }

    #[test]
    fn business_skips_protocol_parameters() {
        let q = p(&[("Action", "X"), ("Signature", "s"), ("RegionId", "cn-hangzhou")]);
        assert_eq!(q.business().collect::<Vec<_>>(), vec![("RegionId", "cn-hangzhou")]);
    }
}
