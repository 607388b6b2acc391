//! Configuration: one YAML file, overlaid by `GATEHOUSE_*` environment variables, with
//! `file:/path` secrets. Unknown keys and bad values are refused with the key's dotted
//! name, so an operator knows exactly what to fix (README.md).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Environment variables that configure the program but are not config keys.
const RESERVED_ENV: &[&str] = &["GATEHOUSE_CONFIG", "GATEHOUSE_LOG", "GATEHOUSE_LOG_FORMAT"];
const ENV_PREFIX: &str = "GATEHOUSE_";

/// A configuration problem, always naming the key (or file) it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: invalid YAML: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A secret value: never printed by `Debug`, read from a file when given as `file:/path`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.strip_prefix("file:") {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    de::Error::custom(format!("cannot read secret file {path}: {e}"))
                })?;
                // Files written by `echo` or editors end in a newline that is not part of the secret.
                Ok(Secret(text.trim_end_matches(['\n', '\r']).to_string()))
            }
            None => Ok(Secret(raw)),
        }
    }
}

/// A duration written as `10s`, `15m`, `12h`, `200ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        humantime::parse_duration(raw.trim())
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!("`{raw}` is not a duration like 10s, 15m, 12h: {e}"))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    #[serde(default = "default_cookie_name")]
    pub name: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default = "default_true")]
    pub secure: bool,
    #[serde(default = "default_same_site")]
    pub same_site: SameSite,
    pub secret: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_session_ttl")]
    pub ttl: HumanDuration,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: HumanDuration,
    /// How many cached sessions keep their policy documents built (about 4 KB each); every
    /// cached session keeps a compact copy (about 1.5 KB in all) and the others rebuild them
    /// on use (docs/operations.md, "Session cache").
    #[serde(default = "default_built_documents")]
    pub built_documents: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ttl: default_session_ttl(),
            idle_timeout: default_idle_timeout(),
            cache_ttl: default_cache_ttl(),
            refresh_interval: default_refresh_interval(),
            built_documents: default_built_documents(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
}

/// Names of the identity headers in verify answers. Defaults are oauth2-proxy's, so
/// ingress-nginx annotations written for it work unchanged.
pub use gatehouse_core::decide::HeaderNames;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
    /// Where records wait, fsync'd, while the database is down.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Postgres audit partitions older than this many days are dropped.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Records the in-memory queue holds: the bound on the audit trail's memory. Past half
    /// of it the writer spools batches instead of writing them; a full queue sends records
    /// to the spool directly (docs/audit.md, "Under load").
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            batch_size: default_batch_size(),
            flush_interval: default_flush_interval(),
            spool_dir: default_spool_dir(),
            retention_days: default_retention_days(),
            queue_capacity: default_queue_capacity(),
        }
    }
}

/// The whole configuration (README.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    pub public_url: url::Url,
    #[serde(default = "default_database_url")]
    pub database_url: Secret,
    #[serde(default = "default_policies_dir")]
    pub policies_dir: PathBuf,
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub allowed_redirect_domains: Vec<String>,
    pub cookie: CookieConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    #[serde(default)]
    pub headers: HeaderNames,
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    #[serde(default)]
    pub grpc_listen: Option<SocketAddr>,
    #[serde(default)]
    pub audit: AuditConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4180))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_database_url() -> Secret {
    Secret::new("sqlite://gatehouse.db")
}
fn default_policies_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_trusted_proxies() -> Vec<IpNet> {
    ["127.0.0.1/32", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}
fn default_cookie_name() -> String {
    "_gatehouse".into()
}
fn default_true() -> bool {
    true
}
fn default_same_site() -> SameSite {
    SameSite::Lax
}
fn default_session_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(12 * 3600))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2 * 3600))
}
fn default_cache_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_built_documents() -> u64 {
    10_000
}
fn default_refresh_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}
fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_batch_size() -> usize {
    1000
}
fn default_flush_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(200))
}
fn default_queue_capacity() -> usize {
    crate::audit::DEFAULT_QUEUE_CAPACITY
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("spool")
}
fn default_retention_days() -> u32 {
    90
}

/// The minimum cookie secret length: HMAC-SHA256 keys shorter than 32 bytes weaken the
/// signature below the token's own 256 bits.
pub const MIN_COOKIE_SECRET_BYTES: usize = 32;

impl Config {
    /// Loads the file at `path`, overlays the process environment, validates, and makes
    /// relative paths relative to the file ([`Config::resolve_relative_paths`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut config = Self::from_yaml_and_env(&text, path, &env)?;
        config.resolve_relative_paths(path);
        Ok(config)
    }

    /// Parses `yaml`, applies `GATEHOUSE_*` overrides from `env`, and validates. `origin`
    /// names the file in error messages.
    pub fn from_yaml_and_env(
        yaml: &str,
        origin: &Path,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut tree: serde_json::Value = if yaml.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| {
                let (line, col) = crate::yaml::error_location(&e);
                ConfigError::Yaml {
                    path: origin.to_path_buf(),
                    line,
                    col,
                    message: crate::yaml::error_message(&e),
                }
            })?
        };
        if !tree.is_object() {
            return Err(ConfigError::Yaml {
                path: origin.to_path_buf(),
                line: 1,
                col: 1,
                message: "the top level must be a mapping of keys".into(),
            });
        }
        apply_env_overrides(&mut tree, env)?;
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            ConfigError::key(
                if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.public_url.scheme(), "http" | "https") {
            return Err(ConfigError::key(
                "public_url",
                "must be an http or https URL",
            ));
        }
        if self.public_url.host_str().is_none() {
            return Err(ConfigError::key("public_url", "must name a host"));
        }
        if self.cookie.secret.expose().len() < MIN_COOKIE_SECRET_BYTES {
            return Err(ConfigError::key(
                "cookie.secret",
                format!("must be at least {MIN_COOKIE_SECRET_BYTES} bytes"),
            ));
        }
        if self.cookie.name.is_empty()
            || !self
                .cookie
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::key(
                "cookie.name",
                "must be letters, digits, `_` or `-`",
            ));
        }
        if self.cookie.same_site == SameSite::None && !self.cookie.secure {
            return Err(ConfigError::key(
                "cookie.same_site",
                "`none` requires cookie.secure: true (browsers reject it otherwise)",
            ));
        }
        let db = self.database_url.expose();
        if !(db.starts_with("postgres://")
            || db.starts_with("postgresql://")
            || db.starts_with("sqlite:"))
        {
            return Err(ConfigError::key(
                "database_url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        let s = &self.session;
        if s.ttl.0.is_zero() || s.idle_timeout.0.is_zero() {
            return Err(ConfigError::key(
                "session",
                "ttl and idle_timeout must be positive",
            ));
        }
        if s.cache_ttl.0 > s.idle_timeout.0 {
            return Err(ConfigError::key(
                "session.cache_ttl",
                "must not exceed session.idle_timeout",
            ));
        }
        for (i, domain) in self.allowed_redirect_domains.iter().enumerate() {
            let bare = domain.strip_prefix('.').unwrap_or(domain);
            if bare.is_empty()
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(ConfigError::key(
                    format!("allowed_redirect_domains[{i}]"),
                    format!(
                        "`{domain}` is not a domain name (use `example.com` or `.example.com`)"
                    ),
                ));
            }
        }
        for (key, name) in [
            ("headers.user", &self.headers.user),
            ("headers.email", &self.headers.email),
            ("headers.groups", &self.headers.groups),
            (
                "headers.preferred_username",
                &self.headers.preferred_username,
            ),
            ("headers.tenant", &self.headers.tenant),
        ] {
            if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::key(
                    key,
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        if self.audit.batch_size == 0 {
            return Err(ConfigError::key("audit.batch_size", "must be at least 1"));
        }
        if self.audit.queue_capacity < 2 * self.audit.batch_size {
            return Err(ConfigError::key(
                "audit.queue_capacity",
                "must hold at least two batches (2 × audit.batch_size)",
            ));
        }
        if self.audit.flush_interval.0.is_zero() {
            return Err(ConfigError::key("audit.flush_interval", "must be positive"));
        }
        if self.audit.retention_days == 0 {
            return Err(ConfigError::key(
                "audit.retention_days",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Makes relative paths in the file (`policies_dir`, a SQLite database) relative to the
    /// config file's directory, so `serve --config deploy/gatehouse.yaml` and
    /// `session create --config deploy/gatehouse.yaml` agree from any working directory.
    pub fn resolve_relative_paths(&mut self, config_path: &Path) {
        let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return;
        };
        if self.policies_dir.is_relative() {
            self.policies_dir = dir.join(&self.policies_dir);
        }
        if self.audit.spool_dir.is_relative() {
            self.audit.spool_dir = dir.join(&self.audit.spool_dir);
        }
        if let Some(rel) = sqlite_relative_path(self.database_url.expose()) {
            let (path, params) = rel
                .split_once('?')
                .map_or((rel, None), |(p, q)| (p, Some(q)));
            let joined = dir.join(path).display().to_string();
            self.database_url = Secret::new(match params {
                Some(q) => format!("sqlite://{joined}?{q}"),
                None => format!("sqlite://{joined}"),
            });
        }
    }
}

/// The relative file path of a `sqlite:` URL, or `None` for absolute paths and in-memory
/// databases.
fn sqlite_relative_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    if rest.is_empty()
        || rest.starts_with('/')
        || rest.starts_with(":memory:")
        || rest.contains("mode=memory")
    {
        return None;
    }
    Some(rest)
}

/// Applies `GATEHOUSE_A__B=value` as `a.b: value`. Values are parsed as YAML scalars or flow
/// sequences, so `GATEHOUSE_COOKIE__SECURE=false` and `GATEHOUSE_TRUSTED_PROXIES=[10.0.0.0/8]`
/// have their natural types.
fn apply_env_overrides(
    tree: &mut serde_json::Value,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut overrides: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in env {
        if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            overrides.insert(rest, value);
        }
    }
    for (rest, raw) in overrides {
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let env_name = format!("{ENV_PREFIX}{rest}");
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::key(env_name, "empty key segment"));
        }
        // An empty value means "empty string", not null; anything YAML cannot read is text.
        let value: serde_json::Value = if raw.trim().is_empty() {
            serde_json::Value::String(raw.to_string())
        } else {
            serde_saphyr::from_str(raw)
                .unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))
        };
        let mut node = &mut *tree;
        for (i, segment) in path.iter().enumerate() {
            if node.is_null() {
                *node = serde_json::Value::Object(Default::default());
            }
            let serde_json::Value::Object(map) = node else {
                return Err(ConfigError::key(
                    path[..i].join("."),
                    format!("{env_name} sets a nested key but this key is not a mapping"),
                ));
            };
            if i + 1 == path.len() {
                map.insert(segment.clone(), value.clone());
                break;
            }
            node = map
                .entry(segment.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn base() -> String {
        format!("public_url: https://auth.example.com\ncookie:\n  secret: {SECRET}\n")
    }

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml_and_env(yaml, Path::new("test.yaml"), &env)
    }

    #[test]
    fn minimal_config_has_safe_defaults() {
        let c = load(&base(), &[]).unwrap();
        assert!(c.cookie.secure);
        assert_eq!(c.cookie.same_site, SameSite::Lax);
        assert_eq!(c.cookie.name, "_gatehouse");
        assert_eq!(c.session.cache_ttl.0, Duration::from_secs(10));
        assert_eq!(c.headers.user, "X-Auth-Request-User");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&format!("{}cookie_typo: 1\n", base()), &[]).unwrap_err();
        assert!(err.to_string().contains("cookie_typo"), "{err}");
    }

    #[test]
    fn nested_unknown_key_is_named_with_its_path() {
        let yaml = format!("{}session:\n  tll: 1h\n", base());
        let err = load(&yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("session") && err.contains("tll"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let yaml = format!("{}session:\n  ttl: forever\n", base());
        let err = load(&yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("session.ttl"), "{err}");
    }

    #[test]
    fn env_overrides_nested_keys_with_natural_types() {
        let c = load(
            &base(),
            &[
                ("GATEHOUSE_COOKIE__SECURE", "false"),
                ("GATEHOUSE_SESSION__TTL", "1h"),
                ("GATEHOUSE_TRUSTED_PROXIES", "[10.0.0.0/8]"),
                ("GATEHOUSE_CONFIG", "ignored.yaml"),
            ],
        )
        .unwrap();
        assert!(!c.cookie.secure);
        assert_eq!(c.session.ttl.0, Duration::from_secs(3600));
        assert_eq!(
            c.trusted_proxies,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn unknown_env_override_is_refused() {
        let err = load(&base(), &[("GATEHOUSE_LISTN", "1.2.3.4:5")]).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn secrets_are_read_from_files_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cookie");
        std::fs::write(&file, format!("{SECRET}-from-file\n")).unwrap();
        let yaml = format!(
            "public_url: https://auth.example.com\ncookie:\n  secret: file:{}\n",
            file.display()
        );
        let c = load(&yaml, &[]).unwrap();
        assert_eq!(c.cookie.secret.expose(), format!("{SECRET}-from-file"));
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn missing_secret_file_names_the_key() {
        let yaml = "public_url: https://a.example.com\ncookie:\n  secret: file:/nonexistent/x\n";
        let err = load(yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("cookie.secret"), "{err}");
    }

    #[test]
    fn short_cookie_secret_is_refused() {
        let yaml = "public_url: https://a.example.com\ncookie:\n  secret: short\n";
        let err = load(yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("cookie.secret"), "{err}");
    }

    #[test]
    fn bad_cidr_names_the_list_entry() {
        let yaml = format!("{}trusted_proxies: [10.0.0.0/8, nonsense]\n", base());
        let err = load(&yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("trusted_proxies[1]"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let yaml = format!(
            "{}database_url: sqlite://data/g.db?mode=rwc\npolicies_dir: pol\n",
            base()
        );
        let mut c = load(&yaml, &[]).unwrap();
        c.resolve_relative_paths(Path::new("/etc/gatehouse/gatehouse.yaml"));
        assert_eq!(c.policies_dir, Path::new("/etc/gatehouse/pol"));
        assert_eq!(
            c.database_url.expose(),
            "sqlite:///etc/gatehouse/data/g.db?mode=rwc"
        );
        let mut m = load(&format!("{}database_url: 'sqlite::memory:'\n", base()), &[]).unwrap();
        m.resolve_relative_paths(Path::new("/etc/gatehouse/gatehouse.yaml"));
        assert_eq!(m.database_url.expose(), "sqlite::memory:");
    }

    #[test]
    fn bad_redirect_domain_is_refused() {
        let yaml = format!("{}allowed_redirect_domains: ['https://x.com']\n", base());
        let err = load(&yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("allowed_redirect_domains[0]"), "{err}");
    }
}
