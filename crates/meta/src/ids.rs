//! Resource ids in the real formats: a prefix, `-`, the region's two-character code, then
//! random lowercase letters and digits, 20 characters after the dash in all
//! (`i-bp1a2b3c4d5e6f7g8h9i`). AccessKeys look like the real ones too (`LTAI…`).

use rand::distributions::{Alphanumeric, Distribution, Uniform};
use rand::Rng;

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn lower_alnum(n: usize) -> String {
    let mut rng = rand::thread_rng();
    let pick = Uniform::from(0..LOWER_ALNUM.len());
    (0..n).map(|_| LOWER_ALNUM[pick.sample(&mut rng)] as char).collect()
}

/// A new resource id such as `vpc-bp1…` (`prefix` without the dash).
pub fn resource_id(prefix: &str, region_code: &str) -> String {
    format!("{prefix}-{region_code}{}", lower_alnum(20 - region_code.len()))
}

/// A new AccessKeyId: `LTAI` and 20 letters and digits, as the real ones.
pub fn access_key_id() -> String {
    let s: String = rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect();
    format!("LTAI{s}")
}

/// A new AccessKeySecret: 30 letters and digits.
pub fn access_key_secret() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(30).map(char::from).collect()
}

/// A new account id: 16 decimal digits, never starting with 0.
pub fn account_id() -> u64 {
    rand::thread_rng().gen_range(1_000_000_000_000_000..10_000_000_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = resource_id("i", "bp");
        assert_eq!(id.len(), 22);
        assert!(id.starts_with("i-bp"));
        assert!(id[2..].bytes().all(|b| LOWER_ALNUM.contains(&b)));
        assert_ne!(resource_id("vpc", "bp"), resource_id("vpc", "bp"));
        let ak = access_key_id();
        assert_eq!(ak.len(), 24);
        assert!(ak.starts_with("LTAI"));
        assert_eq!(access_key_secret().len(), 30);
        assert_eq!(account_id().to_string().len(), 16);
    }
}
