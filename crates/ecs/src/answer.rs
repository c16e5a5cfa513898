//! Pieces many ECS answers share: tag lists and the two paging styles. (The empty answer is
//! [`feitian_api::answers::Empty`], shared with VPC.)

use feitian_api::paging::{Page, PageInfo, TokenPage};
use serde::Serialize;

/// `Tags.Tag[]`, as every resource shows its tags: borrowed (`Tags<&str>`) where the answer
/// borrows its rows, owned (`Tags<String>`) elsewhere.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tags<S> {
    pub tag: Vec<Tag<S>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag<S> {
    pub tag_key: S,
    pub tag_value: S,
}

impl<S> FromIterator<(S, S)> for Tags<S> {
    fn from_iter<I: IntoIterator<Item = (S, S)>>(pairs: I) -> Self {
        Tags { tag: pairs.into_iter().map(|(tag_key, tag_value)| Tag { tag_key, tag_value }).collect() }
    }
}

/// The paging fields of a list that takes either `PageNumber`/`PageSize` or
/// `NextToken`/`MaxResults` (DescribeInstances, DescribeDisks, DescribeSecurityGroups): the
/// answer carries the fields of the style the request used. `#[serde(flatten)]` it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Paging {
    Numbered(PageInfo),
    Token(TokenInfo),
}

/// `NextToken` ("" on the last page) and `TotalCount`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenInfo {
    pub next_token: String,
    pub total_count: u64,
}

impl Paging {
    /// The fields for `shown` rows of `total`, in the style `by_token` says the request used.
    pub fn new(by_token: bool, page: Page, tpage: TokenPage, shown: usize, total: u64) -> Paging {
        if by_token {
            Paging::Token(TokenInfo {
                next_token: tpage.next_token(shown, total).unwrap_or_default(),
                total_count: total,
            })
        } else {
            Paging::Numbered(page.info(total))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_pieces_serialize_as_the_api_writes_them() {
        let tags: Tags<&str> = [("k", "v")].into_iter().collect();
        assert_eq!(serde_json::to_value(tags).unwrap(), json!({"Tag": [{"TagKey": "k", "TagValue": "v"}]}));

        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            #[serde(flatten)]
            paging: Paging,
            items: [u8; 0],
        }
        let page = Page { number: 2, size: 10 };
        let tpage = TokenPage { offset: 0, max_results: 10 };
        let numbered = Answer { paging: Paging::new(false, page, tpage, 10, 25), items: [] };
        assert_eq!(
            serde_json::to_string(&numbered).unwrap(),
            r#"{"PageNumber":2,"PageSize":10,"TotalCount":25,"Items":[]}"#
        );
        let last = Answer { paging: Paging::new(true, page, tpage, 10, 10), items: [] };
        assert_eq!(serde_json::to_string(&last).unwrap(), r#"{"NextToken":"","TotalCount":10,"Items":[]}"#);
        let more = Answer { paging: Paging::new(true, page, tpage, 10, 25), items: [] };
        assert_ne!(serde_json::to_value(&more).unwrap()["NextToken"], "");
    }
}
