//! Paging parameters as the real APIs take them: `PageNumber`/`PageSize` (with `TotalCount`
//! in the answer) and `NextToken`/`MaxResults`.

use crate::{ApiError, Params};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// `PageNumber` (from 1) and `PageSize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

impl Page {
    /// Reads `PageNumber` (default 1) and `PageSize` (default `default`, at most `max`).
    pub fn from_params(p: &Params, default: u32, max: u32) -> Result<Page, ApiError> {
        // PageNumber is a 32-bit Integer in every API model.
        let number = p.opt_int("PageNumber", 1, i64::from(i32::MAX))?.unwrap_or(1) as u32;
        let size = p.opt_int("PageSize", 1, i64::from(max))?.map(|n| n as u32).unwrap_or(default);
        Ok(Page { number, size })
    }

    /// The SQL-style offset of the first row of this page.
    pub fn offset(&self) -> u64 {
        u64::from(self.number - 1) * u64::from(self.size)
    }

    pub fn limit(&self) -> u64 {
        u64::from(self.size)
    }

    /// The answer's paging fields for this page of `total` rows.
    pub fn info(&self, total: u64) -> PageInfo {
        PageInfo { page_number: self.number, page_size: self.size, total_count: total }
    }
}

/// `PageNumber`, `PageSize` and `TotalCount` of a paged answer: `#[serde(flatten)]` it into
/// the answer's struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PageInfo {
    pub page_number: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// `NextToken` / `MaxResults`. The token is opaque to clients; here it carries an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPage {
    pub offset: u64,
    pub max_results: u32,
}

impl TokenPage {
    pub fn from_params(p: &Params, default: u32, max: u32) -> Result<TokenPage, ApiError> {
        let max_results = p.opt_int("MaxResults", 1, i64::from(max))?.map(|n| n as u32).unwrap_or(default);
        let offset = match p.opt_str("NextToken") {
            None => 0,
            Some(t) => decode_token(t).ok_or_else(|| {
                ApiError::invalid("InvalidNextToken.Malformed", "The specified NextToken is not valid.")
            })?,
        };
        Ok(TokenPage { offset, max_results })
    }

    /// The token for the page after this one, or `None` when `total` rows are exhausted.
    pub fn next_token(&self, returned: usize, total: u64) -> Option<String> {
        let next = self.offset.saturating_add(returned as u64);
        (returned > 0 && next < total).then(|| encode_token(next))
    }
}

/// A plain-number `NextToken` (as DescribeRouteEntryList, DescribeSecurityGroupAttribute and
/// ListTagResources give them): the offset, at most a billion.
pub fn offset_token(p: &Params) -> Result<usize, ApiError> {
    match p.opt_str("NextToken") {
        None => Ok(0),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1_000_000_000)
            .ok_or_else(|| ApiError::invalid("InvalidNextToken.Malformed", "The specified NextToken is not valid.")),
    }
}

/// The plain-number token after `shown` items from `offset` of `total`; "" at the end.
pub fn next_offset_token(offset: usize, shown: usize, total: usize) -> String {
    let next = offset.saturating_add(shown);
    if shown > 0 && next < total {
        next.to_string()
    } else {
        String::new()
    }
}

fn encode_token(offset: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("ft1:{offset}"))
}

fn decode_token(t: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).ok()?;
    std::str::from_utf8(&raw).ok()?.strip_prefix("ft1:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_info_flattens_into_an_answer() {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            items: Vec<u8>,
            #[serde(flatten)]
            page: PageInfo,
        }
        let page = Page { number: 3, size: 10 };
        let v = serde_json::to_value(Answer { items: vec![1], page: page.info(21) }).unwrap();
        assert_eq!(v, serde_json::json!({"Items": [1], "PageNumber": 3, "PageSize": 10, "TotalCount": 21}));
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn page_defaults_and_limits() {
        let pg = Page::from_params(&p(&[]), 10, 100).unwrap();
        assert_eq!(pg, Page { number: 1, size: 10 });
        assert_eq!(pg.offset(), 0);
        let pg = Page::from_params(&p(&[("PageNumber", "3"), ("PageSize", "50")]), 10, 100).unwrap();
        assert_eq!(pg.offset(), 100);
        assert!(Page::from_params(&p(&[("PageSize", "101")]), 10, 100).is_err());
        assert!(Page::from_params(&p(&[("PageNumber", "0")]), 10, 100).is_err());
        assert!(Page::from_params(&p(&[("PageNumber", "-1")]), 10, 100).is_err());
        assert!(Page::from_params(&p(&[("PageNumber", "2147483648")]), 10, 100).is_err());
        assert!(Page::from_params(&p(&[("PageNumber", "2147483647")]), 10, 100).is_ok());
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = TokenPage { offset: 0, max_results: 10 };
        let next = t.next_token(10, 25).unwrap();
        let t2 = TokenPage::from_params(&p(&[("NextToken", &next)]), 10, 100).unwrap();
        assert_eq!(t2.offset, 10);
        assert_eq!(t2.next_token(10, 25).map(|s| decode_token(&s)), Some(Some(20)));
        assert_eq!(TokenPage { offset: 20, max_results: 10 }.next_token(5, 25), None);
        assert_eq!(
            offset_token(&p(&[("NextToken", "18446744073709551615")])).unwrap_err().code,
            "InvalidNextToken.Malformed"
        );
        assert_eq!(offset_token(&p(&[("NextToken", "20")])).unwrap(), 20);
        assert_eq!(next_offset_token(usize::MAX, 5, 10), "");
        assert_eq!(next_offset_token(0, 5, 10), "5");
        let far = TokenPage { offset: u64::MAX, max_results: 10 };
        assert_eq!(far.next_token(10, 5), None);
        let e = TokenPage::from_params(&p(&[("NextToken", "%%%")]), 10, 100).unwrap_err();
        assert_eq!(e.code, "InvalidNextToken.Malformed");
    }
}
