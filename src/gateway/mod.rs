//! The QUIC gateway: where clients connect. [`tls`]: mutual TLS (certificates, principals, quinn configs).

pub mod clock;
pub mod feed;
pub mod grants;
pub mod market_data;
pub mod refusals;
pub mod server;
pub mod tls;
pub mod visibility;
