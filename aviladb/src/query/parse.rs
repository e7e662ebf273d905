//! The SQL subset: a tokenizer and a recursive-descent parser whose errors say where
//! (line and column) and what was expected.
//!
//! ```text
//! query      SELECT [TOP n] projection FROM name [[AS] alias] [WHERE expr]
//!            [ORDER BY path [ASC|DESC], ...] [OFFSET n LIMIT m]
//! projection *  |  VALUE expr  |  expr [[AS] name], ...
//! expr       ternary: or [? expr : expr]
//! or         and (OR and)*            and     not (AND not)*
//! not        NOT not | comparison
//! comparison coalesce [(= != <> < <= > >=) coalesce | [NOT] IN (list) | [NOT] BETWEEN a AND b]
//! coalesce   concat (?? concat)*      concat  additive (|| additive)*
//! additive   term ((+|-) term)*       term    unary ((*|/|%) unary)*
//! unary      - unary | primary        primary literal | @param | path | call | ( expr ) | [..] | {..}
//! ```

use serde_json::{Number, Value};

use super::ast::{Aggregate, BinOp, Expr, OrderItem, Path, Projection, Query, Step, UnOp};
use crate::error::{DbError, Result};

/// The longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 256 * 1024;
/// How deeply expressions may nest.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(Number),
    Param(String),
    Sym(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

fn error_at(line: usize, col: usize, message: impl std::fmt::Display) -> DbError {
    DbError::invalid("query", format!("line {line}, column {col}: {message}"))
}

const SYMBOLS: [&str; 24] = [
    "<>", "!=", "<=", ">=", "||", "??", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]",
    "{", "}", ",", ".", ":", "?",
];

fn tokenize(text: &str) -> Result<Vec<Token>> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(DbError::invalid(
            "query",
            format!("longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, c: char| {
        *i += 1;
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, c);
            continue;
        }
        // -- comments to the end of the line
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                {
                    let ch = chars[i];
                    advance(&mut i, &mut line, &mut col, ch);
                }
            }
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == '_' || c == '@' {
            let start = if c == '@' {
                advance(&mut i, &mut line, &mut col, c);
                i
            } else {
                i
            };
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                {
                    let ch = chars[i];
                    advance(&mut i, &mut line, &mut col, ch);
                }
            }
            let word: String = chars[start..i].iter().collect();
            if c == '@' {
                if word.is_empty() {
                    return Err(error_at(tl, tc, "`@` must be followed by a parameter name"));
                }
                Tok::Param(word)
            } else {
                Tok::Ident(word)
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                {
                    let ch = chars[i];
                    advance(&mut i, &mut line, &mut col, ch);
                }
            }
            let word: String = chars[start..i].iter().collect();
            let number = if let Some(hex) = word.strip_prefix("0x") {
                u64::from_str_radix(hex, 16).ok().map(Number::from)
            } else if let Ok(n) = word.parse::<u64>() {
                Some(Number::from(n))
            } else {
                word.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(Number::from_f64)
            };
            match number {
                Some(n) => Tok::Num(n),
                None => return Err(error_at(tl, tc, format!("`{word}` is not a number"))),
            }
        } else if c == '\'' || c == '"' {
            advance(&mut i, &mut line, &mut col, c);
            let mut s = String::new();
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(error_at(tl, tc, "the string is not closed"));
                };
                advance(&mut i, &mut line, &mut col, d);
                if d == c {
                    break;
                }
                if d != '\\' {
                    s.push(d);
                    continue;
                }
                let Some(&e) = chars.get(i) else {
                    return Err(error_at(tl, tc, "the string is not closed"));
                };
                advance(&mut i, &mut line, &mut col, e);
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '0' => '\0',
                    'u' => {
                        let hex: String = chars.get(i..i + 4).unwrap_or(&[]).iter().collect();
                        let code = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        let Some(ch) = code.filter(|_| hex.len() == 4) else {
                            return Err(error_at(line, col, "`\\u` needs four hex digits"));
                        };
                        for _ in 0..4 {
                            advance(&mut i, &mut line, &mut col, 'x');
                        }
                        ch
                    }
                    other => other,
                });
            }
            Tok::Str(s)
        } else if let Some(sym) = SYMBOLS
            .iter()
            .find(|s| chars[i..].iter().take(s.len()).copied().eq(s.chars()))
        {
            for _ in 0..sym.len() {
                advance(&mut i, &mut line, &mut col, 'x');
            }
            Tok::Sym(sym)
        } else {
            return Err(error_at(tl, tc, format!("unexpected character {c:?}")));
        };
        out.push(Token {
            tok,
            line: tl,
            col: tc,
        });
    }
    out.push(Token {
        tok: Tok::End,
        line,
        col,
    });
    Ok(out)
}

const KEYWORDS: [&str; 20] = [
    "SELECT", "TOP", "VALUE", "FROM", "AS", "WHERE", "ORDER", "BY", "ASC", "DESC", "OFFSET",
    "LIMIT", "AND", "OR", "NOT", "IN", "BETWEEN", "TRUE", "FALSE", "NULL",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) || word.eq_ignore_ascii_case("undefined")
}

/// Scalar functions and how many arguments each takes (least, most).
/// Whether `e` is a call of `VectorDistance`.
pub(crate) fn is_vector_distance(e: &Expr) -> bool {
    matches!(e, Expr::Call(name, _) if name == "VECTORDISTANCE")
}

pub(crate) const FUNCTIONS: [(&str, usize, usize); 31] = [
    ("VECTORDISTANCE", 2, 4),
    ("IS_DEFINED", 1, 1),
    ("IS_NULL", 1, 1),
    ("IS_NUMBER", 1, 1),
    ("IS_STRING", 1, 1),
    ("IS_BOOL", 1, 1),
    ("IS_ARRAY", 1, 1),
    ("IS_OBJECT", 1, 1),
    ("IS_PRIMITIVE", 1, 1),
    ("STARTSWITH", 2, 3),
    ("ENDSWITH", 2, 3),
    ("CONTAINS", 2, 3),
    ("ARRAY_CONTAINS", 2, 3),
    ("ARRAY_LENGTH", 1, 1),
    ("LENGTH", 1, 1),
    ("LOWER", 1, 1),
    ("UPPER", 1, 1),
    ("TRIM", 1, 1),
    ("LTRIM", 1, 1),
    ("RTRIM", 1, 1),
    ("CONCAT", 2, 16),
    ("SUBSTRING", 3, 3),
    ("INDEX_OF", 2, 2),
    ("LEFT", 2, 2),
    ("RIGHT", 2, 2),
    ("ABS", 1, 1),
    ("FLOOR", 1, 1),
    ("CEILING", 1, 1),
    ("ROUND", 1, 1),
    ("TRUNC", 1, 1),
    ("TOSTRING", 1, 1),
];

struct Parser {
    toks: Vec<Token>,
    at: usize,
    source: String,
    alias: String,
    depth: usize,
}

/// Parses a query.
pub fn parse(text: &str) -> Result<Query> {
    let toks = tokenize(text)?;
    // The alias is declared after the projection that uses it: find it first.
    let (source, alias) = find_alias(&toks)?;
    let mut p = Parser {
        toks,
        at: 0,
        source,
        alias,
        depth: 0,
    };
    p.query()
}

fn find_alias(toks: &[Token]) -> Result<(String, String)> {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match &t.tok {
            Tok::Sym("(" | "[" | "{") => depth += 1,
            Tok::Sym(")" | "]" | "}") => depth -= 1,
            // `c.from` is a property named "from", not the clause.
            Tok::Ident(w)
                if depth == 0
                    && w.eq_ignore_ascii_case("FROM")
                    && !(i > 0 && toks[i - 1].tok == Tok::Sym(".")) =>
            {
                let name = match toks.get(i + 1).map(|t| &t.tok) {
                    Some(Tok::Ident(n)) if !is_keyword(n) => n.clone(),
                    _ => {
                        let next = toks.get(i + 1).unwrap_or(t);
                        return Err(error_at(next.line, next.col, "expected a name after FROM"));
                    }
                };
                let alias = match (toks.get(i + 2).map(|t| &t.tok), toks.get(i + 3)) {
                    (Some(Tok::Ident(a)), Some(t3)) if a.eq_ignore_ascii_case("AS") => {
                        match &t3.tok {
                            Tok::Ident(n) if !is_keyword(n) => n.clone(),
                            _ => return Err(error_at(t3.line, t3.col, "expected a name after AS")),
                        }
                    }
                    (Some(Tok::Ident(a)), _) if !is_keyword(a) => a.clone(),
                    _ => name.clone(),
                };
                return Ok((name, alias));
            }
            _ => {}
        }
    }
    let end = toks.last().map_or((1, 1), |t| (t.line, t.col));
    Err(error_at(end.0, end.1, "expected FROM"))
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Str(s) => format!("the string {s:?}"),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Param(p) => format!("@{p}"),
        Tok::Sym(s) => format!("`{s}`"),
        Tok::End => "the end of the query".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        self.at += 1;
        t
    }

    fn fail<T>(&self, expected: &str) -> Result<T> {
        let t = self.peek();
        Err(error_at(
            t.line,
            t.col,
            format!("expected {expected}, found {}", describe(&t.tok)),
        ))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.fail(kw)
        }
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(s) if *s == sym)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if self.is_sym(sym) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> Result<()> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            self.fail(&format!("`{sym}`"))
        }
    }

    fn count(&mut self, what: &str) -> Result<u64> {
        match self.peek().tok.clone() {
            Tok::Num(n) if n.as_u64().is_some() => {
                self.bump();
                Ok(n.as_u64().unwrap_or(0))
            }
            _ => self.fail(&format!("a whole number for {what}")),
        }
    }

    fn query(&mut self) -> Result<Query> {
        self.expect_kw("SELECT")?;
        let top = if self.eat_kw("TOP") {
            Some(self.count("TOP")?)
        } else {
            None
        };
        // Where each projection item starts, and the filter: for errors found once the
        // whole query is read.
        let mut starts = Vec::new();
        let projection = if self.eat_sym("*") {
            Projection::Star
        } else if self.eat_kw("VALUE") {
            Projection::Value(self.expr()?)
        } else {
            let mut items = Vec::new();
            loop {
                let t = self.peek();
                starts.push((t.line, t.col));
                let e = self.expr()?;
                let alias = if self.eat_kw("AS") {
                    Some(self.name("a name after AS")?)
                } else {
                    match &self.peek().tok {
                        Tok::Ident(w) if !is_keyword(w) => {
                            let w = w.clone();
                            self.bump();
                            Some(w)
                        }
                        _ => None,
                    }
                };
                items.push((e, alias));
                if !self.eat_sym(",") {
                    break;
                }
            }
            Projection::Fields(items)
        };
        self.expect_kw("FROM")?;
        // FROM name [[AS] alias]: already read by `find_alias`.
        self.bump();
        if self.eat_kw("AS") || matches!(&self.peek().tok, Tok::Ident(w) if !is_keyword(w)) {
            self.bump();
        }
        let filter_at = (self.peek().line, self.peek().col);
        let filter = if self.eat_kw("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let t = self.peek().clone();
                let (path, computed) = match self.expr()? {
                    Expr::Path(p) if !p.0.is_empty() => (p, None),
                    call @ Expr::Call(..) if is_vector_distance(&call) => {
                        (Path::default(), Some(call))
                    }
                    _ => {
                        return Err(error_at(
                            t.line,
                            t.col,
                            format!(
                                "ORDER BY takes paths such as {}.name, or VectorDistance(..)",
                                self.alias
                            ),
                        ));
                    }
                };
                let descending = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                order_by.push(OrderItem {
                    path,
                    descending,
                    computed,
                });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let (mut offset, mut limit) = (None, None);
        if self.eat_kw("OFFSET") {
            offset = Some(self.count("OFFSET")?);
            self.expect_kw("LIMIT")?;
            limit = Some(self.count("LIMIT")?);
        }
        if !matches!(self.peek().tok, Tok::End) {
            return self.fail("the end of the query");
        }
        let query = Query {
            source: self.source.clone(),
            alias: self.alias.clone(),
            top,
            projection,
            filter,
            order_by,
            offset,
            limit,
        };
        if query.is_aggregate()
            && let Projection::Fields(items) = &query.projection
            && let Some(at) = items.iter().position(|(e, _)| !e.has_aggregate())
        {
            let (line, col) = starts.get(at).copied().unwrap_or((1, 1));
            return Err(error_at(
                line,
                col,
                "this projection is not an aggregate, and aggregates cannot be mixed with \
                 other projections (there is no GROUP BY)",
            ));
        }
        if let Some(f) = &query.filter
            && f.has_aggregate()
        {
            return Err(error_at(
                filter_at.0,
                filter_at.1,
                "aggregates are not allowed in WHERE",
            ));
        }
        Ok(query)
    }

    fn name(&mut self, expected: &str) -> Result<String> {
        match self.peek().tok.clone() {
            Tok::Ident(w) if !is_keyword(&w) => {
                self.bump();
                Ok(w)
            }
            _ => self.fail(expected),
        }
    }

    fn nest(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let t = self.peek();
            return Err(error_at(
                t.line,
                t.col,
                format!("expressions nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr> {
        self.nest()?;
        let cond = self.or()?;
        let out = if self.eat_sym("?") {
            let a = self.expr()?;
            self.expect_sym(":")?;
            let b = self.expr()?;
            Expr::Ternary(Box::new(cond), Box::new(a), Box::new(b))
        } else {
            cond
        };
        self.depth -= 1;
        Ok(out)
    }

    fn or(&mut self) -> Result<Expr> {
        let mut left = self.and()?;
        while self.eat_kw("OR") {
            let right = self.and()?;
            left = Expr::Binary(BinOp::Or, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut left = self.not()?;
        while self.eat_kw("AND") {
            let right = self.not()?;
            left = Expr::Binary(BinOp::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr> {
        if self.eat_kw("NOT") {
            self.nest()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Unary(UnOp::Not, Box::new(e)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr> {
        let left = self.coalesce()?;
        let op = match &self.peek().tok {
            Tok::Sym("=") => Some(BinOp::Eq),
            Tok::Sym("!=" | "<>") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let right = self.coalesce()?;
            return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.is_kw("NOT") {
            let next = self.toks.get(self.at + 1).map(|t| &t.tok);
            if matches!(next, Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("IN") || w.eq_ignore_ascii_case("BETWEEN"))
            {
                self.bump();
                true
            } else {
                return Ok(left);
            }
        } else {
            false
        };
        if self.eat_kw("IN") {
            self.expect_sym("(")?;
            let mut list = Vec::new();
            if !self.is_sym(")") {
                loop {
                    list.push(self.expr()?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
            }
            self.expect_sym(")")?;
            return Ok(Expr::In {
                expr: Box::new(left),
                list,
                negated,
            });
        }
        if self.eat_kw("BETWEEN") {
            let low = self.coalesce()?;
            self.expect_kw("AND")?;
            let high = self.coalesce()?;
            return Ok(Expr::Between {
                expr: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            });
        }
        if negated {
            return self.fail("IN or BETWEEN");
        }
        Ok(left)
    }

    fn binary_level(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Parser) -> Result<Expr>,
    ) -> Result<Expr> {
        let mut left = next(self)?;
        'outer: loop {
            for (sym, op) in ops {
                if self.eat_sym(sym) {
                    let right = next(self)?;
                    left = Expr::Binary(*op, Box::new(left), Box::new(right));
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }

    fn coalesce(&mut self) -> Result<Expr> {
        self.binary_level(&[("??", BinOp::Coalesce)], Parser::concat)
    }

    fn concat(&mut self) -> Result<Expr> {
        self.binary_level(&[("||", BinOp::Concat)], Parser::additive)
    }

    fn additive(&mut self) -> Result<Expr> {
        self.binary_level(&[("+", BinOp::Add), ("-", BinOp::Sub)], Parser::term)
    }

    fn term(&mut self) -> Result<Expr> {
        self.binary_level(
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem)],
            Parser::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.eat_sym("-") {
            self.nest()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(match e {
                Expr::Literal(Value::Number(n)) => Expr::Literal(negate(&n)),
                e => Expr::Unary(UnOp::Neg, Box::new(e)),
            });
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let t = self.bump();
        match t.tok.clone() {
            Tok::Num(n) => Ok(Expr::Literal(Value::Number(n))),
            Tok::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Tok::Param(p) => Ok(Expr::Param(p)),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.is_sym("]") {
                    loop {
                        items.push(self.expr()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                }
                self.expect_sym("]")?;
                Ok(literal_or(items, Expr::Array, |v| Value::Array(v.to_vec())))
            }
            Tok::Sym("{") => {
                let mut fields = Vec::new();
                if !self.is_sym("}") {
                    loop {
                        let key = match self.bump().tok {
                            Tok::Str(s) | Tok::Ident(s) => s,
                            _ => {
                                self.at -= 1;
                                return self.fail("a property name");
                            }
                        };
                        self.expect_sym(":")?;
                        fields.push((key, self.expr()?));
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                }
                self.expect_sym("}")?;
                let consts: Option<serde_json::Map<String, Value>> = fields
                    .iter()
                    .map(|(k, e)| match e {
                        Expr::Literal(v) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect();
                Ok(match consts {
                    Some(map) => Expr::Literal(Value::Object(map)),
                    None => Expr::Object(fields),
                })
            }
            Tok::Ident(w) => {
                let upper = w.to_ascii_uppercase();
                match upper.as_str() {
                    "TRUE" => return Ok(Expr::Literal(Value::Bool(true))),
                    "FALSE" => return Ok(Expr::Literal(Value::Bool(false))),
                    "NULL" => return Ok(Expr::Literal(Value::Null)),
                    "UNDEFINED" => return Ok(Expr::Call("UNDEFINED".into(), Vec::new())),
                    _ => {}
                }
                if self.is_sym("(") {
                    return self.call(&t, upper);
                }
                if w != self.alias {
                    return Err(error_at(
                        t.line,
                        t.col,
                        format!(
                            "unknown name `{w}`: documents are named `{}` in this query",
                            self.alias
                        ),
                    ));
                }
                self.path()
            }
            other => {
                self.at -= 1;
                let _ = other;
                self.fail("an expression")
            }
        }
    }

    fn path(&mut self) -> Result<Expr> {
        let mut steps = Vec::new();
        loop {
            if self.eat_sym(".") {
                match self.bump().tok {
                    Tok::Ident(f) => steps.push(Step::Field(f)),
                    _ => {
                        self.at -= 1;
                        return self.fail("a property name after `.`");
                    }
                }
            } else if self.eat_sym("[") {
                match self.bump().tok {
                    Tok::Str(f) => steps.push(Step::Field(f)),
                    Tok::Num(n) if n.as_u64().is_some() => {
                        let i = n.as_u64().unwrap_or(0);
                        steps.push(Step::Index(usize::try_from(i).unwrap_or(usize::MAX)));
                    }
                    _ => {
                        self.at -= 1;
                        return self.fail("a property name in quotes or an array index");
                    }
                }
                self.expect_sym("]")?;
            } else {
                return Ok(Expr::Path(Path(steps)));
            }
        }
    }

    fn call(&mut self, t: &Token, name: String) -> Result<Expr> {
        self.expect_sym("(")?;
        let aggregate = match name.as_str() {
            "COUNT" => Some(Aggregate::Count),
            "SUM" => Some(Aggregate::Sum),
            "MIN" => Some(Aggregate::Min),
            "MAX" => Some(Aggregate::Max),
            "AVG" => Some(Aggregate::Avg),
            _ => None,
        };
        if let Some(agg) = aggregate {
            if agg == Aggregate::Count && self.eat_sym("*") {
                self.expect_sym(")")?;
                return Ok(Expr::Aggregate(agg, None));
            }
            let arg = self.expr()?;
            self.expect_sym(")")?;
            if arg.has_aggregate() {
                return Err(error_at(t.line, t.col, "aggregates cannot nest"));
            }
            return Ok(Expr::Aggregate(agg, Some(Box::new(arg))));
        }
        let Some(&(_, least, most)) = FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
            return Err(error_at(
                t.line,
                t.col,
                format!("unknown function `{name}`"),
            ));
        };
        let mut args = Vec::new();
        if !self.is_sym(")") {
            loop {
                args.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        if args.len() < least || args.len() > most {
            let wanted = if least == most {
                format!("{least}")
            } else {
                format!("{least} to {most}")
            };
            return Err(error_at(
                t.line,
                t.col,
                format!("{name} takes {wanted} argument(s), not {}", args.len()),
            ));
        }
        Ok(Expr::Call(name, args))
    }
}

fn negate(n: &Number) -> Value {
    if let Some(i) = n.as_i64().and_then(i64::checked_neg) {
        return Value::from(i);
    }
    if let Some(u) = n.as_u64()
        && u == 1 << 63
    {
        return Value::from(i64::MIN);
    }
    n.as_f64()
        .and_then(|f| Number::from_f64(-f))
        .map_or(Value::Null, Value::Number)
}

/// An array of constants is folded into one literal.
fn literal_or(items: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr, fold: fn(&[Value]) -> Value) -> Expr {
    let consts: Option<Vec<Value>> = items
        .iter()
        .map(|e| match e {
            Expr::Literal(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    match consts {
        Some(values) => Expr::Literal(fold(&values)),
        None => wrap(items),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(q: &str) -> String {
        parse(q).unwrap_err().to_string()
    }

    #[test]
    fn aggregate_misuse_says_where() {
        let e = err("SELECT COUNT(1), c.x FROM c");
        assert!(
            e.contains("line 1, column 18") && e.contains("not an aggregate"),
            "{e}"
        );
        let e = err("SELECT * FROM c WHERE COUNT(1) > 1");
        assert!(
            e.contains("line 1, column 17") && e.contains("WHERE"),
            "{e}"
        );
    }

    #[test]
    fn properties_named_like_keywords_are_properties() {
        let q = parse(
            "SELECT c.from, c.to, c.value FROM messages c WHERE c.from = 'ana' \
             ORDER BY c.from",
        )
        .unwrap();
        assert_eq!(q.alias, "c");
        assert_eq!(q.source, "messages");
        assert!(q.filter.is_some());
        assert_eq!(q.order_by.len(), 1);
        // Still a clause where it is one.
        assert!(err("SELECT c.from FROM").contains("expected a name after FROM"));
    }

    #[test]
    fn parses_the_whole_grammar() {
        let q = parse(
            "SELECT TOP 5 c.id, c.stats.score AS s, c.tags[0] FROM players c \
             WHERE c.region IN ('sa', \"us\") AND NOT (c.score BETWEEN 1 AND 10) \
             AND STARTSWITH(c.name, @prefix, true) OR c['odd key'] != -3.5 \
             ORDER BY c.score DESC, c.id OFFSET 10 LIMIT 20",
        )
        .unwrap();
        assert_eq!(q.top, Some(5));
        assert_eq!(q.offset, Some(10));
        assert_eq!(q.limit, Some(20));
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].descending);
        assert_eq!(q.order_by[0].path.pointer(), "/score");
        let Projection::Fields(items) = &q.projection else {
            panic!("fields")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].1.as_deref(), Some("s"));
        assert_eq!(
            items[2].0,
            Expr::Path(Path(vec![Step::Field("tags".into()), Step::Index(0)]))
        );
        let mut params = Vec::new();
        q.filter.as_ref().unwrap().params(&mut |p| params.push(p));
        assert_eq!(params, ["prefix"]);
    }

    #[test]
    fn value_star_aggregates_and_aliases() {
        assert_eq!(
            parse("select * from c").unwrap().projection,
            Projection::Star
        );
        let q = parse("SELECT VALUE COUNT(1) FROM root r WHERE r.x > 0").unwrap();
        assert!(q.is_aggregate());
        let q = parse("SELECT VALUE [1, 2, c.x] FROM c").unwrap();
        assert!(matches!(q.projection, Projection::Value(Expr::Array(_))));
        let q = parse("SELECT VALUE [1, 'a'] FROM c").unwrap();
        assert_eq!(
            q.projection,
            Projection::Value(Expr::Literal(json!([1, "a"])))
        );
        assert!(parse("SELECT COUNT(*) AS n, MAX(c.score) AS best FROM c").is_ok());
    }

    #[test]
    fn errors_say_where() {
        assert!(err("SELECT * FROM c WHERE").contains("line 1, column 22"));
        assert!(err("SELECT * FROM c WHERE c.x = ").contains("expected an expression"));
        assert!(err("SELECT * FROM c\nWHERE d.x = 1").contains("line 2, column 7"));
        assert!(err("SELECT * FROM c WHERE c.x = 'open").contains("not closed"));
        assert!(err("SELECT * FROM c WHERE NOPE(c.x)").contains("unknown function `NOPE`"));
        assert!(err("SELECT * FROM c WHERE STARTSWITH(c.x)").contains("2 to 3"));
        assert!(err("SELECT * FROM c ORDER BY 1").contains("ORDER BY takes paths"));
        assert!(err("SELECT * FROM c ORDER BY LOWER(c.x)").contains("VectorDistance"));
        let q = parse("SELECT TOP 3 c.id FROM c ORDER BY VectorDistance(c.e, @q)").unwrap();
        assert!(q.order_by[0].computed.is_some());
        assert_eq!(
            crate::query::builder::render_query(&q),
            "SELECT TOP 3 c.id FROM c ORDER BY VectorDistance(c.e, @q)"
        );
        assert!(err("SELECT c.x, COUNT(1) FROM c").contains("mixed"));
        assert!(err("SELECT * FROM c WHERE COUNT(1) > 1").contains("WHERE"));
        assert!(err("SELECT * FROM c extra junk").contains("end of the query"));
        assert!(err("SELECT *").contains("expected FROM"));
        assert!(err("SELECT * FROM c WHERE c.x = #").contains("unexpected character"));
        assert!(err("SELECT TOP -1 * FROM c").contains("whole number"));
        let deep = format!(
            "SELECT * FROM c WHERE {}1{}",
            "(".repeat(500),
            ")".repeat(500)
        );
        assert!(err(&deep).contains("nest deeper"));
        let deep_not = format!("SELECT * FROM c WHERE {} true", "NOT ".repeat(500));
        assert!(err(&deep_not).contains("nest deeper"));
        let deep_neg = format!("SELECT VALUE {}1 FROM c", "- ".repeat(500));
        assert!(err(&deep_neg).contains("nest deeper"));
    }

    #[test]
    fn numbers_and_strings() {
        let q = parse(r#"SELECT VALUE [-9223372036854775808, 1.5e3, 'it\'s', "\u00e9"] FROM c"#)
            .unwrap();
        assert_eq!(
            q.projection,
            Projection::Value(Expr::Literal(json!([i64::MIN, 1500.0, "it's", "é"])))
        );
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use crate::query::eval::{Params, eval};
    use proptest::prelude::*;

    /// Pieces of the language, glued at random: mostly near-misses of valid queries.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("SELECT ".to_string()),
            Just("TOP 3 ".to_string()),
            Just("VALUE ".to_string()),
            Just("* ".to_string()),
            Just("FROM c ".to_string()),
            Just("WHERE ".to_string()),
            Just("ORDER BY ".to_string()),
            Just("OFFSET 1 LIMIT 2 ".to_string()),
            Just("c.a ".to_string()),
            Just("c['b'][0] ".to_string()),
            Just("@p ".to_string()),
            Just("VectorDistance(c.v, @p) ".to_string()),
            Just("COUNT(1) ".to_string()),
            Just("STARTSWITH(c.s, 'x', true) ".to_string()),
            Just("IN (1, 2) ".to_string()),
            Just("BETWEEN 1 AND 2 ".to_string()),
            Just("NOT ".to_string()),
            Just("AND ".to_string()),
            Just("OR ".to_string()),
            Just("? 1 : 2 ".to_string()),
            "[-+*/%=<>!?:.,()\\[\\]{}@'\"\\\\]{1,3}",
            "[a-zA-Z_0-9]{1,6} ?",
            "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e-?[0-9]{1,4})? ",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parsing_and_evaluating_never_panic(parts in prop::collection::vec(fragment(), 0..24)) {
            let text = parts.concat();
            if let Ok(q) = parse(&text) {
                let doc = serde_json::json!({"a": 1, "b": [2, "x"], "s": "xy", "v": [1.0, 2.0]});
                let params = Params::from([("p".to_string(), serde_json::json!([1.0, 0.0]))]);
                if let Some(f) = &q.filter {
                    let _ = eval(f, &doc, &params);
                }
                if let Projection::Value(e) = &q.projection {
                    let _ = eval(e, &doc, &params);
                }
                // What parses renders back to text that parses to the same query.
                let again = parse(&crate::query::builder::render_query(&q));
                prop_assert_eq!(again.map_err(|e| e.to_string()), Ok(q), "{}", text);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
