//! BundleDeployments Fleet's agent does not monitor.
//!
//! The agent's BundleDeployment controller returns before deploying or monitoring, and
//! clears drift detection, when the BundleDeployment's spec says `paused`, `offSchedule`
//! (Fleet ≥ v0.14, Schedules) or `waitingForValues` (Fleet ≥ v0.15) — rancher/fleet
//! v0.16.1 `internal/cmd/agent/controller/bundledeployment_controller.go` (the three
//! checks before loading the options) and `drift_controller.go` (paused, offSchedule).
//! Fleet then never reports a deleted resource Missing there, and never corrects a
//! status someone else wrote for it: the webhook writes none.

/// The spec flags that switch monitoring off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    pub paused: bool,
    pub off_schedule: bool,
    pub waiting_for_values: bool,
}

impl Gates {
    /// Why Fleet does not monitor the bundle now (`paused`, `off schedule`, `waiting for
    /// values`), or `None` when it does.
    pub fn unmonitored(&self) -> Option<&'static str> {
        if self.paused {
            Some("paused")
        } else if self.off_schedule {
            Some("off schedule")
        } else if self.waiting_for_values {
            Some("waiting for values")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gate_names_itself_and_paused_comes_first() {
        assert_eq!(Gates::default().unmonitored(), None);
        let g = |paused, off_schedule, waiting_for_values| Gates {
            paused,
            off_schedule,
            waiting_for_values,
        };
        assert_eq!(g(true, false, false).unmonitored(), Some("paused"));
        assert_eq!(g(false, true, false).unmonitored(), Some("off schedule"));
        assert_eq!(
            g(false, false, true).unmonitored(),
            Some("waiting for values")
        );
        assert_eq!(g(true, true, true).unmonitored(), Some("paused"));
    }
}
