//! Queries: a subset of Cosmos DB's SQL (parsed in [`parse`], evaluated in `eval`), a
//! typed builder that writes the same text ([`builder`]), plans, paged execution and
//! continuation tokens.

pub mod ast;
pub mod builder;
pub(crate) mod eval;
pub(crate) mod exec;
pub(crate) mod keys;
pub mod parse;
pub(crate) mod plan;
pub(crate) mod token;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use eval::Params;
pub use exec::{DEFAULT_PAGE_ITEMS, Explain, MAX_PAGE_ITEMS, PAGE_BYTES, PageOptions, QueryPage};

use crate::error::{DbError, Result};

/// A query's text and its parameter values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuerySpec {
    /// The SQL text.
    pub text: String,
    /// Parameter values by name (with or without the leading `@`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
}

impl QuerySpec {
    /// A query without parameters.
    pub fn new(text: impl Into<String>) -> Self {
        QuerySpec {
            text: text.into(),
            parameters: Map::new(),
        }
    }

    /// Adds a parameter (`name` with or without `@`).
    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.parameters
            .insert(name.trim_start_matches('@').to_string(), value.into());
        self
    }

    /// The parameters as the evaluator takes them.
    pub(crate) fn params(&self) -> Result<Params> {
        let mut out = Params::new();
        for (name, value) in &self.parameters {
            let bare = name.strip_prefix('@').unwrap_or(name);
            if bare.is_empty() || !bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(DbError::invalid(
                    "parameters",
                    format!("`{name}` is not a parameter name"),
                ));
            }
            out.insert(bare.to_string(), value.clone());
        }
        Ok(out)
    }

    /// The bytes that identify the parameters in a continuation token.
    pub(crate) fn params_fingerprint(&self) -> Vec<u8> {
        let mut sorted: Vec<(&String, &Value)> = self.parameters.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        serde_json::to_vec(&sorted).unwrap_or_default()
    }
}

impl From<&str> for QuerySpec {
    fn from(text: &str) -> Self {
        QuerySpec::new(text)
    }
}

impl From<String> for QuerySpec {
    fn from(text: String) -> Self {
        QuerySpec::new(text)
    }
}
