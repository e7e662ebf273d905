//! Choosing how to read a query's rows: a scan of the collection, or a range of one
//! secondary index.
//!
//! The planner looks at the `AND`ed conditions of `WHERE` that compare a path with a
//! constant or parameter (`=`, `<`, `<=`, `>`, `>=`, `BETWEEN`, `IN`). An index is
//! usable when its first paths are bound by equality or `IN` (any number of them,
//! possibly none), optionally followed by one path bound by a range, or when it gives the
//! `ORDER BY` order after those equalities. `IN` lists make one range per combination of
//! values (at most [`MAX_RANGES`]), read in index order. The best index has the most
//! equalities, then a range, then the order; ties go to the index declared first. The
//! filter still runs on every document the index yields, so an index only ever narrows
//! the reading, never the answer.

use serde_json::Value;

use super::ast::{BinOp, Expr, Path, Query};
use super::eval::Params;
use super::exec::Explain;
use super::keys;
use crate::engine::IndexInfo;

/// A range of index entries: `[start, end)`, `None` for no end.
pub(crate) type IndexRange = (Vec<u8>, Option<Vec<u8>>);

/// Where rows come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Access {
    /// Every document of the collection, in key order (partition key, then id).
    Scan,
    /// The entries of one index in each `[start, end)` of `ranges` (sorted, disjoint),
    /// backwards when `reverse`.
    Index {
        name: String,
        table: u64,
        ranges: Vec<IndexRange>,
        reverse: bool,
    },
}

impl Access {
    /// The name continuation tokens record: an index by its name and its table, so an
    /// index dropped and declared again under the same name (on other paths, perhaps)
    /// is another access path.
    pub(crate) fn name(&self) -> String {
        match self {
            Access::Scan => "scan".into(),
            Access::Index {
                name,
                table,
                reverse,
                ..
            } => {
                format!(
                    "index:{name}@{table}{}",
                    if *reverse { ":desc" } else { "" }
                )
            }
        }
    }
}

/// How a query runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) access: Access,
    /// `ORDER BY` is not the access path's order: rows are sorted in memory.
    pub(crate) sort_in_memory: bool,
    equality: Vec<String>,
    range: Option<String>,
}

/// The most index ranges one plan reads (the product of its `IN` lists' lengths).
pub(crate) const MAX_RANGES: usize = 256;

/// What the conditions say about one path.
#[derive(Debug, Default)]
struct Bounds<'a> {
    eq: Option<&'a Value>,
    /// `IN` with several values: any of them.
    any: Option<Vec<&'a Value>>,
    lower: Option<&'a Value>,
    upper: Option<&'a Value>,
}

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(BinOp::And, a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

fn constant<'a>(e: &'a Expr, params: &'a Params) -> Option<&'a Value> {
    match e {
        Expr::Literal(v) => Some(v),
        Expr::Param(p) => params.get(p),
        _ => None,
    }
}

fn primitive(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// The bounds the conditions put on paths, by JSON pointer.
fn bounds<'a>(query: &'a Query, params: &'a Params) -> Vec<(String, Bounds<'a>)> {
    let mut out: Vec<(String, Bounds<'a>)> = Vec::new();
    let Some(filter) = &query.filter else {
        return out;
    };
    let mut parts = Vec::new();
    conjuncts(filter, &mut parts);
    let slot = |path: &Path, out: &mut Vec<(String, Bounds<'a>)>| -> usize {
        let key = path.pointer();
        match out.iter().position(|(p, _)| *p == key) {
            Some(i) => i,
            None => {
                out.push((key, Bounds::default()));
                out.len() - 1
            }
        }
    };
    for part in parts {
        match part {
            Expr::Binary(op, a, b) => {
                let (path, value, op) = match (&**a, &**b) {
                    (Expr::Path(p), other) if !p.0.is_empty() => match constant(other, params) {
                        Some(v) => (p, v, *op),
                        None => continue,
                    },
                    (other, Expr::Path(p)) if !p.0.is_empty() => match constant(other, params) {
                        Some(v) => (p, v, op.flipped()),
                        None => continue,
                    },
                    _ => continue,
                };
                let i = slot(path, &mut out);
                let b = &mut out[i].1;
                match op {
                    BinOp::Eq => b.eq = b.eq.or(Some(value)),
                    BinOp::Gt | BinOp::Ge if primitive(value) => {
                        b.lower = b.lower.or(Some(value));
                    }
                    BinOp::Lt | BinOp::Le if primitive(value) => {
                        b.upper = b.upper.or(Some(value));
                    }
                    _ => {}
                }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated: false,
            } => {
                let Expr::Path(path) = &**expr else { continue };
                let (Some(lo), Some(hi)) = (constant(low, params), constant(high, params)) else {
                    continue;
                };
                if path.0.is_empty() || !primitive(lo) || !primitive(hi) {
                    continue;
                }
                let i = slot(path, &mut out);
                let b = &mut out[i].1;
                b.lower = b.lower.or(Some(lo));
                b.upper = b.upper.or(Some(hi));
            }
            Expr::In {
                expr,
                list,
                negated: false,
            } if !list.is_empty() => {
                let Expr::Path(path) = &**expr else { continue };
                let Some(values) = list
                    .iter()
                    .map(|e| constant(e, params))
                    .collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                if path.0.is_empty() {
                    continue;
                }
                let i = slot(path, &mut out);
                let b = &mut out[i].1;
                if let [v] = values[..] {
                    b.eq = b.eq.or(Some(v));
                } else if b.any.is_none() {
                    b.any = Some(values);
                }
            }
            _ => {}
        }
    }
    out
}

/// The first byte of the encodings of values of `v`'s type.
fn type_start(v: &Value) -> Vec<u8> {
    let mut e = keys::encode(Some(v));
    e.truncate(1);
    e
}

/// The plan for `query` over a collection with `indexes`.
pub(crate) fn plan(query: &Query, params: &Params, indexes: &[IndexInfo]) -> Plan {
    let (candidates, scan) = candidates(query, params, indexes);
    // The best score; ties go to the index declared first.
    let mut best: Option<(u32, Plan)> = None;
    for (score, plan) in candidates {
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, plan));
        }
    }
    best.map_or(scan, |(_, plan)| plan)
}

/// The plan a continuation token was made with (`access`, as [`Access::name`] gives it),
/// if it can still run: a scan always can, an index while it is declared. Pages then
/// resume exactly where the token stopped, even after an index was created that the
/// query would now prefer.
pub(crate) fn resume(
    query: &Query,
    params: &Params,
    indexes: &[IndexInfo],
    access: &str,
) -> Option<Plan> {
    let (candidates, scan) = candidates(query, params, indexes);
    if scan.access.name() == access {
        return Some(scan);
    }
    candidates
        .into_iter()
        .map(|(_, plan)| plan)
        .find(|plan| plan.access.name() == access)
}

/// Every index plan that helps `query` with its score, in declaration order, and the scan.
fn candidates(query: &Query, params: &Params, indexes: &[IndexInfo]) -> (Vec<(u32, Plan)>, Plan) {
    let bounds = bounds(query, params);
    let find = |pointer: &str| bounds.iter().find(|(p, _)| p == pointer).map(|(_, b)| b);
    let eq_bound = |pointer: &str| find(pointer).is_some_and(|b| b.eq.is_some());
    // ORDER BY items on paths fixed by equality order nothing.
    let order: Vec<_> = query
        .order_by
        .iter()
        .filter(|o| o.computed.is_some() || !eq_bound(&o.path.pointer()))
        .collect();
    let mut found: Vec<(u32, Plan)> = Vec::new();
    for index in indexes {
        // The leading paths bound by equality or IN, as long as the ranges stay few.
        let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
        let mut k = 0;
        for p in &index.paths {
            let Some(b) = find(p) else {
                break;
            };
            let values: Vec<&Value> = match (b.eq, &b.any) {
                (Some(v), _) => vec![v],
                (None, Some(any)) => any.clone(),
                (None, None) => break,
            };
            if prefixes.len() * values.len() > MAX_RANGES {
                break;
            }
            prefixes = prefixes
                .iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        keys::encode_into(&mut next, Some(v));
                        next
                    })
                })
                .collect();
            k += 1;
        }
        prefixes.sort();
        prefixes.dedup();
        let range = index
            .paths
            .get(k)
            .and_then(|p| find(p).map(|b| (p, b)))
            .filter(|(_, b)| b.lower.is_some() || b.upper.is_some());
        let descending = order.first().is_some_and(|o| o.descending);
        // Several prefixes are read one after another: in index order only when the
        // order starts at the first path they differ in, which is not checked: sorted.
        let order_ok = prefixes.len() == 1
            && !order.is_empty()
            && order.len() <= index.paths.len() - k
            && order
                .iter()
                .enumerate()
                .all(|(i, o)| o.descending == descending && o.path.pointer() == index.paths[k + i]);
        let score = 4 * k as u32 + 2 * u32::from(range.is_some()) + u32::from(order_ok);
        if score == 0 {
            continue;
        }
        let ranges = prefixes
            .iter()
            .map(|prefix| match range {
                None => (prefix.clone(), keys::prefix_end(prefix)),
                Some((_, b)) => {
                    let start = match (b.lower, b.upper) {
                        (Some(lo), _) => [prefix.as_slice(), &keys::encode(Some(lo))].concat(),
                        (None, Some(hi)) => [prefix.as_slice(), &type_start(hi)].concat(),
                        (None, None) => prefix.clone(),
                    };
                    let end = match (b.lower, b.upper) {
                        (_, Some(hi)) => {
                            keys::prefix_end(&[prefix.as_slice(), &keys::encode(Some(hi))].concat())
                        }
                        (Some(lo), None) => {
                            keys::prefix_end(&[prefix.as_slice(), &type_start(lo)].concat())
                        }
                        (None, None) => keys::prefix_end(prefix),
                    };
                    (start, end)
                }
            })
            .collect();
        let candidate = Plan {
            access: Access::Index {
                name: index.name.clone(),
                table: index.table,
                ranges,
                reverse: order_ok && descending,
            },
            sort_in_memory: !order.is_empty() && !order_ok,
            equality: index.paths[..k].to_vec(),
            range: range.map(|(p, _)| p.clone()),
        };
        found.push((score, candidate));
    }
    let scan = Plan {
        access: Access::Scan,
        sort_in_memory: !order.is_empty(),
        equality: Vec::new(),
        range: None,
    };
    (found, scan)
}

impl Plan {
    /// Rows from a source in no useful order, sorted in memory (a vector search's).
    pub(crate) fn sorted() -> Plan {
        Plan {
            access: Access::Scan,
            sort_in_memory: true,
            equality: Vec::new(),
            range: None,
        }
    }

    /// The plan in words.
    pub(crate) fn explain(&self, query: &Query) -> Explain {
        let (access, index) = match &self.access {
            Access::Scan => ("scan".to_string(), None),
            Access::Index { name, .. } => ("index".to_string(), Some(name.clone())),
        };
        Explain {
            access,
            index,
            equality: self.equality.clone(),
            range: self.range.clone(),
            order: if query.order_by.is_empty() {
                "none".into()
            } else if self.sort_in_memory {
                "sort".into()
            } else {
                "index".into()
            },
            filter: query.filter.is_some(),
            aggregate: query.is_aggregate(),
            vector: None,
        }
    }
}
