//! Transport security for the gateway: mutual TLS 1.3 over QUIC. Split by concern:
//! `dev_certs.rs` (a development CA and certificates), `config.rs` (quinn configurations and
//! loading the server's certificates), `principal.rs` (who a verified peer is); this file holds
//! what they share (protocol names, errors) and re-exports the public items.
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

use std::path::{Path, PathBuf};

use quinn::crypto::rustls::NoInitialCipherSuite;
use rustls::server::VerifierBuilderError;

mod config;
mod dev_certs;
mod principal;

pub use config::{
    client_config, client_config_without_certificate, load_server_config, node_configs, server_config,
    transport_config, ServerCertificates, IDLE_TIMEOUT, KEEP_ALIVE_INTERVAL, MAX_CONCURRENT_BIDI_STREAMS,
    MAX_CONCURRENT_UNI_STREAMS, NODE_ALPN, SERVER_FILES,
};
pub use dev_certs::{dev_certs, dev_certs_with_nodes, node_name, ClientFiles, DevCerts, NodeFiles, DEV_PRINCIPALS};
pub use principal::{principal_of, principal_of_certificate};

/// The one application protocol both sides must offer.
pub const ALPN: &[u8] = b"seqd/1";
/// The name clients connect to (`Endpoint::connect(addr, SERVER_NAME)`) with the dev certificates.
pub const SERVER_NAME: &str = "localhost";

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

#[cfg(test)]
mod tests {
    use super::config::certificates;
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};
    use std::fs;
    use std::net::SocketAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;
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
