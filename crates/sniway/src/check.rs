//! `sniway check`: what the gateway would serve and the status it would write, as a Kubernetes
//! `List` printed like `kubectl get -o yaml`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{CheckArgs, Format};

/// Prints every Gateway and TLSRoute with its status. Exits 0 whenever the input loaded,
/// whatever the conditions say; a load error is reported and exits non-zero.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let compiled = crate::manifests::compile(&args.input)?;
    let list = compiled.status_list();
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&list)? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&list)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
