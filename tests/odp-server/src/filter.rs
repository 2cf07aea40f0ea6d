//! The subset of ODP's filter language the test server evaluates: comparisons
//! (`== = != > >= < <=`), `AND`/`OR`/`NOT` (any case), `IS [NOT] NULL`, the geometry predicates
//! `within`, `intersects`/`intersect` and `contains` on WKT text, parentheses, literals
//! (`'text'`, `"text"`, numbers, `true`/`false`, `null`) and bind variables (`$name` with
//! `vars` an object, `?` with `vars` an array) in the Python SDK's typed form
//! (`{"type": "datetime", "value": "..."}`) or as plain JSON scalars (the R SDK's form).
//!
//! Comparisons involving a null are false, as in SQL. A timestamp column compared with text
//! parses the text as a time, so `eventDate > $last` works with a `datetime` variable.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use geo::{Contains, Geometry, Intersects, Within};
use serde_json::Value as Json;
use wkt::TryFromWkt;

/// A filter that could not be parsed or bound (the server answers 400 with the message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(message.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(f64),
    Var(String),
    Positional,
    Op(&'static str),
    LParen,
    RParen,
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::LParen);
                i += 1
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1
            }
            '?' => {
                tokens.push(Token::Positional);
                i += 1
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return err(format!("unterminated string in filter {text:?}")),
                        Some('\\') if chars.get(i + 1).is_some() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(s));
            }
            '$' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if i == start {
                    return err("`$` must be followed by a variable name");
                }
                tokens.push(Token::Var(chars[start..i].iter().collect()));
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "==" => "==",
                    "!=" => "!=",
                    ">=" => ">=",
                    "<=" => "<=",
                    _ => match c {
                        '=' => "=",
                        '<' => "<",
                        '>' => ">",
                        _ => return err(format!("unexpected `!` at offset {i} of {text:?}")),
                    },
                };
                i += op.len();
                tokens.push(Token::Op(if op == "=" { "==" } else { op }));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E')
                        || (matches!(chars[i], '-' | '+') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n = s
                    .parse::<f64>()
                    .map_err(|_| FilterError(format!("bad number {s:?} in filter")))?;
                tokens.push(Token::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.'))
                {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return err(format!(
                    "unexpected {other:?} at offset {i} of filter {text:?}"
                ))
            }
        }
    }
    Ok(tokens)
}

/// A literal or bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL null.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any number.
    Num(f64),
    /// Text (also WKT geometries and times not yet compared with a timestamp column).
    Str(String),
    /// A time, µs since the epoch.
    Time(i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum GeoOp {
    Within,
    Intersects,
    Contains,
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    Geo(GeoOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    Column(usize),
    Lit(Value),
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    batch: &'a RecordBatch,
    named: Option<&'a serde_json::Map<String, Json>>,
    positional: Option<&'a Vec<Json>>,
    next_positional: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let left = self.operand()?;
        if let Some(Token::Op(op)) = self.peek() {
            let op = *op;
            self.pos += 1;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(self.operand()?)));
        }
        for (word, op) in [
            ("within", GeoOp::Within),
            ("intersects", GeoOp::Intersects),
            ("intersect", GeoOp::Intersects),
            ("contains", GeoOp::Contains),
        ] {
            if self.keyword(word) {
                self.pos += 1;
                let right = self.operand()?;
                return Ok(Expr::Geo(op, Box::new(left), Box::new(right)));
            }
        }
        if self.keyword("is") {
            self.pos += 1;
            let negated = self.keyword("not");
            if negated {
                self.pos += 1;
            }
            if !self.keyword("null") {
                return err("expected NULL after IS [NOT]");
            }
            self.pos += 1;
            return Ok(Expr::IsNull(Box::new(left), negated));
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Expr, FilterError> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| FilterError("the filter ends too early".into()))?;
        self.pos += 1;
        Ok(match token {
            Token::LParen => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::RParen) {
                    return err("expected `)`");
                }
                self.pos += 1;
                inner
            }
            Token::Str(s) => Expr::Lit(Value::Str(s)),
            Token::Num(n) => Expr::Lit(Value::Num(n)),
            Token::Var(name) => {
                let value = self
                    .named
                    .and_then(|vars| vars.get(&name))
                    .ok_or_else(|| FilterError(format!("variable ${name} is not bound")))?;
                Expr::Lit(bind(value)?)
            }
            Token::Positional => {
                let value = self
                    .positional
                    .and_then(|vars| vars.get(self.next_positional))
                    .ok_or_else(|| {
                        FilterError(format!(
                            "positional variable {} is not bound",
                            self.next_positional + 1
                        ))
                    })?;
                self.next_positional += 1;
                Expr::Lit(bind(value)?)
            }
            Token::Ident(word) => match word.to_ascii_lowercase().as_str() {
                "true" => Expr::Lit(Value::Bool(true)),
                "false" => Expr::Lit(Value::Bool(false)),
                "null" | "none" => Expr::Lit(Value::Null),
                _ => match self.batch.schema().index_of(&word) {
                    Ok(i) => Expr::Column(i),
                    Err(_) => return err(format!("unknown column {word:?}")),
                },
            },
            Token::Op(op) => return err(format!("unexpected `{op}`")),
            Token::RParen => return err("unexpected `)`"),
        })
    }
}

/// A bound variable: the typed `{"type","value"}` form or a plain JSON scalar.
fn bind(value: &Json) -> Result<Value, FilterError> {
    if let Some(object) = value.as_object() {
        let kind = object.get("type").and_then(Json::as_str).unwrap_or("");
        let inner = object.get("value").unwrap_or(&Json::Null);
        return Ok(match (kind, inner) {
            (_, Json::Null) => Value::Null,
            ("string", Json::String(s)) => Value::Str(s.clone()),
            ("integer" | "float", v) if v.is_number() => Value::Num(v.as_f64().unwrap_or(f64::NAN)),
            ("integer", Json::Bool(b)) | ("boolean", Json::Bool(b)) => Value::Bool(*b),
            ("datetime" | "date", Json::String(s)) => Value::Time(
                parse_time(s).ok_or_else(|| FilterError(format!("bad {kind} variable {s:?}")))?,
            ),
            ("time", Json::String(s)) => Value::Str(s.clone()),
            _ => return err(format!("unsupported variable {value}")),
        });
    }
    Ok(match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Value::Str(s.clone()),
        other => return err(format!("unsupported variable {other}")),
    })
}

/// RFC 3339 / ISO 8601 text (zone optional, UTC assumed) or a plain date, as µs.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// A parsed filter, bound to one batch's schema and the request's variables.
#[derive(Debug)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses `text` against the columns of `batch`, binding `vars` (object or array).
    pub fn parse(text: &str, batch: &RecordBatch, vars: &Json) -> Result<Filter, FilterError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            batch,
            named: vars.as_object(),
            positional: vars.as_array(),
            next_positional: 0,
        };
        let expr = parser.or()?;
        if parser.pos != parser.tokens.len() {
            return err(format!(
                "unexpected {:?} after a complete expression in {text:?}",
                parser.tokens[parser.pos]
            ));
        }
        Ok(Filter { expr })
    }

    /// Which rows of `batch` (the batch it was parsed against) match.
    pub fn evaluate(&self, batch: &RecordBatch) -> BooleanArray {
        let columns: Vec<ArrayRef> = batch.columns().iter().map(Arc::clone).collect();
        let mut geo_cache = GeoCache::default();
        (0..batch.num_rows())
            .map(|row| Some(truth(&eval(&self.expr, &columns, row, &mut geo_cache))))
            .collect()
    }
}

/// Parsed WKT literals, so a polygon literal is parsed once per request, not once per row.
#[derive(Default)]
struct GeoCache {
    literals: Vec<(String, Option<Geometry<f64>>)>,
}

impl GeoCache {
    fn literal(&mut self, text: &str) -> Option<Geometry<f64>> {
        if let Some((_, g)) = self.literals.iter().find(|(t, _)| t == text) {
            return g.clone();
        }
        let g = Geometry::try_from_wkt_str(text).ok();
        self.literals.push((text.to_string(), g.clone()));
        g
    }
}

fn truth(value: &Value) -> bool {
    matches!(value, Value::Bool(true))
}

fn eval(expr: &Expr, columns: &[ArrayRef], row: usize, geo: &mut GeoCache) -> Value {
    match expr {
        Expr::Or(a, b) => {
            Value::Bool(truth(&eval(a, columns, row, geo)) || truth(&eval(b, columns, row, geo)))
        }
        Expr::And(a, b) => {
            Value::Bool(truth(&eval(a, columns, row, geo)) && truth(&eval(b, columns, row, geo)))
        }
        Expr::Not(a) => match eval(a, columns, row, geo) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Expr::IsNull(a, negated) => {
            Value::Bool((eval(a, columns, row, geo) == Value::Null) != *negated)
        }
        Expr::Column(i) => cell(&columns[*i], row),
        Expr::Lit(v) => v.clone(),
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, columns, row, geo), eval(b, columns, row, geo));
            match compare(&a, &b) {
                // Unknown, as in SQL: NOT of it stays unknown (false).
                None => Value::Null,
                Some(ord) => Value::Bool(match *op {
                    "==" => ord.is_eq(),
                    "!=" => ord.is_ne(),
                    ">" => ord.is_gt(),
                    ">=" => ord.is_ge(),
                    "<" => ord.is_lt(),
                    _ => ord.is_le(),
                }),
            }
        }
        Expr::Geo(op, a, b) => {
            let (Value::Str(a), Value::Str(b)) =
                (eval(a, columns, row, geo), eval(b, columns, row, geo))
            else {
                return Value::Bool(false);
            };
            let (Some(a), Some(b)) = (geo.literal_or_row(&a), geo.literal(&b)) else {
                return Value::Bool(false);
            };
            Value::Bool(match op {
                GeoOp::Within => a.is_within(&b),
                GeoOp::Intersects => a.intersects(&b),
                GeoOp::Contains => a.contains(&b),
            })
        }
    }
}

impl GeoCache {
    /// Row geometries are parsed per row (not cached: they differ row to row).
    fn literal_or_row(&mut self, text: &str) -> Option<Geometry<f64>> {
        Geometry::try_from_wkt_str(text).ok()
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Num(x), Value::Num(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Str(s)) => parse_time(s).map(|y| x.cmp(&y)),
        (Value::Str(s), Value::Time(y)) => parse_time(s).map(|x| x.cmp(y)),
        (Value::Bool(x), Value::Num(y)) => f64::from(u8::from(*x)).partial_cmp(y),
        (Value::Num(x), Value::Bool(y)) => x.partial_cmp(&f64::from(u8::from(*y))),
        _ => None,
    }
}

/// One cell as a filter value.
fn cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row).to_string()),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Float64 => Value::Num(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Value::Num(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Int64 => Value::Num(array.as_primitive::<Int64Type>().value(row) as f64),
        DataType::Int32 => Value::Num(f64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Timestamp(unit, _) => Value::Time(match unit {
            TimeUnit::Second => array
                .as_primitive::<TimestampSecondType>()
                .value(row)
                .saturating_mul(1_000_000),
            TimeUnit::Millisecond => array
                .as_primitive::<TimestampMillisecondType>()
                .value(row)
                .saturating_mul(1000),
            TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
            TimeUnit::Nanosecond => {
                array.as_primitive::<TimestampNanosecondType>().value(row) / 1000
            }
        }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};
    use serde_json::json;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("depth", DataType::Float64, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("geom", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
                Arc::new(Float64Array::from(vec![Some(5.0), None, Some(50.0)])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, 86_400_000_000, 2 * 86_400_000_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some("POINT(1 1)"),
                    Some("POLYGON((0 0, 2 0, 2 2, 0 2, 0 0))"),
                    Some("POINT(10 10)"),
                ])),
            ],
        )
        .unwrap()
    }

    fn rows(text: &str, vars: Json) -> Vec<bool> {
        let b = batch();
        let f = Filter::parse(text, &b, &vars).unwrap_or_else(|e| panic!("{text}: {e}"));
        f.evaluate(&b).iter().map(|v| v.unwrap_or(false)).collect()
    }

    #[test]
    fn comparisons_logic_nulls_and_vars() {
        assert_eq!(rows("depth > 4", json!(null)), [true, false, true]);
        assert_eq!(
            rows("depth >= 5 AND name == 'a'", json!(null)),
            [true, false, false]
        );
        assert_eq!(
            rows("name = \"b\" or depth < 10", json!(null)),
            [true, true, false]
        );
        assert_eq!(rows("not (depth > 4)", json!(null)), [false, false, false]);
        assert_eq!(rows("name IS NULL", json!(null)), [false, false, true]);
        assert_eq!(rows("depth is not null", json!(null)), [true, false, true]);
        assert_eq!(
            rows("depth > $d", json!({"d": {"type": "integer", "value": 10}})),
            [false, false, true]
        );
        assert_eq!(rows("depth < ?", json!([10.5])), [true, false, false]);
        assert_eq!(
            rows(
                "t > $last",
                json!({"last": {"type": "datetime", "value": "1970-01-01T12:00:00+00:00"}})
            ),
            [false, true, true]
        );
        assert_eq!(rows("t <= '1970-01-02'", json!(null)), [true, true, false]);
    }

    #[test]
    fn geometry_predicates_on_wkt() {
        let area = json!({"area": {"type": "string", "value": "POLYGON((-1 -1, 3 -1, 3 3, -1 3, -1 -1))"}});
        assert_eq!(rows("geom within $area", area), [true, true, false]);
        assert_eq!(
            rows(
                "geom intersects 'POLYGON((1.5 1.5, 5 1.5, 5 5, 1.5 5, 1.5 1.5))'",
                json!(null)
            ),
            [false, true, false]
        );
    }

    #[test]
    fn bad_filters_are_errors() {
        let b = batch();
        for bad in [
            "invalid_column =! 5",
            "depth >",
            "(depth > 1",
            "depth > $x",
            "name == 'x",
        ] {
            assert!(Filter::parse(bad, &b, &json!(null)).is_err(), "{bad}");
        }
    }
}
