//! Partial updates: set, remove and increment at paths inside a document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::names::check_path;
use crate::error::{DbError, Result};

/// One change to a document, at a JSON-pointer path (`/score`, `/stats/wins`, `/tags/0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PatchOp {
    /// Sets the value, creating the field if the parent exists (an array index equal to
    /// the length appends).
    Set {
        /// Where.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Removes the field or array element, which must exist.
    Remove {
        /// Where.
        path: String,
    },
    /// Adds `value` to the number at `path` (set to `value` if absent).
    Increment {
        /// Where.
        path: String,
        /// How much (a number).
        value: Value,
    },
}

impl PatchOp {
    fn path(&self) -> &str {
        match self {
            PatchOp::Set { path, .. }
            | PatchOp::Remove { path }
            | PatchOp::Increment { path, .. } => path,
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The most operations one patch may carry.
pub const MAX_PATCH_OPS: usize = 100;

/// Applies `ops` in order to `doc`; paths under `protected` (the id and the partition key),
/// their parents, and the system properties cannot change. On error `doc` may be partly changed: callers
/// apply patches to a copy.
pub(crate) fn apply(
    doc: &mut Map<String, Value>,
    ops: &[PatchOp],
    protected: &[&str],
) -> Result<()> {
    if ops.is_empty() {
        return Err(DbError::invalid("patch", "no operations"));
    }
    if ops.len() > MAX_PATCH_OPS {
        return Err(DbError::invalid(
            "patch",
            format!("more than {MAX_PATCH_OPS} operations"),
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        let field = format!("patch[{i}].path");
        let path = op.path();
        check_path(&field, path)?;
        // A protected path, a path inside one, or a parent of one (setting `/address`
        // replaces `/address/city`).
        if protected.iter().any(|p| {
            path == *p || path.starts_with(&format!("{p}/")) || p.starts_with(&format!("{path}/"))
        }) || crate::engine::record::SYSTEM_PROPERTIES
            .iter()
            .any(|s| path == format!("/{s}") || path.starts_with(&format!("/{s}/")))
        {
            return Err(DbError::invalid(
                field,
                format!("`{path}` cannot be patched"),
            ));
        }
        let segs = segments(path);
        let mut root = Value::Object(std::mem::take(doc));
        let result = apply_at(&mut root, &segs, op, &field, path);
        if let Value::Object(map) = root {
            *doc = map;
        }
        result?;
    }
    Ok(())
}

fn apply_at(
    root: &mut Value,
    segs: &[String],
    op: &PatchOp,
    field: &str,
    path: &str,
) -> Result<()> {
    let Some((last, parents)) = segs.split_last() else {
        return Err(DbError::invalid(field, "empty path"));
    };
    let mut at = root;
    for seg in parents {
        at = child_mut(at, seg).ok_or_else(|| {
            DbError::invalid(
                field.to_string(),
                format!("`{path}`: no `{seg}` on the way"),
            )
        })?;
    }
    apply_one(at, last, op, field, path)
}

fn child_mut<'a>(v: &'a mut Value, seg: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    }
}

fn apply_one(parent: &mut Value, last: &str, op: &PatchOp, field: &str, path: &str) -> Result<()> {
    let bad = |reason: String| DbError::invalid(field.to_string(), format!("`{path}`: {reason}"));
    match (parent, op) {
        (Value::Object(m), PatchOp::Set { value, .. }) => {
            m.insert(last.to_string(), value.clone());
            Ok(())
        }
        (Value::Object(m), PatchOp::Remove { .. }) => m
            .remove(last)
            .map(|_| ())
            .ok_or_else(|| bad("no such field".into())),
        (Value::Object(m), PatchOp::Increment { value, .. }) => {
            let current = m.get(last).cloned();
            m.insert(last.to_string(), increment(current, value).map_err(bad)?);
            Ok(())
        }
        (Value::Array(a), op) => {
            let i: usize = last
                .parse()
                .map_err(|_| bad(format!("`{last}` is not an array index")))?;
            match op {
                PatchOp::Set { value, .. } if i < a.len() => {
                    a[i] = value.clone();
                    Ok(())
                }
                PatchOp::Set { value, .. } if i == a.len() => {
                    a.push(value.clone());
                    Ok(())
                }
                PatchOp::Remove { .. } if i < a.len() => {
                    a.remove(i);
                    Ok(())
                }
                PatchOp::Increment { value, .. } if i < a.len() => {
                    a[i] = increment(Some(a[i].clone()), value).map_err(bad)?;
                    Ok(())
                }
                _ => Err(bad(format!(
                    "index {i} is out of range (length {})",
                    a.len()
                ))),
            }
        }
        _ => Err(bad("the parent is not an object or array".into())),
    }
}

fn increment(current: Option<Value>, by: &Value) -> std::result::Result<Value, String> {
    let by_num = by.as_f64().ok_or("increment needs a number")?;
    match current {
        None => Ok(by.clone()),
        Some(Value::Number(n)) => {
            if let (Some(a), Some(b)) = (n.as_i64(), by.as_i64()) {
                return a
                    .checked_add(b)
                    .map(Value::from)
                    .ok_or_else(|| "integer overflow".to_string());
            }
            let sum = n.as_f64().unwrap_or(0.0) + by_num;
            serde_json::Number::from_f64(sum)
                .map(Value::Number)
                .ok_or_else(|| "the sum is not a finite number".to_string())
        }
        Some(_) => Err("the current value is not a number".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(doc: Value, ops: Value, expected: Result<Value, &str>) {
        let ops: Vec<PatchOp> = serde_json::from_value(ops).unwrap();
        let Value::Object(mut map) = doc else {
            panic!()
        };
        let got = apply(&mut map, &ops, &["/id", "/region"]).map(|()| Value::Object(map));
        match (got, expected) {
            (Ok(v), Ok(e)) => assert_eq!(v, e),
            (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
            (got, expected) => panic!("{got:?} vs {expected:?}"),
        }
    }

    #[test]
    fn patches() {
        let doc = json!({"id": "p1", "region": "sa", "score": 10, "stats": {"wins": 1}, "tags": ["a", "b"]});
        check(
            doc.clone(),
            json!([{"op": "set", "path": "/score", "value": 20}]),
            Ok(
                json!({"id": "p1", "region": "sa", "score": 20, "stats": {"wins": 1}, "tags": ["a", "b"]}),
            ),
        );
        check(
            doc.clone(),
            json!([{"op": "increment", "path": "/stats/wins", "value": 2}, {"op": "increment", "path": "/stats/losses", "value": 1}]),
            Ok(
                json!({"id": "p1", "region": "sa", "score": 10, "stats": {"wins": 3, "losses": 1}, "tags": ["a", "b"]}),
            ),
        );
        check(
            doc.clone(),
            json!([{"op": "remove", "path": "/tags/0"}, {"op": "set", "path": "/tags/1", "value": "c"}]),
            Ok(
                json!({"id": "p1", "region": "sa", "score": 10, "stats": {"wins": 1}, "tags": ["b", "c"]}),
            ),
        );
        check(
            doc.clone(),
            json!([{"op": "increment", "path": "/score", "value": 0.5}]),
            Ok(
                json!({"id": "p1", "region": "sa", "score": 10.5, "stats": {"wins": 1}, "tags": ["a", "b"]}),
            ),
        );
        check(
            doc.clone(),
            json!([{"op": "set", "path": "/id", "value": "p2"}]),
            Err("cannot be patched"),
        );
        check(
            doc.clone(),
            json!([{"op": "set", "path": "/region", "value": "us"}]),
            Err("cannot be patched"),
        );
        check(
            doc.clone(),
            json!([{"op": "set", "path": "/_etag", "value": "x"}]),
            Err("cannot be patched"),
        );
        check(
            doc.clone(),
            json!([{"op": "remove", "path": "/nope"}]),
            Err("no such field"),
        );
        check(
            doc.clone(),
            json!([{"op": "set", "path": "/a/b", "value": 1}]),
            Err("no `a` on the way"),
        );
        check(
            doc.clone(),
            json!([{"op": "increment", "path": "/tags", "value": 1}]),
            Err("not a number"),
        );
        check(
            doc.clone(),
            json!([{"op": "increment", "path": "/score", "value": "x"}]),
            Err("needs a number"),
        );
        check(
            doc.clone(),
            json!([{"op": "set", "path": "/tags/5", "value": 1}]),
            Err("out of range"),
        );
        check(doc.clone(), json!([]), Err("no operations"));
        check(
            json!({"n": i64::MAX}),
            json!([{"op": "increment", "path": "/n", "value": 1}]),
            Err("overflow"),
        );
    }
}
