//! Command-line interface.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sniway: a TLS gateway for the Kubernetes Gateway API. It routes TLS connections by SNI to
/// backends as `Gateway` and `TLSRoute` manifests say, without decrypting them.
#[derive(Debug, Parser)]
#[command(name = "sniway", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `run` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Gateways in the given manifests.
    Run(RunArgs),
    /// Load and compile manifests, then print every Gateway, TLSRoute and ListenerPolicy with its
    /// status.
    Check(CheckArgs),
    /// Start built-in TLS backends and a gateway in front of them, and show the routing.
    Demo(DemoArgs),
    /// In Kubernetes: watch the Gateway API, write status, and provision a data plane per
    /// Gateway of a sniway GatewayClass (or serve them all from this process with `--serve`).
    Controller(ControllerArgs),
    /// In Kubernetes: serve one Gateway's listeners (what `controller` provisions per Gateway).
    Dataplane(DataplaneArgs),
}

/// Where manifests come from, shared by `run` and `check`.
#[derive(Clone, Debug, Args)]
pub struct Input {
    /// Manifest file or directory (recursive: *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Namespace for objects that name none, like `kubectl apply -n`.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Serve only Gateways of this GatewayClass (default: every Gateway whose class in the
    /// input names sniway's controller, or whose class is not in the input).
    #[arg(long, value_name = "NAME")]
    pub gateway_class: Option<String>,
    /// Address for listeners of Gateways without `spec.addresses`.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: IpAddr,
}

/// `sniway run`. Timeouts and limits marked "per listener" are defaults that a `ListenerPolicy`
/// overrides for the listeners it targets.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Do not reload when the manifest files change (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch: bool,
}

/// How a data plane serves, shared by `run`, `dataplane` and `controller --serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Longest wait for a complete ClientHello, from accept (per listener).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub hello_timeout: Duration,
    /// Longest wait for a Terminate listener's TLS handshake, after the ClientHello (per
    /// listener).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub handshake_timeout: Duration,
    /// Longest wait for one connect attempt to a backend endpoint (a BackendPolicy's
    /// `connectTimeout` overrides it); a connection tries up to 3 endpoints (`failover.attempts`)
    /// within 3 times this.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,
    /// The DNS server (IP, or IP:PORT, port 53 by default) that resolves backends named by host
    /// (ExternalName Services); default: the system's resolvers (/etc/resolv.conf). Answers are
    /// kept for their TTL.
    #[arg(long, value_parser = parse_dns_server, value_name = "ADDR")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// A connection with no byte either way for this long is closed with a reset (per listener;
    /// 0s: never).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Once one side has finished sending, a connection whose other side stays silent this long
    /// is closed with a reset (per listener; 0s: never).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub half_close_timeout: Duration,
    /// Longest life of a connection, from accept (per listener; 0s: unlimited).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_lifetime: Duration,
    /// TCP keep-alive on client and backend sockets: idle time before the first probe (per
    /// listener; 0s turns keep-alive off).
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive_idle: Duration,
    /// TCP keep-alive: time between probes (per listener).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive_interval: Duration,
    /// TCP keep-alive: unanswered probes before the connection is dropped (per listener).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keepalive_count: u32,
    /// On SIGTERM/SIGINT, how long live connections may finish before they are cut with a reset.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,
    /// Most connections open at once in the whole process; beyond it a new connection is
    /// closed at once and counted.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_connections: usize,
    /// Most connections open at once on one listener (per listener; 0: unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_listener_connections: u32,
    /// Most connections open at once to one backend (0: unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_backend_connections: u32,
    /// Most connections open at once on one listener from one client address (per listener;
    /// 0: unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_client_connections: u32,
    /// Admin endpoint (/metrics, /healthz, /readyz, /routes, /status): an address and port, or
    /// `off`.
    #[arg(long, default_value = "127.0.0.1:9901", value_parser = parse_admin, value_name = "ADDR")]
    pub admin_address: Admin,
    /// Write an access log line per connection, as `text` or `json` (default: no access log).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub access_log: Option<AccessLogFormat>,
    /// The access log's file (appended to); default: standard output.
    #[arg(long, value_name = "FILE", requires = "access_log")]
    pub access_log_path: Option<PathBuf>,
    /// Data-plane threads (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
}

/// Where the Kubernetes API server is, found as kubectl finds it.
#[derive(Clone, Debug, Args)]
pub struct KubeArgs {
    /// kubeconfig file. Default: `$KUBECONFIG` (a list of files, merged), then
    /// `~/.kube/config`, then the pod's service account (in a cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// `sniway controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Serve every Gateway of the class from this process (binding their listeners on
    /// `--bind-address`) instead of provisioning a data plane per Gateway.
    #[arg(long)]
    pub serve: bool,
    /// With `--serve`: the address listeners of Gateways without `spec.addresses` bind.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: IpAddr,
    /// Namespace of the leader-election Lease (default: the pod's namespace; outside a pod,
    /// sniway-system when it exists, else default).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "sniway-controller", value_name = "NAME")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: `$POD_NAME`, else `$HOSTNAME`, else
    /// `sniway-` and the process id).
    #[arg(long, env = "POD_NAME", value_name = "ID")]
    pub identity: Option<String>,
    /// Image of the provisioned data planes.
    #[arg(
        long,
        env = "SNIWAY_DATAPLANE_IMAGE",
        default_value = "ghcr.io/sniway/sniway:latest",
        value_name = "IMAGE"
    )]
    pub dataplane_image: String,
    /// Type of the Service provisioned per Gateway: LoadBalancer, NodePort or ClusterIP.
    #[arg(long, default_value = "LoadBalancer", value_name = "TYPE")]
    pub service_type: sniway_k8s::provision::ServiceType,
    /// Replicas of each provisioned data plane (0: leave them to a HorizontalPodAutoscaler).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub dataplane_replicas: u32,
    /// An extra flag for every provisioned `sniway dataplane` (repeatable), e.g.
    /// `--dataplane-arg=--idle-timeout=10m`.
    #[arg(long = "dataplane-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub dataplane_args: Vec<String>,
    #[command(flatten)]
    pub run: ServeArgs,
}

/// `sniway dataplane`.
#[derive(Debug, Args)]
pub struct DataplaneArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The Gateway to serve, as NAMESPACE/NAME.
    #[arg(long, value_parser = parse_gateway_ref, value_name = "NAMESPACE/NAME")]
    pub gateway: (String, String),
    /// The address listeners bind when the Gateway has no `spec.addresses`.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub run: ServeArgs,
}

/// Parses `NAMESPACE/NAME`.
pub fn parse_gateway_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("`{s}` is not NAMESPACE/NAME")),
    }
}

/// The admin endpoint's address, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admin(pub Option<std::net::SocketAddr>);

/// Parses `off` or an address and port.
pub fn parse_admin(s: &str) -> Result<Admin, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Admin(None));
    }
    s.parse().map(|a| Admin(Some(a))).map_err(|_| {
        format!("`{s}` is neither an address and port (127.0.0.1:9901, [::1]:9901) nor `off`")
    })
}

/// Access log formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccessLogFormat {
    /// `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output formats of `check`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// YAML, as `kubectl get -o yaml`.
    Yaml,
    /// JSON, as `kubectl get -o json`.
    Json,
    /// Tables of Gateways, TLSRoutes and ListenerPolicies with their conditions and resolved
    /// backends, as `kubectl get -o wide`.
    Wide,
}

/// `sniway check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: Input,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Format,
    /// Do not try to bind the listeners' sockets (by default a socket that cannot be bound here,
    /// e.g. a port another process holds, shows as PortUnavailable). For checking manifests on
    /// another machine than the one that serves them.
    #[arg(long)]
    pub no_bind_check: bool,
}

/// `sniway demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Show the routing, then exit instead of serving until interrupted.
    #[arg(long)]
    pub once: bool,
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 =
        num.parse().map_err(|_| format!("`{s}` is not a duration such as 10s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Entry point: parses arguments, runs the command, maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => crate::run::run(args),
        Command::Check(args) => crate::check::check(args),
        Command::Demo(args) => crate::demo::demo(args),
        Command::Controller(args) => crate::kubernetes::controller(args),
        Command::Dataplane(args) => crate::kubernetes::dataplane(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SNIWAY_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// `--dns-server`: an IP address with an optional port (53 by default).
fn parse_dns_server(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return Ok(addr);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not an IP address or IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_server_is_an_ip_with_port_53_unless_given() {
        assert_eq!(parse_dns_server("10.0.0.10").unwrap(), "10.0.0.10:53".parse().unwrap());
        assert_eq!(parse_dns_server("127.0.0.1:5353").unwrap(), "127.0.0.1:5353".parse().unwrap());
        assert_eq!(parse_dns_server("[::1]:53").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(parse_dns_server("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_dns_server("dns.example").is_err());
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
