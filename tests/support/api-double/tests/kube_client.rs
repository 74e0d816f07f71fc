//! The double driven by a real kube-rs 5 client, kube-runtime watcher/reflector and Recorder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::events::{Event, EventType as RecorderEventType, Recorder, Reporter};
use kube::runtime::utils::Backoff;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use kube_api_double::{
    gvr, ApiDouble, EventType, Fault, HookOptions, Options, Origin, Verb, Write,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

fn client_for(double: &ApiDouble) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::new(double.url().parse().expect("url"));
    Client::try_from(config).expect("client")
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture json")
}

fn gitrepo_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("fleet.cattle.io", "v1alpha1", "GitRepo"),
        "gitrepos",
    )
}

fn bd_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("fleet.cattle.io", "v1alpha1", "BundleDeployment"),
        "bundledeployments",
    )
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn configmap(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "labels": labels},
           "data": {"k": name}})
}

/// Polls a condition on client-side state (e.g. a reflector store) until it holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A watcher backoff that keeps tests fast: 20 ms between retries.
struct Fast;
impl Iterator for Fast {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(20))
    }
}
impl Backoff for Fast {
    fn reset(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_list_with_label_selector_and_pagination() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed_list(fixture("configmaps-lots.json")).unwrap();
    for (name, app, tier) in [
        ("web-a", "web", "fe"),
        ("web-b", "web", "cache"),
        ("db-a", "db", "be"),
        ("db-b", "db", "be"),
    ] {
        double
            .seed(configmap(name, &[("app", app), ("tier", tier)]))
            .unwrap();
    }
    let api: Api<ConfigMap> = Api::namespaced(client_for(&double), "default");

    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 15);
    assert_eq!(
        all.metadata.resource_version,
        Some(double.resource_version().to_string())
    );

    let names = |l: &kube::core::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    let sel = api
        .list(&ListParams::default().labels("app in (web,db),tier!=cache"))
        .await
        .unwrap();
    assert_eq!(names(&sel), ["db-a", "db-b", "web-a"]);
    let sel = api
        .list(&ListParams::default().labels("app,!tier"))
        .await
        .unwrap();
    assert!(sel.items.is_empty());
    let sel = api
        .list(
            &ListParams::default()
                .labels("objectset.rio.cattle.io/hash=37517d22b0ca4dbc462436d47410a3bdfce3c6f9"),
        )
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 4);
    let sel = api
        .list(&ListParams::default().labels("app notin (web)"))
        .await
        .unwrap();
    assert_eq!(
        sel.items.len(),
        13,
        "notin also selects objects without the label"
    );
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=web-b"))
        .await
        .unwrap();
    assert_eq!(names(&by_name), ["web-b"]);
    let err = api
        .list(&ListParams::default().labels("app in ("))
        .await
        .unwrap_err();
    let s = api_status(err);
    assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));

    // pagination: 15 objects in pages of 4
    double.clear_requests();
    let mut lp = ListParams::default().limit(4);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 4);
        seen.extend(names(&page));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                assert!(page.metadata.remaining_item_count.unwrap() > 0);
                lp = lp.continue_token(&token);
            }
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(
        seen,
        names(&all),
        "pages concatenate to the full list in order"
    );
    assert_eq!(double.count(Verb::List, "configmaps", None), 4);

    // a continue token from before a compaction has expired
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    double.compact();
    let token = first.metadata.continue_.unwrap();
    let s = api_status(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_list_get_and_watch() {
    use kube::core::PartialObjectMeta;
    let double = ApiDouble::start(Options::default()).await;
    for i in 0..5 {
        let mut cm = configmap(&format!("cm-{i}"), &[("app", "web")]);
        cm["data"] = json!({"big": "x".repeat(1000)});
        double.seed(cm).unwrap();
    }
    let client = client_for(&double);
    let meta: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");

    // LIST as PartialObjectMetadataList, paginated, with labels but no data.
    let mut lp = ListParams::default().labels("app=web").limit(2);
    let mut names = Vec::new();
    loop {
        let page = meta.list(&lp).await.unwrap();
        assert_eq!(page.types.kind, "PartialObjectMetadataList");
        for o in &page.items {
            assert_eq!(o.labels().get("app").map(String::as_str), Some("web"));
            names.push(o.name_any());
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => break,
        }
    }
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);

    // The raw answers carry no data, and GET is reduced the same way.
    let raw = raw_get(
        &client,
        "/api/v1/namespaces/default/configmaps?limit=1",
        true,
    )
    .await;
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(raw["items"][0].get("data").is_none());
    assert_eq!(raw["items"][0]["kind"], "PartialObjectMetadata");
    let full = raw_get(
        &client,
        "/api/v1/namespaces/default/configmaps?limit=1",
        false,
    )
    .await;
    assert_eq!(full["kind"], "ConfigMapList");
    assert!(full["items"][0].get("data").is_some());
    let one = meta.get("cm-3").await.unwrap();
    assert_eq!(one.name_any(), "cm-3");
    let raw = raw_get(&client, "/api/v1/namespaces/default/configmaps/cm-3", true).await;
    assert_eq!(raw["kind"], "PartialObjectMetadata");
    assert!(raw.get("data").is_none());

    // A watcher over metadata sees the initial objects and later changes.
    let events = watcher(meta.clone(), watcher::Config::default().labels("app=web"))
        .applied_objects()
        .take(6);
    let plain: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let cm: ConfigMap = serde_json::from_value(configmap("cm-new", &[("app", "web")])).unwrap();
        plain.create(&PostParams::default(), &cm).await.unwrap();
    });
    let seen: Vec<String> =
        tokio::time::timeout(WAIT, events.map_ok(|o| o.name_any()).try_collect())
            .await
            .expect("watch within the wait")
            .unwrap();
    created.await.unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen.contains(&"cm-new".to_string()));
}

/// GET `path` through the kube client, with or without the metadata-only Accept header
/// kube sends for `PartialObjectMeta` types, as raw JSON.
async fn raw_get(client: &Client, path: &str, metadata_only: bool) -> Value {
    let mut req = http::Request::get(path);
    if metadata_only {
        req = req.header(
            http::header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
        );
    }
    client
        .request::<Value>(req.body(Vec::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_gitrepos_through_api_resource() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    let client = client_for(&double);
    let ar = gitrepo_ar();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "fleet-local", &ar);

    let repo = api.get("lots").await.unwrap();
    assert_eq!(
        repo.data["spec"]["repo"],
        "https://github.com/example-org/fleet-lots"
    );
    assert_eq!(
        repo.metadata.uid.as_deref(),
        Some("303c7fd9-886e-588f-bafe-74cfcbff862f")
    );
    assert_eq!(
        repo.metadata.resource_version.as_deref(),
        Some("5019"),
        "seed keeps a newer fixture RV"
    );
    let status = api.get_status("lots").await.unwrap();
    assert_eq!(
        status.data["status"]["display"]["readyBundleDeployments"],
        "3/3"
    );

    let everywhere: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let s = api_status(api.get("nope").await.unwrap_err());
    assert!(s.is_not_found());
    assert_eq!(s.message, "gitrepos.fleet.cattle.io \"nope\" not found");

    // create: status is dropped (status subresource), uid/creationTimestamp/generation set
    let mut obj = DynamicObject::new("second", &ar).within("fleet-local");
    obj.data = json!({"spec": {"repo": "https://example.com/x"}, "status": {"ready": true}});
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.data.get("status").is_none());
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let s = api_status(api.create(&PostParams::default(), &obj).await.unwrap_err());
    assert!(s.is_already_exists());

    // a spec change via the main resource bumps generation and ignores .status
    let patched = api
        .patch(
            "second",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"branch": "dev"}, "status": {"hacked": true}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert!(patched.data.get("status").is_none());
    // replace (PUT) with the current resourceVersion works, with a stale one conflicts
    let mut current = api.get("second").await.unwrap();
    current.data["spec"]["branch"] = json!("main");
    let replaced = api
        .replace("second", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.data["spec"]["branch"], "main");
    let s = api_status(
        api.replace("second", &PostParams::default(), &current)
            .await
            .unwrap_err(),
    );
    assert!(s.is_conflict());

    // server-side apply (approximated as a merge) creates and then updates
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let pp = PatchParams::apply("fleet-delete-guard");
    cms.patch("applied", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "2"}});
    let out = cms
        .patch("applied", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(out.data.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_resources_are_one_line() {
    use kube_api_double::{Gvr, ResourceDef};
    let double = ApiDouble::start(Options {
        extra_resources: vec![ResourceDef::crd("example.io", "v1", "widgets", "Widget")],
        ..Options::default()
    })
    .await;
    double
        .seed(json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"}}))
        .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.io", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client_for(&double), "ns", &ar);
    assert_eq!(api.get("w").await.unwrap().metadata.generation, Some(1));
    assert!(double
        .get(&Gvr::new("example.io", "v1", "widgets"), "ns", "w")
        .is_some());
    assert!(double
        .seed(json!({"apiVersion": "nope.io/v1", "kind": "Nope", "metadata": {"name": "x"}}))
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_status_conflicts_on_stale_resource_version_and_emits_modified() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client_for(&double), "fleet-local", &gitrepo_ar());
    let before = api.get("lots").await.unwrap();
    let rv = before.resource_version().unwrap();

    let mut events = api
        .watch(&WatchParams::default().fields("metadata.name=lots"), &rv)
        .await
        .unwrap()
        .boxed();

    let stale = json!({"metadata": {"resourceVersion": "17"}, "status": {"display": {"readyBundleDeployments": "2/3"}}});
    let err = api
        .patch_status("lots", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    let s = api_status(err);
    assert!(s.is_conflict(), "{s:?}");
    assert_eq!(s.code, 409);
    assert_eq!(
        s.message,
        "Operation cannot be fulfilled on gitrepos.fleet.cattle.io \"lots\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(double.count(Verb::Patch, "gitrepos", Some("status")), 1);

    let fresh = json!({"metadata": {"resourceVersion": rv},
                       "spec": {"repo": "ignored on /status"},
                       "status": {"display": {"readyBundleDeployments": "2/3"}, "summary": {"modified": 1}}});
    let after = api
        .patch_status("lots", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .unwrap();
    assert_eq!(
        after.data["status"]["display"]["readyBundleDeployments"],
        "2/3"
    );
    assert_eq!(
        after.data["status"]["summary"],
        json!({"ready": 3, "desiredReady": 3, "modified": 1})
    );
    assert_eq!(
        after.data["spec"]["repo"], before.data["spec"]["repo"],
        "only .status changes on /status"
    );
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "status writes keep generation"
    );
    let new_rv: u64 = after.resource_version().unwrap().parse().unwrap();
    assert!(new_rv > rv.parse::<u64>().unwrap());

    let ev = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Modified(o) => {
            assert_eq!(o.data["status"]["display"]["readyBundleDeployments"], "2/3");
            assert_eq!(o.resource_version().unwrap(), new_rv.to_string());
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }

    // the same patch again changes nothing: no new resourceVersion, no event
    let again = api
        .patch_status(
            "lots",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"summary": {"modified": 1}}})),
        )
        .await
        .unwrap();
    assert_eq!(again.resource_version().unwrap(), new_rv.to_string());
    assert_eq!(double.count(Verb::Patch, "gitrepos", Some("status")), 3);
    assert_eq!(
        double
            .last_request(Verb::Patch, "gitrepos", Some("status"))
            .unwrap()
            .status,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_survives_dropped_watches_and_a_restart() {
    let double = ApiDouble::start(Options::default()).await;
    double
        .seed_list(fixture("bundledeployments-lots.json"))
        .unwrap();
    let mut other = fixture("bundledeployments-lots.json")["items"][0].clone();
    other["metadata"]["name"] = json!("other-repo-bd");
    other["metadata"]["labels"]["fleet.cattle.io/repo-name"] = json!("other");
    double.seed(other).unwrap();

    let api: Api<DynamicObject> = Api::all_with(client_for(&double), &bd_ar());
    let writer = reflector::store::Writer::new(bd_ar());
    let store = writer.as_reader();
    let stream = watcher(
        api,
        watcher::Config::default().labels("fleet.cattle.io/repo-name=lots"),
    )
    .backoff(Fast)
    .reflect(writer)
    .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(WAIT, store.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.len(), 3, "the label selector keeps other-repo-bd out");

    let ns = "cluster-fleet-local-local-1a3d67d0a899";
    let state_of = |name: &str| {
        store
            .state()
            .iter()
            .find(|o| o.name_any() == name)
            .map(|o| o.data["status"]["display"]["state"].clone())
    };
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            ns,
            "lots-config2",
            json!({"status": {"display": {"state": "Modified"}}}),
        )
        .unwrap();
    eventually("the update in the store", || {
        state_of("lots-config2") == Some(json!("Modified"))
    })
    .await;
    let lists = double.count(Verb::List, "bundledeployments", None);
    let watches = double.count(Verb::Watch, "bundledeployments", None);

    // cut the watch: the watcher resumes from its resourceVersion without re-listing
    assert_eq!(double.drop_watches(), 1);
    double
        .wait_for_count(Verb::Watch, "bundledeployments", None, watches + 1, WAIT)
        .await
        .unwrap();
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            ns,
            "lots-config1",
            json!({"status": {"display": {"state": "NotReady"}}}),
        )
        .unwrap();
    eventually("the update after drop_watches", || {
        state_of("lots-config1") == Some(json!("NotReady"))
    })
    .await;
    assert_eq!(
        double.count(Verb::List, "bundledeployments", None),
        lists,
        "no re-list after a dropped watch"
    );

    // restart: the history is gone, the old resourceVersion gets 410 Expired, the watcher re-lists
    double.restart().await.unwrap();
    double
        .wait_for_count(Verb::List, "bundledeployments", None, lists + 1, WAIT)
        .await
        .unwrap();
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            ns,
            "lots-config3",
            json!({"status": {"display": {"state": "OutOfSync"}}}),
        )
        .unwrap();
    eventually("the update after restart", || {
        state_of("lots-config3") == Some(json!("OutOfSync"))
    })
    .await;

    // relabeling an object out of the selector is a DELETED for this watch
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            ns,
            "lots-config3",
            json!({"metadata": {"labels": {"fleet.cattle.io/repo-name": "moved"}}}),
        )
        .unwrap();
    eventually("lots-config3 to leave the store", || store.len() == 2).await;
    // and a server-side delete is a DELETED too
    double
        .delete_object(&gvr::BUNDLEDEPLOYMENTS, ns, "lots-config1")
        .unwrap();
    eventually("lots-config1 to leave the store", || store.len() == 1).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_gets_initial_events_and_bookmark() {
    let double = ApiDouble::start(Options::default()).await;
    double
        .seed_list(fixture("bundledeployments-lots.json"))
        .unwrap();
    let api: Api<DynamicObject> = Api::all_with(client_for(&double), &bd_ar());
    let writer = reflector::store::Writer::new(bd_ar());
    let store = writer.as_reader();
    let stream = watcher(api, watcher::Config::default().streaming_lists())
        .backoff(Fast)
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(WAIT, store.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(double.count(Verb::List, "bundledeployments", None), 0);
    task.abort();
}

/// kube-apiserver's validation of a watch's list options, as the conformance test
/// (tests/real_cluster.rs) found it: 422 for sendInitialEvents without
/// `resourceVersionMatch=NotOlderThan`, and for resourceVersionMatch without
/// sendInitialEvents.
#[tokio::test]
async fn a_streaming_list_without_its_resource_version_match_is_invalid() {
    let double = ApiDouble::start(Options::default()).await;
    let client = client_for(&double);
    for query in [
        "watch=1&sendInitialEvents=true&allowWatchBookmarks=true",
        "watch=1&sendInitialEvents=false",
        "watch=1&resourceVersionMatch=NotOlderThan",
        "watch=1&sendInitialEvents=true&resourceVersionMatch=Exact",
    ] {
        let request = http::Request::get(format!("/api/v1/namespaces/default/configmaps?{query}"))
            .body(Vec::new())
            .expect("request");
        let s = api_status(client.request_text(request).await.unwrap_err());
        assert_eq!(
            (s.code, s.reason.as_str()),
            (422, "Invalid"),
            "{query}: {s:?}"
        );
        assert!(s.message.contains("resourceVersionMatch"), "{query}: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_bookmarks_and_expired_resource_versions() {
    let double = ApiDouble::start(Options {
        bookmark_interval: Some(Duration::from_millis(50)),
        ..Options::default()
    })
    .await;
    double.seed(configmap("a", &[])).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client_for(&double), "default");
    let rv = double.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, WatchEvent::Bookmark(ref b) if b.metadata.resource_version == rv),
        "{ev:?}"
    );

    // timeoutSeconds ends the stream cleanly
    let mut short = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(WAIT, short.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none());

    double.compact();
    let mut old = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, old.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(s) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
            assert!(s.message.starts_with("too old resource version"));
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_503s_are_retried_and_500s_surface() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(configmap("a", &[])).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client_for(&double), "default");

    let f = double.inject(Fault::new(Verb::Get, "configmaps").times(2).respond(503));
    assert_eq!(api.get("a").await.unwrap().name_any(), "a");
    assert_eq!(double.fault_hits(f), 2);
    assert_eq!(
        double.count(Verb::Get, "configmaps", None),
        3,
        "two 503s, then the retry succeeded"
    );

    let f = double.inject(
        Fault::new(Verb::Get, "configmaps")
            .respond(503)
            .retry_after(1),
    );
    let started = Instant::now();
    api.get("a").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
    assert_eq!(double.fault_hits(f), 1);

    double.inject(Fault::new(Verb::Get, "configmaps").respond(500));
    let s = api_status(api.get("a").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    double.inject(Fault::new(Verb::Patch, "configmaps").respond(409));
    let s = api_status(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(s.is_conflict(), "409 is never retried by the client");
    double.inject(Fault::new(Verb::Get, "configmaps").name("a").respond(403));
    assert!(api_status(api.get("a").await.unwrap_err()).is_forbidden());
    double.inject(Fault::new(Verb::Get, "configmaps").respond(404));
    assert!(api_status(api.get("a").await.unwrap_err()).is_not_found());
    assert_eq!(
        api.get("a").await.unwrap().data.unwrap()["k"],
        "a",
        "faults are used up"
    );

    // a fault on /status does not touch the main resource, and vice versa
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    let repos: Api<DynamicObject> =
        Api::namespaced_with(api.clone().into_client(), "fleet-local", &gitrepo_ar());
    double.inject(
        Fault::new(Verb::Patch, "gitrepos")
            .subresource("status")
            .always()
            .respond(500),
    );
    repos
        .patch(
            "lots",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        api_status(
            repos
                .patch_status(
                    "lots",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {}}))
                )
                .await
                .unwrap_err()
        )
        .code,
        500
    );
    double.clear_faults();

    // latency and hangs
    double.set_global_latency(Duration::from_millis(150));
    let started = Instant::now();
    api.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    double.set_global_latency(Duration::ZERO);

    let mut config = kube::Config::new(double.url().parse().unwrap());
    config.read_timeout = Some(Duration::from_millis(300));
    let impatient: Api<ConfigMap> = Api::namespaced(Client::try_from(config).unwrap(), "default");
    double.inject(Fault::new(Verb::Get, "configmaps").hang());
    let started = Instant::now();
    let err = impatient.get("a").await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a hang is a client-side timeout: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(impatient.get("a").await.unwrap().name_any(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_publishes_events_k8s_io_events() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    let client = client_for(&double);
    let repo = Api::<DynamicObject>::namespaced_with(client.clone(), "fleet-local", &gitrepo_ar())
        .get("lots")
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "fleet-delete-guard".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: RecorderEventType::Warning,
        reason: "ManualDelete".into(),
        note: Some("configmap default/test-config2-one deleted".into()),
        action: "Delete".into(),
        secondary: None,
    };
    let reference = repo.object_ref(&gitrepo_ar());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();

    let stored = double.list(&gvr::EVENTS_K8S_IO, Some("fleet-local"));
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["reason"], "ManualDelete");
    assert_eq!(stored[0]["regarding"]["name"], "lots");
    assert_eq!(
        stored[0]["series"]["count"], 2,
        "the repeat became a series PATCH"
    );
    assert_eq!(double.count(Verb::Create, "events", None), 1);
    assert_eq!(double.count(Verb::Patch, "events", None), 1);
    let typed: Api<K8sEvent> = Api::namespaced(client, "fleet-local");
    assert_eq!(
        typed
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        double.list(&gvr::EVENTS, Some("fleet-local")).is_empty(),
        "core/v1 events are separate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_test_op_and_error_statuses() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    let client = client_for(&double);
    let path = "/apis/fleet.cattle.io/v1alpha1/namespaces/fleet-local/gitrepos/lots/status";
    let json_patch = |ops: Value| {
        http::Request::patch(path)
            .header("content-type", "application/json-patch+json")
            .body(serde_json::to_vec(&ops).unwrap())
            .unwrap()
    };

    let failing = json_patch(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "replace", "path": "/status/display/readyBundleDeployments", "value": "2/3"}
    ]));
    let s = api_status(client.request::<Value>(failing).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(s.is_invalid());

    let ok = json_patch(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "5019"},
        {"op": "replace", "path": "/status/display/readyBundleDeployments", "value": "2/3"}
    ]));
    let out: Value = client.request(ok).await.unwrap();
    assert_eq!(out["status"]["display"]["readyBundleDeployments"], "2/3");

    // replacing the resourceVersion with a stale one is a precondition failure
    let stale = json_patch(
        json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "5019"}]),
    );
    assert!(api_status(client.request::<Value>(stale).await.unwrap_err()).is_conflict());

    // malformed bodies, unknown paths, wrong media types, bad selectors: all Status objects
    let raw = |method: &str, uri: &str, ct: &str, body: &str| {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ct)
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let cases = [
        (
            raw("PATCH", path, "application/merge-patch+json", "{not json"),
            400,
            "BadRequest",
        ),
        (
            raw(
                "PATCH",
                path,
                "application/json-patch+json",
                r#"{"op":"add"}"#,
            ),
            400,
            "BadRequest",
        ),
        (
            raw(
                "PATCH",
                path,
                "application/strategic-merge-patch+json",
                "{}",
            ),
            415,
            "UnsupportedMediaType",
        ),
        (
            raw("PATCH", path, "application/apply-patch+yaml", "{}"),
            422,
            "Invalid",
        ),
        (
            raw("GET", "/apis/nope.io/v1/things", "application/json", ""),
            404,
            "NotFound",
        ),
        (
            raw(
                "GET",
                "/apis/fleet.cattle.io/v1alpha1/gitrepos/lots",
                "application/json",
                "",
            ),
            404,
            "NotFound",
        ),
        (
            raw(
                "GET",
                "/apis/fleet.cattle.io/v1alpha1/namespaces/fleet-local/gitrepos/lots/scale",
                "application/json",
                "",
            ),
            404,
            "NotFound",
        ),
        (
            raw(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                "[]",
            ),
            400,
            "BadRequest",
        ),
        (
            raw(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                r#"{"metadata":{}}"#,
            ),
            422,
            "Invalid",
        ),
        (
            raw(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                r#"{"kind":"Secret","metadata":{"name":"x"}}"#,
            ),
            400,
            "BadRequest",
        ),
        (
            raw("PUT", "/api/v1/configmaps", "application/json", "{}"),
            405,
            "MethodNotAllowed",
        ),
        (
            raw(
                "DELETE",
                "/api/v1/namespaces/default/configmaps/missing",
                "application/json",
                "",
            ),
            404,
            "NotFound",
        ),
    ];
    for (req, code, reason) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let s = api_status(client.request::<Value>(req).await.unwrap_err());
        assert_eq!((s.code, s.reason.as_str()), (code, reason), "{what}: {s:?}");
        assert!(!s.message.is_empty(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_honours_finalizers_dry_run_and_preconditions() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    double.seed(configmap("plain", &[])).unwrap();
    let client = client_for(&double);
    let repos: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "fleet-local", &gitrepo_ar());
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");

    let dry = cms
        .delete("plain", &DeleteParams::default().dry_run())
        .await
        .unwrap();
    assert!(dry.is_right());
    assert!(
        double.get(&gvr::CONFIGMAPS, "default", "plain").is_some(),
        "dryRun=All changes nothing"
    );

    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert!(api_status(cms.delete("plain", &wrong_uid).await.unwrap_err()).is_conflict());

    // deletecollection with a label selector
    for (n, app) in [("c1", "x"), ("c2", "x"), ("c3", "y")] {
        double.seed(configmap(n, &[("app", app)])).unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = double
        .list(&gvr::CONFIGMAPS, Some("default"))
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["c3", "plain"]);

    // built-in kinds answer a completed delete with a Status
    let gone = cms.delete("plain", &DeleteParams::default()).await.unwrap();
    let status = gone.right().expect("a Status for built-ins");
    assert_eq!(status.details.unwrap().name, "plain");
    assert!(api_status(cms.get("plain").await.unwrap_err()).is_not_found());

    // finalizers: only deletionTimestamp is set, the object stays
    let pending = repos
        .delete("lots", &DeleteParams::default())
        .await
        .unwrap();
    let obj = pending.left().expect("the terminating object");
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert_eq!(obj.finalizers(), ["fleet.cattle.io/gitrepo-finalizer"]);
    let again = repos
        .delete("lots", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.resource_version(),
        obj.resource_version(),
        "a repeated DELETE changes nothing"
    );
    let s = api_status(
        repos
            .patch(
                "lots",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["a", "fleet.cattle.io/gitrepo-finalizer"]}}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 422, "no new finalizers on a terminating object");
    // removing the last finalizer completes the deletion
    repos
        .patch(
            "lots",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    double
        .wait_for_absent(&gvr::GITREPOS, "fleet-local", "lots", WAIT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_imitate_fleet_controllers() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture("gitrepo-lots.json")).unwrap();
    double
        .seed_list(fixture("bundledeployments-lots.json"))
        .unwrap();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client_for(&double), "fleet-local", &gitrepo_ar());

    // Fleet's GitRepo status controller: every GitRepo write → recompute from the BDs
    double.on_update(&gvr::GITREPOS, |store, repo| {
        let name = repo["metadata"]["name"].as_str().unwrap_or_default();
        let bds = store.list_selected(&gvr::BUNDLEDEPLOYMENTS, None, &format!("fleet.cattle.io/repo-name={name}"));
        let ready = bds.iter().filter(|b| b["status"]["display"]["state"] == "Ready").count();
        vec![Write::merge_patch_status(
            &gvr::GITREPOS,
            "fleet-local",
            name,
            json!({"status": {"display": {"readyBundleDeployments": format!("{ready}/{}", bds.len())}}}),
        )]
    });

    // a webhook-like client writes its own count: the controller reverts it
    api.patch_status(
        "lots",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"display": {"readyBundleDeployments": "2/3"}}})),
    )
    .await
    .unwrap();
    double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "lots",
            |o| o["status"]["display"]["readyBundleDeployments"] == "3/3",
            WAIT,
        )
        .await
        .unwrap();
    double.wait_hooks_idle(WAIT).await.unwrap();
    let hook_writes =
        double.count_where(|r| matches!(&r.origin, Origin::Hook(n) if n == "hook:gitrepos"));
    assert_eq!(
        hook_writes, 2,
        "the revert, then a no-op recompute that stops the loop"
    );

    // a stale agent: 100 ms after a BD changes, it writes the BD's status back to Ready once
    let fired = Arc::new(AtomicBool::new(false));
    let f2 = fired.clone();
    double.on_update_with(
        &gvr::BUNDLEDEPLOYMENTS,
        HookOptions::named("stale-agent")
            .delay(Duration::from_millis(100))
            .events(&[EventType::Modified]),
        move |_store, bd| {
            if f2.swap(true, Ordering::SeqCst) {
                return vec![];
            }
            vec![Write::merge_patch_status(
                &gvr::BUNDLEDEPLOYMENTS,
                bd["metadata"]["namespace"].as_str().unwrap_or_default(),
                bd["metadata"]["name"].as_str().unwrap_or_default(),
                json!({"status": {"display": {"state": "Ready"}}}),
            )]
        },
    );
    // the agent's real update says Modified; the GitRepo recompute follows a GitRepo touch
    let ns = "cluster-fleet-local-local-1a3d67d0a899";
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            ns,
            "lots-config2",
            json!({"status": {"display": {"state": "Modified"}}}),
        )
        .unwrap();
    api.patch(
        "lots",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
    )
    .await
    .unwrap();
    double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "lots",
            |o| o["status"]["display"]["readyBundleDeployments"] == "2/3",
            WAIT,
        )
        .await
        .unwrap();
    double
        .wait_for(
            &gvr::BUNDLEDEPLOYMENTS,
            ns,
            "lots-config2",
            |o| o["status"]["display"]["state"] == "Ready",
            WAIT,
        )
        .await
        .unwrap();
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(
        double.count_where(|r| r.origin == Origin::Hook("stale-agent".into())),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_bounded_and_report_the_last_state() {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(configmap("a", &[])).unwrap();
    let d2 = double.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        d2.merge_patch_object(
            &gvr::CONFIGMAPS,
            "default",
            "a",
            json!({"data": {"k": "later"}}),
        )
        .unwrap();
    });
    let got = double
        .wait_for(
            &gvr::CONFIGMAPS,
            "default",
            "a",
            |o| o["data"]["k"] == "later",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(got["data"]["k"], "later");
    let err = double
        .wait_for(
            &gvr::CONFIGMAPS,
            "default",
            "a",
            |o| o["data"]["k"] == "never",
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert_eq!(err.last.unwrap()["data"]["k"], "later");
    assert!(double
        .wait_for_count(Verb::Get, "configmaps", None, 1, Duration::from_millis(20))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_stop_and_restart() {
    let double = ApiDouble::start(Options::default()).await;
    double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fleet-local"}}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    double.write_kubeconfig(&path).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", double.url()));
    let client = Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert_eq!(
        namespaces.get("fleet-local").await.unwrap().name_any(),
        "fleet-local"
    );
    assert_eq!(
        double
            .last_request(Verb::Get, "namespaces", None)
            .unwrap()
            .path,
        "/api/v1/namespaces/fleet-local"
    );
    assert!(client.apiserver_version().await.is_ok());

    // an open watch ends cleanly when the server stops
    let rv = double.resource_version().to_string();
    let mut open = namespaces
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    double.wait_for_open_watches(1, WAIT).await.unwrap();
    double.stop().await;
    assert!(tokio::time::timeout(WAIT, open.try_next())
        .await
        .unwrap()
        .unwrap()
        .is_none());
    assert!(
        tokio::net::TcpStream::connect(double.addr()).await.is_err(),
        "down: connections are refused"
    );
    assert!(namespaces.get("fleet-local").await.is_err());
    double.restart().await.unwrap();
    assert_eq!(
        namespaces.get("fleet-local").await.unwrap().name_any(),
        "fleet-local",
        "objects survive a restart"
    );
    // ...the watch history does not
    let mut old = namespaces
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, old.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(s) => assert_eq!(s.code, 410),
        other => panic!("expected 410 Expired, got {other:?}"),
    }
    double.shutdown().await;
}

/// kube-apiserver authorizes a list or watch with a `metadata.name` field selector as
/// a request for that object: `resourceNames` apply (RequestInfoFactory).
#[tokio::test]
async fn a_name_selected_list_and_watch_are_authorized_by_resource_names() {
    let double = ApiDouble::start(Options::default()).await;
    for obj in [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "one-config"},
               "rules": [{"apiGroups": ["admissionregistration.k8s.io"],
                          "resources": ["validatingwebhookconfigurations"],
                          "resourceNames": ["mine"], "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "one-config"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "one-config"},
               "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "mine"}, "webhooks": []}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "other"}, "webhooks": []}),
    ] {
        double.seed(obj).expect("seed");
    }
    double.add_token(
        "sa-token",
        kube_api_double::UserInfo::service_account("ns", "sa"),
    );
    double.enforce_rbac(true);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(double.url().parse().expect("url"));
    config.auth_info.token = Some("sa-token".to_string().into());
    let client = Client::try_from(config).expect("client");
    let api: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        )),
    );
    let mine = api
        .list(&ListParams::default().fields("metadata.name=mine"))
        .await
        .expect("named list allowed");
    assert_eq!(mine.items.len(), 1);
    let stream = api
        .watch(
            &WatchParams::default()
                .fields("metadata.name=mine")
                .timeout(1),
            "0",
        )
        .await
        .expect("named watch allowed");
    drop(stream);
    for denied in [
        ListParams::default(),
        ListParams::default().fields("metadata.name=other"),
        ListParams::default().fields("metadata.name=mine,metadata.namespace=x"),
    ] {
        let e = api.list(&denied).await.expect_err("not named as allowed");
        assert_eq!(api_status(e).code, 403);
    }
}

/// kube-apiserver compiles a ValidatingWebhookConfiguration's match conditions when it
/// is written: one that does not compile is 422 `Invalid`, on create and on update
/// (compared with the real apiserver in tests/real_cluster.rs).
#[tokio::test]
async fn a_webhook_configuration_whose_match_condition_does_not_compile_is_invalid() {
    let double = ApiDouble::start(Options::default()).await;
    let client = client_for(&double);
    let api: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        )),
    );
    let config = |expression: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "cel"},
            "webhooks": [{"name": "cel.example.com", "clientConfig": {"url": "https://127.0.0.1:1/x"},
                "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "matchConditions": [{"name": "c", "expression": expression}]}]
        }))
        .expect("configuration")
    };
    let broken = api
        .create(
            &PostParams::default(),
            &config("oldObject.metadata.name =="),
        )
        .await
        .expect_err("does not compile");
    let status = api_status(broken);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("matchConditions[0].expression"),
        "{}",
        status.message
    );
    let created = api
        .create(
            &PostParams::default(),
            &config("request.operation == 'DELETE'"),
        )
        .await
        .expect("compiles");
    let mut update = config("request.operation ==");
    update.metadata.resource_version = created.metadata.resource_version.clone();
    let e = api
        .replace("cel", &PostParams::default(), &update)
        .await
        .expect_err("an update is compiled too");
    assert_eq!(api_status(e).code, 422);
    // And a patch: the webhooks list is replaced whole by a merge patch.
    let patch = json!({"webhooks": [{"name": "cel.example.com",
        "clientConfig": {"url": "https://127.0.0.1:1/x"},
        "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "matchConditions": [{"name": "c", "expression": "request.name ||"}]}]});
    let e = api
        .patch("cel", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("a patch is compiled too");
    assert_eq!(api_status(e).code, 422);
    let kept = api.get("cel").await.expect("still there");
    assert_eq!(
        kept.data["webhooks"][0]["matchConditions"][0]["expression"],
        "request.operation == 'DELETE'",
        "a refused write changes nothing"
    );
    double.shutdown().await;
}
