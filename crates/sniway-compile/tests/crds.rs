//! The CRD manifests in `deploy/crds/` are generated from the policy types
//! (`sniway_compile::crds()`). `SNIWAY_UPDATE_GOLDEN=1 cargo test -p sniway-compile --test crds`
//! rewrites them; review the diff: it is the public policy API.

use std::path::Path;

#[test]
fn the_crd_files_in_deploy_match_the_policy_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    let update = std::env::var_os("SNIWAY_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (name, yaml) in sniway_compile::crds() {
        let path = dir.join(&name);
        let text = format!(
            "# Generated from crates/sniway-compile/src/policy.rs by tests/crds.rs; do not edit.\n{yaml}"
        );
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).unwrap_or_default() != text {
            stale.push(name);
        }
    }
    assert!(stale.is_empty(), "out of date (SNIWAY_UPDATE_GOLDEN=1 rewrites): {stale:?}");
}

#[test]
fn every_crd_is_named_group_underscore_plural() {
    let names: Vec<String> = sniway_compile::crds().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["sniway.io_backendpolicies.yaml", "sniway.io_listenerpolicies.yaml"]);
}
