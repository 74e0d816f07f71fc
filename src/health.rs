//! Readiness: the TLS certificate is loaded and, once a cluster connection exists, its
//! caches are synced. Each condition is a named check; `/readyz` lists them all.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

/// Shared, cheaply cloned readiness state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<&'static str, Check>>>,
}

impl Readiness {
    /// Record the state of one named check.
    pub fn set(&self, name: &'static str, ok: bool, detail: impl Into<String>) {
        let check = Check {
            ok,
            detail: detail.into(),
        };
        // A poisoned lock only means a writer panicked mid-insert; the map is still usable.
        let mut checks = self.checks.write().unwrap_or_else(|e| e.into_inner());
        checks.insert(name, check);
    }

    /// Ready when every check passes and at least one exists.
    pub fn is_ready(&self) -> bool {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        !checks.is_empty() && checks.values().all(|c| c.ok)
    }

    /// Each check's name and whether it passes, in name order.
    pub fn states(&self) -> Vec<(&'static str, bool)> {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        checks.iter().map(|(name, c)| (*name, c.ok)).collect()
    }

    /// One line per check: `[+]name ok: detail` or `[-]name failed: detail`.
    pub fn report(&self) -> String {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, c) in checks.iter() {
            let (mark, word) = if c.ok { ("+", "ok") } else { ("-", "failed") };
            out.push_str(&format!("[{mark}]{name} {word}: {}\n", c.detail));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_checks_pass() {
        let r = Readiness::default();
        assert!(!r.is_ready(), "no checks yet");
        r.set("tls", true, "certificate loaded");
        assert!(r.is_ready());
        r.set("caches", false, "waiting for BundleDeployments");
        assert!(!r.is_ready());
        assert!(r
            .report()
            .contains("[-]caches failed: waiting for BundleDeployments"));
        r.set("caches", true, "synced");
        assert!(r.is_ready());
    }
}
