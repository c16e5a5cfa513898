//! Statuses as enums. Every status column of a store row is an enum written and read as the
//! API's own spelling (the text clients see and filter by), so a misspelt status cannot reach
//! a table, and a text the code does not know is an error when it is read back instead of a
//! string passed along.
//!
//! `status_enum!` declares one (each in the module of its resource) with its spellings,
//! `as_str`/`parse`, and the rusqlite conversions. The instance lifecycle's enums belong to
//! the host contract (`feitian-agent-api`); their rows convert through [`column`].

use rusqlite::types::Type;
use rusqlite::Row;

/// A status column held a text that is none of its enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a known {kind}")]
pub struct UnknownStatus {
    /// What the column holds ("VPC status").
    pub kind: &'static str,
    pub text: String,
}

/// Declares a status enum: `pub enum Name as "what it is" { Variant = "Text", … }`.
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $kind:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The API's (and the store's) spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// From the API's spelling (exact, as the API compares it).
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(Box::new($crate::status::UnknownStatus {
                        kind: $kind,
                        text: text.to_owned(),
                    }))
                })
            }
        }
    };
}
pub(crate) use status_enum;

/// Column `at` of a row, through `parse`: for status enums defined outside this crate (which
/// cannot implement rusqlite's traits here).
pub(crate) fn column<T>(
    r: &Row<'_>,
    at: usize,
    kind: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(at)?;
    match parse(&text) {
        Some(v) => Ok(v),
        None => Err(rusqlite::Error::FromSqlConversionFailure(at, Type::Text, Box::new(UnknownStatus { kind, text }))),
    }
}

/// The checks every status enum passes: each variant's text parses back to it, the texts are
/// distinct, and texts that are not a spelling (other case, unknown words) are refused.
#[cfg(test)]
pub(crate) fn assert_text_round_trips<T: Copy + PartialEq + std::fmt::Debug>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
) {
    for &v in all {
        assert_eq!(parse(as_str(v)), Some(v), "{v:?}");
        let lower = as_str(v).to_lowercase();
        if lower != as_str(v) {
            assert_eq!(parse(&lower), None, "{lower:?}");
        }
    }
    let mut texts: Vec<&str> = all.iter().map(|&v| as_str(v)).collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), all.len(), "two variants share a spelling");
    for unknown in ["", "Bogus", "Deleted", " Available"] {
        assert_eq!(parse(unknown), None, "{unknown:?}");
    }
}

/// [`assert_text_round_trips`], and the same through rusqlite's conversions.
#[cfg(test)]
pub(crate) fn assert_sql_round_trips<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
where
    T: Copy + PartialEq + std::fmt::Debug + rusqlite::types::ToSql + rusqlite::types::FromSql,
{
    use rusqlite::types::{ToSqlOutput, ValueRef};
    assert_text_round_trips(all, as_str, parse);
    for &v in all {
        let out = v.to_sql().unwrap();
        let text = match &out {
            ToSqlOutput::Borrowed(ValueRef::Text(t)) => std::str::from_utf8(t).unwrap(),
            other => panic!("{v:?} is written as {other:?}"),
        };
        assert_eq!(text, as_str(v));
        assert_eq!(T::column_result(ValueRef::Text(text.as_bytes())).unwrap(), v);
    }
    assert!(T::column_result(ValueRef::Text(b"Bogus")).is_err());
    assert!(T::column_result(ValueRef::Integer(1)).is_err());
}
