//! `sniway demo`: built-in backends on loopback (two TLS servers and one plain TCP server), a
//! gateway in front of them serving the manifests in `examples/demo/demo.yaml` (a passthrough
//! and a terminate listener on one port), a check of each route, then commands to try.

pub mod backend;
pub mod client;
pub mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sniway_compile::{CompileOptions, LoadOptions, Source};
use sniway_proxy::{Proxy, ProxyConfig};

use crate::cli::DemoArgs;

/// The demo's manifests, shipped in `examples/demo/demo.yaml`.
pub const DEMO_MANIFESTS: &str = include_str!("../../../../examples/demo/demo.yaml");

/// The demo CA and backend certificates, shipped in `examples/demo/certs/` (example keys).
mod certs {
    pub const CA: &str = include_str!("../../../../examples/demo/certs/ca.crt");
    pub const FOO: (&str, &str) = (
        include_str!("../../../../examples/demo/certs/foo.crt"),
        include_str!("../../../../examples/demo/certs/foo.key"),
    );
    pub const BAR: (&str, &str) = (
        include_str!("../../../../examples/demo/certs/bar.crt"),
        include_str!("../../../../examples/demo/certs/bar.key"),
    );
}

const GATEWAY: &str = "127.0.0.1:8443";
const FOO: &str = "127.0.0.1:9441";
const BAR: &str = "127.0.0.1:9442";
const PLAIN: &str = "127.0.0.1:9480";

/// Runs the demo.
pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(demo_async(args))
}

async fn demo_async(args: DemoArgs) -> Result<ExitCode> {
    let foo_leaf = pki::Leaf::from_pem(certs::FOO.0, certs::FOO.1)?;
    let bar_leaf = pki::Leaf::from_pem(certs::BAR.0, certs::BAR.1)?;
    let _foo = backend::start("foo", FOO.parse()?, &foo_leaf, backend::Reply::Demo).await?;
    let _bar = backend::start("bar", BAR.parse()?, &bar_leaf, backend::Reply::Demo).await?;
    let _plain = backend::start_plain("plain", PLAIN.parse()?, backend::Reply::Demo).await?;

    let sources = [Source { name: "examples/demo/demo.yaml".into(), text: DEMO_MANIFESTS.into() }];
    let loaded = sniway_compile::load(
        &sources,
        &LoadOptions { default_namespace: "default".into(), ..LoadOptions::default() },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = sniway_compile::compile(
        &loaded.resources,
        &CompileOptions {
            default_bind: "127.0.0.1".parse()?,
            now: crate::manifests::rfc3339_now(),
            ..Default::default()
        },
    );
    crate::run::report_conditions(&compiled.status_list());
    let proxy = Proxy::new(ProxyConfig::default(), None);
    for socket in proxy.install(Arc::new(compiled.table)) {
        if let Err(e) = socket.bound {
            anyhow::bail!("starting the gateway: {e} (is something else on {GATEWAY}?)");
        }
    }
    let gateway: SocketAddr = GATEWAY.parse()?;

    let dir = std::env::temp_dir().join("sniway-demo");
    std::fs::create_dir_all(&dir)?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, certs::CA)?;

    println!("sniway demo");
    println!("  backends: foo on {FOO} and bar on {BAR} (TLS), plain on {PLAIN} (plain TCP)");
    println!("  gateway:  {GATEWAY}, routes from examples/demo/demo.yaml:");
    println!("            passthrough for foo, bar and *.shop (the backend's own certificate),");
    println!("            terminate for secure.example.com (the gateway's certificate)");
    println!();

    let ca = {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(certs::CA.as_bytes())
            .map_err(|e| anyhow::anyhow!("demo CA: {e}"))?
    };
    let config = client::client_config(ca)?;
    let mut ok = true;
    let checks = [
        ("foo.example.com", Some("foo")),
        ("bar.example.com", Some("bar")),
        ("www.shop.example.com", None),
        ("cart.shop.example.com", None),
        ("api.shop.example.com", None),
        ("secure.example.com", Some("plain")),
        ("unknown.example.com", None),
    ];
    println!("Routing, seen by a TLS client that verifies the certificate it is shown:");
    for (sni, expect) in checks {
        match client::https_get(gateway, sni, config.clone(), Duration::from_secs(5)).await {
            Ok(answer) => {
                let cn = answer.certificate_cn.unwrap_or_default();
                println!("  {sni:<24} -> {:<32} certificate CN={cn}", answer.body);
                if let Some(want) = expect {
                    ok &= answer.body.starts_with(want);
                }
                ok &= sni != "unknown.example.com";
            }
            Err(e) if sni == "unknown.example.com" => {
                println!("  {sni:<24} -> closed by the gateway, no route ({e:#})");
            }
            Err(e) => {
                ok = false;
                println!("  {sni:<24} -> FAILED: {e:#}");
            }
        }
    }
    println!();
    println!("Try it yourself (the gateway keeps serving until Ctrl-C):");
    let ca = shell_word(&ca_path.to_string_lossy());
    println!("  curl --cacert {ca} https://foo.example.com:8443/ \\");
    println!("       --connect-to foo.example.com:8443:127.0.0.1:8443");
    println!("  curl --cacert {ca} https://secure.example.com:8443/ \\");
    println!("       --connect-to secure.example.com:8443:127.0.0.1:8443");
    println!(
        "  openssl s_client -connect {GATEWAY} -servername foo.example.com -CAfile {ca}   # then type a line"
    );
    println!(
        "  openssl s_client -connect {GATEWAY} -servername nothing.example.com   # closed, no route"
    );
    let manifests = manifests_path(&dir)?;
    let check = match std::env::current_exe() {
        Ok(exe) => runnable(&exe, std::env::current_dir().ok().as_deref()),
        Err(_) => "sniway".into(),
    };
    println!(
        "  {check} check -f {}   # the status the gateway computed",
        shell_word(&manifests.to_string_lossy())
    );

    if !args.once {
        crate::run::shutdown_signal().await;
    }
    proxy.shutdown(Duration::from_secs(5)).await;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The demo manifests for `sniway check -f`: the repository's copy when run from the checkout's
/// root, otherwise the built-in copy written next to the CA certificate, so the printed command
/// works from wherever the demo was started.
fn manifests_path(dir: &Path) -> Result<PathBuf> {
    let shipped = Path::new("examples/demo/demo.yaml");
    if std::fs::read_to_string(shipped).is_ok_and(|text| text == DEMO_MANIFESTS) {
        return Ok(shipped.to_path_buf());
    }
    let written = dir.join("demo.yaml");
    std::fs::write(&written, DEMO_MANIFESTS)
        .with_context(|| format!("writing {}", written.display()))?;
    Ok(written)
}

/// How to run `exe` from `cwd` in a shell: `./target/release/sniway` when it is below the
/// current directory, its absolute path otherwise. A newcomer who ran `cargo run` has no
/// `sniway` on their PATH, so a bare `sniway` would not be found.
pub fn runnable(exe: &Path, cwd: Option<&Path>) -> String {
    let shown = match cwd.and_then(|c| exe.strip_prefix(c).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => Path::new(".").join(rel),
        _ => exe.to_path_buf(),
    };
    shell_word(&shown.to_string_lossy())
}

/// `s` as one shell word: unchanged when it has no special characters, single-quoted otherwise.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_below_the_current_directory_is_shown_relative_to_it() {
        let exe = Path::new("/home/me/sniway/target/release/sniway");
        assert_eq!(runnable(exe, Some(Path::new("/home/me/sniway"))), "./target/release/sniway");
        assert_eq!(runnable(exe, Some(Path::new("/home/me/sniway/target"))), "./release/sniway");
    }

    #[test]
    fn a_binary_elsewhere_is_shown_by_its_absolute_path() {
        let exe = Path::new("/home/me/sniway/target/release/sniway");
        assert_eq!(runnable(exe, Some(Path::new("/tmp"))), "/home/me/sniway/target/release/sniway");
        assert_eq!(runnable(exe, Some(Path::new("/home/me/sniwayx"))), exe.to_str().unwrap());
        assert_eq!(runnable(exe, None), exe.to_str().unwrap());
    }

    #[test]
    fn paths_with_spaces_or_quotes_stay_one_shell_word() {
        let exe = Path::new("/home/me/my projects/it's/sniway");
        assert_eq!(runnable(exe, Some(Path::new("/"))), r"'./home/me/my projects/it'\''s/sniway'");
    }
}
