//! Reading manifests from files, directories and standard input, the way `kubectl apply -f`
//! does: a directory is walked recursively for `*.yaml`, `*.yml` and `*.json`, in name order.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sniway_compile::{CompileOptions, Compiled, LoadOptions, Source};

use crate::cli::Input;

/// Reads, loads and compiles the manifests named on the command line. Load warnings (unknown
/// fields, ignored kinds) and compile warnings are logged; an input the API server would reject
/// is an error naming the file, object and field.
pub fn compile(input: &Input) -> Result<Compiled> {
    compile_sources(input, read_all(&input.files)?)
}

/// As [`compile`], but a directory without manifests is an empty input rather than an error:
/// `sniway run` may start on an empty directory and wait for files to appear.
pub fn compile_allow_empty(input: &Input) -> Result<Compiled> {
    compile_sources(input, read_all_with(&input.files, true)?)
}

fn compile_sources(input: &Input, sources: Vec<Source>) -> Result<Compiled> {
    let loaded = sniway_compile::load(
        &sources,
        &LoadOptions { default_namespace: input.namespace.clone(), ..LoadOptions::default() },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("the manifests were not loaded")?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let compiled = sniway_compile::compile(
        &loaded.resources,
        &CompileOptions {
            default_bind: input.bind_address,
            mode: sniway_compile::Mode::File { gateway_class: input.gateway_class.clone() },
            now: rfc3339_now(),
            ..CompileOptions::default()
        },
    );
    for w in &compiled.warnings {
        tracing::warn!("{w}");
    }
    Ok(compiled)
}

/// The current time as RFC 3339 UTC (`2026-11-21T10:00:00Z`), for `lastTransitionTime`.
pub fn rfc3339_now() -> String {
    sniway_proxy::access_log::rfc3339(std::time::SystemTime::now(), false)
}

/// Reads every `-f` argument into sources; `-` is standard input. A directory without
/// manifests is an error.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Source>> {
    read_all_with(paths, false)
}

fn read_all_with(paths: &[PathBuf], allow_empty: bool) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading manifests from stdin")?;
            out.push(Source { name: "<stdin>".into(), text });
            continue;
        }
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot read manifests", path.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files)?;
            if files.is_empty() && !allow_empty {
                bail!("{}: no *.yaml, *.yml or *.json files in this directory", path.display());
            }
            for f in files {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(path)?);
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Source> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read manifest file", path.display()))?;
    Ok(Source { name: path.display().to_string(), text })
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list directory", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        // A Kubernetes ConfigMap or Secret volume shows its files through `..data` and keeps them
        // in a hidden `..<timestamp>` directory: walking those too would load everything twice.
        if entry.file_name().to_string_lossy().starts_with("..") {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, files)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_walked_recursively_in_name_order_for_manifest_files() {
        let dir = std::env::temp_dir().join(format!("sniway-manifests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b.yaml"), "b").unwrap();
        std::fs::write(dir.join("a.yml"), "a").unwrap();
        std::fs::write(dir.join("sub/c.json"), "c").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let got = read_all(std::slice::from_ref(&dir)).unwrap();
        let texts: Vec<&str> = got.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rfc3339_formats_utc_dates() {
        let at = |secs| {
            sniway_proxy::access_log::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
                false,
            )
        };
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_255_445), "2026-11-21T10:04:05Z");
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let err = read_all(&[PathBuf::from("/nonexistent/sniway.yaml")]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/sniway.yaml"), "{err:#}");
    }
}
