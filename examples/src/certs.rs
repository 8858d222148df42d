//! The recipe's keystore steps: a private CA, and a certificate for the balancer's name and
//! each node's, whose common name is the host name.
//!
//! Why a private CA rather than self-signed leaves: the recipe imports every certificate
//! into every trust store by hand; one CA that signs them all is what the balancer (and
//! curl, and a browser) trust instead, with one `--cacert` flag.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The host names the recipe uses: the balancer's, then node1's and node2's.
pub const HOSTS: [&str; 3] = ["wso2.com", "abc.com", "xyz.com"];

/// Certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The directory could not be made or written.
    #[error(
        "cannot write certificates to {dir}: {source} (choose another place with --certs DIR)"
    )]
    Write {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{file} is not a readable PEM {what}: {why} (delete the directory to make new certificates, or choose another with --certs DIR)")]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// Certificate or key.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// rcgen refused to make a certificate.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct CertFiles {
    dir: PathBuf,
}

impl CertFiles {
    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate: the trust root for members, curl's `--cacert` and browsers.
    #[must_use]
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `host`'s certificate chain (leaf, then CA).
    #[must_use]
    pub fn cert(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.pem"))
    }

    /// `host`'s private key.
    #[must_use]
    pub fn key(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.key"))
    }
}

/// Makes the certificates in `dir`, or checks and keeps the ones already there. Returns
/// where they are and whether they were made now.
///
/// # Errors
/// [`CertError`] when the directory cannot be written or a kept file is unreadable.
pub fn ensure(dir: &Path) -> Result<(CertFiles, bool), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        dir: dir.to_path_buf(),
        source,
    })?;
    // an absolute, tidy path: it is printed in curl lines and written into the config
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let files = CertFiles { dir };
    let all = std::iter::once(files.ca())
        .chain(HOSTS.iter().flat_map(|h| [files.cert(h), files.key(h)]))
        .collect::<Vec<_>>();
    if all.iter().all(|p| p.exists()) {
        check(&files)?;
        return Ok((files, false));
    }
    generate(&files)?;
    Ok((files, true))
}

fn check(files: &CertFiles) -> Result<(), CertError> {
    let read = |p: PathBuf| {
        fs::read(&p)
            .map_err(|e| CertError::Unreadable {
                file: p.clone(),
                what: "file",
                why: e.to_string(),
            })
            .map(|bytes| (p, bytes))
    };
    let (p, ca) = read(files.ca())?;
    certs(&p, &ca)?;
    for host in HOSTS {
        let (p, chain) = read(files.cert(host))?;
        certs(&p, &chain)?;
        let (p, key) = read(files.key(host))?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| CertError::Unreadable {
            file: p,
            what: "private key",
            why: e.to_string(),
        })?;
    }
    Ok(())
}

fn certs(path: &Path, pem: &[u8]) -> Result<(), CertError> {
    let n = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Unreadable {
            file: path.to_path_buf(),
            what: "certificate",
            why: e.to_string(),
        })?
        .len();
    if n == 0 {
        return Err(CertError::Unreadable {
            file: path.to_path_buf(),
            what: "certificate",
            why: "no certificate in it".into(),
        });
    }
    Ok(())
}

fn generate(files: &CertFiles) -> Result<(), CertError> {
    let write_err = |source| CertError::Write {
        dir: files.dir.clone(),
        source,
    };
    fs::create_dir_all(&files.dir).map_err(write_err)?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tower-balancer is_cluster CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca.pem();

    let mut out = vec![
        (files.ca(), ca_pem.clone()),
        (files.dir.join("ca.key"), ca_key.serialize_pem()),
    ];
    for host in HOSTS {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        out.push((files.cert(host), format!("{}{ca_pem}", cert.pem())));
        out.push((files.key(host), key.serialize_pem()));
    }
    for (path, text) in out {
        fs::write(&path, text).map_err(write_err)?;
        restrict(&path).map_err(write_err)?;
    }
    Ok(())
}

/// Keys are readable by their owner only.
fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "key") {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_then_keeps_then_reports_damage() {
        let dir = std::env::temp_dir().join(format!("is-cluster-certs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (files, made) = ensure(&dir).unwrap();
        assert!(made);
        let first = fs::read(files.cert("abc.com")).unwrap();
        let (_, made) = ensure(&dir).unwrap();
        assert!(!made);
        assert_eq!(fs::read(files.cert("abc.com")).unwrap(), first);
        fs::write(files.key("xyz.com"), "not a key").unwrap();
        let e = ensure(&dir).unwrap_err().to_string();
        assert!(e.contains("xyz.com.key") && e.contains("--certs"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
