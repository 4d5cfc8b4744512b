//! Downstream TLS: certificates chosen by SNI. Each certificate serves the
//! DNS names in its subjectAltName (exact or `*.` wildcard); the first one
//! configured also answers clients that send no SNI or an unknown name.

use std::collections::HashMap;
use std::sync::Arc;

use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert, sign::CertifiedKey};

use crate::config::CertificateConfig;

#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent domain: `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Load every certificate and key; any unreadable file, key that does
    /// not match its certificate, or certificate without DNS names is an
    /// error naming the file.
    pub fn load(certificates: &[CertificateConfig]) -> Result<Self, String> {
        pingora::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default()
            .ok_or("no TLS crypto provider is installed")?
            .clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for c in certificates {
            let (cert, key) = (c.cert.display(), c.key.display());
            let (chain, private) =
                pingora::tls::load_certs_and_key_files(&cert.to_string(), &key.to_string())
                    .map_err(|e| format!("tls certificate `{cert}` / key `{key}`: {e}"))?
                    .ok_or_else(|| {
                        format!("tls: no certificate in `{cert}` or no key in `{key}`")
                    })?;
            let leaf = chain
                .first()
                .ok_or_else(|| format!("tls: no certificate in `{cert}`"))?;
            let names =
                dns_names(leaf.as_ref()).map_err(|e| format!("tls certificate `{cert}`: {e}"))?;
            let signing = provider
                .key_provider
                .load_private_key(private)
                .map_err(|e| format!("tls key `{key}`: {e}"))?;
            let certified = CertifiedKey::new(chain, signing);
            certified
                .keys_match()
                .map_err(|e| format!("tls key `{key}` does not belong to `{cert}`: {e}"))?;
            let certified = Arc::new(certified);
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| certified.clone());
            }
            default.get_or_insert(certified);
        }
        Ok(Self {
            exact,
            wildcard,
            default: default.ok_or("tls: at least one certificate is needed")?,
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.trim_end_matches('.');
        let found = self.exact.get(name).or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        });
        Some(found.unwrap_or(&self.default).clone())
    }
}

/// The DNS names a certificate is valid for (subjectAltName).
fn dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not X.509: {e}"))?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err("has no DNS names in subjectAltName".into());
    }
    Ok(names)
}
