//! Evaluating expressions against a document, with the query language's `undefined`:
//! a missing property, a comparison of different types or an operator on the wrong types
//! is undefined (`None`), and `WHERE` keeps a document only when its condition is `true`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::ast::{BinOp, Expr, UnOp};

/// Parameter values by name (without `@`).
pub type Params = HashMap<String, Value>;

/// A value or undefined.
pub(crate) type Val<'a> = Option<Cow<'a, Value>>;

fn num(f: f64) -> Val<'static> {
    Number::from_f64(f).map(|n| Cow::Owned(Value::Number(n)))
}

fn boolean(b: bool) -> Val<'static> {
    Some(Cow::Owned(Value::Bool(b)))
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Equality of two values as the language sees it (numbers by value, deep for arrays and
/// objects); `None` when their types differ.
pub(crate) fn equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(x.as_f64() == y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::Null, Value::Null) => Some(true),
        (Value::Array(x), Value::Array(y)) => {
            Some(x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q) == Some(true)))
        }
        (Value::Object(x), Value::Object(y)) => Some(
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w) == Some(true))),
        ),
        _ => None,
    }
}

/// Ordering of two values of one primitive type (numbers, strings, booleans, null);
/// `None` otherwise.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

/// Whether `v` is the boolean `true` (what `WHERE` keeps).
pub(crate) fn is_true(v: &Val<'_>) -> bool {
    matches!(v.as_deref(), Some(Value::Bool(true)))
}

/// Evaluates `e` against `doc`. Parameters must all be bound (checked before a query
/// runs); aggregates are computed by the executor, never here.
pub(crate) fn eval<'a>(e: &'a Expr, doc: &'a Value, params: &'a Params) -> Val<'a> {
    match e {
        Expr::Literal(v) => Some(Cow::Borrowed(v)),
        Expr::Param(p) => params.get(p).map(Cow::Borrowed),
        Expr::Path(path) => path.read(doc).map(Cow::Borrowed),
        Expr::Unary(UnOp::Not, e) => match eval(e, doc, params).as_deref() {
            Some(Value::Bool(b)) => boolean(!b),
            _ => None,
        },
        Expr::Unary(UnOp::Neg, e) => match eval(e, doc, params).as_deref() {
            Some(Value::Number(n)) => match n.as_i64().and_then(i64::checked_neg) {
                Some(i) => Some(Cow::Owned(Value::from(i))),
                None => num(-n.as_f64()?),
            },
            _ => None,
        },
        Expr::Binary(op, a, b) => binary(*op, a, b, doc, params),
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, doc, params)?;
            let found = list
                .iter()
                .any(|item| eval(item, doc, params).is_some_and(|w| equal(&v, &w) == Some(true)));
            boolean(found != *negated)
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = eval(expr, doc, params)?;
            let lo = eval(low, doc, params)?;
            let hi = eval(high, doc, params)?;
            let inside =
                compare(&v, &lo)? != Ordering::Less && compare(&v, &hi)? != Ordering::Greater;
            boolean(inside != *negated)
        }
        Expr::Call(name, args) => call(name, args, doc, params),
        Expr::Aggregate(..) => None,
        Expr::Array(items) => Some(Cow::Owned(Value::Array(
            items
                .iter()
                .filter_map(|i| eval(i, doc, params).map(Cow::into_owned))
                .collect(),
        ))),
        Expr::Object(fields) => {
            let mut map = Map::new();
            for (k, v) in fields {
                if let Some(v) = eval(v, doc, params) {
                    map.insert(k.clone(), v.into_owned());
                }
            }
            Some(Cow::Owned(Value::Object(map)))
        }
        Expr::Ternary(cond, a, b) => {
            if is_true(&eval(cond, doc, params)) {
                eval(a, doc, params)
            } else {
                eval(b, doc, params)
            }
        }
    }
}

fn binary<'a>(op: BinOp, a: &'a Expr, b: &'a Expr, doc: &'a Value, params: &'a Params) -> Val<'a> {
    match op {
        BinOp::And => {
            let x = eval(a, doc, params);
            if matches!(x.as_deref(), Some(Value::Bool(false))) {
                return boolean(false);
            }
            let y = eval(b, doc, params);
            match (x.as_deref(), y.as_deref()) {
                (_, Some(Value::Bool(false))) => boolean(false),
                (Some(Value::Bool(true)), Some(Value::Bool(true))) => boolean(true),
                _ => None,
            }
        }
        BinOp::Or => {
            let x = eval(a, doc, params);
            if matches!(x.as_deref(), Some(Value::Bool(true))) {
                return boolean(true);
            }
            let y = eval(b, doc, params);
            match (x.as_deref(), y.as_deref()) {
                (_, Some(Value::Bool(true))) => boolean(true),
                (Some(Value::Bool(false)), Some(Value::Bool(false))) => boolean(false),
                _ => None,
            }
        }
        BinOp::Coalesce => eval(a, doc, params).or_else(|| eval(b, doc, params)),
        _ => {
            let x = eval(a, doc, params)?;
            let y = eval(b, doc, params)?;
            match op {
                BinOp::Eq => boolean(equal(&x, &y)?),
                BinOp::Ne => boolean(!equal(&x, &y)?),
                BinOp::Lt => boolean(compare(&x, &y)? == Ordering::Less),
                BinOp::Le => boolean(compare(&x, &y)? != Ordering::Greater),
                BinOp::Gt => boolean(compare(&x, &y)? == Ordering::Greater),
                BinOp::Ge => boolean(compare(&x, &y)? != Ordering::Less),
                BinOp::Concat => match (&*x, &*y) {
                    (Value::String(p), Value::String(q)) => {
                        Some(Cow::Owned(Value::String(format!("{p}{q}"))))
                    }
                    _ => None,
                },
                _ => arithmetic(op, &x, &y),
            }
        }
    }
}

fn arithmetic(op: BinOp, x: &Value, y: &Value) -> Val<'static> {
    if let (Some(p), Some(q)) = (
        x.as_i64().filter(|_| x.is_i64()),
        y.as_i64().filter(|_| y.is_i64()),
    ) {
        let exact = match op {
            BinOp::Add => p.checked_add(q),
            BinOp::Sub => p.checked_sub(q),
            BinOp::Mul => p.checked_mul(q),
            BinOp::Rem if q != 0 => p.checked_rem(q),
            _ => None,
        };
        if let Some(r) = exact {
            return Some(Cow::Owned(Value::from(r)));
        }
    }
    let (p, q) = (as_f64(x)?, as_f64(y)?);
    let r = match op {
        BinOp::Add => p + q,
        BinOp::Sub => p - q,
        BinOp::Mul => p * q,
        BinOp::Div => p / q,
        BinOp::Rem => p % q,
        _ => return None,
    };
    num(r)
}

fn string_arg<'v>(v: &'v Val<'_>) -> Option<&'v str> {
    match v.as_deref() {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn flag(args: &[Val<'_>], at: usize) -> bool {
    matches!(
        args.get(at).and_then(|v| v.as_deref()),
        Some(Value::Bool(true))
    )
}

fn call<'a>(name: &str, args: &'a [Expr], doc: &'a Value, params: &'a Params) -> Val<'a> {
    if name == "UNDEFINED" {
        return None;
    }
    let vals: Vec<Val<'a>> = args.iter().map(|a| eval(a, doc, params)).collect();
    let first = vals.first().and_then(|v| v.as_deref());
    let kind = |check: fn(&Value) -> bool| boolean(first.is_some_and(check));
    match name {
        "IS_DEFINED" => boolean(first.is_some()),
        "IS_NULL" => kind(Value::is_null),
        "IS_NUMBER" => kind(Value::is_number),
        "IS_STRING" => kind(Value::is_string),
        "IS_BOOL" => kind(Value::is_boolean),
        "IS_ARRAY" => kind(Value::is_array),
        "IS_OBJECT" => kind(Value::is_object),
        "IS_PRIMITIVE" => kind(|v| !v.is_array() && !v.is_object()),
        "STARTSWITH" | "ENDSWITH" | "CONTAINS" => {
            let (s, t) = (string_arg(&vals[0])?, string_arg(vals.get(1)?)?);
            let (s, t) = if flag(&vals, 2) {
                (Cow::Owned(s.to_lowercase()), Cow::Owned(t.to_lowercase()))
            } else {
                (Cow::Borrowed(s), Cow::Borrowed(t))
            };
            boolean(match name {
                "STARTSWITH" => s.starts_with(&*t),
                "ENDSWITH" => s.ends_with(&*t),
                _ => s.contains(&*t),
            })
        }
        "ARRAY_CONTAINS" => {
            let Some(Value::Array(items)) = first else {
                return None;
            };
            let wanted = vals.get(1)?.as_deref()?;
            let partial = flag(&vals, 2);
            boolean(items.iter().any(|item| {
                if partial && let (Value::Object(have), Value::Object(want)) = (item, wanted) {
                    return want
                        .iter()
                        .all(|(k, v)| have.get(k).is_some_and(|h| equal(h, v) == Some(true)));
                }
                equal(item, wanted) == Some(true)
            }))
        }
        "ARRAY_LENGTH" => match first? {
            Value::Array(a) => Some(Cow::Owned(Value::from(a.len()))),
            _ => None,
        },
        "LENGTH" => string_arg(&vals[0]).map(|s| Cow::Owned(Value::from(s.chars().count()))),
        "LOWER" => string_arg(&vals[0]).map(|s| Cow::Owned(Value::String(s.to_lowercase()))),
        "UPPER" => string_arg(&vals[0]).map(|s| Cow::Owned(Value::String(s.to_uppercase()))),
        "TRIM" => string_arg(&vals[0]).map(|s| Cow::Owned(Value::String(s.trim().into()))),
        "LTRIM" => string_arg(&vals[0]).map(|s| Cow::Owned(Value::String(s.trim_start().into()))),
        "RTRIM" => string_arg(&vals[0]).map(|s| Cow::Owned(Value::String(s.trim_end().into()))),
        "CONCAT" => {
            let mut out = String::new();
            for v in &vals {
                out.push_str(string_arg(v)?);
            }
            Some(Cow::Owned(Value::String(out)))
        }
        "SUBSTRING" | "LEFT" | "RIGHT" => {
            let s = string_arg(&vals[0])?;
            let n = |at: usize| -> Option<usize> {
                let f = as_f64(vals.get(at)?.as_deref()?)?;
                Some(if f <= 0.0 { 0 } else { f as usize })
            };
            let chars: Vec<char> = s.chars().collect();
            let (from, len) = match name {
                "SUBSTRING" => (n(1)?, n(2)?),
                "LEFT" => (0, n(1)?),
                _ => {
                    let len = n(1)?.min(chars.len());
                    (chars.len() - len, len)
                }
            };
            let from = from.min(chars.len());
            let to = from.saturating_add(len).min(chars.len());
            Some(Cow::Owned(Value::String(chars[from..to].iter().collect())))
        }
        "INDEX_OF" => {
            let (s, t) = (string_arg(&vals[0])?, string_arg(&vals[1])?);
            let at = s
                .find(t)
                .map_or(-1, |byte| s[..byte].chars().count() as i64);
            Some(Cow::Owned(Value::from(at)))
        }
        "ABS" | "FLOOR" | "CEILING" | "ROUND" | "TRUNC" => {
            let v = first?;
            if v.is_i64() || v.is_u64() {
                return match (name, v.as_i64()) {
                    ("ABS", Some(i)) => i.checked_abs().map(|a| Cow::Owned(Value::from(a))),
                    _ => Some(Cow::Owned(v.clone())),
                };
            }
            let f = as_f64(v)?;
            num(match name {
                "ABS" => f.abs(),
                "FLOOR" => f.floor(),
                "CEILING" => f.ceil(),
                "ROUND" => f.round(),
                _ => f.trunc(),
            })
        }
        "VECTORDISTANCE" => {
            let numbers = |v: Option<&Value>| -> Option<Vec<f32>> {
                let Value::Array(items) = v? else {
                    return None;
                };
                items.iter().map(|n| n.as_f64().map(|f| f as f32)).collect()
            };
            let a = numbers(first)?;
            let b = numbers(vals.get(1)?.as_deref())?;
            if a.is_empty() || a.len() != b.len() || a.iter().chain(&b).any(|f| !f.is_finite()) {
                return None;
            }
            // The metric: the options' `distanceFunction` (the engine passes the vector
            // index's own), cosine by default.
            let metric = match vals.get(3).and_then(|v| v.as_deref()) {
                Some(Value::String(m)) => m.to_ascii_lowercase(),
                Some(Value::Object(o)) => o
                    .get("distanceFunction")
                    .and_then(Value::as_str)
                    .unwrap_or("cosine")
                    .to_ascii_lowercase(),
                _ => "cosine".into(),
            };
            let score = match metric.as_str() {
                "euclidean" => crate::engine::VectorMetric::Euclidean.distance(&a, &b),
                "dotproduct" | "dot_product" => {
                    -crate::engine::VectorMetric::DotProduct.distance(&a, &b)
                }
                _ => 1.0 - crate::engine::VectorMetric::Cosine.distance(&a, &b),
            };
            num(f64::from(score))
        }
        "TOSTRING" => {
            let v = first?;
            Some(Cow::Owned(Value::String(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ast::Projection;
    use crate::query::parse::parse;
    use serde_json::json;

    fn value_of(expr: &str, doc: &Value) -> Option<Value> {
        let q = parse(&format!("SELECT VALUE {expr} FROM c")).unwrap();
        let Projection::Value(e) = q.projection else {
            panic!()
        };
        let params = Params::from([("p".to_string(), json!(5))]);
        eval(&e, doc, &params).map(Cow::into_owned)
    }

    #[test]
    fn three_valued_logic_and_types() {
        let doc = json!({"a": 1, "s": "Hello", "t": [1, 2, {"k": 1, "j": 2}], "n": null});
        assert_eq!(value_of("c.a = 1.0", &doc), Some(json!(true)));
        assert_eq!(value_of("c.a = '1'", &doc), None);
        assert_eq!(value_of("c.missing = 1", &doc), None);
        assert_eq!(
            value_of("c.missing = 1 AND false", &doc),
            Some(json!(false))
        );
        assert_eq!(value_of("c.missing = 1 OR true", &doc), Some(json!(true)));
        assert_eq!(value_of("NOT (c.missing = 1)", &doc), None);
        assert_eq!(value_of("c.n = null", &doc), Some(json!(true)));
        assert_eq!(value_of("c.a + @p * 2", &doc), Some(json!(11)));
        assert_eq!(value_of("7 / 2", &doc), Some(json!(3.5)));
        assert_eq!(value_of("1 / 0", &doc), None);
        assert_eq!(
            value_of("9223372036854775807 + 1", &doc),
            Some(json!(9.223372036854776e18))
        );
        assert_eq!(value_of("c.s || '!'", &doc), Some(json!("Hello!")));
        assert_eq!(value_of("c.missing ?? 'd'", &doc), Some(json!("d")));
        assert_eq!(value_of("c.a IN (3, 2, 1)", &doc), Some(json!(true)));
        assert_eq!(value_of("c.a NOT IN (3, 2)", &doc), Some(json!(true)));
        assert_eq!(value_of("c.a BETWEEN 0 AND 1", &doc), Some(json!(true)));
        assert_eq!(value_of("c.s BETWEEN 0 AND 1", &doc), None);
        assert_eq!(value_of("c.t[2].j", &doc), Some(json!(2)));
        assert_eq!(
            value_of("c.a > 0 ? 'pos' : 'neg'", &doc),
            Some(json!("pos"))
        );
        assert_eq!(
            value_of("{'x': c.a, 'y': c.missing}", &doc),
            Some(json!({"x": 1}))
        );
    }

    #[test]
    fn functions() {
        let doc = json!({"s": "Hello World", "t": [1, 2, {"k": 1, "j": 2}]});
        for (expr, want) in [
            ("STARTSWITH(c.s, 'hello')", json!(false)),
            ("STARTSWITH(c.s, 'hello', true)", json!(true)),
            ("ENDSWITH(c.s, 'World')", json!(true)),
            ("CONTAINS(c.s, 'o W')", json!(true)),
            ("ARRAY_CONTAINS(c.t, 2)", json!(true)),
            ("ARRAY_CONTAINS(c.t, {'k': 1})", json!(false)),
            ("ARRAY_CONTAINS(c.t, {'k': 1}, true)", json!(true)),
            ("ARRAY_LENGTH(c.t)", json!(3)),
            ("LENGTH(c.s)", json!(11)),
            ("UPPER(c.s)", json!("HELLO WORLD")),
            ("SUBSTRING(c.s, 6, 100)", json!("World")),
            ("LEFT(c.s, 5)", json!("Hello")),
            ("RIGHT(c.s, 5)", json!("World")),
            ("INDEX_OF(c.s, 'W')", json!(6)),
            ("CONCAT(c.s, '-', 'x')", json!("Hello World-x")),
            ("IS_DEFINED(c.nope)", json!(false)),
            ("IS_STRING(c.s)", json!(true)),
            ("ABS(-3)", json!(3)),
            ("FLOOR(2.5)", json!(2.0)),
            ("TOSTRING(12)", json!("12")),
        ] {
            assert_eq!(value_of(expr, &doc), Some(want), "{expr}");
        }
        assert_eq!(value_of("UPPER(1)", &doc), None);
    }
}
