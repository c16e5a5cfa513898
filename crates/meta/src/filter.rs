//! A small builder for the `WHERE` clauses of Describe* lists: equality, `IN` lists and tag
//! filters, always scoped to one owner. Column names are fixed by callers (never input);
//! values are bound parameters.

use rusqlite::types::Value;

pub struct Filter {
    clauses: Vec<String>,
    args: Vec<Value>,
}

impl Filter {
    /// Rows of `table` owned by `account_id` in `region_id`.
    pub fn owned(account_id: u64, region_id: &str) -> Filter {
        Filter {
            clauses: vec!["account_id = ?".into(), "region_id = ?".into()],
            args: vec![(account_id as i64).into(), region_id.to_owned().into()],
        }
    }

    pub fn eq(mut self, column: &'static str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.clauses.push(format!("{column} = ?"));
            self.args.push(v.to_owned().into());
        }
        self
    }

    /// `column >= value` (texts compare as the store writes times, so a time filter works).
    pub fn at_least(mut self, column: &'static str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.clauses.push(format!("{column} >= ?"));
            self.args.push(v.to_owned().into());
        }
        self
    }

    pub fn eq_bool(mut self, column: &'static str, value: Option<bool>) -> Self {
        if let Some(v) = value {
            self.clauses.push(format!("{column} = ?"));
            self.args.push(Value::Integer(i64::from(v)));
        }
        self
    }

    /// `column IN (…)`; an empty list filters nothing.
    pub fn any_of(mut self, column: &'static str, values: &[&str]) -> Self {
        if !values.is_empty() {
            self.clauses.push(format!("{column} IN ({})", vec!["?"; values.len()].join(", ")));
            self.args.extend(values.iter().map(|v| Value::from(v.to_string())));
        }
        self
    }

    /// Rows carrying every given tag (a key with no value matches any value of that key).
    pub fn tags(mut self, tags: &[(&str, Option<&str>)]) -> Self {
        for (k, v) in tags {
            match v {
                Some(v) => {
                    self.clauses
                        .push("id IN (SELECT resource_id FROM tags WHERE tag_key = ? AND tag_value = ?)".into());
                    self.args.push(k.to_string().into());
                    self.args.push(v.to_string().into());
                }
                None => {
                    self.clauses.push("id IN (SELECT resource_id FROM tags WHERE tag_key = ?)".into());
                    self.args.push(k.to_string().into());
                }
            }
        }
        self
    }

    pub fn where_sql(&self) -> String {
        self.clauses.join(" AND ")
    }

    pub fn args(&self) -> Vec<Value> {
        self.args.clone()
    }
}
