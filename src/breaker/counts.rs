//! The breaker's window counts shared between replicas, pure: what one replica writes
//! into the counts Lease and what it reads back from the others'.
//!
//! One Lease ([`COUNTS_LEASE`]) holds one annotation per replica,
//! `delete-guard.fleet.cattle.io/counts.<instance>` ([`annotation_key`]), whose value is a
//! JSON object from owner (`GitRepo/fleet-local/many`) to the Unix milliseconds of that
//! replica's deletions of the owner's objects within the window ([`encode`]). Each
//! replica writes only its own annotation (a JSON merge patch: concurrent writes of
//! different keys never conflict) and reads everyone's in the answer to its write.

use std::collections::{BTreeMap, HashMap};

use crate::fleet::{object_set_hash, OwnerKind, OwnerRef};

/// The Lease holding every replica's window counts (in the breaker's namespace).
pub const COUNTS_LEASE: &str = "fleet-delete-guard-breaker-counts";
/// Label of the counts Lease (not the open breakers' label: their watch never sees it).
pub const COUNTS_LABEL: &str = "delete-guard.fleet.cattle.io/breaker-counts";
/// Prefix of each replica's annotation.
pub const ANNOTATION_PREFIX: &str = "delete-guard.fleet.cattle.io/counts.";
/// Owners one replica publishes at most (those with the latest deletions): bounds the
/// Lease (annotations are limited to 256 KiB in all). Deletions of further owners are
/// judged on this replica's count alone.
pub const MAX_PUBLISHED_OWNERS: usize = 64;

/// The annotation of replica `instance`: its name part holds at most 63 characters of
/// `[a-z0-9.-]`, so a longer or odd instance name is cut and suffixed with a hash.
pub fn annotation_key(instance: &str) -> String {
    const MAX_NAME: usize = 63;
    const NAME_PREFIX: &str = "counts.";
    let clean: String = instance
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if !clean.is_empty() && clean == instance && NAME_PREFIX.len() + clean.len() <= MAX_NAME {
        return format!("{ANNOTATION_PREFIX}{clean}");
    }
    // Distinct instances keep distinct keys: cut, and told apart by a hash.
    let hash = &object_set_hash(instance)[..10];
    let room = MAX_NAME - NAME_PREFIX.len() - hash.len() - 1;
    let mut cut: String = clean.chars().take(room).collect();
    while cut.ends_with(['.', '-']) {
        cut.pop();
    }
    if cut.is_empty() {
        cut.push_str("replica");
    }
    format!("{ANNOTATION_PREFIX}{cut}-{hash}")
}

fn owner_key(owner: &OwnerRef) -> String {
    format!("{}/{}/{}", owner.kind.as_str(), owner.namespace, owner.name)
}

fn parse_owner(key: &str) -> Option<OwnerRef> {
    let mut parts = key.splitn(3, '/');
    let kind = match parts.next()? {
        "GitRepo" => OwnerKind::GitRepo,
        "HelmOp" => OwnerKind::HelmOp,
        "Bundle" => OwnerKind::Bundle,
        _ => return None,
    };
    let namespace = parts.next()?.to_string();
    let name = parts.next().filter(|n| !n.is_empty())?.to_string();
    Some(OwnerRef::new(kind, namespace, name))
}

/// One replica's annotation value: owner → Unix milliseconds of its deletions.
pub fn encode(recent: &[(OwnerRef, Vec<u64>)]) -> String {
    let map: BTreeMap<String, &Vec<u64>> = recent
        .iter()
        .map(|(owner, stamps)| (owner_key(owner), stamps))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// What one replica's annotation says; owners or values that do not parse are skipped.
pub fn decode(value: &str) -> HashMap<OwnerRef, Vec<u64>> {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(value) else {
        return HashMap::new();
    };
    map.into_iter()
        .filter_map(|(key, stamps)| {
            let owner = parse_owner(&key)?;
            let stamps = stamps
                .as_array()?
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            Some((owner, stamps))
        })
        .collect()
}

/// The other replicas' deletions as read from the counts Lease.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Others {
    /// Per replica annotation: owner → deletion times (Unix ms).
    replicas: BTreeMap<String, HashMap<OwnerRef, Vec<u64>>>,
}

impl Others {
    /// The annotations of the counts Lease, without `own_key` (this replica's).
    pub fn read(annotations: &BTreeMap<String, String>, own_key: &str) -> Others {
        Others {
            replicas: annotations
                .iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX) && k.as_str() != own_key)
                .map(|(k, v)| (k.clone(), decode(v)))
                .collect(),
        }
    }

    /// Deletions of `owner` by the other replicas after `since_ms` (the window's start,
    /// or the owner's last reset when later).
    pub fn count(&self, owner: &OwnerRef, since_ms: u64) -> u32 {
        let n: usize = self
            .replicas
            .values()
            .filter_map(|owners| owners.get(owner))
            .map(|stamps| stamps.iter().filter(|t| **t > since_ms).count())
            .sum();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Annotations of replicas with no deletion after `before_ms`: gone (a pod of an
    /// earlier rollout) or idle for long; removing them keeps the Lease small, and a
    /// live replica writes its whole annotation again with its next deletion.
    pub fn stale(&self, before_ms: u64) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|(_, owners)| owners.values().flatten().all(|t| *t <= before_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> OwnerRef {
        OwnerRef::new(OwnerKind::GitRepo, "fleet-local", name)
    }

    #[test]
    fn a_replica_annotation_round_trips_and_bad_entries_are_skipped() {
        let recent = vec![
            (repo("many"), vec![1_000, 1_500]),
            (
                OwnerRef::new(OwnerKind::Bundle, "fleet-default", "b-x"),
                vec![2_000],
            ),
        ];
        let text = encode(&recent);
        assert_eq!(
            text,
            r#"{"Bundle/fleet-default/b-x":[2000],"GitRepo/fleet-local/many":[1000,1500]}"#
        );
        let back = decode(&text);
        assert_eq!(back.len(), 2);
        assert_eq!(back[&repo("many")], vec![1_000, 1_500]);
        let odd =
            decode(r#"{"Pod/x/y":[1],"GitRepo/ns/":[1],"GitRepo/ns/a":"x","HelmOp/ns/h":[3,"4"]}"#);
        assert_eq!(odd.len(), 1, "{odd:?}");
        assert_eq!(odd[&OwnerRef::new(OwnerKind::HelmOp, "ns", "h")], vec![3]);
        assert!(decode("not json").is_empty());
    }

    #[test]
    fn others_are_summed_over_replicas_after_the_window_start_without_this_one() {
        let own = annotation_key("replica-a");
        let annotations = BTreeMap::from([
            (own.clone(), encode(&[(repo("many"), vec![100, 200])])),
            (
                annotation_key("replica-b"),
                encode(&[
                    (repo("many"), vec![50, 150, 250]),
                    (repo("other"), vec![300]),
                ]),
            ),
            (
                annotation_key("replica-c"),
                encode(&[(repo("many"), vec![260])]),
            ),
            ("unrelated/annotation".into(), "{}".into()),
        ]);
        let others = Others::read(&annotations, &own);
        assert_eq!(others.count(&repo("many"), 0), 4);
        assert_eq!(
            others.count(&repo("many"), 150),
            2,
            "after the window start"
        );
        assert_eq!(others.count(&repo("other"), 0), 1);
        assert_eq!(others.count(&repo("none"), 0), 0);
        assert_eq!(others.stale(280), vec![annotation_key("replica-c")]);
        assert!(others.stale(10).is_empty());
    }

    #[test]
    fn annotation_keys_are_valid_for_any_instance_name() {
        assert_eq!(
            annotation_key("fleet-delete-guard-7d9f8b6c5d-x2x9k"),
            "delete-guard.fleet.cattle.io/counts.fleet-delete-guard-7d9f8b6c5d-x2x9k"
        );
        for instance in ["", "Replica_A", &"x".repeat(100), "a/b", "-a-"] {
            let key = annotation_key(instance);
            assert!(key.starts_with(ANNOTATION_PREFIX), "{key}");
            let name = key
                .strip_prefix("delete-guard.fleet.cattle.io/")
                .expect("prefix");
            assert!(name.len() <= 63, "{key}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
                "{key}"
            );
            assert!(name.ends_with(|c: char| c.is_ascii_alphanumeric()), "{key}");
        }
        assert_ne!(annotation_key("Replica_A"), annotation_key("replica-a"));
    }
}
