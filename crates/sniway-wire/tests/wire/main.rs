//! Integration tests for the ClientHello parser: one test binary, one module per concern.
//!
//! - `fixtures`: real captures from curl, openssl and rustls (`tests/data/`, see its README),
//!   every prefix, every record size.
//! - `malformed`: hand-built hellos and non-TLS input, one rule per test.
//! - `robustness`: random and mutated input never panics and fails early.

mod fixtures;
mod malformed;
mod robustness;
mod support;
