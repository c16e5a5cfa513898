//! HTTPS on the edge port: the CA, the certificates, the TLS server configuration.
//!
//! The edge serves TLS beside plain HTTP on one port ([`crate::serve`] sniffs each
//! connection's first byte), with leaf certificates signed by a CA of feitian's own, chosen by
//! the name the client asks for: any `*.aliyuncs.com` host, `localhost`, the listen address.
//! Clients trust that CA (`feitian ca`) and then reach feitian by the cloud's real host names,
//! directly or through the edge as an HTTPS proxy (`CONNECT` to a cloud host is answered by
//! the edge itself; the tunnel is served here, never forwarded). docs/https.md says how.

pub mod ca;
mod leaves;
pub mod names;

pub use ca::{Ca, CaError};
use std::net::IpAddr;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The cryptography behind the edge's TLS: *ring*'s. rustls deprecates it for want of
/// post-quantum key exchange; it is kept because it builds with a C compiler alone (aws-lc-rs
/// needs more of a toolchain, and minutes more on every clean build), and the edge's TLS is a
/// local cloud's, under a CA of its own. Switching is this function and the Cargo features.
#[allow(deprecated)]
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// What the edge needs to answer TLS connections.
pub struct TlsEdge {
    acceptor: tokio_rustls::TlsAcceptor,
    ca: Arc<Ca>,
}

impl TlsEdge {
    /// TLS with leaves from `ca`; the edge's own leaf names `own_addresses` (the listen
    /// address; an unspecified one is left out).
    pub fn new(ca: Ca, own_addresses: &[IpAddr]) -> Result<Arc<Self>, TlsError> {
        let ca = Arc::new(ca);
        let resolver = Arc::new(leaves::Leaves::new(ca.clone(), own_addresses)?);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        Ok(Arc::new(TlsEdge { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca }))
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }
}
