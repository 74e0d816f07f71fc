//! Wrangler's condition setters as Fleet uses them: a condition is created
//! with status `Unknown` when absent, and `lastUpdateTime` is touched only
//! when status or message actually change. Reproducing this keeps repeated
//! deltas idempotent and timestamps equal to what Fleet would write.

use super::status::Condition;

/// Sets status, message and reason of condition `type_`, touching
/// `lastUpdateTime` (to `now`) only if status or message changed.
/// Returns true if anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    message: &str,
    reason: &str,
    now: &str,
) -> bool {
    let mut created = false;
    let idx = match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            created = true;
            conditions.push(Condition {
                type_: type_.to_string(),
                status: "Unknown".to_string(),
                ..Condition::default()
            });
            conditions.len() - 1
        }
    };
    let Some(cond) = conditions.get_mut(idx) else {
        return false;
    };
    let before = cond.clone();
    if cond.status != status {
        cond.status = status.to_string();
        cond.last_update_time = now.to_string();
    }
    if cond.message != message {
        cond.message = message.to_string();
        cond.last_update_time = now.to_string();
    }
    cond.reason = reason.to_string();
    created || *cond != before
}

/// Wrangler's `SetError` as the agent uses it for the BD Ready condition:
/// `None` → True with empty message and reason; `Some(msg)` → False,
/// reason `Error`.
pub fn set_error(
    conditions: &mut Vec<Condition>,
    type_: &str,
    error: Option<&str>,
    now: &str,
) -> bool {
    match error {
        None => set_condition(conditions, type_, "True", "", "", now),
        Some(msg) => set_condition(conditions, type_, "False", msg, "Error", now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touches_only_on_change() {
        let mut conds = vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            last_update_time: "t0".into(),
            ..Default::default()
        }];
        assert!(!set_error(&mut conds, "Ready", None, "t1"));
        assert_eq!(conds[0].last_update_time, "t0");
        assert!(set_error(&mut conds, "Ready", Some("boom"), "t2"));
        assert_eq!(conds[0].last_update_time, "t2");
        assert_eq!(conds[0].reason, "Error");
        assert!(!set_error(&mut conds, "Ready", Some("boom"), "t3"));
        assert_eq!(conds[0].last_update_time, "t2");
    }

    #[test]
    fn creates_missing_condition_at_the_end() {
        let mut conds = vec![Condition {
            type_: "A".into(),
            status: "True".into(),
            ..Default::default()
        }];
        assert!(set_condition(&mut conds, "Ready", "False", "m", "", "t"));
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1].type_, "Ready");
        assert_eq!(conds[1].last_update_time, "t");
    }
}
