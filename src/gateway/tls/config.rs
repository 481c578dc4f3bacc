//! quinn configurations from PEM bytes (TLS 1.3 only, ALPN [`ALPN`], the ring crypto provider,
//! no 0-RTT: early data can be replayed), the transport settings, and the server's
//! configuration loaded from its certificates directory.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::dev_certs::dev_certs;
use super::{TlsError, ALPN};

/// A connection with no packets for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Each side sends a keep-alive after this much silence, well inside [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Bidirectional streams a peer may have open at once.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 16;
/// Unidirectional streams a peer may have open at once (server to client: market data).
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 16;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { what, reason: "no CERTIFICATE block".into() });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem { what, reason: e.to_string() })
}

fn roots(ca_pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA certificate")? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// The QUIC transport settings both sides use: [`IDLE_TIMEOUT`], [`KEEP_ALIVE_INTERVAL`],
/// [`MAX_CONCURRENT_BIDI_STREAMS`], [`MAX_CONCURRENT_UNI_STREAMS`].
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("30 s fits a VarInt")))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS));
    transport
}

/// The server's configuration: presents `server_cert_pem` (the leaf, optionally followed by
/// intermediates) with `server_key_pem`, and requires every client to present a certificate
/// that chains to a certificate in `ca_pem` and is valid for client authentication.
pub fn server_config(
    ca_pem: &[u8],
    server_cert_pem: &[u8],
    server_key_pem: &[u8],
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(server_cert_pem, "server certificate")?,
            private_key(server_key_pem, "server key")?,
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// A client's configuration: trusts only the CA(s) in `ca_pem` for the server's certificate and
/// authenticates with `client_cert_pem` / `client_key_pem`.
pub fn client_config(
    ca_pem: &[u8],
    client_cert_pem: &[u8],
    client_key_pem: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    let builder = client_builder(ca_pem)?;
    let tls = builder.with_client_auth_cert(
        certificates(client_cert_pem, "client certificate")?,
        private_key(client_key_pem, "client key")?,
    )?;
    quic_client(tls)
}

/// A client that presents no certificate: the server refuses it. For tests and diagnostics.
pub fn client_config_without_certificate(ca_pem: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    quic_client(client_builder(ca_pem)?.with_no_client_auth())
}

fn client_builder(
    ca_pem: &[u8],
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?))
}

fn quic_client(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// ALPN of the cluster's node transport (`cluster::transport`): a client connection can never
/// be mistaken for a node's, nor the reverse.
pub const NODE_ALPN: &[u8] = b"seqd-node/1";

/// Both sides of a cluster node's transport: the node presents `cert_pem` (`node-<id>`,
/// valid for server and client authentication) to peers it connects to and to peers that
/// connect to it, and requires theirs to chain to `ca_pem`. `transport` sets the timeouts
/// (short ones: a dead peer must be noticed within an election timeout).
pub fn node_configs(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    transport: quinn::TransportConfig,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    let transport = Arc::new(transport);
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone()).build()?;
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert_pem, "node certificate")?, private_key(key_pem, "node key")?)?;
    server_tls.alpn_protocols = vec![NODE_ALPN.to_vec()];
    server_tls.max_early_data_size = 0;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls)?));
    server.transport_config(transport.clone());
    let mut client_tls = client_builder(ca_pem)?
        .with_client_auth_cert(certificates(cert_pem, "node certificate")?, private_key(key_pem, "node key")?)?;
    client_tls.alpn_protocols = vec![NODE_ALPN.to_vec()];
    client_tls.enable_early_data = false;
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls)?));
    client.transport_config(transport);
    Ok((server, client))
}

/// The files the server reads from its certificates directory, in the order they are checked.
pub const SERVER_FILES: [&str; 3] = ["ca.pem", "server.pem", "server.key"];

/// The certificates a server was configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCertificates {
    /// The files found in the directory.
    Found,
    /// A development set generated just now (`dev_certs` and no CA in the directory).
    GeneratedForDevelopment,
}

/// The server's configuration from the files of [`SERVER_FILES`] in `dir`. With `dev_certs`,
/// a directory without `ca.pem` first gets a development set ([`dev_certs`]); without it, the
/// first missing file is [`TlsError::MissingCertificate`] naming its path, and nothing is
/// written.
pub fn load_server_config(dir: &Path, dev_certs: bool) -> Result<(quinn::ServerConfig, ServerCertificates), TlsError> {
    let mut origin = ServerCertificates::Found;
    if dev_certs && fs::symlink_metadata(dir.join("ca.pem")).is_err() {
        self::dev_certs(dir, false)?;
        origin = ServerCertificates::GeneratedForDevelopment;
    }
    let mut files = Vec::with_capacity(SERVER_FILES.len());
    for name in SERVER_FILES {
        let path = dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => files.push(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(TlsError::MissingCertificate(path)),
            Err(source) => return Err(TlsError::Io { path, source }),
        }
    }
    Ok((server_config(&files[0], &files[1], &files[2])?, origin))
}
