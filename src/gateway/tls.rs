//! Transport security for the gateway: mutual TLS 1.3 over QUIC.
//!
//! Every client presents a certificate signed by the venue's CA; the server verifies it
//! (`WebPkiClientVerifier`) during the handshake, so a connection that exists is
//! authenticated. The **principal** of a connection is its certificate's Subject common name
//! ([`principal_of`]); what a principal may do is the gateway's grants, not this module's.
//!
//! - [`dev_certs`]: a development CA, a server certificate for `localhost`, `127.0.0.1` and
//!   `::1`, and client certificates for the [`DEV_PRINCIPALS`] (`seqd dev-certs DIR`).
//! - [`server_config`], [`client_config`], [`client_config_without_certificate`]: quinn
//!   configurations from PEM bytes, TLS 1.3 only, ALPN [`ALPN`], the ring crypto provider, no
//!   0-RTT (early data can be replayed), and the transport settings of [`transport_config`].
//! - [`load_server_config`]: the server's configuration from a certificates directory; a missing
//!   file is an error naming it, and a development set is generated only when asked for.
//! - [`principal_of`], [`principal_of_certificate`]: the Subject CN of the verified peer.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::RootCertStore;

/// The one application protocol both sides must offer.
pub const ALPN: &[u8] = b"seqd/1";
/// The name clients connect to (`Endpoint::connect(addr, SERVER_NAME)`) with the dev certificates.
pub const SERVER_NAME: &str = "localhost";
/// The principals `dev_certs` writes client certificates for.
pub const DEV_PRINCIPALS: [&str; 3] = ["admin", "trader1", "trader2"];

/// A connection with no packets for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Each side sends a keep-alive after this much silence, well inside [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Bidirectional streams a peer may have open at once.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 16;
/// Unidirectional streams a peer may have open at once (server to client: market data).
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 16;

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const LEAF_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// Certificates start this long before they are made, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(3_600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} already holds a CA (ca.pem or ca.key); use --force to replace every certificate in it", .0.display())]
    CaExists(PathBuf),
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    #[error("QUIC crypto: {0}")]
    Quic(#[from] NoInitialCipherSuite),
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    #[error("malformed certificate: {0}")]
    BadCertificate(&'static str),
    #[error("the certificate's subject has no common name")]
    NoCommonName,
    #[error("the certificate's subject has more than one common name")]
    AmbiguousCommonName,
    #[error(
        "{}: missing; the server needs ca.pem (the CA of the client certificates), server.pem and server.key \
         in its certs_dir (`seqd dev-certs DIR` writes a development set; gateway.dev_certs = true makes one \
         at start-up, for development only)",
        .0.display()
    )]
    MissingCertificate(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

// ---------------------------------------------------------------------------------------------
// Development certificates

/// A client certificate written by [`dev_certs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFiles {
    pub principal: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files [`dev_certs`] wrote (PEM certificates; PKCS#8 PEM keys, mode 0600).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCerts {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// One per [`DEV_PRINCIPALS`] entry, in that order.
    pub clients: Vec<ClientFiles>,
}

impl DevCerts {
    /// Every path written, CA first.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![&*self.ca_cert, &*self.ca_key, &*self.server_cert, &*self.server_key];
        for client in &self.clients {
            paths.push(&client.cert);
            paths.push(&client.key);
        }
        paths
    }

    pub fn client(&self, principal: &str) -> Option<&ClientFiles> {
        self.clients.iter().find(|c| c.principal == principal)
    }
}

/// Writes a development CA (`ca.pem`, `ca.key`), a server certificate for `localhost`,
/// `127.0.0.1` and `::1` (`server.pem`, `server.key`) and a client certificate per
/// [`DEV_PRINCIPALS`] entry (`admin.pem`, `admin.key`, ...), all signed by the CA, into `dir`
/// (created if missing). Keys are ECDSA P-256, written with mode 0600.
///
/// Refuses (`CaExists`) when `dir` already has `ca.pem` or `ca.key`, unless `force`, which
/// replaces every file. The CA is written last, so a `dir` with a CA holds a complete set.
pub fn dev_certs(dir: &Path, force: bool) -> Result<DevCerts, TlsError> {
    let file = |name: &str| dir.join(name);
    let certs = DevCerts {
        dir: dir.to_path_buf(),
        ca_cert: file("ca.pem"),
        ca_key: file("ca.key"),
        server_cert: file("server.pem"),
        server_key: file("server.key"),
        clients: DEV_PRINCIPALS
            .iter()
            .map(|p| ClientFiles {
                principal: p.to_string(),
                cert: file(&format!("{p}.pem")),
                key: file(&format!("{p}.key")),
            })
            .collect(),
    };
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    if !force {
        for path in [&certs.ca_cert, &certs.ca_key] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(TlsError::CaExists(dir.to_path_buf()));
            }
        }
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let validity = |lifetime: Duration| -> Result<_, TlsError> {
        let at = |t: Duration| {
            time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
                .map_err(|_| TlsError::BadCertificate("the clock is out of range"))
        };
        Ok((at(now.saturating_sub(BACKDATE))?, at(now + lifetime)?))
    };

    // Each CA gets its own name (from its key), so certificates of two development CAs are
    // told apart by issuer name, not only by a failing signature.
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    let ca_id: String = ca_params.key_identifier(&ca_key)[..4].iter().map(|b| format!("{b:02x}")).collect();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::OrganizationName, "seqd");
    ca_params.distinguished_name.push(DnType::CommonName, format!("seqd development CA {ca_id}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca_params.not_before, ca_params.not_after) = validity(CA_VALIDITY)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let leaf = |common_name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(LEAF_VALIDITY)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok::<_, TlsError>((cert.pem(), key.serialize_pem()))
    };

    let sans = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let (server_pem, server_key) = leaf(SERVER_NAME, sans, ExtendedKeyUsagePurpose::ServerAuth)?;
    write_file(&certs.server_cert, server_pem.as_bytes(), 0o644)?;
    write_file(&certs.server_key, server_key.as_bytes(), 0o600)?;
    for client in &certs.clients {
        let (pem, key) = leaf(&client.principal, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        write_file(&client.cert, pem.as_bytes(), 0o644)?;
        write_file(&client.key, key.as_bytes(), 0o600)?;
    }
    write_file(&certs.ca_key, ca.key().serialize_pem().as_bytes(), 0o600)?;
    write_file(&certs.ca_cert, ca.pem().as_bytes(), 0o644)?;
    Ok(certs)
}

/// Writes `path` through a temporary file with `mode` and a rename, so a reader (or a crash)
/// never sees a partial file and a key is never readable by others, even for a moment.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io_error(&tmp))?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_error(&tmp))?;
    f.write_all(contents).and_then(|()| f.sync_all()).map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

// ---------------------------------------------------------------------------------------------
// quinn configurations

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

// ---------------------------------------------------------------------------------------------
// Principals

/// The principal of an established connection: the Subject CN of the certificate the peer
/// presented, which the handshake verified against the CA.
pub fn principal_of(connection: &quinn::Connection) -> Result<String, TlsError> {
    let identity = connection.peer_identity().ok_or(TlsError::NoPeerCertificate)?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().map_err(|_| TlsError::NoPeerCertificate)?;
    let leaf = chain.first().ok_or(TlsError::NoPeerCertificate)?;
    principal_of_certificate(leaf)
}

/// The Subject CN of a DER certificate (UTF8String, PrintableString or IA5String), non-empty
/// and present exactly once. Parses only the path to the subject; it does not verify anything.
pub fn principal_of_certificate(der: &[u8]) -> Result<String, TlsError> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // [0] version
    }
    rest = tlv(rest)?.2; // serialNumber
    rest = expect(rest, SEQUENCE)?.1; // signature algorithm
    rest = expect(rest, SEQUENCE)?.1; // issuer
    rest = expect(rest, SEQUENCE)?.1; // validity
    let (mut subject, _) = expect(rest, SEQUENCE)?;

    let mut found: Option<String> = None;
    while !subject.is_empty() {
        let (mut rdn, after) = expect(subject, SET)?;
        subject = after;
        while !rdn.is_empty() {
            let (attribute, after) = expect(rdn, SEQUENCE)?;
            rdn = after;
            let (oid, value) = expect(attribute, OID)?;
            if oid != CN {
                continue;
            }
            let (tag, text, trailing) = tlv(value)?;
            if !trailing.is_empty() {
                return Err(TlsError::BadCertificate("trailing bytes after a name attribute"));
            }
            let text = match tag {
                0x0c | 0x13 | 0x16 => {
                    std::str::from_utf8(text).map_err(|_| TlsError::BadCertificate("the common name is not UTF-8"))?
                }
                _ => return Err(TlsError::BadCertificate("unsupported string type for the common name")),
            };
            if found.replace(text.to_string()).is_some() {
                return Err(TlsError::AmbiguousCommonName);
            }
        }
    }
    match found {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(TlsError::NoCommonName),
    }
}

/// One DER tag-length-value: (tag, contents, what follows). Single-byte tags, definite lengths.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), TlsError> {
    let truncated = TlsError::BadCertificate("truncated DER");
    let (&tag, input) = input.split_first().ok_or(truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(TlsError::BadCertificate("multi-byte DER tag"));
    }
    let (&first, mut input) = input.split_first().ok_or(TlsError::BadCertificate("truncated DER"))?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let octets = (first & 0x7f) as usize;
        if octets == 0 || octets > 4 || input.len() < octets {
            return Err(TlsError::BadCertificate("bad DER length"));
        }
        let len = input[..octets].iter().fold(0usize, |n, &b| (n << 8) | b as usize);
        input = &input[octets..];
        len
    };
    if input.len() < len {
        return Err(TlsError::BadCertificate("truncated DER"));
    }
    let (contents, rest) = input.split_at(len);
    Ok((tag, contents, rest))
}

fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), TlsError> {
    match tlv(input)? {
        (t, contents, rest) if t == tag => Ok((contents, rest)),
        _ => Err(TlsError::BadCertificate("unexpected DER tag")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::time::timeout;

    const LIMIT: Duration = Duration::from_secs(10);

    fn read(path: &Path) -> Vec<u8> {
        fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    struct Pki {
        _dir: tempfile::TempDir,
        certs: DevCerts,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let certs = dev_certs(&dir.path().join("certs"), false).unwrap();
            Pki { _dir: dir, certs }
        }
        fn ca(&self) -> Vec<u8> {
            read(&self.certs.ca_cert)
        }
        fn server(&self) -> quinn::ServerConfig {
            server_config(&self.ca(), &read(&self.certs.server_cert), &read(&self.certs.server_key)).unwrap()
        }
        fn client_files(&self, principal: &str) -> (Vec<u8>, Vec<u8>) {
            let files = self.certs.client(principal).unwrap();
            (read(&files.cert), read(&files.key))
        }
        /// A client trusting `trust`'s CA, presenting this PKI's certificate for `principal`.
        fn client(&self, principal: &str, trust: &Pki) -> quinn::ClientConfig {
            let (cert, key) = self.client_files(principal);
            client_config(&trust.ca(), &cert, &key).unwrap()
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    fn server_endpoint(config: quinn::ServerConfig) -> (quinn::Endpoint, SocketAddr) {
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        (endpoint, addr)
    }

    /// The server side of one connection: accept it, read its principal, echo one bidi stream,
    /// then wait for the client to close.
    async fn serve_one(endpoint: quinn::Endpoint) -> Result<String, String> {
        let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
        let connection = incoming.await.map_err(|e| format!("handshake: {e}"))?;
        let principal = principal_of(&connection).map_err(|e| format!("principal: {e}"))?;
        let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| format!("accept_bi: {e}"))?;
        let data = recv.read_to_end(64 * 1024).await.map_err(|e| format!("read: {e}"))?;
        send.write_all(&data).await.map_err(|e| format!("write: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        connection.closed().await;
        Ok(principal)
    }

    /// The client side: connect, send `message` on a bidi stream, read the echo, close.
    async fn echo(endpoint: &quinn::Endpoint, addr: SocketAddr, message: &[u8]) -> Result<Vec<u8>, String> {
        let connection = endpoint
            .connect(addr, SERVER_NAME)
            .map_err(|e| format!("connect: {e}"))?
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| format!("open_bi: {e}"))?;
        send.write_all(message).await.map_err(|e| format!("write: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        let data = recv.read_to_end(64 * 1024).await.map_err(|e| format!("read: {e}"))?;
        connection.close(0u32.into(), b"done");
        Ok(data)
    }

    fn client_endpoint(config: quinn::ClientConfig) -> quinn::Endpoint {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        endpoint
    }

    /// One connection attempt end to end: (the client's result, the server's result).
    fn attempt(
        server: quinn::ServerConfig,
        client: quinn::ClientConfig,
        message: &[u8],
    ) -> (Result<Vec<u8>, String>, Result<String, String>) {
        runtime().block_on(async {
            let (server_ep, addr) = server_endpoint(server);
            let server_task = tokio::spawn(timeout(LIMIT, serve_one(server_ep.clone())));
            let client_ep = client_endpoint(client);
            let client_result = timeout(LIMIT, echo(&client_ep, addr, message))
                .await
                .unwrap_or_else(|_| Err("client timed out".into()));
            client_ep.wait_idle().await;
            let server_result = server_task.await.unwrap().unwrap_or_else(|_| Err("server timed out".into()));
            server_ep.close(0u32.into(), b"");
            (client_result, server_result)
        })
    }

    #[test]
    fn trader1_connects_and_bytes_echo() {
        let pki = Pki::new();
        let message = b"NewOrder trader1 BTC-USD 42".repeat(100);
        let (client, server) = attempt(pki.server(), pki.client("trader1", &pki), &message);
        assert_eq!(client.unwrap(), message);
        assert_eq!(server.unwrap(), "trader1");
    }

    #[test]
    fn each_certificate_is_its_own_principal() {
        let pki = Pki::new();
        for principal in DEV_PRINCIPALS {
            let (client, server) = attempt(pki.server(), pki.client(principal, &pki), principal.as_bytes());
            assert_eq!(client.unwrap(), principal.as_bytes());
            assert_eq!(server.unwrap(), principal);
        }
    }

    #[test]
    fn client_without_certificate_is_refused() {
        let pki = Pki::new();
        let config = client_config_without_certificate(&pki.ca()).unwrap();
        let (client, server) = attempt(pki.server(), config, b"hello");
        let client_error = client.expect_err("a client with no certificate got an echo");
        assert!(!client_error.contains("timed out"), "{client_error}");
        let server_error = server.expect_err("the server accepted a client with no certificate");
        assert!(server_error.starts_with("handshake:"), "{server_error}");
        assert!(server_error.contains("no certificates"), "{server_error}");
        eprintln!("client: {client_error}\nserver: {server_error}");
    }

    #[test]
    fn client_certificate_from_another_ca_is_refused() {
        let (pki, other) = (Pki::new(), Pki::new());
        // Trusts the right server; presents a trader1 certificate the server's CA never signed.
        let (client, server) = attempt(pki.server(), other.client("trader1", &pki), b"hello");
        let client_error = client.expect_err("a client certificate from another CA got an echo");
        assert!(!client_error.contains("timed out"), "{client_error}");
        let server_error = server.expect_err("the server accepted a certificate from another CA");
        assert!(server_error.starts_with("handshake:"), "{server_error}");
        assert!(server_error.contains("invalid peer certificate: UnknownIssuer"), "{server_error}");
        eprintln!("client: {client_error}\nserver: {server_error}");
    }

    #[test]
    fn server_certificate_is_not_a_client_certificate() {
        let pki = Pki::new();
        let config = client_config(&pki.ca(), &read(&pki.certs.server_cert), &read(&pki.certs.server_key)).unwrap();
        let (client, server) = attempt(pki.server(), config, b"hello");
        let client_error = client.expect_err("the server certificate was accepted as a client certificate");
        assert!(!client_error.contains("timed out"), "{client_error}");
        let server_error = server.expect_err("the server accepted its own certificate from a client");
        assert!(server_error.starts_with("handshake:"), "{server_error}");
    }

    #[test]
    fn client_refuses_a_server_from_another_ca() {
        let (pki, other) = (Pki::new(), Pki::new());
        // A valid trader1 certificate of the server's CA, but trusting only the other CA.
        let (client, server) = attempt(pki.server(), pki.client("trader1", &other), b"hello");
        let client_error = client.expect_err("the client accepted a server it does not trust");
        assert!(client_error.starts_with("handshake:"), "{client_error}");
        assert!(client_error.contains("invalid peer certificate: UnknownIssuer"), "{client_error}");
        server.expect_err("the server completed a handshake the client refused");
    }

    #[test]
    fn client_refuses_a_server_name_not_in_its_certificate() {
        let pki = Pki::new();
        runtime().block_on(async {
            let (server_ep, addr) = server_endpoint(pki.server());
            let server_task = tokio::spawn(timeout(LIMIT, serve_one(server_ep.clone())));
            let client_ep = client_endpoint(pki.client("trader1", &pki));
            let result = timeout(LIMIT, client_ep.connect(addr, "seqd.example.com").unwrap()).await.unwrap();
            let error = result.expect_err("connected to a server whose certificate does not name it");
            assert!(error.to_string().contains("certificate not valid for name"), "{error}");
            assert!(server_task.await.unwrap().unwrap().is_err(), "the server completed the handshake");
            server_ep.close(0u32.into(), b"");
        });
    }

    #[test]
    fn dev_certs_writes_private_keys_and_refuses_to_overwrite_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certs");
        let certs = dev_certs(&path, false).unwrap();
        assert_eq!(certs.paths().len(), 4 + 2 * DEV_PRINCIPALS.len());
        for file in certs.paths() {
            let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
            let is_key = file.extension().unwrap() == "key";
            assert_eq!(mode, if is_key { 0o600 } else { 0o644 }, "{}", file.display());
        }
        assert_eq!(fs::read_dir(&path).unwrap().count(), certs.paths().len(), "no stray temporary files");
        let cn = |p: &Path| principal_of_certificate(&certificates(&read(p), "test").unwrap()[0]).unwrap();
        assert!(cn(&certs.ca_cert).starts_with("seqd development CA "), "{}", cn(&certs.ca_cert));
        assert_eq!(cn(&certs.server_cert), "localhost");
        for client in &certs.clients {
            assert_eq!(cn(&client.cert), client.principal);
        }

        let ca_before = read(&certs.ca_cert);
        let key_before = read(&certs.ca_key);
        assert!(matches!(dev_certs(&path, false), Err(TlsError::CaExists(_))));
        assert_eq!(read(&certs.ca_cert), ca_before, "a refused run changed the CA");
        fs::remove_file(&certs.ca_cert).unwrap();
        assert!(matches!(dev_certs(&path, false), Err(TlsError::CaExists(_))), "a lone ca.key must be kept too");
        assert_eq!(read(&certs.ca_key), key_before);

        let again = dev_certs(&path, true).unwrap();
        assert_eq!(again, certs);
        assert_ne!(read(&again.ca_key), key_before, "--force makes a new CA");
        assert_eq!(fs::metadata(&again.ca_key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn common_name_parsing_rejects_malformed_input() {
        let pki = Pki::new();
        let der = certificates(&read(&pki.certs.client("trader2").unwrap().cert), "test").unwrap().remove(0);
        assert_eq!(principal_of_certificate(&der).unwrap(), "trader2");
        for cut in 0..der.len() {
            assert!(principal_of_certificate(&der[..cut]).is_err(), "accepted a certificate cut at {cut}");
        }
        assert!(principal_of_certificate(&[]).is_err());
        assert!(principal_of_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_missing_certificate_is_an_error_naming_it_unless_development_certificates_are_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let error = load_server_config(&certs, false).map(|_| ()).expect_err("served without certificates");
        assert!(matches!(&error, TlsError::MissingCertificate(path) if *path == certs.join("ca.pem")), "{error}");
        assert!(error.to_string().contains(&certs.join("ca.pem").display().to_string()), "{error}");
        assert!(!certs.exists(), "nothing may be generated without dev_certs");

        let (_, origin) = load_server_config(&certs, true).unwrap();
        assert_eq!(origin, ServerCertificates::GeneratedForDevelopment);
        let ca = read(&certs.join("ca.pem"));
        let (_, origin) = load_server_config(&certs, true).unwrap();
        assert_eq!(origin, ServerCertificates::Found, "an existing CA is kept");
        assert_eq!(read(&certs.join("ca.pem")), ca);
        let (_, origin) = load_server_config(&certs, false).unwrap();
        assert_eq!(origin, ServerCertificates::Found);

        fs::remove_file(certs.join("server.key")).unwrap();
        for dev_certs in [false, true] {
            let error = load_server_config(&certs, dev_certs).map(|_| ()).expect_err("served without a key");
            assert!(matches!(&error, TlsError::MissingCertificate(p) if *p == certs.join("server.key")), "{error}");
        }
        assert_eq!(read(&certs.join("ca.pem")), ca, "a CA is never replaced");
    }

    fn cert_with_subject(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_must_be_present_once() {
        let mut none = rcgen::DistinguishedName::new();
        none.push(DnType::OrganizationName, "seqd");
        assert!(matches!(principal_of_certificate(&cert_with_subject(none)), Err(TlsError::NoCommonName)));

        let mut printable = rcgen::DistinguishedName::new();
        printable.push(DnType::OrganizationName, "seqd");
        printable.push(DnType::CommonName, rcgen::DnValue::PrintableString("mm-7".try_into().unwrap()));
        assert_eq!(principal_of_certificate(&cert_with_subject(printable)).unwrap(), "mm-7");
    }
}
