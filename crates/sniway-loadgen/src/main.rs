//! `sniway-loadgen`: plain TCP backends and bounded client scenarios for comparing sniway with
//! other SNI proxies. No TLS library is involved: the client sends real, well-formed ClientHello
//! bytes built in [`hello`], the backends skip that record, and what is measured is the proxy's
//! own cost. Each client scenario prints exactly one JSON line on stdout.
//!
//! ```text
//! sniway-loadgen backends --base-port 19001             echo :19001, sink :19002, source :19003
//! sniway-loadgen rate     --target 127.0.0.1:18444 --proxy-pid PID [--hello post-quantum]
//! sniway-loadgen latency  --target ...                   concurrency 1
//! sniway-loadgen bulk     --target ... --streams 8 --direction down
//! sniway-loadgen pingpong --target ...
//! sniway-loadgen idle     --target ... --connections 9900
//! ```

mod backends;
mod handshake;
mod hello;
mod procstat;
mod scenario;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use scenario::{Common, Direction};

#[derive(Debug, Parser)]
#[command(
    name = "sniway-loadgen",
    about = "Load generator for SNI proxies: backends and scenarios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Echo, sink and source backends on three consecutive ports, until SIGTERM or --max-seconds.
    Backends {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        listen: IpAddr,
        /// Echo port; sink is the next, source the one after.
        #[arg(long, default_value_t = 19001)]
        base_port: u16,
        /// Stop by itself after this long.
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
    },
    /// New connections at concurrency 50: hello, connect, 64 B echo, close.
    Rate {
        #[command(flatten)]
        common: Common,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Most connections.
        #[arg(long, default_value_t = 50_000)]
        connections: u64,
    },
    /// New connections one at a time (unloaded connect latency).
    Latency {
        #[command(flatten)]
        common: Common,
        /// Most connections.
        #[arg(long, default_value_t = 5_000)]
        connections: u64,
    },
    /// Bulk streams through the sink (up) or from the source (down).
    Bulk {
        #[command(flatten)]
        common: Common,
        /// Parallel streams.
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Which way the data flows.
        #[arg(long, value_enum, default_value = "up")]
        direction: Direction,
        /// Most bytes in all.
        #[arg(long, default_value_t = 64 << 30)]
        max_bytes: u64,
    },
    /// Round trips of a small message on one established connection.
    Pingpong {
        #[command(flatten)]
        common: Common,
        /// Most round trips.
        #[arg(long, default_value_t = 50_000)]
        round_trips: u64,
        /// Message size.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Full TLS handshakes through a gateway that terminates TLS (rustls client, resumption off).
    Handshakes {
        #[command(flatten)]
        common: Common,
        /// PEM file of the certificate (or its CA) the gateway serves.
        #[arg(long)]
        ca: std::path::PathBuf,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Most connections.
        #[arg(long, default_value_t = 20_000)]
        connections: u64,
    },
    /// Holds many idle relayed connections and reads the proxy's memory growth.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Connections to hold (the proxy needs two descriptors each).
        #[arg(long, default_value_t = 9_900)]
        connections: usize,
        /// Wait after the last one opened before reading memory.
        #[arg(long, default_value_t = 1.0)]
        settle_seconds: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    procstat::raise_nofile();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sniway-loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = rt.block_on(async {
        match cli.command {
            Command::Backends { listen, base_port, max_seconds } => {
                match backends::serve(listen, base_port, Duration::from_secs(max_seconds)).await {
                    Ok(()) => None,
                    Err(e) => {
                        eprintln!("sniway-loadgen backends: {e}");
                        Some(Err(()))
                    }
                }
            }
            Command::Rate { common, concurrency, connections } => {
                Some(Ok(scenario::connections(common, concurrency, connections).await))
            }
            Command::Latency { common, connections } => {
                Some(Ok(scenario::connections(common, 1, connections).await))
            }
            Command::Bulk { common, streams, direction, max_bytes } => {
                Some(Ok(scenario::bulk(common, streams.max(1), direction, max_bytes).await))
            }
            Command::Pingpong { common, round_trips, size } => {
                Some(Ok(scenario::pingpong(common, round_trips, size.max(1)).await))
            }
            Command::Handshakes { common, ca, concurrency, connections } => {
                match std::fs::read(&ca) {
                    Ok(pem) => Some(Ok(handshake::handshakes(
                        common,
                        pem,
                        concurrency.max(1),
                        connections,
                    )
                    .await)),
                    Err(e) => {
                        eprintln!("sniway-loadgen: {}: {e}", ca.display());
                        Some(Err(()))
                    }
                }
            }
            Command::Idle { common, connections, settle_seconds } => {
                let settle = Duration::from_secs_f64(settle_seconds.max(0.0));
                Some(Ok(scenario::idle(common, connections, settle).await))
            }
        }
    });
    match out {
        None => ExitCode::SUCCESS,
        Some(Ok(v)) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Some(Err(())) => ExitCode::FAILURE,
    }
}
