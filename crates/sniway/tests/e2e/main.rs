//! End-to-end tests: the real `sniway` binary on loopback, real TLS clients (rustls,
//! `openssl s_client`, `curl`, `psql`, `redis-cli`) and real servers (rustls, PostgreSQL, Redis).

mod backends;
mod bulk;
mod cli;
mod clients;
mod kubernetes;
mod operations;
mod protocols;
mod rejects;
mod reload;
mod routing;
mod support;
mod terminate;
