//! Label and field selectors in the apiserver's query syntax.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`,
/// `a>1`, `a<1`, comma-separated, all ANDed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    LParen,
    RParen,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1;
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1;
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::DoubleEq);
                    i += 2;
                } else {
                    out.push(Tok::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::NotEq);
                    i += 2;
                } else {
                    out.push(Tok::Bang);
                    i += 1;
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !",()<>=!".contains(chars[i])
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
    });
    name_ok && prefix_ok
}

fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn key(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(k)) if valid_key(&k) => Ok(k),
            Some(Tok::Ident(k)) => Err(format!("invalid label key {k:?}")),
            other => Err(format!("found '{other:?}', expected: identifier")),
        }
    }

    fn value_after_eq(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(_)) => {
                if let Some(Tok::Ident(v)) = self.next() {
                    if !valid_value(&v) {
                        return Err(format!("invalid label value: {v:?}"));
                    }
                    Ok(v)
                } else {
                    Err("expected identifier".into())
                }
            }
            // `key=` selects the empty value
            Some(Tok::Comma) | None => Ok(String::new()),
            other => Err(format!("found '{other:?}', expected: identifier")),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Tok::LParen) => {}
            other => return Err(format!("found '{other:?}', expected: '('")),
        }
        let mut vals = Vec::new();
        loop {
            match self.next() {
                Some(Tok::RParen) => break,
                Some(Tok::Ident(v)) => {
                    if !valid_value(&v) {
                        return Err(format!("invalid label value: {v:?}"));
                    }
                    vals.push(v);
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RParen) => break,
                        other => return Err(format!("found '{other:?}', expected: ',' or ')'")),
                    }
                }
                Some(Tok::Comma) => vals.push(String::new()),
                other => {
                    return Err(format!(
                        "found '{other:?}', expected: ',', ')' or identifier"
                    ))
                }
            }
        }
        if vals.is_empty() {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        Ok(vals)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Tok::Bang) {
            self.next();
            let key = self.key()?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                values: vec![],
            });
        }
        let key = self.key()?;
        match self.peek() {
            None | Some(Tok::Comma) => Ok(Requirement {
                key,
                op: Op::Exists,
                values: vec![],
            }),
            Some(Tok::Eq) | Some(Tok::DoubleEq) => {
                self.next();
                let v = self.value_after_eq()?;
                Ok(Requirement {
                    key,
                    op: Op::In,
                    values: vec![v],
                })
            }
            Some(Tok::NotEq) => {
                self.next();
                let v = self.value_after_eq()?;
                Ok(Requirement {
                    key,
                    op: Op::NotIn,
                    values: vec![v],
                })
            }
            Some(Tok::Gt) | Some(Tok::Lt) => {
                let op = if self.next() == Some(Tok::Gt) {
                    Op::Gt
                } else {
                    Op::Lt
                };
                match self.next() {
                    Some(Tok::Ident(v)) if v.parse::<i64>().is_ok() => Ok(Requirement {
                        key,
                        op,
                        values: vec![v],
                    }),
                    other => Err(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer, found {other:?}"
                    )),
                }
            }
            Some(Tok::Ident(w)) if w == "in" || w == "notin" => {
                let op = if w == "in" { Op::In } else { Op::NotIn };
                self.next();
                let values = self.value_set()?;
                Ok(Requirement { key, op, values })
            }
            Some(other) => Err(format!(
                "found '{other:?}', expected: in, notin, =, ==, !=, gt, lt"
            )),
        }
    }
}

impl LabelSelector {
    /// Parses the apiserver's label selector syntax. The error text is the reason.
    pub fn parse(s: &str) -> Result<Self, String> {
        let toks = lex(s)?;
        let mut p = Parser { toks, pos: 0 };
        let mut reqs = Vec::new();
        if p.peek().is_none() {
            return Ok(Self { reqs });
        }
        loop {
            reqs.push(
                p.requirement()
                    .map_err(|e| format!("unable to parse requirement: {e}"))?,
            );
            match p.next() {
                None => break,
                Some(Tok::Comma) => continue,
                Some(other) => {
                    return Err(format!(
                        "unable to parse requirement: found '{other:?}', expected: ','"
                    ))
                }
            }
        }
        Ok(Self { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| {
            let v = get(&r.key);
            match r.op {
                Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotIn => v.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt | Op::Lt => {
                    let (Some(have), Some(want)) = (
                        v.and_then(|v| v.parse::<i64>().ok()),
                        r.values.first().and_then(|w| w.parse::<i64>().ok()),
                    ) else {
                        return false;
                    };
                    if r.op == Op::Gt {
                        have > want
                    } else {
                        have < want
                    }
                }
            }
        })
    }
}

/// A parsed `fieldSelector`; only `metadata.name` and `metadata.namespace` are supported,
/// with `=`, `==` and `!=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, eq, want)| {
            let have = match field.as_str() {
                "metadata.name" => obj.pointer("/metadata/name"),
                _ => obj.pointer("/metadata/namespace"),
            }
            .and_then(Value::as_str)
            .unwrap_or("");
            (have == want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_selector_syntax() {
        let o = obj(json!({"app": "web", "tier": "fe", "n": "5"}));
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app",
            "!missing",
            "app in (web, db)",
            "app notin (db)",
            "missing notin (db)",
            "app=web,tier=fe",
            "n>3",
            "n<6",
            " app = web , tier in (fe) ",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "missing",
            "!app",
            "app in (db)",
            "app notin (web,db)",
            "app=web,tier=be",
            "n>5",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        for bad in [
            "app in ()",
            "app in web",
            "=x",
            "a b",
            "app=web,",
            "n>x",
            "app in (web",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selector_syntax() {
        let o = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=n").unwrap().matches(&o));
        assert!(
            FieldSelector::parse("metadata.name==n,metadata.namespace=ns")
                .unwrap()
                .matches(&o)
        );
        assert!(!FieldSelector::parse("metadata.name!=n")
            .unwrap()
            .matches(&o));
        assert!(FieldSelector::parse("spec.x=1").is_err());
    }
}
