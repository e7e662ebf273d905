//! Choosing how to read a query's rows.

use super::ast::Query;
use super::exec::Explain;

/// Where rows come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Access {
    /// Every document of the collection, in key order (partition key, then id).
    Scan,
}

impl Access {
    /// The name continuation tokens record.
    pub(crate) fn name(&self) -> String {
        match self {
            Access::Scan => "scan".into(),
        }
    }
}

/// How a query runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) access: Access,
    /// `ORDER BY` is not the access path's order: rows are sorted in memory.
    pub(crate) sort_in_memory: bool,
}

/// The plan for `query`.
pub(crate) fn plan(query: &Query) -> Plan {
    Plan {
        access: Access::Scan,
        sort_in_memory: !query.order_by.is_empty(),
    }
}

impl Plan {
    /// The plan in words.
    pub(crate) fn explain(&self, query: &Query) -> Explain {
        Explain {
            access: self.access.name(),
            index: None,
            equality: Vec::new(),
            range: None,
            order: if query.order_by.is_empty() {
                "none".into()
            } else if self.sort_in_memory {
                "sort".into()
            } else {
                "index".into()
            },
            filter: query.filter.is_some(),
            aggregate: query.is_aggregate(),
        }
    }
}
