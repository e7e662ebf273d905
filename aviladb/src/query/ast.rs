//! The shape of a query: what the parser produces, the builder makes, and the planner and
//! evaluator read.

use serde_json::Value;

/// One step of a path inside a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A property: `c.name` or `c["name"]`.
    Field(String),
    /// An array element: `c.tags[0]`.
    Index(usize),
}

/// A path from the document root (the `FROM` alias), e.g. `c.address.city`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Path(pub Vec<Step>);

impl Path {
    /// The path as a JSON pointer (`/address/city`), the form index definitions use.
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for step in &self.0 {
            out.push('/');
            match step {
                Step::Field(f) => out.push_str(&f.replace('~', "~0").replace('/', "~1")),
                Step::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }

    /// The path a JSON pointer names (`/a/0` reads `0` as a property name: pointers in index
    /// definitions name properties, and a numeric step also matches an array element).
    pub fn from_pointer(pointer: &str) -> Path {
        Path(
            pointer
                .split('/')
                .skip(1)
                .map(|s| Step::Field(s.replace("~1", "/").replace("~0", "~")))
                .collect(),
        )
    }

    /// Reads the path in `doc`.
    pub fn read<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        walk(doc, &self.0)
    }

    /// Reads the path in a document body (the empty path is undefined here).
    pub fn read_map<'a>(&self, body: &'a serde_json::Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let Step::Field(name) = first else {
            return None;
        };
        walk(body.get(name)?, rest)
    }

    /// Whether two paths name the same place (`c.a[0]` and the pointer `/a/0` do).
    pub fn same_as(&self, other: &Path) -> bool {
        self.pointer() == other.pointer()
    }
}

fn walk<'a>(start: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut current = start;
    for step in steps {
        current = match (step, current) {
            (Step::Field(f), Value::Object(m)) => m.get(f)?,
            (Step::Field(f), Value::Array(a)) => a.get(f.parse::<usize>().ok()?)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `||` (string concatenation)
    Concat,
    /// `??` (the left side unless undefined)
    Coalesce,
}

impl BinOp {
    /// The operator with its sides swapped (`a < b` is `b > a`), for comparisons.
    pub fn flipped(self) -> BinOp {
        match self {
            BinOp::Lt => BinOp::Gt,
            BinOp::Le => BinOp::Ge,
            BinOp::Gt => BinOp::Lt,
            BinOp::Ge => BinOp::Le,
            other => other,
        }
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `NOT`
    Not,
    /// `-`
    Neg,
}

/// Aggregate functions (over the whole result: there is no `GROUP BY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `COUNT(expr)`: how many rows have `expr` defined.
    Count,
    /// `SUM(expr)` of numbers.
    Sum,
    /// `MIN(expr)`.
    Min,
    /// `MAX(expr)`.
    Max,
    /// `AVG(expr)` of numbers.
    Avg,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Literal(Value),
    /// A parameter, `@name` (the name without `@`).
    Param(String),
    /// A path in the document; the empty path is the document itself.
    Path(Path),
    /// `NOT e`, `-e`.
    Unary(UnOp, Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `e [NOT] IN (a, b, ...)`.
    In {
        /// The tested value.
        expr: Box<Expr>,
        /// The candidates.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `e [NOT] BETWEEN lo AND hi` (both ends included).
    Between {
        /// The tested value.
        expr: Box<Expr>,
        /// Low end.
        low: Box<Expr>,
        /// High end.
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// A scalar function call; the name is upper case.
    Call(String, Vec<Expr>),
    /// An aggregate; `None` is `COUNT(*)`.
    Aggregate(Aggregate, Option<Box<Expr>>),
    /// `[a, b]`.
    Array(Vec<Expr>),
    /// `{"k": e}`.
    Object(Vec<(String, Expr)>),
    /// `cond ? a : b`.
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Whether an aggregate appears anywhere in the expression.
    pub fn has_aggregate(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            found |= matches!(e, Expr::Aggregate(..));
            !found
        });
        found
    }

    /// Calls `f` on this expression and every expression inside it, outermost first; `f`
    /// answers whether to look inside the expression it was given.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr) -> bool) {
        if !f(self) {
            return;
        }
        match self {
            Expr::Literal(_) | Expr::Param(_) | Expr::Path(_) | Expr::Aggregate(_, None) => {}
            Expr::Unary(_, e) | Expr::Aggregate(_, Some(e)) => e.walk(f),
            Expr::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::In { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.walk(f);
                low.walk(f);
                high.walk(f);
            }
            Expr::Call(_, args) | Expr::Array(args) => args.iter().for_each(|e| e.walk(f)),
            Expr::Object(fields) => fields.iter().for_each(|(_, e)| e.walk(f)),
            Expr::Ternary(a, b, c) => {
                a.walk(f);
                b.walk(f);
                c.walk(f);
            }
        }
    }

    /// Calls `f` on this expression and every expression inside it, outermost first.
    pub fn walk_mut(&mut self, f: &mut impl FnMut(&mut Expr)) {
        f(self);
        match self {
            Expr::Literal(_) | Expr::Param(_) | Expr::Path(_) | Expr::Aggregate(_, None) => {}
            Expr::Unary(_, e) | Expr::Aggregate(_, Some(e)) => e.walk_mut(f),
            Expr::Binary(_, a, b) => {
                a.walk_mut(f);
                b.walk_mut(f);
            }
            Expr::In { expr, list, .. } => {
                expr.walk_mut(f);
                list.iter_mut().for_each(|e| e.walk_mut(f));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.walk_mut(f);
                low.walk_mut(f);
                high.walk_mut(f);
            }
            Expr::Call(_, args) | Expr::Array(args) => {
                args.iter_mut().for_each(|e| e.walk_mut(f));
            }
            Expr::Object(fields) => fields.iter_mut().for_each(|(_, e)| e.walk_mut(f)),
            Expr::Ternary(a, b, c) => {
                a.walk_mut(f);
                b.walk_mut(f);
                c.walk_mut(f);
            }
        }
    }

    /// Calls `f` on every parameter name in the expression.
    pub fn params<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        self.walk(&mut |e| {
            if let Expr::Param(p) = e {
                f(p);
            }
            true
        });
    }
}

/// What a query returns for each row.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `SELECT *`: the document.
    Star,
    /// `SELECT VALUE e`: the value itself, not wrapped in an object.
    Value(Expr),
    /// `SELECT e1 [AS a1], ...`: an object with one property per item.
    Fields(Vec<(Expr, Option<String>)>),
}

/// One `ORDER BY` item.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// The sorted path (empty for a computed item).
    pub path: Path,
    /// `DESC`.
    pub descending: bool,
    /// A computed item instead of a path: `VectorDistance(c.embedding, @q)`, which
    /// orders the most similar first; rows where it is undefined are left out.
    pub computed: Option<Expr>,
}

/// A whole query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The name after `FROM` (`players` in `FROM players p`). The collection is named by
    /// the request; the command line takes it from here.
    pub source: String,
    /// The name documents have in the query (`p` in `FROM players p`, `c` in `FROM c`).
    pub alias: String,
    /// `TOP n`.
    pub top: Option<u64>,
    /// The projection.
    pub projection: Projection,
    /// `WHERE`.
    pub filter: Option<Expr>,
    /// `ORDER BY`.
    pub order_by: Vec<OrderItem>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
    /// `LIMIT m`.
    pub limit: Option<u64>,
}

impl Query {
    /// Whether the projection aggregates (the query returns one row).
    pub fn is_aggregate(&self) -> bool {
        match &self.projection {
            Projection::Star => false,
            Projection::Value(e) => e.has_aggregate(),
            Projection::Fields(items) => items.iter().any(|(e, _)| e.has_aggregate()),
        }
    }

    /// How many rows at most the query returns.
    pub fn row_limit(&self) -> Option<u64> {
        match (self.top, self.limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
