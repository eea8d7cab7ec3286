//! TLS material: loading PEM files, checking that key and certificate belong together,
//! generating a self-signed pair for `--init --self-signed`, and a certificate resolver
//! that can swap in renewed files without a restart.
//!
//! Only the ring crypto provider is used, so the binary links statically with no OpenSSL.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read TLS private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS private key {key} does not match certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key and checks they belong together.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert_path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_err(pem_reason(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(pem_reason(e)))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".into()));
    }
    let key_err = |reason: String| TlsError::Key {
        path: key_path.to_path_buf(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| key_err(pem_reason(e)))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(e.to_string()))?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
        Err(e) => Err(cert_err(e.to_string())),
    }
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM block of the right kind found".into(),
        other => format!("{other:?}"),
    }
}

/// The ALPN protocol of ACME's tls-alpn-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Validation certificates for tls-alpn-01 by server name, published by the ACME issuer
/// while a challenge is pending.
pub type AlpnChallengeCerts = RwLock<HashMap<String, Arc<CertifiedKey>>>;

/// Serves the current certificate and lets a renewal replace it in place.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
    cert_path: PathBuf,
    key_path: PathBuf,
    challenges: Arc<AlpnChallengeCerts>,
}

impl ReloadableCert {
    /// Where tls-alpn-01 validation certificates go while a challenge is pending.
    pub fn alpn_challenges(&self) -> Arc<AlpnChallengeCerts> {
        self.challenges.clone()
    }

    /// The certificate chain currently served.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.read().expect("cert lock").cert.clone()
    }

    /// The file paths this resolver reloads from.
    pub fn paths(&self) -> (&Path, &Path) {
        (&self.cert_path, &self.key_path)
    }

    /// Re-reads both files; on any error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().expect("cert lock") = Arc::new(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // A tls-alpn-01 validation: only the challenge certificate for that name.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .expect("alpn lock")
                .get(&name)
                .cloned();
        }
        Some(self.current.read().expect("cert lock").clone())
    }
}

/// A rustls server config (HTTP/1.1 ALPN) serving the given files, with the handle that
/// reloads them.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadableCert>), TlsError> {
    let key = load_certified_key(cert_path, key_path)?;
    let resolver = Arc::new(ReloadableCert {
        current: RwLock::new(Arc::new(key)),
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
        challenges: Arc::default(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    // acme-tls/1 is offered only by ACME validators; the server closes such connections
    // right after the handshake (see http::serve).
    config.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok((Arc::new(config), resolver))
}

/// What `doctor` and ACME renewal need to know about a served certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    /// DNS names and IP addresses from the subjectAltName extension.
    pub names: Vec<String>,
    /// Issuer equals subject: self-signed (testing, or an ACME placeholder).
    pub self_signed: bool,
}

impl CertInfo {
    /// True when `host` (a DNS name or an IP address) is covered, wildcards included.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.names.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            name == host
                || name.strip_prefix("*.").is_some_and(|suffix| {
                    host.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                })
        })
    }

    /// Time left until expiry (negative once expired).
    pub fn remaining(&self) -> time::Duration {
        self.not_after - time::OffsetDateTime::now_utc()
    }
}

/// Reads the validity period and names of a DER certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).expect("4"))
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).expect("16"))
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        names,
        self_signed: cert.issuer() == cert.subject(),
    })
}

/// Reads the first certificate of a PEM chain file and inspects it.
pub fn inspect_file(path: &Path) -> Result<CertInfo, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: path.to_path_buf(),
        reason,
    };
    let first = CertificateDer::pem_file_iter(path)
        .map_err(|e| cert_err(pem_reason(e)))?
        .next()
        .ok_or_else(|| cert_err("no CERTIFICATE block found".into()))?
        .map_err(|e| cert_err(pem_reason(e)))?;
    inspect(&first).map_err(cert_err)
}

/// A self-signed certificate (PEM) and its key (PEM) for the given host names / IPs,
/// valid from yesterday for 825 days.
pub fn generate_self_signed(hosts: &[String]) -> Result<(String, String), TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(gen_err)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let mut name = rcgen::DistinguishedName::new();
    name.push(
        rcgen::DnType::CommonName,
        hosts.first().cloned().unwrap_or_else(|| "appliance".into()),
    );
    params.distinguished_name = name;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a self-signed pair into `dir` as `cert.pem` (0644) and `key.pem` (0600).
pub fn write_self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_pem, key_pem) = generate_self_signed(hosts)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// Writes a self-signed pair to exactly these paths (key 0600, certificate 0644).
pub fn write_self_signed_pair(cert: &Path, key: &Path, hosts: &[String]) -> Result<(), TlsError> {
    let (cert_pem, key_pem) = generate_self_signed(hosts)?;
    write_file(key, key_pem.as_bytes(), 0o600)?;
    write_file(cert, cert_pem.as_bytes(), 0o644)
}

/// Writes a whole file created with `mode` (replacing any old file).
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_err)?;
    f.write_all(contents).map_err(write_err)?;
    f.sync_all().map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_mismatched_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (cert_a, key_a) = write_self_signed(&a, &["localhost".into()]).unwrap();
        let (_cert_b, key_b) = write_self_signed(&b, &["127.0.0.1".into()]).unwrap();
        load_certified_key(&cert_a, &key_a).unwrap();
        let e = load_certified_key(&cert_a, &key_b).unwrap_err();
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        let e = load_certified_key(&dir.path().join("none.pem"), &key_a).unwrap_err();
        assert!(e.to_string().contains("none.pem"), "{e}");
        let e = load_certified_key(&key_a, &key_a).unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
    }

    #[test]
    fn inspect_reads_names_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = write_self_signed(
            dir.path(),
            &[
                "pbx.example.com".into(),
                "*.example.org".into(),
                "127.0.0.1".into(),
            ],
        )
        .unwrap();
        let info = inspect_file(&cert).unwrap();
        assert!(info.self_signed);
        assert!(info.covers("pbx.example.com") && info.covers("PBX.example.com"));
        assert!(info.covers("a.example.org") && !info.covers("a.b.example.org"));
        assert!(info.covers("127.0.0.1") && !info.covers("other.example.com"));
        let days = info.remaining().whole_days();
        assert!((823..=825).contains(&days), "{days}");
    }

    #[test]
    fn reload_swaps_the_certificate_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_self_signed(dir.path(), &["localhost".into()]).unwrap();
        let (_, resolver) = server_config(&cert, &key).unwrap();
        let before = resolver.current.read().unwrap().cert[0].clone();
        write_self_signed(dir.path(), &["localhost".into()]).unwrap();
        resolver.reload().unwrap();
        let after = resolver.current.read().unwrap().cert[0].clone();
        assert_ne!(before, after);
        std::fs::write(&key, "garbage").unwrap();
        assert!(resolver.reload().is_err());
        assert_eq!(resolver.current.read().unwrap().cert[0], after);
    }
}
