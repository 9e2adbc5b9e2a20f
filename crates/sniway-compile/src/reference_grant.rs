//! ReferenceGrant: may an object in one namespace refer to an object in another?
//!
//! Gateway API v1.6.1, `ReferenceGrant` godoc: a grant lives in the *target* namespace; `from`
//! entries and `to` entries are each ORed; a `to` entry without `name` covers every object of
//! that kind. Route-to-Gateway attachment across namespaces is governed by `allowedRoutes`, not
//! by grants.

use crate::api::ReferenceGrantSpec;
use crate::resources::Object;

/// Who refers: `(group, kind, namespace)` of the referring object.
pub(crate) struct From<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// What is referred to: `(group, kind, namespace, name)` of the target.
pub(crate) struct To<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Whether a grant in `to.namespace` permits the reference. Same-namespace references need no
/// grant.
pub(crate) fn permits(grants: &[Object<ReferenceGrantSpec>], from: &From<'_>, to: &To<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    grants.iter().filter(|g| g.meta.namespace == to.namespace).any(|g| {
        g.spec
            .from
            .iter()
            .any(|f| f.group == from.group && f.kind == from.kind && f.namespace == from.namespace)
            && g.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|n| n == to.name)
            })
    })
}
