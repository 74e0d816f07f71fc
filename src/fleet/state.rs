//! Fleet's bundle states, their ranking and how a BundleDeployment's state
//! is derived (`summary.GetDeploymentState`).

use super::release::StatusRules;
use super::status::{BundleDeploymentSpec, BundleDeploymentStatus, Condition};

/// All resources deployed, ready and unmodified.
pub const READY: &str = "Ready";
/// Some live resource is not ready.
pub const NOT_READY: &str = "NotReady";
/// The agent has not applied the current deployment yet.
pub const WAIT_APPLIED: &str = "WaitApplied";
/// Applying the current deployment failed.
pub const ERR_APPLIED: &str = "ErrApplied";
/// A staged deployment has not been rolled out.
pub const OUT_OF_SYNC: &str = "OutOfSync";
/// Resources are missing, orphaned or drifted.
pub const MODIFIED: &str = "Modified";
/// No BundleDeployment yet.
pub const PENDING: &str = "Pending";

/// Fleet's `StateRank`: the highest-ranked state is what summaries show.
/// Unknown states rank 0, like a missing Go map key.
pub fn state_rank(state: &str) -> u8 {
    match state {
        ERR_APPLIED => 7,
        WAIT_APPLIED => 6,
        MODIFIED => 5,
        OUT_OF_SYNC => 4,
        PENDING => 3,
        NOT_READY => 2,
        READY => 1,
        _ => 0,
    }
}

/// `GetDeploymentState`: the state the upstream BD reconciler shows in
/// `display.state` and the GitRepo summary counts.
pub fn deployment_state(
    spec: &BundleDeploymentSpec,
    status: &BundleDeploymentStatus,
) -> &'static str {
    if status.applied_deployment_id != spec.deployment_id {
        if status
            .condition("Deployed")
            .is_some_and(|c| c.status == "False")
        {
            return ERR_APPLIED;
        }
        return WAIT_APPLIED;
    }
    if !status.ready {
        return NOT_READY;
    }
    if spec.deployment_id != spec.staged_deployment_id {
        return OUT_OF_SYNC;
    }
    if !status.non_modified {
        return MODIFIED;
    }
    READY
}

/// `MessageFromDeployment`: Deployed message, else Installed (only for the
/// current deployment), else Monitored. Usually empty.
pub fn message_from_deployment(
    rules: &StatusRules,
    spec: &BundleDeploymentSpec,
    status: &BundleDeploymentStatus,
) -> String {
    let msg = |t: &str| {
        status
            .condition(t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let mut message = msg("Deployed");
    if message.is_empty()
        && (!rules.installed_message_only_when_applied
            || status.applied_deployment_id == spec.deployment_id)
    {
        message = msg("Installed");
    }
    if message.is_empty() {
        message = msg("Monitored");
    }
    message
}

/// The agent only rewrites resource status when the current deployment is
/// applied and installed (`ShouldUpdateStatus`); otherwise Fleet would not
/// report a deletion either.
pub fn agent_updates_resource_status(
    spec: &BundleDeploymentSpec,
    status: &BundleDeploymentStatus,
) -> bool {
    spec.deployment_id == status.applied_deployment_id
        && status
            .condition("Installed")
            .is_none_or(|c| c.status != "False")
        && spec.gates().unmonitored().is_none()
}

/// The upstream BD reconciler's `conditionToMessage` for display strings.
pub fn condition_display(cond: &Condition) -> String {
    if cond.reason == "Error" {
        format!("Error: {}", cond.message)
    } else {
        cond.status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(t: &str, s: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        }
    }

    #[test]
    fn state_machine_order() {
        let spec = BundleDeploymentSpec {
            deployment_id: "a".into(),
            staged_deployment_id: "a".into(),
            ..Default::default()
        };
        let mut st = BundleDeploymentStatus {
            applied_deployment_id: "a".into(),
            ready: true,
            non_modified: true,
            ..Default::default()
        };
        assert_eq!(deployment_state(&spec, &st), READY);
        st.non_modified = false;
        assert_eq!(deployment_state(&spec, &st), MODIFIED);
        st.ready = false;
        assert_eq!(deployment_state(&spec, &st), NOT_READY);
        st.applied_deployment_id = "old".into();
        assert_eq!(deployment_state(&spec, &st), WAIT_APPLIED);
        st.conditions.push(cond("Deployed", "False"));
        assert_eq!(deployment_state(&spec, &st), ERR_APPLIED);
        let staged = BundleDeploymentSpec {
            staged_deployment_id: "b".into(),
            ..spec.clone()
        };
        let st = BundleDeploymentStatus {
            applied_deployment_id: "a".into(),
            ready: true,
            ..Default::default()
        };
        assert_eq!(deployment_state(&staged, &st), OUT_OF_SYNC);
        assert!(state_rank(ERR_APPLIED) > state_rank(MODIFIED));
        assert_eq!(state_rank("whatever"), 0);
    }

    #[test]
    fn message_precedence() {
        let spec = BundleDeploymentSpec::default();
        let mut st = BundleDeploymentStatus::default();
        st.conditions.push(Condition {
            message: "mon".into(),
            ..cond("Monitored", "True")
        });
        assert_eq!(
            message_from_deployment(&StatusRules::default(), &spec, &st),
            "mon"
        );
        st.conditions.push(Condition {
            message: "inst".into(),
            ..cond("Installed", "True")
        });
        assert_eq!(
            message_from_deployment(&StatusRules::default(), &spec, &st),
            "inst"
        );
        st.conditions.push(Condition {
            message: "dep".into(),
            ..cond("Deployed", "True")
        });
        assert_eq!(
            message_from_deployment(&StatusRules::default(), &spec, &st),
            "dep"
        );
    }
}
