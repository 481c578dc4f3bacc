//! The QUIC gateway: where clients connect. [`tls`]: mutual TLS (certificates, principals, quinn configs).

pub mod grants;
pub mod server;
pub mod tls;
