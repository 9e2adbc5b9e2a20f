//! GatewayClasses: which are sniway's, which Gateways are served (see [`Mode`]), and the
//! class status (`Accepted`, `supportedFeatures`).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::GatewaySpec;
use crate::compile::{CompileOptions, Mode};
use crate::resources::{Object, Resources};
use crate::status::conditions::{CONTROLLER_NAME, Cond, reasons, types};
use crate::status::{GatewayClassStatus, ObjectStatus, SupportedFeature};

/// The Gateway API features sniway claims, exactly as `pkg/features` of Gateway API v1.6.1
/// names them, sorted. Published in every sniway GatewayClass's `status.supportedFeatures`,
/// from which the conformance suite infers what to test.
///
/// `GatewayStaticAddresses` and `GatewayAddressEmpty` need the caller's part too: a controller
/// passes [`crate::CompileOptions::usable_addresses`] and reports assigned addresses with
/// [`crate::Compiled::set_gateway_addresses`]. `GatewayInfrastructurePropagation` is not
/// claimed: propagating labels to created resources is a controller's work.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayStaticAddresses",
    "ListenerSet",
    "ReferenceGrant",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
];

/// Whether a class is sniway's.
pub(crate) fn is_ours(class: &Object<crate::api::GatewayClassSpec>) -> bool {
    class.spec.controller_name == CONTROLLER_NAME
}

/// The Gateways compile does not serve, keyed `(namespace, name)`, each with the reason; warns
/// once per class that the input does not define (file mode) and once per Gateway of another
/// controller's class.
pub(crate) fn select(
    res: &Resources,
    gateways: &[&Object<GatewaySpec>],
    mode: &Mode,
    warnings: &mut Vec<String>,
) -> BTreeMap<(String, String), String> {
    let classes: BTreeMap<&str, &Object<crate::api::GatewayClassSpec>> =
        res.gateway_classes.iter().map(|c| (c.meta.name.as_str(), c)).collect();
    let mut missing_warned = BTreeSet::new();
    let mut out = BTreeMap::new();
    for g in gateways {
        let class_name = g.spec.gateway_class_name.as_str();
        let class = classes.get(class_name);
        let here = format!("{}: Gateway {}", g.source, g.meta.key());
        let why = match (mode, class) {
            (_, Some(c)) if !is_ours(c) => {
                let why = format!(
                    "its GatewayClass {class_name} belongs to controller {}",
                    c.spec.controller_name
                );
                warnings.push(format!("{here}: not served: {why}"));
                Some(why)
            }
            (Mode::Cluster { .. }, None) => {
                Some(format!("GatewayClass {class_name} does not exist"))
            }
            (Mode::File { .. }, None) => {
                if missing_warned.insert(class_name) {
                    warnings.push(format!(
                        "GatewayClass {class_name} is not in the input: its Gateways are served \
                         as if it named controller {CONTROLLER_NAME}"
                    ));
                }
                None
            }
            _ => None,
        };
        let why = why.or_else(|| match mode {
            Mode::File { gateway_class: Some(c) } if c != class_name => {
                Some(format!("class {class_name:?}, not the served class {c:?}"))
            }
            Mode::Cluster { gateway: Some((ns, name)) }
                if (ns.as_str(), name.as_str())
                    != (g.meta.namespace.as_str(), g.meta.name.as_str()) =>
            {
                Some(format!("this data plane serves Gateway {ns}/{name} only"))
            }
            _ => None,
        });
        if let Some(why) = why {
            out.insert((g.meta.namespace.clone(), g.meta.name.clone()), why);
        }
    }
    out
}

/// Status of every GatewayClass, sorted by name: sniway's are `Accepted=True` with the
/// supported features; others get no status.
pub(crate) fn statuses(
    res: &Resources,
    opts: &CompileOptions,
) -> Vec<ObjectStatus<GatewayClassStatus>> {
    let mut classes: Vec<&Object<crate::api::GatewayClassSpec>> =
        res.gateway_classes.iter().collect();
    classes.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    classes
        .into_iter()
        .map(|c| ObjectStatus {
            key: c.meta.name.clone(),
            object: c.raw.clone(),
            status: is_ours(c).then(|| GatewayClassStatus {
                // GatewayClassObservedGenerationBump: every condition carries the class's
                // current generation.
                conditions: vec![
                    Cond::yes(
                        types::ACCEPTED,
                        reasons::ACCEPTED,
                        format!("GatewayClass {} is managed by {CONTROLLER_NAME}", c.meta.name),
                    )
                    .stamp(c.meta.generation, &opts.now),
                ],
                supported_features: SUPPORTED_FEATURES
                    .iter()
                    .map(|f| SupportedFeature { name: (*f).to_string() })
                    .collect(),
            }),
        })
        .collect()
}
