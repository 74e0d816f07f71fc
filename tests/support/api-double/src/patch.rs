//! RFC 7386 JSON merge patch and RFC 6902 JSON patch.

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes, anything else
/// (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Why a JSON patch could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonPatchError {
    /// The patch document itself is malformed (→ 400).
    Malformed(String),
    /// An operation failed against the object, including a failed `test` (→ 422).
    Failed(String),
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, JsonPatchError> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    if !path.starts_with('/') {
        return Err(JsonPatchError::Malformed(format!(
            "invalid JSON pointer {path:?}"
        )));
    }
    Ok(path[1..].split('/').map(unescape).collect())
}

fn parse_index(tok: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && tok == "-" {
        return Some(len);
    }
    if tok.is_empty()
        || (tok.len() > 1 && tok.starts_with('0'))
        || !tok.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let i: usize = tok.parse().ok()?;
    if i < len || (allow_end && i == len) {
        Some(i)
    } else {
        None
    }
}

fn get_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let i = parse_index(t, a.len(), false)?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn get<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(parse_index(t, a.len(), false)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), JsonPatchError> {
    let toks = split_pointer(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let fail = || {
        JsonPatchError::Failed(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        ))
    };
    match get_mut(doc, parent).ok_or_else(fail)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = parse_index(last, a.len(), true).ok_or_else(fail)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(fail()),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, JsonPatchError> {
    let toks = split_pointer(path)?;
    let fail = || {
        JsonPatchError::Failed(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))
    };
    let Some((last, parent)) = toks.split_last() else {
        return Err(fail());
    };
    match get_mut(doc, parent).ok_or_else(fail)? {
        Value::Object(m) => m.remove(last).ok_or_else(fail),
        Value::Array(a) => {
            let i = parse_index(last, a.len(), false).ok_or_else(fail)?;
            Ok(a.remove(i))
        }
        _ => Err(fail()),
    }
}

/// Applies an RFC 6902 JSON patch (add, remove, replace, move, copy, test) atomically.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        JsonPatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )
    })?;
    let mut out = doc.clone();
    for op in ops {
        let o = op.as_object().ok_or_else(|| {
            JsonPatchError::Malformed("json patch operation is not an object".into())
        })?;
        let kind = o.get("op").and_then(Value::as_str).unwrap_or("");
        let path = o.get("path").and_then(Value::as_str).ok_or_else(|| {
            JsonPatchError::Malformed(format!("operation {kind:?} is missing path"))
        })?;
        let value = || {
            o.get("value").cloned().ok_or_else(|| {
                JsonPatchError::Malformed(format!("operation {kind:?} is missing value"))
            })
        };
        let from = || {
            o.get("from").and_then(Value::as_str).ok_or_else(|| {
                JsonPatchError::Malformed(format!("operation {kind:?} is missing from"))
            })
        };
        match kind {
            "add" => add(&mut out, path, value()?)?,
            "remove" => {
                remove(&mut out, path)?;
            }
            "replace" => {
                let v = value()?;
                let toks = split_pointer(path)?;
                let target = get_mut(&mut out, &toks).ok_or_else(|| {
                    JsonPatchError::Failed(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                })?;
                *target = v;
            }
            "move" => {
                let f = from()?;
                let v = remove(&mut out, f)?;
                add(&mut out, path, v)?;
            }
            "copy" => {
                let f = from()?;
                let v = get(&out, &split_pointer(f)?).cloned().ok_or_else(|| {
                    JsonPatchError::Failed(format!("copy from does not exist: {f}"))
                })?;
                add(&mut out, path, v)?;
            }
            "test" => {
                let want = value()?;
                let have = get(&out, &split_pointer(path)?);
                let ok = match have {
                    Some(h) => *h == want,
                    None => want.is_null(),
                };
                if !ok {
                    return Err(JsonPatchError::Failed(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(JsonPatchError::Malformed(format!(
                    "Unexpected kind: {other}"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
        let mut t = json!({"a": 1});
        merge_patch(&mut t, &json!({"a": {"b": 2}}));
        assert_eq!(t, json!({"a": {"b": 2}}));
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"a": {"b": [1, 2]}, "x": 1});
        let p = json!([
            {"op": "test", "path": "/x", "value": 1},
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/x", "value": 2},
            {"op": "copy", "from": "/x", "path": "/y"},
            {"op": "move", "from": "/y", "path": "/z"},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "add", "path": "/k~1j", "value": true}
        ]);
        assert_eq!(
            json_patch(&doc, &p).unwrap(),
            json!({"a": {"b": [0, 2, 3]}, "x": 2, "z": 2, "k/j": true})
        );
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "test", "path": "/x", "value": 9}])),
            Err(JsonPatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(
                &doc,
                &json!([{"op": "replace", "path": "/nope", "value": 9}])
            ),
            Err(JsonPatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "add"})),
            Err(JsonPatchError::Malformed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "frob", "path": "/x"}])),
            Err(JsonPatchError::Malformed(_))
        ));
    }
}
