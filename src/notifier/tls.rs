//! TLS to RabbitMQ, as oslo.messaging's rabbit driver sets it up: `[oslo_messaging_rabbit] ssl`
//! (or `?ssl=1` in the transport_url, whose query overrides that section's options), the
//! broker's certificate verified against `ssl_ca_file` and, when the URL names one broker, its
//! name too; without `ssl_ca_file`, against the system's CAs with the name unchecked;
//! `ssl_cert_file` and `ssl_key_file` present a client certificate.

use std::sync::Arc;

use amqprs::tls::TlsAdaptor;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::{RabbitTls, oslo_bool};

/// Where the system keeps its CA bundle (OpenSSL's default file, as Python's load_default_certs
/// finds it), Debian's first.
const SYSTEM_CAS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// `[oslo_messaging_rabbit]`'s TLS options with the transport_url's query applied over them.
pub fn settings(section: &RabbitTls, url: &str) -> Result<RabbitTls, String> {
    let mut t = section.clone();
    let Some((_, query)) = url.split_once('?') else {
        return Ok(t);
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::percent_decode(&v.replace('+', " "));
        let file = || (!v.is_empty()).then(|| v.clone());
        match k {
            "ssl" => {
                t.ssl = oslo_bool(&v)
                    .ok_or_else(|| format!("transport_url: ssl={v} is not a boolean"))?
            }
            "ssl_ca_file" => t.ca_file = file(),
            "ssl_cert_file" => t.cert_file = file(),
            "ssl_key_file" => t.key_file = file(),
            _ => {}
        }
    }
    Ok(t)
}

/// What connects to the URL's `brokers` over TLS; None when `ssl` is off. As oslo.messaging:
/// the broker's name is checked only against `ssl_ca_file` and only when the URL names a
/// single broker; otherwise the chain alone.
pub fn client(t: &RabbitTls, brokers: usize) -> Result<Option<Client>, String> {
    if !t.ssl {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    let ca = match &t.ca_file {
        Some(f) => f.clone(),
        None => SYSTEM_CAS
            .iter()
            .find(|f| std::path::Path::new(f).exists())
            .ok_or("ssl = true, no ssl_ca_file and no system CA bundle")?
            .to_string(),
    };
    let certs = read_certs(&ca).map_err(|e| format!("ssl_ca_file {ca}: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("ssl_ca_file {ca}: no CA certificate in it"));
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("ssl_ca_file {ca}: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if t.ca_file.is_some() && brokers == 1 {
        webpki
    } else {
        Arc::new(ChainOnly(webpki))
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert), key) => {
            // Without a key file, the key is in the certificate's file (Python's load_cert_chain).
            let key = key.as_deref().unwrap_or(cert);
            let chain = read_certs(cert).map_err(|e| format!("ssl_cert_file {cert}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("ssl_key_file {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("ssl_cert_file {cert}: {e}"))?
        }
        (None, _) => builder.with_no_client_auth(),
    };
    Ok(Some(Client(Arc::new(config))))
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The TLS side of the connections to the brokers.
pub struct Client(Arc<ClientConfig>);

impl Client {
    /// For a connection to `host`.
    pub fn adaptor(&self, host: &str) -> TlsAdaptor {
        TlsAdaptor::new(
            tokio_rustls::TlsConnector::from(self.0.clone()),
            host.to_string(),
        )
    }
}

/// A verifier that takes a certificate whose chain is good whatever name it was issued for.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_urls_query_overrides_the_section() {
        let section = RabbitTls {
            ssl: false,
            ca_file: Some("/etc/a.pem".into()),
            ..RabbitTls::default()
        };
        let t = settings(
            &section,
            "rabbit://g:s@h:5671//?ssl=1&ssl_ca_file=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert!(t.ssl);
        assert_eq!(t.ca_file.as_deref(), Some("/tmp/ca.pem"));
        let t = settings(&section, "rabbit://g:s@h:5672//").unwrap();
        assert_eq!(t, section);
        assert!(!settings(&section, "rabbit://h//?ssl=0").unwrap().ssl);
        assert!(settings(&section, "rabbit://h//?ssl=maybe").is_err());
        assert!(client(&RabbitTls::default(), 1).unwrap().is_none());
        let missing = RabbitTls {
            ssl: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RabbitTls::default()
        };
        assert!(
            client(&missing, 1)
                .err()
                .unwrap()
                .contains("/nonexistent/ca.pem")
        );
    }
}
