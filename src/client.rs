//! How banditd's own clients (the CLI, the simulator's live mode) reach a
//! daemon: plaintext `http://` or TLS `https://` (trusting `--tls-ca`, or
//! the system's roots without it), and an access token sent as
//! `authorization: Bearer …` on every call.

use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub target: String,
    /// PEM file of the CA that signed the daemon's certificate.
    pub tls_ca: Option<PathBuf>,
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
            if self.tls_ca.is_some() {
                return Err(usage(
                    "--tls-ca",
                    "given, but the target is http://; use https:// to connect with TLS".into(),
                ));
            }
            return Ok(endpoint);
        }
        let tls = match &self.tls_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    usage("--tls-ca", format!("cannot read {}: {e}", path.display()))
                })?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE") {
                    return Err(usage(
                        "--tls-ca",
                        format!("{} is not a PEM certificate", path.display()),
                    ));
                }
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint
            .tls_config(tls)
            .map_err(|e| usage("--tls-ca", format!("cannot set up TLS: {e}")))
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
