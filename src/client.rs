//! How banditd's own clients (the CLI, the simulator's live mode) reach a
//! daemon: plaintext `http://` or TLS `https://` (trusting `--tls-ca`, or
//! the system's roots without it; with `--tls-client-cert` and
//! `--tls-client-key` for a daemon that requires mutual TLS), and an access
//! token sent as `authorization: Bearer …` on every call.

use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub target: String,
    /// PEM file of the CA that signed the daemon's certificate.
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate and key this client presents (mutual TLS: a daemon
    /// with `--tls-client-ca`); both or neither.
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
    /// An access token (`banditd token new`).
    pub token: Option<String>,
}

/// A connection with the token attached to every call.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer TOKEN` to every request (nothing without a token).
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The settings are wrong (nothing was sent): exit 64 in the CLI.
    #[error("{setting}: {message}")]
    Usage {
        setting: &'static str,
        message: String,
    },
    /// The daemon could not be reached.
    #[error("cannot connect to {target}: {source} (is `banditd serve` running?)")]
    Unreachable {
        target: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl Connect {
    /// The endpoint with TLS set up when the target is `https://`.
    pub fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let usage = |setting, message: String| ConnectError::Usage { setting, message };
        // PEM files checked as the daemon checks its own.
        let read_pem = |setting, path: &std::path::Path, marker, what| {
            crate::config::pem_file(path, marker, what).map_err(|m| usage(setting, m))
        };
        let endpoint = Endpoint::from_shared(self.target.clone()).map_err(|e| {
            usage(
                "--target",
                format!(
                    "{:?} is not a URL like http://127.0.0.1:50051: {e}",
                    self.target
                ),
            )
        })?;
        let https = self.target.starts_with("https://");
        if !https && !self.target.starts_with("http://") {
            return Err(usage(
                "--target",
                format!("{:?}: expected http:// or https://", self.target),
            ));
        }
        if !https {
            let tls_flag = [
                ("--tls-ca", self.tls_ca.is_some()),
                ("--tls-client-cert", self.tls_client_cert.is_some()),
                ("--tls-client-key", self.tls_client_key.is_some()),
            ]
            .into_iter()
            .find(|(_, given)| *given);
            if let Some((flag, _)) = tls_flag {
                return Err(usage(
                    flag,
                    "given, but the target is http://; use https:// to connect with TLS".into(),
                ));
            }
            return Ok(endpoint);
        }
        let identity = match (&self.tls_client_cert, &self.tls_client_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(usage(
                    "--tls-client-key",
                    "missing: --tls-client-cert needs its key".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(usage(
                    "--tls-client-cert",
                    "missing: --tls-client-key needs its certificate".into(),
                ))
            }
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                read_pem("--tls-client-cert", cert, "CERTIFICATE", "certificate")?,
                read_pem("--tls-client-key", key, "PRIVATE KEY", "private key")?,
            )),
        };
        let mut tls =
            match &self.tls_ca {
                Some(path) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
                    read_pem("--tls-ca", path, "CERTIFICATE", "certificate")?,
                )),
                None => ClientTlsConfig::new().with_native_roots(),
            };
        let setting = match identity {
            Some(identity) => {
                tls = tls.identity(identity);
                "--tls-ca, --tls-client-cert, --tls-client-key"
            }
            None => "--tls-ca",
        };
        endpoint
            .tls_config(tls)
            .map_err(|e| usage(setting, format!("cannot set up TLS: {e}")))
    }

    /// The `authorization` value, checked to be a header value.
    fn bearer(&self) -> Result<Bearer, ConnectError> {
        match &self.token {
            None => Ok(Bearer(None)),
            Some(t) if t.is_empty() => Ok(Bearer(None)),
            Some(t) => format!("Bearer {}", t.trim())
                .parse::<MetadataValue<Ascii>>()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| ConnectError::Usage {
                    setting: "--token (BANDITD_TOKEN)",
                    message: "is not a token (printable ASCII, as `banditd token new` prints)"
                        .into(),
                }),
        }
    }

    /// Connects now.
    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        let bearer = self.bearer()?;
        let channel =
            self.endpoint()?
                .connect()
                .await
                .map_err(|source| ConnectError::Unreachable {
                    target: self.target.clone(),
                    source,
                })?;
        Ok(InterceptedService::new(channel, bearer))
    }
}
