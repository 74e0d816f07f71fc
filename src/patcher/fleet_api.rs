//! Typed reads and status writes of Fleet objects.
//!
//! Fleet's objects are read into the crate's own serde types ([`crate::fleet::status`]),
//! which keep every field they do not model and follow Go's zero-value rules, so a
//! read → edit → merge-patch never drops or invents a field. Those types are not
//! `kube::Resource`s (that would force `k8s-openapi`'s `ObjectMeta` on the pure core),
//! so requests are built with kube's own [`kube::core::Request`] for the resource's URL
//! — the same builder `kube::Api` uses — and sent through the [`Client`], which parses
//! the answer straight into the typed object.

use std::{fmt::Debug, marker::PhantomData};

use kube::{
    api::{ListParams, Patch, PatchParams},
    core::{ObjectList, Request},
    Client,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::fleet::{
    api::FleetResource,
    labels::{FLEET_GROUP, FLEET_VERSION},
    status::{BundleDeployment, BundleDeploymentStatus, OwnerObject, OwnerStatus},
};

/// A Fleet object whose status the webhook writes.
pub trait StatusObject: DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    type Status: Serialize + Clone + PartialEq + Debug + Send + Sync;
    fn resource_version(&self) -> Option<&str>;
    fn current_status(&self) -> Option<&Self::Status>;
}

impl StatusObject for BundleDeployment {
    type Status = BundleDeploymentStatus;
    fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version()
    }
    fn current_status(&self) -> Option<&BundleDeploymentStatus> {
        self.status.as_ref()
    }
}

impl StatusObject for OwnerObject {
    type Status = OwnerStatus;
    fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version()
    }
    fn current_status(&self) -> Option<&OwnerStatus> {
        self.status.as_ref()
    }
}

/// One Fleet resource type in one namespace, read and written as `K`.
pub struct FleetApi<K> {
    client: Client,
    request: Request,
    resource: FleetResource,
    _object: PhantomData<fn() -> K>,
}

impl<K> Clone for FleetApi<K> {
    fn clone(&self) -> Self {
        FleetApi {
            client: self.client.clone(),
            request: Request::new(self.request.url_path.clone()),
            resource: self.resource,
            _object: PhantomData,
        }
    }
}

impl<K: StatusObject> FleetApi<K> {
    pub fn namespaced(client: Client, resource: FleetResource, namespace: &str) -> Self {
        FleetApi {
            client,
            request: Request::new(format!(
                "/apis/{FLEET_GROUP}/{FLEET_VERSION}/namespaces/{namespace}/{}",
                resource.plural
            )),
            resource,
            _object: PhantomData,
        }
    }

    /// The resource type (kind and plural).
    pub fn resource(&self) -> FleetResource {
        self.resource
    }

    /// GET `name` through the status subresource.
    pub async fn get_status(&self, name: &str) -> Result<K, kube::Error> {
        let req = self
            .request
            .get_subresource("status", name)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<K>(req).await
    }

    /// JSON merge patch of the status subresource.
    pub async fn patch_status(&self, name: &str, body: &Value) -> Result<K, kube::Error> {
        let req = self
            .request
            .patch_subresource("status", name, &PatchParams::default(), &Patch::Merge(body))
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<K>(req).await
    }

    /// One page of a LIST.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>, kube::Error> {
        let req = self
            .request
            .list(params)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<ObjectList<K>>(req).await
    }
}
