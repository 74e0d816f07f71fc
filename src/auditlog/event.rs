//! One audit event line → a [`Deletion`] of a Fleet-managed object, or why not.
//!
//! Two views of the line: [`Head`] reads `kind`, `stage` and `verb` and skips the rest
//! (that is all most events need); only deletions at a final stage are read again as
//! an [`EventView`], whose `requestObject`/`responseObject` keep nothing but Fleet's
//! label/annotation values and `dryRun` ([`ObjectView`]).

use std::{borrow::Cow, collections::BTreeMap, fmt};

use jiff::Timestamp;
use serde::{
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use crate::fleet::labels::{
    ANNOTATION_HELM_RELEASE_NAME, ANNOTATION_HELM_RELEASE_NAMESPACE, ANNOTATION_OBJECTSET_ID,
    LABEL_OBJECTSET_HASH,
};
use crate::fleet::recognize::{outside_agent_bundle_resource, provenance, Provenance};

/// Decisions the webhook takes for objects that are not Fleet's.
const UNMANAGED_DECISIONS: [&str; 4] = ["not-delete", "no-object", "not-managed", "not-fleet"];

/// Prefix of kube-apiserver's annotation for a webhook that failed open
/// (`…/round_0_index_<i>` = webhook name).
const FAILED_OPEN_PREFIX: &str = "failed-open.validating.webhook.admission.k8s.io/";

/// The reason of a deletion the webhook never saw: kube-apiserver failed open.
pub(crate) const NOT_SEEN: &str =
    "not seen by fleet-delete-guard: kube-apiserver could not call it and let the deletion through";

/// RBAC's verdict, `allow` or `forbid`.
const AUTHORIZATION_DECISION: &str = "authorization.k8s.io/decision";

/// What one line turned out to be.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// `RequestReceived` or `ResponseStarted`: the final stage will describe it.
    OtherStage,
    /// Not a `delete`/`deletecollection`.
    NotDeletion,
    /// A deletion of an object nothing marks as Fleet's.
    NotFleet,
    Deletion(Box<Deletion>),
}

/// The response, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Outcome {
    Succeeded,
    /// 403 from admission (this webhook or another).
    Denied,
    /// 403 from RBAC.
    Forbidden,
    NotFound,
    Conflict,
    Failed,
    Panic,
    /// No response status recorded.
    #[default]
    Unknown,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Denied => "denied",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not found",
            Outcome::Conflict => "conflict",
            Outcome::Failed => "failed",
            Outcome::Panic => "panic",
            Outcome::Unknown => "unknown",
        }
    }

    pub(crate) fn from_index(i: u8) -> Self {
        [
            Outcome::Succeeded,
            Outcome::Denied,
            Outcome::Forbidden,
            Outcome::NotFound,
            Outcome::Conflict,
            Outcome::Failed,
            Outcome::Panic,
            Outcome::Unknown,
        ]
        .get(usize::from(i))
        .copied()
        .unwrap_or_default()
    }

    pub(crate) fn index(self) -> u8 {
        self as u8
    }
}

/// For a `deletecollection` recorded at RequestResponse level: the deleted items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Items {
    pub deleted: u32,
    pub fleet_managed: u32,
}

/// One deletion of a Fleet-managed object: what a row shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Deletion {
    /// `stageTimestamp`, else `requestReceivedTimestamp`, else `timestamp` (v1beta1).
    pub time: Timestamp,
    pub audit_id: String,
    /// `ResponseComplete` or `Panic`.
    pub stage: String,
    /// `deletecollection` rather than `delete`.
    pub collection: bool,
    pub user: String,
    pub groups: Vec<String>,
    pub impersonated_user: Option<String>,
    pub impersonated_groups: Vec<String>,
    pub user_agent: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    /// Empty for a `deletecollection`.
    pub name: String,
    /// The webhook's `owner` (`ns/name` or `objectset:<setID>`), else from the labels.
    pub owner: String,
    pub gitrepo: String,
    pub bundle: String,
    pub objectset_id: String,
    /// `ns/name` from Helm's annotations, when the object was recorded.
    pub helm_release: String,
    /// The webhook's decision; `failed-open` when kube-apiserver recorded that the
    /// webhook could not be called; empty when only Fleet's labels tell.
    pub decision: String,
    pub counted: Option<bool>,
    pub reason: String,
    pub dry_run: bool,
    /// `responseStatus.code`, 0 when absent.
    pub code: u16,
    pub outcome: Outcome,
    /// The webhook named in a denial message (`admission webhook "…" denied the request`).
    pub denied_by: String,
    /// Recognised by the webhook's audit annotations.
    pub by_webhook: bool,
    /// Recognised by Fleet's label/annotation in the recorded objects.
    pub by_labels: bool,
    pub items: Option<Items>,
}

impl Deletion {
    /// The effective user: the impersonated one when there is one.
    pub(crate) fn effective_user(&self) -> &str {
        self.impersonated_user.as_deref().unwrap_or(&self.user)
    }

    pub(crate) fn effective_groups(&self) -> &[String] {
        if self.impersonated_user.is_some() {
            &self.impersonated_groups
        } else {
            &self.groups
        }
    }

    /// What the per-GitRepo summary and `--gitrepo` go by: the GitRepo, else the owner.
    pub(crate) fn owner_key(&self) -> &str {
        if self.gitrepo.is_empty() {
            &self.owner
        } else {
            &self.gitrepo
        }
    }

    /// `resource[.group][/subresource]`, as kubectl names resources.
    pub(crate) fn resource_display(&self) -> String {
        let mut s = self.resource.clone();
        if !self.api_group.is_empty() {
            s.push('.');
            s.push_str(&self.api_group);
        }
        if !self.subresource.is_empty() {
            s.push('/');
            s.push_str(&self.subresource);
        }
        s
    }

    /// `namespace/name`; `name` for cluster-scoped objects and Namespaces; `*` for the
    /// name of a `deletecollection`.
    pub(crate) fn object_display(&self) -> String {
        let name = if self.collection { "*" } else { &self.name };
        // A Namespace's objectRef names it as its own namespace too.
        let is_namespace = self.resource == "namespaces" && self.api_group.is_empty();
        if self.namespace.is_empty() || is_namespace {
            name.to_string()
        } else {
            format!("{}/{}", self.namespace, name)
        }
    }
}

/// A string that borrows from the line unless it holds escapes.
#[derive(Deserialize, Default)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl Str<'_> {
    fn into_string(self) -> String {
        self.0.into_owned()
    }
}

/// What every line is read for.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    stage: Cow<'a, str>,
    #[serde(borrow, default)]
    verb: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct UserView<'a> {
    #[serde(borrow)]
    pub(super) username: Cow<'a, str>,
    #[serde(borrow)]
    groups: Option<Vec<Str<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct ObjectRefView<'a> {
    #[serde(borrow)]
    pub(super) resource: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) namespace: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) api_group: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) api_version: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) subresource: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StatusView<'a> {
    pub(super) code: Option<i64>,
    #[serde(borrow)]
    pub(super) message: Cow<'a, str>,
}

/// The fields of an audit Event a deletion row needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventView<'a> {
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Cow<'a, str>,
    #[serde(borrow, default)]
    stage: Cow<'a, str>,
    #[serde(borrow, default)]
    verb: Cow<'a, str>,
    #[serde(rename = "requestURI", borrow, default)]
    request_uri: Cow<'a, str>,
    #[serde(borrow, default)]
    user: Option<UserView<'a>>,
    #[serde(borrow, default)]
    impersonated_user: Option<UserView<'a>>,
    #[serde(borrow, default)]
    user_agent: Cow<'a, str>,
    #[serde(borrow, default)]
    object_ref: Option<ObjectRefView<'a>>,
    #[serde(borrow, default)]
    response_status: Option<StatusView<'a>>,
    #[serde(borrow, default)]
    request_received_timestamp: Option<Str<'a>>,
    #[serde(borrow, default)]
    stage_timestamp: Option<Str<'a>>,
    /// `audit.k8s.io/v1beta1`'s (and older) event time.
    #[serde(borrow, default)]
    timestamp: Option<Str<'a>>,
    #[serde(borrow, default)]
    annotations: Option<BTreeMap<Str<'a>, Str<'a>>>,
    #[serde(default)]
    request_object: Option<ObjectView>,
    #[serde(default)]
    response_object: Option<ObjectView>,
}

impl<'a> PartialEq for Str<'a> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<'a> Eq for Str<'a> {}
impl<'a> PartialOrd for Str<'a> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<'a> Ord for Str<'a> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// Fleet's marks found in one label or annotation map; everything else is skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Marks {
    hash: Option<String>,
    set_id: Option<String>,
    helm_name: Option<String>,
    helm_namespace: Option<String>,
}

impl Marks {
    /// Fleet's agent's marks (not another writer's objectset metadata). No owner index
    /// here: the id's shape and its hash decide.
    fn is_fleet(&self) -> bool {
        provenance(self.set_id.as_deref(), self.hash.as_deref(), false) == Provenance::FleetAgent
    }

    fn merge(&mut self, other: Marks) {
        self.hash = self.hash.take().or(other.hash);
        self.set_id = self.set_id.take().or(other.set_id);
        self.helm_name = self.helm_name.take().or(other.helm_name);
        self.helm_namespace = self.helm_namespace.take().or(other.helm_namespace);
    }

    /// The owner as the webhook names an unresolved one.
    fn owner(&self) -> Option<String> {
        match (&self.set_id, &self.hash) {
            (Some(id), _) => Some(format!("objectset:{id}")),
            (None, Some(hash)) => Some(format!("objectset-hash:{hash}")),
            (None, None) => None,
        }
    }

    fn helm_release(&self) -> Option<String> {
        let name = self.helm_name.as_ref()?;
        Some(match &self.helm_namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        })
    }
}

impl<'de> Deserialize<'de> for Marks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MarksVisitor;
        impl<'de> Visitor<'de> for MarksVisitor {
            type Value = Marks;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of labels or annotations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Marks, A::Error> {
                let mut marks = Marks::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let slot = match key.0.as_ref() {
                        LABEL_OBJECTSET_HASH => &mut marks.hash,
                        ANNOTATION_OBJECTSET_ID => &mut marks.set_id,
                        ANNOTATION_HELM_RELEASE_NAME => &mut marks.helm_name,
                        ANNOTATION_HELM_RELEASE_NAMESPACE => &mut marks.helm_namespace,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<Option<String>>()?;
                }
                Ok(marks)
            }
        }
        deserializer.deserialize_map(MarksVisitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetaView {
    labels: Option<Marks>,
    annotations: Option<Marks>,
}

impl MetaView {
    fn marks(self) -> Marks {
        let mut marks = self.labels.unwrap_or_default();
        marks.merge(self.annotations.unwrap_or_default());
        marks
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ItemView {
    metadata: Option<MetaView>,
}

/// The `items` of a List, counted one at a time: no item is kept.
#[derive(Debug, Default)]
struct ItemsSummary {
    deleted: u32,
    fleet_managed: u32,
    /// Marks of the first Fleet-managed item.
    first: Option<Marks>,
}

impl<'de> Deserialize<'de> for ItemsSummary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = ItemsSummary;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ItemsSummary, A::Error> {
                let mut summary = ItemsSummary::default();
                while let Some(item) = seq.next_element::<ItemView>()? {
                    summary.deleted = summary.deleted.saturating_add(1);
                    let marks = item.metadata.map(MetaView::marks).unwrap_or_default();
                    if marks.is_fleet() {
                        summary.fleet_managed = summary.fleet_managed.saturating_add(1);
                        summary.first.get_or_insert(marks);
                    }
                }
                Ok(summary)
            }
            fn visit_unit<E>(self) -> Result<ItemsSummary, E> {
                Ok(ItemsSummary::default())
            }
        }
        deserializer.deserialize_any(ItemsVisitor)
    }
}

/// `requestObject` / `responseObject`: DeleteOptions, the deleted object, a List of
/// deleted objects or a Status. Only what tells Fleet and dry-run is kept.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ObjectView {
    dry_run: Option<Vec<String>>,
    metadata: Option<MetaView>,
    items: Option<ItemsSummary>,
}

/// The webhook's audit annotations, keys without the webhook-name prefix.
#[derive(Debug, Default, PartialEq, Eq)]
struct WebhookAnnotations {
    owner: Option<String>,
    decision: Option<String>,
    counted: Option<bool>,
    reason: Option<String>,
    gitrepo: Option<String>,
    bundle: Option<String>,
    objectset_id: Option<String>,
}

/// The prefix under which the webhook's annotations are: `webhook_name` when its
/// `decision` key is there, else the first prefix whose `decision` is one of the
/// webhook's decisions, preferring one that also has an `owner` key.
fn webhook_prefix<'m>(
    annotations: &'m BTreeMap<Str<'_>, Str<'_>>,
    webhook_name: &str,
) -> Option<&'m str> {
    let prefixes = || {
        annotations.iter().filter_map(|(key, value)| {
            let prefix = key.0.strip_suffix("/decision")?;
            Some((prefix, value.0.as_ref()))
        })
    };
    if let Some((prefix, _)) = prefixes().find(|(prefix, _)| *prefix == webhook_name) {
        return Some(prefix);
    }
    let mut first = None;
    for (prefix, decision) in prefixes() {
        if prefix.is_empty() || crate::decide::Outcome::from_label(decision).is_none() {
            continue;
        }
        let has_owner = annotations
            .keys()
            .any(|k| k.0.strip_suffix("/owner") == Some(prefix));
        if has_owner {
            return Some(prefix);
        }
        first.get_or_insert(prefix);
    }
    first
}

fn webhook_annotations(
    annotations: &BTreeMap<Str<'_>, Str<'_>>,
    webhook_name: &str,
) -> Option<WebhookAnnotations> {
    let prefix = webhook_prefix(annotations, webhook_name)?;
    let mut found = WebhookAnnotations::default();
    for (key, value) in annotations {
        let Some(k) = key.0.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) else {
            continue;
        };
        let value = value.0.as_ref();
        match k {
            "owner" => found.owner = Some(value.to_string()),
            "decision" => found.decision = Some(value.to_string()),
            "counted" => found.counted = value.parse().ok(),
            "reason" => found.reason = Some(value.to_string()),
            "gitrepo" => found.gitrepo = Some(value.to_string()),
            "bundle" => found.bundle = Some(value.to_string()),
            "objectset-id" => found.objectset_id = Some(value.to_string()),
            _ => {}
        }
    }
    Some(found)
}

/// `dryRun` in the query of a request URI (`?dryRun=All`).
fn uri_dry_run(uri: &str) -> bool {
    let Some((_, query)) = uri.split_once('?') else {
        return false;
    };
    query.split('&').any(|pair| match pair.split_once('=') {
        Some((key, value)) => key == "dryRun" && !value.is_empty(),
        None => false,
    })
}

/// The webhook named in kube-apiserver's denial message.
fn denying_webhook(message: &str) -> Option<&str> {
    let rest = message.split_once("admission webhook \"")?.1;
    let (name, rest) = rest.split_once('"')?;
    rest.trim_start().starts_with("denied").then_some(name)
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("bad timestamp {s:?}: {e}"))
}

/// kube-apiserver writes compact JSON with `verb` among the first fields, after
/// `requestURI`: a deletion's line shows this early on.
const DELETION_HINT: &[u8] = b"\"verb\":\"delete";
/// How far into a line the hint is looked for.
const HINT_WINDOW: usize = 512;

/// Classify one line (without its newline). Errors describe a malformed line.
///
/// A line that shows [`DELETION_HINT`] early is read whole in one pass; any other
/// line is first read for `kind`/`stage`/`verb` only, skipping the rest, and read
/// whole only if it is a deletion after all (a log written with other spacing, or a
/// very long `requestURI`). Both paths give the same answer.
pub(crate) fn parse_line(line: &[u8], webhook_name: &str) -> Result<Parsed, String> {
    if line.first() != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    let window = &line[..line.len().min(HINT_WINDOW)];
    if memchr::memmem::find(window, DELETION_HINT).is_some() {
        let event: EventView = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        return classify(event, webhook_name);
    }
    let head: Head = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    check_head(&head.kind, &head.stage, &head.verb)?;
    if !is_deletion(&head.verb) {
        return Ok(if is_final_stage(&head.stage) {
            Parsed::NotDeletion
        } else {
            Parsed::OtherStage
        });
    }
    if !is_final_stage(&head.stage) {
        return Ok(Parsed::OtherStage);
    }
    let event: EventView = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    classify(event, webhook_name)
}

fn check_head(kind: &str, stage: &str, verb: &str) -> Result<(), String> {
    if !kind.is_empty() && kind != "Event" {
        return Err(format!("kind {kind:?} is not an audit Event"));
    }
    if stage.is_empty() || verb.is_empty() {
        return Err("not an audit Event: no stage or verb".into());
    }
    Ok(())
}

fn is_deletion(verb: &str) -> bool {
    verb == "delete" || verb == "deletecollection"
}

fn classify(event: EventView<'_>, webhook_name: &str) -> Result<Parsed, String> {
    check_head(&event.kind, &event.stage, &event.verb)?;
    if !is_final_stage(&event.stage) {
        return Ok(Parsed::OtherStage);
    }
    if !is_deletion(&event.verb) {
        return Ok(Parsed::NotDeletion);
    }
    deletion(event, webhook_name)
}

fn is_final_stage(stage: &str) -> bool {
    stage == "ResponseComplete" || stage == "Panic"
}

fn deletion(event: EventView<'_>, webhook_name: &str) -> Result<Parsed, String> {
    let empty = BTreeMap::new();
    let annotations = event.annotations.as_ref().unwrap_or(&empty);
    let webhook = webhook_annotations(annotations, webhook_name);
    let failed_open = annotations
        .iter()
        .any(|(k, v)| k.0.starts_with(FAILED_OPEN_PREFIX) && v.0 == webhook_name);
    let rbac_forbid = annotations
        .get(&Str(Cow::Borrowed(AUTHORIZATION_DECISION)))
        .is_some_and(|v| v.0 == "forbid");

    let recorded = event.request_object.is_some() || event.response_object.is_some();
    let mut marks = Marks::default();
    let mut items = None;
    let mut body_dry_run = false;
    for object in [event.request_object, event.response_object]
        .into_iter()
        .flatten()
    {
        body_dry_run |= object.dry_run.iter().flatten().any(|v| !v.is_empty());
        if let Some(meta) = object.metadata {
            marks.merge(meta.marks());
        }
        if let Some(list) = object.items {
            if let Some(first) = list.first {
                marks.merge(first);
            }
            items = Some(Items {
                deleted: list.deleted,
                fleet_managed: list.fleet_managed,
            });
        }
    }

    let by_webhook = webhook.as_ref().is_some_and(|w| {
        w.decision
            .as_deref()
            .is_some_and(|d| !UNMANAGED_DECISIONS.contains(&d))
    });
    let resource = event
        .object_ref
        .as_ref()
        .map(|o| o.resource.as_ref())
        .unwrap_or_default();
    // The agent's Namespace, Secrets, … carry its bootstrap id but are in no bundle.
    let by_labels = marks.is_fleet()
        && !marks
            .set_id
            .as_deref()
            .is_some_and(|id| outside_agent_bundle_resource(id, resource));
    // The webhook failed open and no object was recorded (Metadata level): it matched
    // the webhook's rules (Fleet's hash label) but nothing tells more. Reported, so
    // deletions while it was down are not invisible.
    let unseen = failed_open && !by_webhook && !by_labels && !recorded;
    if !by_webhook && !by_labels && !unseen {
        return Ok(Parsed::NotFleet);
    }

    let time = [
        &event.stage_timestamp,
        &event.request_received_timestamp,
        &event.timestamp,
    ]
    .into_iter()
    .find_map(|t| t.as_ref())
    .ok_or("no stageTimestamp, requestReceivedTimestamp nor timestamp")?;
    let time = parse_time(&time.0)?;
    let webhook = webhook.filter(|_| by_webhook).unwrap_or_default();
    let reason = match webhook.reason {
        Some(reason) => reason,
        None if failed_open => NOT_SEEN.to_string(),
        None => String::new(),
    };
    let dry_run = body_dry_run || uri_dry_run(&event.request_uri) || reason.contains("dry run");
    let status = event.response_status.unwrap_or_default();
    let code = status.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
    let denied_by = denying_webhook(&status.message).unwrap_or("").to_string();
    let outcome = match code {
        _ if event.stage == "Panic" => Outcome::Panic,
        0 => Outcome::Unknown,
        200..=299 => Outcome::Succeeded,
        403 if rbac_forbid && denied_by.is_empty() => Outcome::Forbidden,
        403 => Outcome::Denied,
        404 => Outcome::NotFound,
        409 => Outcome::Conflict,
        _ => Outcome::Failed,
    };
    let decision = match webhook.decision {
        Some(d) => d,
        None if failed_open => "failed-open".to_string(),
        None => String::new(),
    };
    let object_ref = event.object_ref.unwrap_or_default();
    let user = event.user.unwrap_or_default();
    let (impersonated_user, impersonated_groups) = match event.impersonated_user {
        Some(u) => (
            Some(u.username.into_owned()),
            u.groups
                .unwrap_or_default()
                .into_iter()
                .map(Str::into_string)
                .collect(),
        ),
        None => (None, Vec::new()),
    };
    let owner = webhook
        .owner
        .or_else(|| webhook.gitrepo.clone())
        .or_else(|| marks.owner())
        .unwrap_or_default();
    Ok(Parsed::Deletion(Box::new(Deletion {
        time,
        audit_id: event.audit_id.into_owned(),
        stage: event.stage.into_owned(),
        collection: event.verb == "deletecollection",
        user: user.username.into_owned(),
        groups: user
            .groups
            .unwrap_or_default()
            .into_iter()
            .map(Str::into_string)
            .collect(),
        impersonated_user,
        impersonated_groups,
        user_agent: event.user_agent.into_owned(),
        api_group: object_ref.api_group.into_owned(),
        api_version: object_ref.api_version.into_owned(),
        resource: object_ref.resource.into_owned(),
        subresource: object_ref.subresource.into_owned(),
        namespace: object_ref.namespace.into_owned(),
        name: if event.verb == "deletecollection" {
            String::new()
        } else {
            object_ref.name.into_owned()
        },
        owner,
        gitrepo: webhook.gitrepo.unwrap_or_default(),
        bundle: webhook.bundle.unwrap_or_default(),
        objectset_id: webhook
            .objectset_id
            .or_else(|| marks.set_id.clone())
            .unwrap_or_default(),
        helm_release: marks.helm_release().unwrap_or_default(),
        decision,
        counted: webhook.counted,
        reason,
        dry_run,
        code,
        outcome,
        denied_by,
        by_webhook,
        by_labels,
        items,
    })))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const HOOK: &str = "delete-guard.fleet.cattle.io";

    /// A `kubectl delete configmap` at Metadata level, as kube-apiserver logs it.
    fn event() -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "8c2b0a5e-0d1f-4a51-9d0c-4b2f7e0c1a11", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/configmaps/test-config2-one",
            "verb": "delete",
            "user": {"username": "alice", "groups": ["devs", "system:authenticated"]},
            "sourceIPs": ["10.0.0.5"],
            "userAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/7911c4f",
            "objectRef": {"resource": "configmaps", "namespace": "default",
                          "name": "test-config2-one", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2024-05-01T10:00:00.123456Z",
            "stageTimestamp": "2024-05-01T10:00:00.140000Z",
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"devs\"",
            }
        })
    }

    fn annotate(mut e: Value, prefix: &str, decision: &str) -> Value {
        let a = e["annotations"].as_object_mut().unwrap();
        for (k, v) in [
            ("owner", "fleet-local/lots"),
            ("decision", decision),
            ("counted", "true"),
            ("reason", "manual deletion, policy warn"),
            ("gitrepo", "fleet-local/lots"),
            ("bundle", "lots-config2"),
            ("objectset-id", "default-lots-config2"),
        ] {
            a.insert(format!("{prefix}/{k}"), json!(v));
        }
        e
    }

    fn parse(e: &Value) -> Result<Parsed, String> {
        parse_line(e.to_string().as_bytes(), HOOK)
    }

    fn deletion(e: &Value) -> Deletion {
        match parse(e) {
            Ok(Parsed::Deletion(d)) => *d,
            other => panic!("expected a deletion, got {other:?}"),
        }
    }

    #[test]
    fn webhook_annotations_at_metadata_level_make_a_row() {
        let d = deletion(&annotate(event(), HOOK, "warned"));
        // stageTimestamp first (issue #13).
        assert_eq!(d.time.to_string(), "2024-05-01T10:00:00.14Z");
        assert_eq!((d.user.as_str(), d.groups.len()), ("alice", 2));
        assert_eq!(d.object_display(), "default/test-config2-one");
        assert_eq!(d.resource_display(), "configmaps");
        assert_eq!(
            (d.gitrepo.as_str(), d.bundle.as_str(), d.decision.as_str()),
            ("fleet-local/lots", "lots-config2", "warned")
        );
        assert_eq!(d.objectset_id, "default-lots-config2");
        assert_eq!(d.counted, Some(true));
        assert_eq!(
            (d.code, d.outcome, d.dry_run),
            (200, Outcome::Succeeded, false)
        );
        assert!(d.by_webhook && !d.by_labels);
    }

    #[test]
    fn another_webhook_name_is_matched_by_its_decision_key_but_not_rbac() {
        let d = deletion(&annotate(event(), "guard.example.com", "denied"));
        assert_eq!(d.decision, "denied");
        assert_eq!(d.gitrepo, "fleet-local/lots");
        // RBAC's own `…/decision: allow` alone is not the webhook's.
        assert!(matches!(parse(&event()), Ok(Parsed::NotFleet)));
    }

    #[test]
    fn the_configured_webhook_name_wins_over_other_prefixes() {
        let mut e = annotate(event(), "aaa.other.io", "denied");
        e = annotate(e, HOOK, "allowed");
        assert_eq!(deletion(&e).decision, "allowed");
        // The fallback prefers a prefix that also has an owner key.
        let mut e = event();
        e["annotations"]["aaa.io/decision"] = json!("fleet");
        e = annotate(e, "zzz.io", "controller");
        assert_eq!(deletion(&e).decision, "controller");
    }

    #[test]
    fn decisions_for_objects_that_are_not_fleets_make_no_row() {
        for decision in UNMANAGED_DECISIONS {
            let e = annotate(event(), HOOK, decision);
            assert!(matches!(parse(&e), Ok(Parsed::NotFleet)), "{decision}");
        }
    }

    #[test]
    fn fleet_labels_in_the_recorded_object_make_a_row_without_the_webhook() {
        let mut e = event();
        e["level"] = json!("RequestResponse");
        e["objectRef"] = json!({"resource": "pods", "namespace": "apps", "name": "web-0",
                                "apiVersion": "v1"});
        e["requestObject"] = json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                    "propagationPolicy": "Background"});
        e["responseObject"] = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {
                "name": "web-0", "namespace": "apps",
                "labels": {"app": "web", "objectset.rio.cattle.io/hash": "ec4b361339aee0ed3797931ec95840485448986c"},
                "annotations": {"objectset.rio.cattle.io/id": "default-lots-config-one",
                                "meta.helm.sh/release-name": "lots-config-one",
                                "meta.helm.sh/release-namespace": "apps",
                                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\":[1,2,3]}"},
                "managedFields": [{"manager": "fleetagent", "fieldsV1": {"f:metadata": {}}}],
                "deletionTimestamp": "2024-05-01T10:00:30Z"
            },
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Running"}
        });
        let d = deletion(&e);
        assert!(d.by_labels && !d.by_webhook);
        assert_eq!(d.owner, "objectset:default-lots-config-one");
        assert_eq!(d.owner_key(), "objectset:default-lots-config-one");
        assert_eq!(d.helm_release, "apps/lots-config-one");
        assert_eq!(d.decision, "");
        // The same deletion of an object without Fleet's marks is not Fleet's.
        e["responseObject"]["metadata"]["labels"] = json!({"app": "web"});
        e["responseObject"]["metadata"]["annotations"] = Value::Null;
        assert!(matches!(parse(&e), Ok(Parsed::NotFleet)));
    }

    #[test]
    fn a_deletecollection_is_one_row_counting_its_items() {
        let mut e = annotate(event(), HOOK, "controller");
        e["verb"] = json!("deletecollection");
        e["level"] = json!("RequestResponse");
        e["user"] = json!({"username": "system:serviceaccount:kube-system:namespace-controller",
                           "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                      "system:authenticated"]});
        e["objectRef"] = json!({"resource": "configmaps", "namespace": "apps", "apiVersion": "v1"});
        e["requestURI"] = json!("/api/v1/namespaces/apps/configmaps");
        let fleet = |name: &str| {
            json!({"metadata": {"name": name,
            "labels": {"objectset.rio.cattle.io/hash": "37517d22b0ca4dbc462436d47410a3bdfce3c6f9"},
            "annotations": {"objectset.rio.cattle.io/id": "default-lots-config2"}}, "data": {"k": "v"}})
        };
        e["responseObject"] = json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {},
            "items": [fleet("a"), {"metadata": {"name": "kube-root-ca.crt"}}, fleet("b")]});
        let d = deletion(&e);
        assert!(d.collection);
        assert_eq!(d.name, "");
        assert_eq!(d.object_display(), "apps/*");
        assert_eq!(
            d.items,
            Some(Items {
                deleted: 3,
                fleet_managed: 2
            })
        );
        assert!(d.by_webhook && d.by_labels);
        assert_eq!(d.decision, "controller");
    }

    #[test]
    fn a_namespace_is_shown_by_its_name_alone() {
        let mut e = annotate(event(), HOOK, "warned");
        e["objectRef"] = json!({"resource": "namespaces", "namespace": "apps", "name": "apps",
                                "apiVersion": "v1"});
        assert_eq!(deletion(&e).object_display(), "apps");
        e["objectRef"] = json!({"resource": "clusterroles", "name": "view-lots",
                                "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"});
        let d = deletion(&e);
        assert_eq!(d.object_display(), "view-lots");
        assert_eq!(
            d.resource_display(),
            "clusterroles.rbac.authorization.k8s.io"
        );
    }

    #[test]
    fn dry_run_from_the_body_the_query_or_the_webhooks_reason() {
        let base = annotate(event(), HOOK, "warned");
        assert!(!deletion(&base).dry_run);

        let mut body = base.clone();
        body["requestObject"] = json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                       "dryRun": ["All"]});
        assert!(deletion(&body).dry_run);

        let mut query = base.clone();
        query["requestURI"] =
            json!("/api/v1/namespaces/default/configmaps/test-config2-one?dryRun=All");
        assert!(deletion(&query).dry_run);
        query["requestURI"] = json!("/api/v1/namespaces/default/configmaps/x?dryRunX=All");
        assert!(!deletion(&query).dry_run);

        let mut reason = base;
        reason["annotations"][format!("{HOOK}/reason")] =
            json!("manual deletion, policy warn; dry run, no side effects");
        assert!(deletion(&reason).dry_run);
    }

    #[test]
    fn response_codes_become_outcomes() {
        let mut e = annotate(event(), HOOK, "denied");
        e["responseStatus"] = json!({"metadata": {}, "status": "Failure", "reason": "Forbidden",
            "code": 403, "message": format!("admission webhook \"{HOOK}\" denied the request: \
                configmap default/test-config2-one is managed by Fleet")});
        let d = deletion(&e);
        assert_eq!((d.code, d.outcome), (403, Outcome::Denied));
        assert_eq!(d.denied_by, HOOK);

        let mut e = annotate(event(), HOOK, "allowed");
        e["annotations"]["authorization.k8s.io/decision"] = json!("forbid");
        e["responseStatus"] = json!({"code": 403, "status": "Failure", "message": "forbidden"});
        assert_eq!(deletion(&e).outcome, Outcome::Forbidden);

        for (code, outcome) in [
            (404, Outcome::NotFound),
            (409, Outcome::Conflict),
            (500, Outcome::Failed),
            (202, Outcome::Succeeded),
        ] {
            e["responseStatus"] = json!({"code": code});
            assert_eq!(deletion(&e).outcome, outcome, "{code}");
        }
        e["stage"] = json!("Panic");
        e["responseStatus"] = json!({"code": 500});
        assert_eq!(deletion(&e).outcome, Outcome::Panic);
        e["responseStatus"] = Value::Null;
        e["stage"] = json!("ResponseComplete");
        let d = deletion(&e);
        assert_eq!((d.code, d.outcome), (0, Outcome::Unknown));
    }

    /// `value` with its top-level fields in kube-apiserver's order (`verb` early).
    fn apiserver_order(value: &Value) -> String {
        let fields = value.as_object().unwrap();
        let first = [
            "kind",
            "apiVersion",
            "level",
            "auditID",
            "stage",
            "requestURI",
            "verb",
        ];
        let rest = fields.keys().filter(|k| !first.contains(&k.as_str()));
        let parts: Vec<String> = first
            .iter()
            .map(|k| k.to_string())
            .chain(rest.cloned())
            .filter(|k| fields.contains_key(k))
            .map(|k| format!("{}:{}", json!(k), fields[&k]))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    #[test]
    fn the_one_pass_and_the_two_pass_reading_agree() {
        let mut collection = annotate(event(), HOOK, "controller");
        collection["verb"] = json!("deletecollection");
        let mut get = event();
        get["verb"] = json!("get");
        let mut received = annotate(event(), HOOK, "warned");
        received["stage"] = json!("RequestReceived");
        let mut list = event();
        list["kind"] = json!("EventList");
        let mut long_uri = annotate(event(), HOOK, "warned");
        long_uri["requestURI"] = json!(format!("/api/v1/x?{}", "a".repeat(600)));
        for e in [
            annotate(event(), HOOK, "warned"),
            collection,
            get,
            received,
            list,
            long_uri,
            event(),
        ] {
            let compact = apiserver_order(&e);
            let early = compact.find("\"verb\":").unwrap();
            assert!(early < 400 || e["requestURI"].as_str().unwrap().len() > 500);
            let one = parse_line(compact.as_bytes(), HOOK);
            let two = parse_line(e.to_string().as_bytes(), HOOK);
            assert_eq!(format!("{one:?}"), format!("{two:?}"), "{compact}");
        }
    }

    #[test]
    fn outcomes_survive_packing_as_a_byte() {
        for outcome in [
            Outcome::Succeeded,
            Outcome::Denied,
            Outcome::Forbidden,
            Outcome::NotFound,
            Outcome::Conflict,
            Outcome::Failed,
            Outcome::Panic,
            Outcome::Unknown,
        ] {
            assert_eq!(Outcome::from_index(outcome.index()), outcome);
        }
        assert_eq!(Outcome::from_index(200), Outcome::Unknown);
    }

    #[test]
    fn only_final_stages_count() {
        let mut e = annotate(event(), HOOK, "warned");
        for stage in ["RequestReceived", "ResponseStarted"] {
            e["stage"] = json!(stage);
            assert!(matches!(parse(&e), Ok(Parsed::OtherStage)), "{stage}");
        }
        e["stage"] = json!("ResponseComplete");
        e["verb"] = json!("get");
        assert!(matches!(parse(&e), Ok(Parsed::NotDeletion)));
    }

    #[test]
    fn impersonation_names_both_users() {
        let mut e = annotate(event(), HOOK, "fleet");
        e["user"] = json!({"username": "system:serviceaccount:cattle-fleet-system:fleet-agent"});
        e["impersonatedUser"] = json!({"username": "system:serviceaccount:cattle-fleet-system:fleet-default",
                                       "groups": ["system:serviceaccounts:cattle-fleet-system"]});
        let d = deletion(&e);
        assert_eq!(
            d.effective_user(),
            "system:serviceaccount:cattle-fleet-system:fleet-default"
        );
        assert_eq!(
            d.effective_groups(),
            ["system:serviceaccounts:cattle-fleet-system"]
        );
        assert_eq!(
            d.user,
            "system:serviceaccount:cattle-fleet-system:fleet-agent"
        );
    }

    #[test]
    fn a_webhook_that_failed_open_is_named_so_when_the_labels_tell() {
        let mut e = event();
        e["annotations"]["failed-open.validating.webhook.admission.k8s.io/round_0_index_1"] =
            json!(HOOK);
        let hash = crate::fleet::object_set_hash("default-widgets");
        e["responseObject"] = json!({"kind": "Widget", "metadata": {"name": "w",
            "labels": {"objectset.rio.cattle.io/hash": hash},
            "annotations": {"objectset.rio.cattle.io/id": "default-widgets"}}});
        let d = deletion(&e);
        assert_eq!(d.decision, "failed-open");
        assert_eq!(d.owner, "objectset:default-widgets");
        // Another writer's objectset metadata (an Endpoints copy) is not Fleet's.
        e["responseObject"] = json!({"kind": "Endpoints", "metadata": {"name": "w",
            "labels": {"objectset.rio.cattle.io/hash": "abc"}}});
        assert!(matches!(parse(&e), Ok(Parsed::NotFleet)));
    }

    /// Issue #13: events with only `timestamp` (audit.k8s.io/v1beta1, and logs whose
    /// apiVersion says v1 with v1beta1 fields) are read; stageTimestamp comes first.
    #[test]
    fn the_time_is_stage_then_request_received_then_timestamp() {
        let mut e = annotate(event(), HOOK, "warned");
        e["stageTimestamp"] = json!("2024-05-01T10:00:02Z");
        e["requestReceivedTimestamp"] = json!("2024-05-01T10:00:01Z");
        e["timestamp"] = json!("2024-05-01T10:00:00Z");
        assert_eq!(deletion(&e).time.to_string(), "2024-05-01T10:00:02Z");
        e["stageTimestamp"] = Value::Null;
        assert_eq!(deletion(&e).time.to_string(), "2024-05-01T10:00:01Z");
        e["requestReceivedTimestamp"] = Value::Null;
        assert_eq!(deletion(&e).time.to_string(), "2024-05-01T10:00:00Z");
        for api_version in ["audit.k8s.io/v1beta1", "audit.k8s.io/v1"] {
            e["apiVersion"] = json!(api_version);
            assert_eq!(deletion(&e).time.to_string(), "2024-05-01T10:00:00Z");
        }
        e["timestamp"] = Value::Null;
        let err = parse(&e).unwrap_err();
        assert!(err.contains("nor timestamp"), "{err}");
    }

    /// Issue #8 in the report too: the agent's Namespace under its bootstrap id is not
    /// Fleet-managed (no bundle of the agent has a Namespace).
    #[test]
    fn an_agent_namespace_under_the_bootstrap_id_is_not_fleets() {
        let mut e = event();
        e["objectRef"] = json!({"resource": "namespaces", "namespace": "cattle-fleet-system",
            "name": "cattle-fleet-system", "apiVersion": "v1"});
        let hash = crate::fleet::object_set_hash("fleet-agent-bootstrap");
        e["responseObject"] = json!({"kind": "Namespace", "metadata": {"name": "cattle-fleet-system",
            "labels": {"objectset.rio.cattle.io/hash": hash},
            "annotations": {"objectset.rio.cattle.io/id": "fleet-agent-bootstrap"}}});
        assert!(matches!(parse(&e), Ok(Parsed::NotFleet)));
        e["objectRef"] = json!({"resource": "deployments", "apiGroup": "apps",
            "namespace": "cattle-fleet-system", "name": "fleet-agent", "apiVersion": "v1"});
        assert!(deletion(&e).by_labels);
    }

    /// Issue #16: a deletion while the webhook was down (kube-apiserver failed open)
    /// at Metadata level carries no object: reported as not seen by the webhook.
    #[test]
    fn a_deletion_the_webhook_never_saw_is_reported() {
        let mut e = event();
        e["annotations"] = json!({
            "failed-open.validating.webhook.admission.k8s.io/round_0_index_0": HOOK,
            "authorization.k8s.io/decision": "allow"
        });
        let d = deletion(&e);
        assert_eq!(d.decision, "failed-open");
        assert_eq!(d.reason, NOT_SEEN);
        assert!(!d.by_webhook && !d.by_labels);
        assert_eq!(d.object_display(), "default/test-config2-one");
        // Another webhook's failure says nothing about this one.
        e["annotations"] = json!({
            "failed-open.validating.webhook.admission.k8s.io/round_0_index_0": "other.example.com"
        });
        assert!(matches!(parse(&e), Ok(Parsed::NotFleet)));
    }

    #[test]
    fn malformed_lines_are_errors_never_panics() {
        for line in [
            &b"not json"[..],
            b"{\"kind\":\"Event\",\"stage\":\"ResponseComplete\"",
            b"[1,2]",
            b"{\"kind\":\"EventList\",\"stage\":\"x\",\"verb\":\"delete\"}",
            b"{\"kind\":\"Event\",\"verb\":\"delete\"}",
            b"\xff\xfe",
        ] {
            assert!(
                parse_line(line, HOOK).is_err(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let mut e = annotate(event(), HOOK, "warned");
        e["stageTimestamp"] = json!("yesterday");
        assert!(parse(&e).unwrap_err().contains("bad timestamp"));
        e["requestReceivedTimestamp"] = Value::Null;
        e["stageTimestamp"] = Value::Null;
        assert!(parse(&e).is_err());
        e["stageTimestamp"] = json!("2024-05-01T10:00:01Z");
        assert_eq!(deletion(&e).time.to_string(), "2024-05-01T10:00:01Z");
        // Escaped strings are read too (they cannot be borrowed from the line).
        e["user"]["username"] = json!("al\"ice\u{e9}");
        assert_eq!(deletion(&e).user, "al\"ice\u{e9}");
    }
}
