//! A throwaway certificate authority for the demo and the end-to-end tests: one CA, leaf
//! certificates for any set of DNS names, all in memory.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA that signs leaf certificates.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate with its key, in the forms rustls and files want.
pub struct Leaf {
    /// The leaf certificate (DER), first in the chain.
    pub cert: CertificateDer<'static>,
    /// PEM of the leaf certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8 DER).
    pub key: PrivatePkcs8KeyDer<'static>,
    /// PEM of the private key.
    pub key_pem: String,
}

impl Leaf {
    /// A leaf from PEM text: the certificate and its PKCS#8 private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("certificate PEM: {e}"))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| anyhow::anyhow!("private key PEM: not a PKCS#8 key"))?;
        Ok(Self { cert, cert_pem: cert_pem.to_string(), key, key_pem: key_pem.to_string() })
    }

    /// The certificate chain and key for a rustls server.
    pub fn for_rustls(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
    }
}

impl Pki {
    /// A new CA named `common_name` with a fresh ECDSA P-256 key.
    pub fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the CA key")?;
        let ca = CertifiedIssuer::self_signed(params, key).context("signing the CA")?;
        Ok(Self { ca })
    }

    /// PEM of the CA certificate, for clients to trust (`curl --cacert`, `openssl -CAfile`).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// DER of the CA certificate, for a rustls root store.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A server certificate for `names` (the first is also the subject CN).
    pub fn leaf(&self, names: &[&str]) -> Result<Leaf> {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().context("generating a leaf key")?;
        let cert = params.signed_by(&key, &self.ca).context("signing a leaf certificate")?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}
