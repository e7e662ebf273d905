//! A typed builder for queries. It writes the same SQL text the parser reads, so a built
//! query behaves exactly as its text does, in-process and over the network.
//!
//! ```
//! use aviladb::query::builder::{Select, field, param};
//!
//! let spec = Select::star()
//!     .filter(field("region").eq("sa-east-1").and(field("stats.score").ge(param("min"))))
//!     .order_by_desc("stats.score")
//!     .top(10)
//!     .param("min", 100)
//!     .build();
//! assert_eq!(
//!     spec.text,
//!     r#"SELECT TOP 10 * FROM c WHERE ((c.region = "sa-east-1") AND (c.stats.score >= @min)) ORDER BY c.stats.score DESC"#
//! );
//! ```

use serde_json::{Map, Value};

use super::QuerySpec;
use super::ast::{Aggregate, BinOp, Expr, OrderItem, Path, Projection, Query, Step, UnOp};

/// An expression being built.
#[derive(Debug, Clone, PartialEq)]
pub struct E(pub Expr);

/// A document property by dotted path: `field("stats.score")`; `field("")` is the
/// document itself.
pub fn field(path: &str) -> E {
    let steps = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(i) => Step::Index(i),
            Err(_) => Step::Field(s.to_string()),
        })
        .collect();
    E(Expr::Path(Path(steps)))
}

/// A path of exact steps (property names with dots or spaces).
pub fn path(steps: Vec<Step>) -> E {
    E(Expr::Path(Path(steps)))
}

/// A parameter, `@name`.
pub fn param(name: &str) -> E {
    E(Expr::Param(name.trim_start_matches('@').to_string()))
}

/// A constant.
pub fn lit(value: impl Into<Value>) -> E {
    E(Expr::Literal(value.into()))
}

/// A scalar function, e.g. `func("LOWER", [field("name")])`.
pub fn func(name: &str, args: impl IntoIterator<Item = E>) -> E {
    E(Expr::Call(
        name.to_ascii_uppercase(),
        args.into_iter().map(|e| e.0).collect(),
    ))
}

/// `COUNT(*)`.
pub fn count() -> E {
    E(Expr::Aggregate(Aggregate::Count, None))
}

fn agg(kind: Aggregate, e: impl Into<E>) -> E {
    E(Expr::Aggregate(kind, Some(Box::new(e.into().0))))
}

/// `SUM(e)`.
pub fn sum(e: impl Into<E>) -> E {
    agg(Aggregate::Sum, e)
}
/// `MIN(e)`.
pub fn min(e: impl Into<E>) -> E {
    agg(Aggregate::Min, e)
}
/// `MAX(e)`.
pub fn max(e: impl Into<E>) -> E {
    agg(Aggregate::Max, e)
}
/// `AVG(e)`.
pub fn avg(e: impl Into<E>) -> E {
    agg(Aggregate::Avg, e)
}

impl<T: Into<Value>> From<T> for E {
    fn from(v: T) -> E {
        lit(v)
    }
}

macro_rules! binary {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(
            #[doc = concat!("`self ", stringify!($op), " other`.")]
            pub fn $name(self, other: impl Into<E>) -> E {
                E(Expr::Binary(BinOp::$op, Box::new(self.0), Box::new(other.into().0)))
            }
        )*
    };
}

impl E {
    binary!(eq => Eq, ne => Ne, lt => Lt, le => Le, gt => Gt, ge => Ge, and => And, or => Or,
        concat => Concat, coalesce => Coalesce);

    /// `self IN (...)`.
    pub fn is_in<V: Into<E>>(self, list: impl IntoIterator<Item = V>) -> E {
        E(Expr::In {
            expr: Box::new(self.0),
            list: list.into_iter().map(|v| v.into().0).collect(),
            negated: false,
        })
    }

    /// `self BETWEEN low AND high`.
    pub fn between(self, low: impl Into<E>, high: impl Into<E>) -> E {
        E(Expr::Between {
            expr: Box::new(self.0),
            low: Box::new(low.into().0),
            high: Box::new(high.into().0),
            negated: false,
        })
    }

    /// `STARTSWITH(self, prefix)`.
    pub fn starts_with(self, prefix: impl Into<E>) -> E {
        func("STARTSWITH", [self, prefix.into()])
    }

    /// `CONTAINS(self, part)`.
    pub fn contains(self, part: impl Into<E>) -> E {
        func("CONTAINS", [self, part.into()])
    }

    /// `ARRAY_CONTAINS(self, item)`.
    pub fn array_contains(self, item: impl Into<E>) -> E {
        func("ARRAY_CONTAINS", [self, item.into()])
    }

    /// `IS_DEFINED(self)`.
    pub fn is_defined(self) -> E {
        func("IS_DEFINED", [self])
    }
}

macro_rules! arithmetic {
    ($($trait:ident $method:ident => $op:ident),* $(,)?) => {
        $(
            impl<T: Into<E>> std::ops::$trait<T> for E {
                type Output = E;
                fn $method(self, other: T) -> E {
                    E(Expr::Binary(BinOp::$op, Box::new(self.0), Box::new(other.into().0)))
                }
            }
        )*
    };
}

arithmetic!(Add add => Add, Sub sub => Sub, Mul mul => Mul, Div div => Div, Rem rem => Rem);

impl std::ops::Not for E {
    type Output = E;
    /// `NOT self`.
    fn not(self) -> E {
        E(Expr::Unary(UnOp::Not, Box::new(self.0)))
    }
}

/// A query being built.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    query: Query,
    params: Map<String, Value>,
}

impl Select {
    fn with(projection: Projection) -> Select {
        Select {
            query: Query {
                source: "c".into(),
                alias: "c".into(),
                top: None,
                projection,
                filter: None,
                order_by: Vec::new(),
                offset: None,
                limit: None,
            },
            params: Map::new(),
        }
    }

    /// `SELECT *`.
    pub fn star() -> Select {
        Select::with(Projection::Star)
    }

    /// `SELECT VALUE e`.
    pub fn value(e: impl Into<E>) -> Select {
        Select::with(Projection::Value(e.into().0))
    }

    /// `SELECT e1 AS n1, ...` (a `None` name takes the path's last property).
    pub fn fields<'a>(items: impl IntoIterator<Item = (E, Option<&'a str>)>) -> Select {
        Select::with(Projection::Fields(
            items
                .into_iter()
                .map(|(e, n)| (e.0, n.map(str::to_string)))
                .collect(),
        ))
    }

    /// `WHERE e` (a second call adds `AND e`).
    pub fn filter(mut self, e: E) -> Select {
        self.query.filter = Some(match self.query.filter.take() {
            Some(f) => Expr::Binary(BinOp::And, Box::new(f), Box::new(e.0)),
            None => e.0,
        });
        self
    }

    /// `ORDER BY path ASC`, after earlier items.
    pub fn order_by(self, path: &str) -> Select {
        self.order(path, false)
    }

    /// `ORDER BY path DESC`, after earlier items.
    pub fn order_by_desc(self, path: &str) -> Select {
        self.order(path, true)
    }

    fn order(mut self, p: &str, descending: bool) -> Select {
        if let E(Expr::Path(path)) = field(p) {
            self.query.order_by.push(OrderItem {
                path,
                descending,
                computed: None,
            });
        }
        self
    }

    /// `TOP n`.
    pub fn top(mut self, n: u64) -> Select {
        self.query.top = Some(n);
        self
    }

    /// `OFFSET offset LIMIT limit`.
    pub fn offset_limit(mut self, offset: u64, limit: u64) -> Select {
        self.query.offset = Some(offset);
        self.query.limit = Some(limit);
        self
    }

    /// A parameter value.
    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Select {
        self.params
            .insert(name.trim_start_matches('@').to_string(), value.into());
        self
    }

    /// The query's text and parameters.
    pub fn build(self) -> QuerySpec {
        QuerySpec {
            text: render_query(&self.query),
            parameters: self.params,
        }
    }
}

impl From<Select> for QuerySpec {
    fn from(s: Select) -> QuerySpec {
        s.build()
    }
}

/// The SQL text of a query.
pub fn render_query(q: &Query) -> String {
    let mut out = String::from("SELECT ");
    if let Some(n) = q.top {
        out.push_str(&format!("TOP {n} "));
    }
    match &q.projection {
        Projection::Star => out.push('*'),
        Projection::Value(e) => {
            out.push_str("VALUE ");
            render(&mut out, e, &q.alias);
        }
        Projection::Fields(items) => {
            for (i, (e, name)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(&mut out, e, &q.alias);
                if let Some(n) = name {
                    out.push_str(" AS ");
                    out.push_str(n);
                }
            }
        }
    }
    out.push_str(" FROM ");
    out.push_str(&q.source);
    if q.alias != q.source {
        out.push(' ');
        out.push_str(&q.alias);
    }
    if let Some(f) = &q.filter {
        out.push_str(" WHERE ");
        render(&mut out, f, &q.alias);
    }
    if !q.order_by.is_empty() {
        out.push_str(" ORDER BY ");
        for (i, item) in q.order_by.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match &item.computed {
                Some(e) => render(&mut out, e, &q.alias),
                None => render(&mut out, &Expr::Path(item.path.clone()), &q.alias),
            }
            if item.descending {
                out.push_str(" DESC");
            }
        }
    }
    if let (Some(o), Some(l)) = (q.offset, q.limit) {
        out.push_str(&format!(" OFFSET {o} LIMIT {l}"));
    }
    out
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn op_text(op: BinOp) -> &'static str {
    match op {
        BinOp::Eq => "=",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::And => "AND",
        BinOp::Or => "OR",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Rem => "%",
        BinOp::Concat => "||",
        BinOp::Coalesce => "??",
    }
}

fn render_list(out: &mut String, items: &[Expr], alias: &str) {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        render(out, e, alias);
    }
}

/// Writes a constant as the parser reads it.
fn render_value(out: &mut String, v: &Value) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                render_value(out, item);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Writes `e` as SQL; every operator is parenthesized, so precedence never matters.
pub fn render(out: &mut String, e: &Expr, alias: &str) {
    match e {
        Expr::Literal(v) => render_value(out, v),
        Expr::Param(p) => {
            out.push('@');
            out.push_str(p);
        }
        Expr::Path(p) => {
            out.push_str(alias);
            for step in &p.0 {
                match step {
                    Step::Field(f) if is_identifier(f) => {
                        out.push('.');
                        out.push_str(f);
                    }
                    Step::Field(f) => {
                        out.push('[');
                        out.push_str(&Value::String(f.clone()).to_string());
                        out.push(']');
                    }
                    Step::Index(i) => out.push_str(&format!("[{i}]")),
                }
            }
        }
        Expr::Unary(op, a) => {
            out.push_str(match op {
                UnOp::Not => "(NOT ",
                UnOp::Neg => "(-",
            });
            render(out, a, alias);
            out.push(')');
        }
        Expr::Binary(op, a, b) => {
            out.push('(');
            render(out, a, alias);
            out.push(' ');
            out.push_str(op_text(*op));
            out.push(' ');
            render(out, b, alias);
            out.push(')');
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            out.push('(');
            render(out, expr, alias);
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            render_list(out, list, alias);
            out.push_str("))");
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            out.push('(');
            render(out, expr, alias);
            out.push_str(if *negated {
                " NOT BETWEEN "
            } else {
                " BETWEEN "
            });
            render(out, low, alias);
            out.push_str(" AND ");
            render(out, high, alias);
            out.push(')');
        }
        Expr::Call(name, args) => {
            if name == "UNDEFINED" {
                out.push_str("undefined");
                return;
            }
            out.push_str(if name == "VECTORDISTANCE" {
                "VectorDistance"
            } else {
                name
            });
            out.push('(');
            render_list(out, args, alias);
            out.push(')');
        }
        Expr::Aggregate(kind, arg) => {
            out.push_str(match kind {
                Aggregate::Count => "COUNT(",
                Aggregate::Sum => "SUM(",
                Aggregate::Min => "MIN(",
                Aggregate::Max => "MAX(",
                Aggregate::Avg => "AVG(",
            });
            match arg {
                Some(a) => render(out, a, alias),
                None => out.push('*'),
            }
            out.push(')');
        }
        Expr::Array(items) => {
            out.push('[');
            render_list(out, items, alias);
            out.push(']');
        }
        Expr::Object(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                render(out, v, alias);
            }
            out.push('}');
        }
        Expr::Ternary(c, a, b) => {
            out.push('(');
            render(out, c, alias);
            out.push_str(" ? ");
            render(out, a, alias);
            out.push_str(" : ");
            render(out, b, alias);
            out.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse::parse;
    use serde_json::json;

    #[test]
    fn built_queries_parse_back_to_themselves() {
        let q = Select::fields([
            (field("id"), None),
            (field("stats.score") * 2, Some("double")),
            (path(vec![Step::Field("odd key".into())]), Some("odd")),
        ])
        .filter(field("region").is_in(["sa", "us"]))
        .filter(!field("name").starts_with(param("p")))
        .filter(
            field("score")
                .between(1, 10.5)
                .or(field("tags").array_contains(json!({"a": "x\"y"}))),
        )
        .order_by("score")
        .order_by_desc("id")
        .offset_limit(5, 10)
        .build();
        let parsed = parse(&q.text).unwrap();
        assert_eq!(render_query(&parsed), q.text);
        let agg = Select::value(count()).build();
        assert_eq!(agg.text, "SELECT VALUE COUNT(*) FROM c");
        let parsed = parse(
            &Select::fields([(max(field("s")), Some("m")), (avg(field("s")), None)])
                .build()
                .text,
        )
        .unwrap();
        assert!(parsed.is_aggregate());
        // Properties named like keywords.
        let q = Select::fields([(field("from"), None), (field("value"), None)])
            .filter(field("from").eq("ana"))
            .build();
        let parsed = parse(&q.text).unwrap();
        assert_eq!(render_query(&parsed), q.text);
    }
}
