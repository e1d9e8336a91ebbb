//! Who may talk to whom: every gRPC connection of a cluster (client → coordinator, executor →
//! coordinator, executor → executor for the exchange) is authenticated with mutual TLS, a
//! shared bearer token, or both.
//!
//! - **Mutual TLS** (`--tls-cert`, `--tls-key`, `--tls-ca`): servers present their
//!   certificate and require one from every peer, signed by the cluster's CA; a peer without
//!   one, or with one from another CA, is refused during the handshake, before any handler
//!   runs. Clients check the server's certificate against the same CA, for the host name of
//!   the URL or the name `--tls-domain` gives (one name for the whole cluster, when peers
//!   reach each other at addresses no certificate can list, such as pod IPs).
//! - **Bearer token** (`SILT_TOKEN`, or a file named by `--token-file` / `SILT_TOKEN_FILE`;
//!   never a command-line value): clients send `authorization: Bearer <token>`, servers
//!   refuse a call without the right one with `Unauthenticated` before its handler runs. The
//!   token is compared in constant time and never printed (its `Debug` is `***`).
//!
//! Without either, traffic is plain and unauthenticated: what the embedded cluster on
//! 127.0.0.1 uses (with a fresh random token per run, so another local user cannot join it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Request, Status};

/// Environment variable holding the token itself.
pub const TOKEN_ENV: &str = "SILT_TOKEN";
/// Environment variable naming a file that holds the token.
pub const TOKEN_FILE_ENV: &str = "SILT_TOKEN_FILE";
/// Tokens shorter than this are refused (a guessable token is no authentication).
pub const MIN_TOKEN_LEN: usize = 16;
/// Files larger than this are not certificates, keys or tokens.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A security setting that cannot be used, in one line naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read the {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Where a component's credentials come from (its command-line options).
#[derive(Clone, Debug, Default)]
pub struct SecurityOptions {
    /// This component's certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// The private key of that certificate (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA that signs every certificate of the cluster (PEM).
    pub tls_ca: Option<PathBuf>,
    /// The name servers' certificates are checked against (default: the URL's host).
    pub tls_domain: Option<String>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
}

/// A component's credentials, used for every connection it serves or opens.
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<Arc<Tls>>,
    token: Option<Token>,
}

struct Tls {
    identity: Identity,
    ca: Certificate,
    domain: Option<String>,
}

/// The bearer token, as the header value clients send.
#[derive(Clone)]
struct Token(Arc<MetadataValue<Ascii>>);

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Security {
    /// No TLS and no token: plain, unauthenticated traffic.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Plain traffic authenticated by `token` (the embedded cluster's per-run token).
    pub fn with_token(token: &str) -> Result<Self, SecurityError> {
        Ok(Self {
            tls: None,
            token: Some(Token::parse(token)?),
        })
    }

    /// Loads the credentials `options` name, and the token from the environment (`env`
    /// looks a variable up: `std::env::var` outside tests).
    pub fn load(
        options: &SecurityOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SecurityError> {
        let tls = match (&options.tls_cert, &options.tls_key, &options.tls_ca) {
            (None, None, None) => {
                if options.tls_domain.is_some() {
                    return Err(SecurityError::Invalid(
                        "--tls-domain needs --tls-cert, --tls-key and --tls-ca".into(),
                    ));
                }
                None
            }
            (Some(cert), Some(key), Some(ca)) => {
                let cert = read_pem(cert, "TLS certificate (--tls-cert)", "CERTIFICATE")?;
                let key = read_pem(key, "TLS key (--tls-key)", "PRIVATE KEY")?;
                let ca = read_pem(ca, "TLS CA (--tls-ca)", "CERTIFICATE")?;
                if let Some(d) = &options.tls_domain
                    && (d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '/'))
                {
                    return Err(SecurityError::Invalid(format!(
                        "--tls-domain `{d}` is not a host name"
                    )));
                }
                Some(Arc::new(Tls {
                    identity: Identity::from_pem(cert, key),
                    ca: Certificate::from_pem(ca),
                    domain: options.tls_domain.clone(),
                }))
            }
            (cert, key, _) => {
                let missing = if cert.is_none() {
                    "--tls-cert"
                } else if key.is_none() {
                    "--tls-key"
                } else {
                    "--tls-ca"
                };
                return Err(SecurityError::Invalid(format!(
                    "--tls-cert, --tls-key and --tls-ca go together: {missing} is missing"
                )));
            }
        };
        let file = options.token_file.clone().or_else(|| {
            env(TOKEN_FILE_ENV)
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
        });
        let token = match (env(TOKEN_ENV).filter(|t| !t.is_empty()), file) {
            (Some(_), Some(_)) => {
                return Err(SecurityError::Invalid(format!(
                    "the token is given twice: {TOKEN_ENV} and a token file; keep one"
                )));
            }
            (Some(t), None) => Some(
                Token::parse(&t)
                    .map_err(|e| SecurityError::Invalid(format!("{TOKEN_ENV}: {e}")))?,
            ),
            (None, Some(path)) => {
                let text = read(&path, "token file")?;
                let text = String::from_utf8(text).map_err(|_| {
                    SecurityError::Invalid(format!("the token file {} is not text", path.display()))
                })?;
                Some(
                    Token::parse(text.trim_end_matches(['\n', '\r'])).map_err(|e| {
                        SecurityError::Invalid(format!("the token file {}: {e}", path.display()))
                    })?,
                )
            }
            (None, None) => None,
        };
        Ok(Self { tls, token })
    }

    /// Whether connections use TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether calls carry (and servers require) a bearer token.
    pub fn token(&self) -> bool {
        self.token.is_some()
    }

    /// A server builder that serves TLS and requires a client certificate from the
    /// cluster's CA, when TLS is set.
    pub fn server(&self) -> Result<Server, SecurityError> {
        install_crypto_provider();
        let builder = Server::builder();
        match &self.tls {
            None => Ok(builder),
            Some(tls) => builder
                .tls_config(
                    ServerTlsConfig::new()
                        .identity(tls.identity.clone())
                        .client_ca_root(tls.ca.clone()),
                )
                .map_err(|e| SecurityError::Invalid(format!("TLS setup failed: {e}"))),
        }
    }

    /// Refuses a call that does not carry the token (when one is set): for a server's
    /// interceptor, so that no handler runs for it.
    pub fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(Token(want)) = &self.token else {
            return Ok(());
        };
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, want.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "missing or wrong bearer token (set SILT_TOKEN or --token-file)",
            ))
        }
    }

    /// The URL to reach `target` at: a URL, or a bare `HOST:PORT` (an executor's shuffle
    /// address). With TLS the scheme is `https` (an `http://` URL is upgraded: a cluster with
    /// TLS never talks in clear); without, an `https://` URL is an error naming the missing
    /// options.
    pub fn url(&self, target: &str) -> Result<String, SecurityError> {
        let rest = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"));
        if self.tls.is_none() && target.starts_with("https://") {
            return Err(SecurityError::Invalid(format!(
                "{target} is an https:// URL: give --tls-cert, --tls-key and --tls-ca"
            )));
        }
        let rest = rest.unwrap_or(target);
        if rest.is_empty() || rest.contains("://") {
            return Err(SecurityError::Invalid(format!(
                "`{target}` is not an http(s)://HOST:PORT URL"
            )));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{rest}"))
    }

    /// An endpoint for `target` (see [`Security::url`]) with this component's TLS settings.
    pub fn endpoint(&self, target: &str) -> Result<Endpoint, SecurityError> {
        install_crypto_provider();
        let url = self.url(target)?;
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| SecurityError::Invalid(format!("`{target}` is not a valid URL")))?;
        match &self.tls {
            None => Ok(endpoint),
            Some(tls) => {
                let mut config = ClientTlsConfig::new()
                    .ca_certificate(tls.ca.clone())
                    .identity(tls.identity.clone());
                if let Some(d) = &tls.domain {
                    config = config.domain_name(d.clone());
                }
                endpoint
                    .tls_config(config)
                    .map_err(|e| SecurityError::Invalid(format!("TLS setup for {url}: {e}")))
            }
        }
    }

    /// `channel` with the token attached to every call.
    pub fn authenticate(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, AttachToken(self.token.clone()))
    }
}

/// A channel whose calls carry the component's token.
pub type AuthChannel = InterceptedService<Channel, AttachToken>;

/// Adds `authorization: Bearer …` to every call (when a token is set).
#[derive(Clone)]
pub struct AttachToken(Option<Token>);

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(Token(value)) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", (**value).clone());
        }
        Ok(request)
    }
}

impl Token {
    fn parse(token: &str) -> Result<Self, SecurityError> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(SecurityError::Invalid(format!(
                "the token is shorter than {MIN_TOKEN_LEN} characters"
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecurityError::Invalid(
                "the token holds a space or a character that is not printable ASCII".into(),
            ));
        }
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| SecurityError::Invalid("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(Self(Arc::new(value)))
    }
}

/// A transport error with its causes (`transport error` alone names nothing): a refused
/// connection, a TLS handshake that failed and why, a peer that does not speak HTTP/2.
pub fn transport_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    // The outermost words are tonic's generic ones when a cause says more.
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    parts.join(": ")
}

/// Why a call failed when no silt server answered it (the connection failed, or what
/// answered does not speak gRPC), in words; `None` for a server's own answer.
pub fn unanswered(status: &Status) -> Option<String> {
    let source = std::error::Error::source(status)?;
    let chain = transport_error(source);
    let text = format!("{} {chain}", status.message()).to_lowercase();
    if text.contains("h2 protocol") || text.contains("http2 error") || text.contains("frame") {
        return Some(
            "what answers there does not speak gRPC over HTTP/2 (not a silt coordinator, or a TLS port dialled without --tls-* options)"
                .into(),
        );
    }
    Some(chain)
}

/// Makes ring the process's rustls crypto provider (the build has two, so rustls cannot
/// pick one by itself); once, before any TLS configuration is built.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one first: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Equal bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, SecurityError> {
    let fail = |reason: String| SecurityError::Read {
        what,
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.kind().to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail("larger than 1 MiB".into()));
    }
    std::fs::read(path).map_err(|e| fail(e.kind().to_string()))
}

/// A PEM file holding a `-----BEGIN … <label>-----` block.
fn read_pem(path: &Path, what: &'static str, label: &str) -> Result<Vec<u8>, SecurityError> {
    let bytes = read(path, what)?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")));
    if !found {
        return Err(SecurityError::Read {
            what,
            path: path.display().to_string(),
            reason: format!("no PEM {label} in it"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn with(token: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", token.parse().unwrap());
        r
    }

    #[test]
    fn the_token_is_required_compared_exactly_and_never_shown() {
        let s = Security::load(
            &SecurityOptions::default(),
            env(&[(TOKEN_ENV, "0123456789abcdef-secret")]),
        )
        .unwrap();
        assert!(s.token() && !s.tls());
        assert!(s.admit(&with("Bearer 0123456789abcdef-secret")).is_ok());
        for wrong in [
            "Bearer 0123456789abcdef-secreT",
            "Bearer 0123456789abcdef-secret ",
            "0123456789abcdef-secret",
            "Bearer ",
        ] {
            let e = s.admit(&with(wrong)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{wrong}");
        }
        assert!(s.admit(&Request::new(())).is_err());
        assert!(!format!("{s:?}").contains("secret"), "{s:?}");
        // What clients attach is what servers want.
        let mut attach = AttachToken(s.token.clone());
        assert!(s.admit(&attach.call(Request::new(())).unwrap()).is_ok());
        // Without a token, every call is admitted and nothing is attached.
        let plain = Security::plain();
        assert!(plain.admit(&Request::new(())).is_ok());
        let r = AttachToken(None).call(Request::new(())).unwrap();
        assert!(r.metadata().get("authorization").is_none());
    }

    #[test]
    fn bad_settings_are_one_line_naming_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let short = file("short", "abc\n");
        let good = file("good", "0123456789abcdef0123\n");
        let spaced = file("spaced", "0123456789 abcdef0123\n");
        let not_pem = file("cert.pem", "hello");
        type Case<'a> = (SecurityOptions, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                SecurityOptions {
                    token_file: Some(short.clone()),
                    ..Default::default()
                },
                vec![],
                "shorter than 16",
            ),
            (
                SecurityOptions {
                    token_file: Some(spaced),
                    ..Default::default()
                },
                vec![],
                "space",
            ),
            (
                SecurityOptions::default(),
                vec![(TOKEN_ENV, "short")],
                "SILT_TOKEN: the token is shorter",
            ),
            (
                SecurityOptions {
                    token_file: Some(good.clone()),
                    ..Default::default()
                },
                vec![(TOKEN_ENV, "0123456789abcdef0123")],
                "given twice",
            ),
            (
                SecurityOptions {
                    token_file: Some(dir.path().join("nope")),
                    ..Default::default()
                },
                vec![],
                "token file",
            ),
            (
                SecurityOptions {
                    tls_cert: Some(not_pem.clone()),
                    tls_key: Some(not_pem.clone()),
                    ..Default::default()
                },
                vec![],
                "--tls-ca is missing",
            ),
            (
                SecurityOptions {
                    tls_cert: Some(not_pem.clone()),
                    tls_key: Some(not_pem.clone()),
                    tls_ca: Some(not_pem.clone()),
                    ..Default::default()
                },
                vec![],
                "no PEM CERTIFICATE",
            ),
            (
                SecurityOptions {
                    tls_domain: Some("silt".into()),
                    ..Default::default()
                },
                vec![],
                "--tls-domain needs",
            ),
        ];
        for (options, vars, want) in cases {
            let e = Security::load(&options, env(&vars))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(!e.contains('\n') && !e.contains("0123456789"), "{e}");
        }
        // A token file's trailing newline is not part of the token; SILT_TOKEN_FILE works too.
        let s = Security::load(
            &SecurityOptions::default(),
            env(&[(TOKEN_FILE_ENV, good.to_str().unwrap())]),
        )
        .unwrap();
        assert!(s.admit(&with("Bearer 0123456789abcdef0123")).is_ok());
    }

    #[test]
    fn urls_take_the_scheme_of_the_security_in_use() {
        let plain = Security::plain();
        assert_eq!(
            plain.url("127.0.0.1:7077").unwrap(),
            "http://127.0.0.1:7077"
        );
        assert_eq!(
            plain.url("http://h:1").unwrap(),
            "http://h:1",
            "unchanged without TLS"
        );
        let e = plain.url("https://h:1").unwrap_err().to_string();
        assert!(e.contains("--tls-ca"), "{e}");
        assert!(plain.url("ftp://h:1").is_err());
        assert!(plain.url("").is_err());
        // With TLS, plain URLs are upgraded: a cluster with TLS never talks in clear.
        let dir = tempfile::tempdir().unwrap();
        let pem = |name: &str, label: &str| {
            let p = dir.path().join(name);
            std::fs::write(
                &p,
                format!("-----BEGIN {label}-----\nAA==\n-----END {label}-----\n"),
            )
            .unwrap();
            p
        };
        let tls = Security::load(
            &SecurityOptions {
                tls_cert: Some(pem("c", "CERTIFICATE")),
                tls_key: Some(pem("k", "PRIVATE KEY")),
                tls_ca: Some(pem("ca", "CERTIFICATE")),
                ..Default::default()
            },
            env(&[]),
        )
        .unwrap();
        assert!(tls.tls() && !tls.token());
        for target in ["http://h:1", "https://h:1", "h:1"] {
            assert_eq!(tls.url(target).unwrap(), "https://h:1");
        }
    }
}
