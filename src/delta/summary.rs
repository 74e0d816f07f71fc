//! Fleet's summary helpers (`internal/cmd/controller/summary`): counting BD
//! states, the Ready-condition message, and the GitRepo `display` block.

use crate::fleet::release::StatusRules;
use crate::fleet::state::{deployment_state, message_from_deployment, state_rank, READY};
use crate::fleet::status::{BundleDeployment, BundleSummary, NonReadyResource, StatusDisplay};

/// Fleet keeps at most this many non-ready entries in a summary.
pub const MAX_NON_READY_RESOURCES: usize = 10;

/// The summary entry Fleet writes for a non-ready BD (`name` is the BD name
/// in a GitRepo summary, the cluster id in a Bundle summary).
pub fn non_ready_entry(rules: &StatusRules, name: &str, bd: &BundleDeployment) -> NonReadyResource {
    let status = bd.status_or_default();
    NonReadyResource {
        name: name.to_string(),
        bundle_state: deployment_state(&bd.spec, &status).to_string(),
        message: message_from_deployment(rules, &bd.spec, &status),
        modified_status: status.modified_status.clone(),
        non_ready_status: status.non_ready_status.clone(),
        ..NonReadyResource::default()
    }
}

/// `status.SetFields`' display message: the message of the first BundleDeployment (in
/// the order given) whose state ranks strictly highest. Fleet loops over every
/// BundleDeployment for it; `summary.nonReadyResources` holds only the first 10.
pub fn max_state_message(rules: &StatusRules, bds: &[&BundleDeployment]) -> String {
    let mut max_state = "";
    let mut message = String::new();
    for bd in bds {
        let status = bd.status_or_default();
        let state = deployment_state(&bd.spec, &status);
        if state_rank(state) > state_rank(max_state) {
            max_state = state;
            message = message_from_deployment(rules, &bd.spec, &status);
        }
    }
    message
}

/// `IncrementState`: counts `bd`'s state and lists it while fewer than 10
/// entries are listed. Does not touch `desiredReady`.
pub fn increment_state(
    rules: &StatusRules,
    summary: &mut BundleSummary,
    name: &str,
    bd: &BundleDeployment,
) {
    let entry = non_ready_entry(rules, name, bd);
    if let Some(c) = summary.counter_mut(&entry.bundle_state) {
        *c = c.saturating_add(1);
    }
    if !name.is_empty()
        && entry.bundle_state != READY
        && summary.non_ready_resources.len() < MAX_NON_READY_RESOURCES
    {
        summary.non_ready_resources.push(entry);
    }
}

/// The states a Ready message names, in Fleet's order (`SetReadyConditions`).
const MESSAGE_STATES: [&str; 6] = {
    use crate::fleet::state::*;
    [
        OUT_OF_SYNC,
        NOT_READY,
        WAIT_APPLIED,
        ERR_APPLIED,
        PENDING,
        MODIFIED,
    ]
};

/// `ReadyMessage`: for each non-ready state with a count, `State(n) [Kind name]`
/// of its first entry plus up to 4 modified and 4 non-ready strings of that
/// entry; all sorted bytewise and joined with `; `. Empty means ready.
pub fn ready_message(summary: &BundleSummary, referenced_kind: &str) -> String {
    let mut messages = Vec::new();
    for state in MESSAGE_STATES {
        let count = summary.counter(state);
        if count <= 0 {
            continue;
        }
        let Some(v) = summary
            .non_ready_resources
            .iter()
            .find(|v| v.bundle_state == state)
        else {
            continue;
        };
        if v.message.is_empty() {
            messages.push(format!("{state}({count}) [{referenced_kind} {}]", v.name));
        } else {
            messages.push(format!(
                "{state}({count}) [{referenced_kind} {}: {}]",
                v.name, v.message
            ));
        }
        messages.extend(v.modified_status.iter().take(4).map(ToString::to_string));
        messages.extend(v.non_ready_status.iter().take(4).map(ToString::to_string));
    }
    messages.sort();
    messages.join("; ")
}

/// The Ready message of a Bundle whose targets are `bds` (one per cluster):
/// targets sorted by cluster name, summarized under their cluster ids, with
/// referenced kind `Cluster`. This is what a GitRepo copies when the Bundle
/// is the first not-ready one.
pub fn bundle_ready_message(rules: &StatusRules, bds: &[&BundleDeployment]) -> String {
    let mut targets: Vec<&BundleDeployment> = bds.to_vec();
    targets.sort_by(|a, b| cluster_name(a).cmp(cluster_name(b)));
    let mut summary = BundleSummary::default();
    for bd in targets {
        increment_state(rules, &mut summary, &bd.cluster_id(), bd);
        summary.desired_ready = summary.desired_ready.saturating_add(1);
    }
    ready_message(&summary, "Cluster")
}

fn cluster_name(bd: &BundleDeployment) -> &str {
    bd.metadata
        .labels
        .get(crate::fleet::LABEL_CLUSTER)
        .map(String::as_str)
        .unwrap_or_default()
}

/// True for messages `SetReadyConditions` builds from BD states (they start
/// with `State(`), as opposed to e.g. a Bundle's rendering error.
pub fn is_bundle_state_message(message: &str) -> bool {
    MESSAGE_STATES.iter().any(|s| {
        message
            .strip_prefix(s)
            .is_some_and(|rest| rest.starts_with('('))
    })
}

/// GitRepo `display` from its summary: `readyBundleDeployments`, the
/// highest-ranked state (`""` when all Ready) with the message of its first
/// BD, and `GitUpdating` while the git job is not `Current`. A HelmOp
/// (`git_job_status` `None`) never shows `GitUpdating`.
///
/// `previous` supplies the message when the BD in that state is beyond the
/// 10 listed entries.
pub fn display_from_summary(
    summary: &BundleSummary,
    git_job_status: Option<&str>,
    previous: &StatusDisplay,
    max_state_message: Option<&str>,
) -> StatusDisplay {
    use crate::fleet::state::*;
    let mut max_state = "";
    for state in [
        READY,
        NOT_READY,
        PENDING,
        OUT_OF_SYNC,
        MODIFIED,
        WAIT_APPLIED,
        ERR_APPLIED,
    ] {
        if summary.counter(state) > 0 && state_rank(state) > state_rank(max_state) {
            max_state = state;
        }
    }
    if max_state == READY {
        max_state = "";
    }
    let message = if max_state.is_empty() {
        String::new()
    } else if let Some(m) = max_state_message {
        m.to_string()
    } else {
        match summary
            .non_ready_resources
            .iter()
            .find(|e| e.bundle_state == max_state)
        {
            Some(e) => e.message.clone(),
            None if previous.state == max_state => previous.message.clone(),
            None => String::new(),
        }
    };
    let mut display = previous.clone();
    display.ready_bundle_deployments = format!("{}/{}", summary.ready, summary.desired_ready);
    // Only the GitRepo status controller shows `GitUpdating` (a HelmOp has no job).
    display.state = match git_job_status {
        Some(job) if job != "Current" => "GitUpdating".to_string(),
        _ => max_state.to_string(),
    };
    display.error = !message.is_empty();
    display.message = message;
    display
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::status::ModifiedStatus;
    use crate::fleet::ResourceKey;

    fn entry(name: &str, state: &str, missing: &[&str]) -> NonReadyResource {
        NonReadyResource {
            name: name.into(),
            bundle_state: state.into(),
            modified_status: missing
                .iter()
                .map(|n| {
                    ModifiedStatus::missing(&ResourceKey::new(
                        "v1",
                        "ConfigMap",
                        Some("default"),
                        n,
                    ))
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn ready_message_like_fleet() {
        let mut s = BundleSummary {
            modified: 1,
            ready: 2,
            desired_ready: 3,
            ..Default::default()
        };
        s.non_ready_resources
            .push(entry("lots-config2", "Modified", &["test-config2-one"]));
        assert_eq!(
            ready_message(&s, "Bundle"),
            "Modified(1) [Bundle lots-config2]; configmap.v1 default/test-config2-one missing"
        );
        // Only the first entry per state, at most 4 strings of it, sorted bytewise.
        s.modified = 2;
        s.non_ready_resources[0] = entry("b", "Modified", &["e", "d", "c", "b", "a"]);
        s.non_ready_resources.push(entry("a", "Modified", &["z"]));
        assert_eq!(
            ready_message(&s, "Cluster"),
            "Modified(2) [Cluster b]; configmap.v1 default/b missing; configmap.v1 default/c missing; \
             configmap.v1 default/d missing; configmap.v1 default/e missing"
        );
        s.non_ready_resources[0].message = "boom".into();
        assert!(ready_message(&s, "Cluster").starts_with("Modified(2) [Cluster b: boom]"));
        assert_eq!(ready_message(&BundleSummary::default(), "Bundle"), "");
    }

    #[test]
    fn display_picks_highest_rank_and_git_updating() {
        let mut s = BundleSummary {
            modified: 1,
            not_ready: 1,
            ready: 1,
            desired_ready: 3,
            ..Default::default()
        };
        s.non_ready_resources.push(NonReadyResource {
            message: "nr".into(),
            ..entry("x", "NotReady", &[])
        });
        s.non_ready_resources.push(NonReadyResource {
            message: "mod".into(),
            ..entry("y", "Modified", &[])
        });
        let d = display_from_summary(&s, Some("Current"), &StatusDisplay::default(), None);
        assert_eq!(
            (d.state.as_str(), d.message.as_str(), d.error),
            ("Modified", "mod", true)
        );
        assert_eq!(d.ready_bundle_deployments, "1/3");
        let d = display_from_summary(&s, Some(""), &StatusDisplay::default(), None);
        assert_eq!(d.state, "GitUpdating");
        // helmop_status.go: a HelmOp shows the BDs' state whatever a job would say.
        let d = display_from_summary(&s, None, &StatusDisplay::default(), None);
        assert_eq!(d.state, "Modified");
        let all_ready = BundleSummary {
            ready: 2,
            desired_ready: 2,
            ..Default::default()
        };
        let d = display_from_summary(&all_ready, Some("Current"), &StatusDisplay::default(), None);
        assert_eq!((d.state.as_str(), d.error), ("", false));
    }

    #[test]
    fn bundle_state_messages_are_recognised() {
        assert!(is_bundle_state_message("Modified(1) [Cluster a/b]"));
        assert!(is_bundle_state_message("NotReady(2) [Bundle x]; y"));
        assert!(!is_bundle_state_message(
            "failed to render: chart not found"
        ));
        assert!(!is_bundle_state_message("Modified"));
    }
}
