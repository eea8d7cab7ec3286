//! The HTTP client instant-acme talks to the ACME directory through: ureq (our one
//! outgoing HTTPS client) on the blocking pool, trusting the web PKI roots or, for test
//! CAs such as pebble, the certificate in `[acme] ca_file`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::AcmeError;

pub struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    /// `ca_file`: a PEM file with the CA certificate(s) to trust instead of the web PKI.
    pub fn new(ca_file: Option<&Path>) -> Result<UreqClient, AcmeError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                AcmeError::Setup(format!("cannot read acme.ca_file {}: {e}", path.display()))
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(AcmeError::Setup(format!(
                    "acme.ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .user_agent(format!("appliance/{}", crate::VERSION))
            .build()
            .new_agent();
        Ok(UreqClient { agent })
    }
}

type Boxed = Box<dyn std::error::Error + Send + Sync>;

impl HttpClient for UreqClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let agent = self.agent.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?
                .to_bytes();
            let request = http::Request::from_parts(parts, body.to_vec());
            let response = tokio::task::spawn_blocking(move || -> Result<_, Boxed> {
                let response = agent.run(request)?;
                let (parts, mut body) = response.into_parts();
                let bytes = body.read_to_vec()?;
                Ok(http::Response::from_parts(
                    parts,
                    Full::new(Bytes::from(bytes)),
                ))
            })
            .await
            .map_err(|e| instant_acme::Error::Other(Box::new(e)))?
            .map_err(instant_acme::Error::Other)?;
            Ok(BytesResponse::from(response))
        })
    }
}
