//! End-to-end tests: the real `sniway` binary on loopback, real TLS clients (rustls,
//! `openssl s_client`, `curl`) and real TLS servers (rustls).

mod backends;
mod bulk;
mod cli;
mod clients;
mod kubernetes;
mod operations;
mod rejects;
mod reload;
mod routing;
mod support;
mod terminate;
