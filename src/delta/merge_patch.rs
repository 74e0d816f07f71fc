//! RFC 7386 JSON merge-patch diff, so status writes carry only what changed
//! (and `null` for what was removed, like Fleet's own `client.MergeFrom`).

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`: changed or added keys with
/// their new value (objects diffed recursively), `null` for removed keys,
/// arrays and scalars replaced whole. `{}` when equal.
///
/// Merge patch cannot express "set to null"; a `null` in `new` where `old`
/// had a value removes the key instead.
pub fn merge_patch_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => Value::Object(diff_objects(o, n)),
        _ => new.clone(),
    }
}

fn diff_objects(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (k, v_old) in old {
        if !new.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        } else if let Some(v_new) = new.get(k) {
            if v_old != v_new {
                let d = match (v_old, v_new) {
                    (Value::Object(o), Value::Object(n)) => Value::Object(diff_objects(o, n)),
                    _ => v_new.clone(),
                };
                patch.insert(k.clone(), d);
            }
        }
    }
    for (k, v_new) in new {
        if !old.contains_key(k) {
            patch.insert(k.clone(), v_new.clone());
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386 MergePatch, the receiving side.
    fn apply(target: &Value, patch: &Value) -> Value {
        match patch {
            Value::Object(p) => {
                let mut out = match target {
                    Value::Object(t) => t.clone(),
                    _ => Map::new(),
                };
                for (k, v) in p {
                    if v.is_null() {
                        out.remove(k);
                    } else {
                        let cur = out.get(k).cloned().unwrap_or(Value::Null);
                        out.insert(k.clone(), apply(&cur, v));
                    }
                }
                Value::Object(out)
            }
            _ => patch.clone(),
        }
    }

    #[test]
    fn diff_then_apply_round_trips() {
        let cases = [
            (json!({}), json!({})),
            (
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
                json!({"a": 1, "b": {"c": 5}}),
            ),
            (json!({"a": [1, 2]}), json!({"a": [2]})),
            (json!({"a": {"x": 1}}), json!({"a": 7})),
            (json!({"a": 7}), json!({"a": {"x": {"y": 1}}})),
            (
                json!({"nonModified": true, "ready": true}),
                json!({"ready": true, "modifiedStatus": [{"missing": true}]}),
            ),
            (json!(1), json!({"a": 1})),
            (json!({"a": 1}), json!([1])),
        ];
        for (old, new) in cases {
            let patch = merge_patch_diff(&old, &new);
            assert_eq!(
                apply(&old, &patch),
                new,
                "old={old} new={new} patch={patch}"
            );
        }
    }

    #[test]
    fn shape_of_patch() {
        let old = json!({"keep": 1, "gone": 2, "nested": {"x": 1, "y": 2}, "arr": [1]});
        let new = json!({"keep": 1, "nested": {"x": 1, "y": 3}, "arr": [1, 2], "added": "v"});
        assert_eq!(
            merge_patch_diff(&old, &new),
            json!({"gone": null, "nested": {"y": 3}, "arr": [1, 2], "added": "v"})
        );
        assert_eq!(merge_patch_diff(&old, &old), json!({}));
    }
}
