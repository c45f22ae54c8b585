//! The cluster's public-key infrastructure: a CA, certificates that name a node (agents) or a
//! scheduler, and the rustls configurations for QUIC with mutual TLS.
//!
//! An agent's node id is the common name of its certificate; the scheduler reads it from the
//! verified peer certificate and never trusts a node id carried inside a message.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::NodeId;

/// The name every scheduler certificate carries and agents verify, whatever address they dial.
pub const SCHEDULER_SERVER_NAME: &str = "scheduler.vmcloud.internal";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("could not generate or sign a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not valid PEM")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} contains no certificate")]
    NoCertificate { what: &'static str },
    #[error("could not build the TLS configuration")]
    Tls(#[from] rustls::Error),
    #[error("could not build the client-certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the peer certificate could not be parsed")]
    Parse,
    #[error("the peer certificate has no common name")]
    NoCommonName,
    #[error("the peer certificate does not name a valid node")]
    BadNodeId(#[from] crate::ids::IdError),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA: signs scheduler and node certificates.
#[derive(Debug, Clone)]
pub struct Ca {
    pub identity: Identity,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

impl Ca {
    /// A new self-signed CA valid for ten years.
    pub fn generate(cluster_name: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{cluster_name} cluster CA"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "VMCloud");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            identity: Identity {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
        })
    }

    fn issue(&self, mut params: CertificateParams, days: i64) -> Result<Identity, PkiError> {
        validity(&mut params, days);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::from_pem(&self.identity.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.identity.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A scheduler's server (and peer-client) certificate for [`SCHEDULER_SERVER_NAME`].
    pub fn issue_scheduler(&self, replica: &str) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(vec![
            SCHEDULER_SERVER_NAME.to_owned(),
            "localhost".to_owned(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("scheduler {replica}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(params, 365)
    }

    /// A node's client certificate: its common name is the node id.
    pub fn issue_node(&self, node: &NodeId) -> Result<Identity, PkiError> {
        self.issue(node_params(node)?, NODE_CERT_DAYS)
    }

    /// Signs a node's certificate request. Only the request's public key is used: the
    /// certificate names `node` (the node the join token was for) whatever the request says.
    pub fn sign_node_csr(&self, csr_pem: &str, node: &NodeId) -> Result<String, PkiError> {
        self.sign_node_csr_for(
            csr_pem,
            node,
            std::time::Duration::from_secs(NODE_CERT_DAYS as u64 * 86_400),
        )
    }

    /// [`Ca::sign_node_csr`] with a certificate valid for `ttl` (backdated by a tenth of it,
    /// at most an hour, for clock skew).
    pub fn sign_node_csr_for(
        &self,
        csr_pem: &str,
        node: &NodeId,
        ttl: std::time::Duration,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = node_params(node)?;
        let now = OffsetDateTime::now_utc();
        let ttl: Duration = Duration::try_from(ttl).unwrap_or(Duration::days(NODE_CERT_DAYS));
        let skew: Duration = ttl / 10;
        params.not_before = now - skew.min(Duration::hours(1));
        params.not_after = now + ttl;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let ca_key = KeyPair::from_pem(&self.identity.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.identity.cert_pem, ca_key)?;
        Ok(signed.signed_by(&issuer)?.pem())
    }
}

/// How long a node certificate is valid.
pub const NODE_CERT_DAYS: i64 = 365;

fn node_params(node: &NodeId) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, node.as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A new key and a certificate request for `node`'s certificate: (request PEM, key PEM).
pub fn node_csr(node: &NodeId) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let csr = node_params(node)?.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PkiError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate { what });
    }
    Ok(certs)
}

fn key(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| PkiError::Pem { what, source })
}

fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs("CA certificate", ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// TLS 1.3 server configuration that requires a client certificate signed by the CA.
pub fn server_config(
    ca_pem: &str,
    identity: &Identity,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, PkiError> {
    build_server_config(ca_pem, identity, &[alpn], false)
}

fn build_server_config(
    ca_pem: &str,
    identity: &Identity,
    alpns: &[&[u8]],
    allow_anonymous: bool,
) -> Result<rustls::ServerConfig, PkiError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    );
    let verifier = if allow_anonymous {
        verifier.allow_unauthenticated().build()?
    } else {
        verifier.build()?
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs("server certificate", &identity.cert_pem)?,
            key("server key", &identity.key_pem)?,
        )?;
    config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// Like [`server_config`], but a client may also come without a certificate, for the ALPNs in
/// `anonymous_alpns` only (joining hosts); the server checks which ALPN a connection chose and
/// that it has a certificate when that ALPN needs one.
pub fn server_config_with_anonymous(
    ca_pem: &str,
    identity: &Identity,
    alpns: &[&[u8]],
) -> Result<rustls::ServerConfig, PkiError> {
    build_server_config(ca_pem, identity, alpns, true)
}

/// TLS 1.3 client configuration that trusts only the CA and presents no certificate (a host
/// joining with a token).
pub fn anonymous_client_config(
    ca_pem: &str,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, PkiError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// TLS 1.3 client configuration that trusts only the CA and presents `identity`.
pub fn client_config(
    ca_pem: &str,
    identity: &Identity,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, PkiError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(
            certs("client certificate", &identity.cert_pem)?,
            key("client key", &identity.key_pem)?,
        )?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The Raft id of the scheduler replica named by a verified peer certificate (common name
/// `scheduler <id>`), or `None` if it is not a scheduler certificate.
pub fn replica_id_from_cert(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    cn.strip_prefix("scheduler ")?.parse().ok()
}

/// The node id named by a verified peer certificate (its common name).
pub fn node_id_from_cert(der: &[u8]) -> Result<NodeId, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| PkiError::Parse)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(PkiError::NoCommonName)?;
    Ok(NodeId::parse(cn)?)
}

/// A certificate's validity, as Unix seconds: (not before, not after).
pub fn cert_validity(cert_pem: &str) -> Result<(i64, i64), PkiError> {
    let der = certs("certificate", cert_pem)?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| PkiError::Parse)?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// When a certificate should be renewed: two thirds into its lifetime (Unix seconds).
pub fn renewal_due(cert_pem: &str) -> Result<i64, PkiError> {
    let (from, until) = cert_validity(cert_pem)?;
    Ok(from + (until - from) * 2 / 3)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Time until a certificate is due for renewal; zero when it is due, or cannot be read.
pub fn until_renewal(cert_pem: &str) -> std::time::Duration {
    let due = renewal_due(cert_pem).unwrap_or(0);
    std::time::Duration::from_secs(due.saturating_sub(unix_now()).max(0) as u64)
}

/// When a certificate expired (Unix seconds), if it has.
pub fn expired_at(cert_pem: &str) -> Option<i64> {
    cert_validity(cert_pem)
        .ok()
        .map(|(_, until)| until)
        .filter(|until| *until <= unix_now())
}

/// The node a PEM certificate names.
pub fn node_id_from_cert_pem(cert_pem: &str) -> Result<NodeId, PkiError> {
    node_id_from_cert(&certs("certificate", cert_pem)?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificate_names_its_node() {
        let ca = Ca::generate("test").unwrap();
        let node = NodeId::parse("host-a").unwrap();
        let id = ca.issue_node(&node).unwrap();
        let der = &certs("node", &id.cert_pem).unwrap()[0];
        assert_eq!(node_id_from_cert(der).unwrap(), node);
        client_config(&ca.identity.cert_pem, &id, crate::ALPN_AGENT).unwrap();
        let server = ca.issue_scheduler("1").unwrap();
        let der = &certs("scheduler", &server.cert_pem).unwrap()[0];
        assert_eq!(replica_id_from_cert(der), Some(1));
        assert_eq!(
            replica_id_from_cert(&certs("node", &id.cert_pem).unwrap()[0]),
            None
        );
        server_config(&ca.identity.cert_pem, &server, crate::ALPN_AGENT).unwrap();
    }

    #[test]
    fn a_signed_request_names_the_node_of_the_token_not_of_the_request() {
        let ca = Ca::generate("test").unwrap();
        let asked = NodeId::parse("host-b").unwrap();
        let (csr, key_pem) = node_csr(&asked).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        let granted = NodeId::parse("host-a").unwrap();
        let cert_pem = ca.sign_node_csr(&csr, &granted).unwrap();
        let der = &certs("node", &cert_pem).unwrap()[0];
        assert_eq!(node_id_from_cert(der).unwrap(), granted);
        // The certificate goes with the requester's own key.
        let identity = Identity { cert_pem, key_pem };
        client_config(&ca.identity.cert_pem, &identity, crate::ALPN_AGENT).unwrap();
        assert!(ca.sign_node_csr("not a request", &granted).is_err());
        let short = ca
            .sign_node_csr_for(&csr, &granted, std::time::Duration::from_secs(60))
            .unwrap();
        let (from, until) = cert_validity(&short).unwrap();
        assert_eq!(until - from, 66, "60 s, backdated by 6 s");
        assert_eq!(renewal_due(&short).unwrap(), from + 44);
    }
}
