//! Do deleted objects still exist? Metadata-only requests in the deletion cluster: the
//! GET of one object, or the LIST of a group ([`super::probe_plan`] says which), each
//! request within the global budget (`--probe-rate`, [`super::rate`]).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams},
    core::PartialObjectMeta,
    Client,
};

use super::{
    lock,
    marks::Seen,
    probe_plan::{self, GroupKey, Live, Probe},
    queue::Tracked,
    rate::TokenBucket,
    Shared,
};

/// What became of one object the probes were asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Seen(Seen),
    /// The API did not answer usefully, or the LIST stopped before its page: ask later.
    Unknown,
    /// The rate budget was spent before its request: ask later.
    NotProbed,
}

fn api(cluster: &Client, key: &GroupKey) -> Api<PartialObjectMeta<DynamicObject>> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&key.group, &key.version, &key.kind),
        &key.plural,
    );
    if key.namespace.is_empty() {
        Api::all_with(cluster.clone(), &ar)
    } else {
        Api::namespaced_with(cluster.clone(), &key.namespace, &ar)
    }
}

/// GET the tracked object's metadata (uid, deletionTimestamp: all this reads); its
/// contents are never transferred. `None` when the API did not answer usefully (retry
/// later).
pub async fn look(cluster: &Client, o: &Tracked, timeout: Duration) -> Option<Seen> {
    let api = api(cluster, &GroupKey::of(o));
    match tokio::time::timeout(timeout, api.get_opt(&o.name)).await {
        Ok(Ok(None)) => Some(Seen::Gone),
        Ok(Ok(Some(live))) if live.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
            Some(Seen::Same {
                terminating: live.metadata.deletion_timestamp.is_some(),
            })
        }
        Ok(Ok(Some(_))) => Some(Seen::Replaced),
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
            tracing::warn!(
                object = %o.describe(),
                "may not read this kind (RBAC): the deletion stays counted but is not verified"
            );
            Some(Seen::Unreadable)
        }
        Ok(Err(e)) => {
            tracing::debug!(object = %o.describe(), error = %e, "cannot check the deleted object; will retry");
            None
        }
        Err(_) => None,
    }
}

/// What a group's LIST returned.
#[derive(Debug)]
pub enum Listed {
    /// Every page: an object not in it is gone.
    Complete(Vec<Live>),
    /// The pages read before the page bound or an error stopped it.
    Partial(Vec<Live>),
    /// 403 on the first page: the kind may not be listed.
    Forbidden,
    /// The first page failed (5xx, timeout, …).
    Failed,
}

/// How a group is listed.
pub struct ListRequest<'a> {
    pub key: &'a GroupKey,
    pub selector: Option<&'a str>,
    pub page_size: u32,
    pub max_pages: u32,
    pub timeout: Duration,
}

/// LIST a group's metadata, following continue tokens for at most `max_pages` pages;
/// every page after the first waits for its request from `budget` (the first is the
/// caller's).
pub async fn list(cluster: &Client, req: &ListRequest<'_>, budget: &Mutex<TokenBucket>) -> Listed {
    let api = api(cluster, req.key);
    let mut params = ListParams::default().limit(req.page_size.max(1));
    if let Some(s) = req.selector {
        params = params.labels(s);
    }
    let mut live: Vec<Live> = Vec::new();
    for page in 0..req.max_pages.max(1) {
        if page > 0 {
            wait_for_token(budget).await;
        }
        let answer = tokio::time::timeout(req.timeout, api.list_metadata(&params)).await;
        let list = match answer {
            Ok(Ok(list)) => list,
            Ok(Err(kube::Error::Api(status))) if page == 0 && status.code == 403 => {
                return Listed::Forbidden
            }
            Ok(Err(e)) => {
                tracing::debug!(group = %req.key, page, error = %e, "cannot list the marked objects; will retry");
                return if page == 0 {
                    Listed::Failed
                } else {
                    Listed::Partial(live)
                };
            }
            Err(_) => {
                tracing::debug!(group = %req.key, page, "no answer to the LIST of the marked objects; will retry");
                return if page == 0 {
                    Listed::Failed
                } else {
                    Listed::Partial(live)
                };
            }
        };
        let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
        live.extend(list.items.into_iter().map(|o| Live {
            name: o.metadata.name.unwrap_or_default(),
            uid: o.metadata.uid,
            terminating: o.metadata.deletion_timestamp.is_some(),
        }));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Listed::Complete(live),
        }
    }
    tracing::debug!(group = %req.key, pages = req.max_pages, "the LIST of the marked objects has more pages than allowed; the rest is checked later");
    Listed::Partial(live)
}

/// Wait for a request of `budget`: the next page of a LIST under way (a LIST longer
/// than the burst completes, at the rate).
async fn wait_for_token(budget: &Mutex<TokenBucket>) {
    loop {
        let wait = {
            let mut bucket = lock(budget);
            let now = Instant::now();
            if bucket.try_take(now) {
                return;
            }
            bucket.until_next(now)
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

impl Shared {
    /// Take one request from the probe budget.
    fn take_probe_token(&self) -> bool {
        lock(&self.probe_budget).try_take(Instant::now())
    }

    /// Check `due` (and, with the LIST of their group, the other `members` of the
    /// group): one request per group, or per object where it must; requests beyond the
    /// budget are not made (those objects come back [`Outcome::NotProbed`]).
    pub(super) async fn probe(
        &self,
        due: &[Tracked],
        members: &[Tracked],
    ) -> Vec<(Tracked, Outcome)> {
        let timeout = self.config.retry.call_timeout;
        let probes = {
            let now = Instant::now();
            let mut unlistable = lock(&self.unlistable);
            unlistable.expire(now);
            probe_plan::plan(due, members, &unlistable, now)
        };
        let mut out = Vec::new();
        let mut spent = false;
        for p in probes {
            if spent || !self.take_probe_token() {
                spent = true;
                match p {
                    Probe::Get(o) => out.push((o, Outcome::NotProbed)),
                    Probe::List { objects, .. } => {
                        out.extend(objects.into_iter().map(|o| (o, Outcome::NotProbed)))
                    }
                }
                continue;
            }
            match p {
                Probe::Get(o) => {
                    let seen = look(&self.cluster, &o, timeout).await;
                    out.push((o, seen.map_or(Outcome::Unknown, Outcome::Seen)));
                }
                Probe::List {
                    key,
                    selector,
                    objects,
                } => {
                    let req = ListRequest {
                        key: &key,
                        selector: selector.as_deref(),
                        page_size: self.config.probe_page_size,
                        max_pages: self.config.probe_max_pages,
                        timeout,
                    };
                    let (listed, complete) = match list(&self.cluster, &req, &self.probe_budget)
                        .await
                    {
                        Listed::Complete(l) => (l, true),
                        Listed::Partial(l) => (l, false),
                        Listed::Forbidden => {
                            tracing::warn!(group = %key, "may not list this kind (RBAC): its marked objects are checked one GET each");
                            lock(&self.unlistable).insert(key, Instant::now());
                            out.extend(objects.into_iter().map(|o| (o, Outcome::Unknown)));
                            continue;
                        }
                        Listed::Failed => {
                            out.extend(objects.into_iter().map(|o| (o, Outcome::Unknown)));
                            continue;
                        }
                    };
                    out.extend(
                        probe_plan::seen_in_list(&objects, &listed, complete)
                            .into_iter()
                            .map(|(o, s)| (o, s.map_or(Outcome::Unknown, Outcome::Seen))),
                    );
                }
            }
        }
        out
    }
}
