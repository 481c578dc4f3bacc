//! Development certificates: a CA, a server certificate for `localhost`, `127.0.0.1` and `::1`,
//! and client certificates for the [`DEV_PRINCIPALS`] (`seqd dev-certs DIR`, or
//! `gateway.dev_certs = true`). Never for production: the CA key is written beside them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::{io_error, TlsError, SERVER_NAME};

/// The principals `dev_certs` writes client certificates for.
pub const DEV_PRINCIPALS: [&str; 3] = ["admin", "trader1", "trader2"];

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const LEAF_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// Certificates start this long before they are made, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(3_600);

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
    /// One per cluster node asked for, by id.
    pub nodes: Vec<NodeFiles>,
}

/// A cluster node's certificate written by [`dev_certs_with_nodes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFiles {
    pub id: u64,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevCerts {
    /// Every path written, CA first.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![&*self.ca_cert, &*self.ca_key, &*self.server_cert, &*self.server_key];
        for client in &self.clients {
            paths.push(&client.cert);
            paths.push(&client.key);
        }
        for node in &self.nodes {
            paths.push(&node.cert);
            paths.push(&node.key);
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
    dev_certs_with_nodes(dir, force, 0)
}

/// The name (common name and DNS name) of cluster node `id`'s certificate.
pub fn node_name(id: u64) -> String {
    format!("node-{id}")
}

/// [`dev_certs`], plus a certificate for each cluster node 1..=`nodes` (`node-<id>.pem`,
/// `node-<id>.key`: common and DNS name `node-<id>`, valid for server and client
/// authentication, since a node both connects to its peers and accepts them).
pub fn dev_certs_with_nodes(dir: &Path, force: bool, nodes: u64) -> Result<DevCerts, TlsError> {
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
        nodes: (1..=nodes)
            .map(|id| NodeFiles {
                id,
                cert: file(&format!("{}.pem", node_name(id))),
                key: file(&format!("{}.key", node_name(id))),
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

    let leaf = |common_name: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(LEAF_VALIDITY)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok::<_, TlsError>((cert.pem(), key.serialize_pem()))
    };

    let sans = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let (server_pem, server_key) = leaf(SERVER_NAME, sans, vec![ExtendedKeyUsagePurpose::ServerAuth])?;
    write_file(&certs.server_cert, server_pem.as_bytes(), 0o644)?;
    write_file(&certs.server_key, server_key.as_bytes(), 0o600)?;
    for client in &certs.clients {
        let (pem, key) = leaf(&client.principal, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])?;
        write_file(&client.cert, pem.as_bytes(), 0o644)?;
        write_file(&client.key, key.as_bytes(), 0o600)?;
    }
    for node in &certs.nodes {
        let name = node_name(node.id);
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let (pem, key) = leaf(&name, vec![name.clone()], usages)?;
        write_file(&node.cert, pem.as_bytes(), 0o644)?;
        write_file(&node.key, key.as_bytes(), 0o600)?;
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
