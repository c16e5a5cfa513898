//! Parameter names as the SDKs spell them, read one way.
//!
//! Some ECS actions (the automatic snapshot policies') name their parameters in
//! lowerCamelCase (`regionId`, `autoSnapshotPolicyId`, `timePoints`, `diskIds`), and the SDKs
//! differ: the Python Tea SDK and Terraform send `regionId`, the Go SDK's signer adds
//! `RegionId` too, and hand-written calls use either. Rather than every handler looking up
//! two names, the action's parameters are rewritten once, before the handler runs, to the
//! PascalCase every other action uses; the handler then reads `RegionId`, `TimePoints`, ….
//!
//! When both spellings of one name arrive, the lowerCamelCase one (the action's documented
//! parameter) wins: the Go SDK may add a `RegionId` of the client's own region beside the
//! request's `regionId`.

use feitian_api::{ApiError, Params};
use std::collections::BTreeMap;

/// `timePoints` → `TimePoints`; a name already in PascalCase is unchanged.
fn pascal(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The parameters with every name in PascalCase (see the module docs for a name sent both
/// ways). Protocol parameters (`Action`, `Signature`, …) are left out: handlers never read
/// them.
pub fn to_pascal(p: &Params) -> Result<Params, ApiError> {
    let mut out: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for (name, value) in p.business() {
        let lower = name.starts_with(|c: char| c.is_ascii_lowercase());
        let key = pascal(name);
        match out.get(&key) {
            // The documented lowerCamelCase spelling is kept over the PascalCase one.
            Some((true, _)) if !lower => {}
            _ => {
                out.insert(key, (lower, value.to_owned()));
            }
        }
    }
    Params::from_pairs(out.into_iter().map(|(k, (_, v))| (k, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn both_spellings_read_as_pascal_case() {
        let q = to_pascal(&p(&[
            ("regionId", "cn-hangzhou"),
            ("timePoints", r#"["1"]"#),
            ("AutoSnapshotPolicyId", "sp-1"),
            ("Tag.1.Key", "k"),
            ("Action", "CreateAutoSnapshotPolicy"),
        ]))
        .unwrap();
        assert_eq!(q.get("RegionId"), Some("cn-hangzhou"));
        assert_eq!(q.get("TimePoints"), Some(r#"["1"]"#));
        assert_eq!(q.get("AutoSnapshotPolicyId"), Some("sp-1"));
        assert_eq!(q.list_of_maps("Tag", 20).unwrap()[0]["Key"], "k");
        assert_eq!(q.get("regionId"), None);
        assert_eq!(q.get("Action"), None);
    }

    #[test]
    fn the_lower_camel_case_spelling_wins_over_the_signers() {
        for pairs in [
            [("RegionId", "cn-beijing"), ("regionId", "cn-hangzhou")],
            [("regionId", "cn-hangzhou"), ("RegionId", "cn-beijing")],
        ] {
            assert_eq!(to_pascal(&p(&pairs)).unwrap().get("RegionId"), Some("cn-hangzhou"));
        }
        assert_eq!(pascal(""), "");
    }
}
