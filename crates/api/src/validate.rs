//! Validation rules the real APIs share across products: resource names, descriptions,
//! `Tag.N` parameters, comma-separated id lists, `DryRun`.

use crate::{ApiError, Params};

/// A resource name (`VpcName`, `VSwitchName`, `SecurityGroupName`, …): 1 to 128 characters,
/// starting with a letter (any script), then letters, digits, `.`, `_`, `-`, `:`; not starting
/// with `http://` or `https://`. `code` is the product's own (`InvalidVpcName.Malformed`).
pub fn name<'a>(p: &'a Params, param: &str, code: &'static str) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = p.opt_str(param) else { return Ok(None) };
    let n = v.chars().count();
    let first_ok = v.chars().next().is_some_and(char::is_alphabetic);
    let rest_ok = v.chars().all(|c| c.is_alphanumeric() || "._-: ".contains(c));
    if n > 128 || !first_ok || !rest_ok || v.starts_with("http://") || v.starts_with("https://") {
        return Err(ApiError::invalid(
            code,
            format!("The specified {param} is not valid: use 1 to 128 characters, starting with a letter, then letters, digits, '.', '_', '-' or ':'."),
        ));
    }
    Ok(Some(v))
}

/// A `Description`: 1 to 256 characters, not starting with `http://` or `https://`.
pub fn description<'a>(p: &'a Params, param: &str, code: &'static str) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = p.opt_str(param) else { return Ok(None) };
    if v.chars().count() > 256 || v.starts_with("http://") || v.starts_with("https://") {
        return Err(ApiError::invalid(
            code,
            format!("The specified {param} is not valid: use at most 256 characters, not starting with http:// or https://."),
        ));
    }
    Ok(Some(v))
}

pub const MAX_TAGS: usize = 20;

/// `Tag.N.Key` / `Tag.N.Value` for a create call: keys 1–128 characters, not starting with
/// `aliyun` or `acs:` and without `http://`/`https://`; values up to 128 characters; at most 20,
/// unique keys.
pub fn tags(p: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in p.list_of_maps("Tag", MAX_TAGS)? {
        let key = t.get("Key").copied().unwrap_or("");
        let value = t.get("Value").copied().unwrap_or("");
        check_tag_key(key)?;
        if value.chars().count() > 128 || value.starts_with("http://") || value.starts_with("https://") {
            return Err(ApiError::invalid(
                "InvalidTagValue.Malformed",
                "The specified tag value is not valid: at most 128 characters, not starting with http:// or https://.",
            ));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(ApiError::invalid(
                "InvalidTagKey.Duplicate",
                format!("The tag key {key:?} is given more than once."),
            ));
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

pub fn check_tag_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::missing_parameter("Tag.N.Key"));
    }
    let lower = key.to_ascii_lowercase();
    if key.chars().count() > 128
        || lower.starts_with("aliyun")
        || lower.starts_with("acs:")
        || key.contains("http://")
        || key.contains("https://")
    {
        return Err(ApiError::invalid(
            "InvalidTagKey.Malformed",
            "The specified tag key is not valid: 1 to 128 characters, not starting with aliyun or acs:, without http:// or https://.",
        ));
    }
    Ok(())
}

/// `Tag.N.Key` / `Tag.N.Value` as a filter: each key with its value, or any value when the value
/// is absent.
pub fn tag_filter(p: &Params) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let mut out = Vec::new();
    for t in p.list_of_maps("Tag", MAX_TAGS)? {
        let key = t.get("Key").copied().unwrap_or("");
        check_tag_key(key)?;
        out.push((key.to_owned(), t.get("Value").filter(|v| !v.is_empty()).map(|v| v.to_string())));
    }
    Ok(out)
}

/// A comma-separated list of ids (`VpcId=vpc-a,vpc-b`), or a JSON array (`["vpc-a"]`), at most
/// `max` of them.
pub fn id_list(p: &Params, param: &str, max: usize) -> Result<Vec<String>, ApiError> {
    let Some(v) = p.opt_str(param) else { return Ok(vec![]) };
    let ids: Vec<String> = if v.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(v)
            .map_err(|_| ApiError::invalid_parameter(param, "not a JSON array of strings"))?
    } else {
        v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
    };
    if ids.len() > max {
        return Err(ApiError::invalid_parameter(param, format!("more than {max} ids")));
    }
    Ok(ids)
}

/// `DryRun=true`: the request is valid, nothing was done (the real `DryRunOperation` answer).
pub fn dry_run(p: &Params) -> Result<(), ApiError> {
    if p.opt_bool("DryRun")?.unwrap_or(false) {
        return Err(ApiError::new(400, "DryRunOperation", "Request validation has been passed with DryRun flag set."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn names_and_descriptions() {
        assert_eq!(name(&p(&[("N", "web-1")]), "N", "C").unwrap(), Some("web-1"));
        assert_eq!(name(&p(&[("N", "网络A")]), "N", "C").unwrap(), Some("网络A"));
        assert_eq!(name(&p(&[("N", "1abc")]), "N", "C").unwrap_err().code, "C");
        assert!(name(&p(&[("N", "a;drop")]), "N", "C").is_err());
        assert!(name(&p(&[("N", &"a".repeat(129))]), "N", "C").is_err());
        assert!(description(&p(&[("D", "https://x")]), "D", "C").is_err());
        assert_eq!(description(&p(&[("D", "ok <b>")]), "D", "C").unwrap(), Some("ok <b>"));
    }

    #[test]
    fn tag_rules() {
        let t = tags(&p(&[("Tag.1.Key", "env"), ("Tag.1.Value", "dev"), ("Tag.2.Key", "team")])).unwrap();
        assert_eq!(t, vec![("env".into(), "dev".into()), ("team".into(), "".into())]);
        assert!(tags(&p(&[("Tag.1.Key", "aliyun:x")])).is_err());
        assert!(tags(&p(&[("Tag.1.Value", "v")])).is_err());
        assert!(tags(&p(&[("Tag.1.Key", "a"), ("Tag.2.Key", "a")])).is_err());
        assert!(tags(&p(&[("Tag.21.Key", "a")])).is_err());
        let f = tag_filter(&p(&[("Tag.1.Key", "env")])).unwrap();
        assert_eq!(f, vec![("env".into(), None)]);
    }

    #[test]
    fn id_lists() {
        assert_eq!(id_list(&p(&[("V", "a, b")]), "V", 5).unwrap(), vec!["a", "b"]);
        assert_eq!(id_list(&p(&[("V", "[\"a\",\"b\"]")]), "V", 5).unwrap(), vec!["a", "b"]);
        assert!(id_list(&p(&[("V", "[1]")]), "V", 5).is_err());
        assert!(id_list(&p(&[("V", "a,b,c")]), "V", 2).is_err());
        assert!(id_list(&p(&[]), "V", 2).unwrap().is_empty());
        assert_eq!(dry_run(&p(&[("DryRun", "true")])).unwrap_err().code, "DryRunOperation");
        assert!(dry_run(&p(&[("DryRun", "false")])).is_ok());
    }
}
