//! The dev IdP's YAML file: its clients and users. Unknown keys are refused with the key's
//! dotted name, as in Gatehouse's own configuration.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

/// A problem with the dev IdP's file, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum DevIdpConfigError {
    #[error("cannot read {}: {source}", path.display())]
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
    /// A value of the wrong type or shape, as serde reports it.
    #[error("{}: key `{key}`: {message}", path.display())]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A well-formed value that is not allowed.
    #[error("{}: key `{key}`: {source}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        source: InvalidValue,
    },
}

/// Why a value of the file is refused (the key is named beside it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("at least one client is needed")]
    NoClients,
    #[error("at least one is needed")]
    NoRedirectUris,
    #[error("must be non-empty and unique")]
    EmptyOrRepeated,
    #[error("must be unique")]
    Repeated,
    #[error("must not be empty")]
    Empty,
    #[error("`{0}` is not an email address")]
    NotEmail(String),
    #[error("`{url}` is not a URL: {source}")]
    NotUrl {
        url: String,
        source: url::ParseError,
    },
    /// A redirect URI, which a relative reference cannot be.
    #[error("`{url}` is not an absolute URL: {source}")]
    NotAbsoluteUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("`{0}` must be an http(s) URL with a host")]
    IssuerNotHttp(String),
    #[error("`{0}` must not have a path, query or fragment (the dev IdP serves at the root)")]
    IssuerNotRoot(String),
    #[error("`{0}` must be an http(s) URL")]
    NotHttp(String),
    #[error("`{0}` must not have a fragment")]
    Fragment(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevIdpConfig {
    /// Defaults to `http://<listen address>`.
    #[serde(default)]
    pub issuer: Option<String>,
    pub clients: Vec<ClientConfig>,
    pub users: Vec<UserConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    pub password: String,
    pub email: String,
    /// The `sub` claim; defaults to the username.
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub email_verified: bool,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_true() -> bool {
    true
}

impl UserConfig {
    pub fn subject(&self) -> &str {
        self.sub.as_deref().unwrap_or(&self.username)
    }
}

impl DevIdpConfig {
    pub fn load(path: &Path) -> Result<Self, DevIdpConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| DevIdpConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and validates; `origin` names the file in messages.
    pub fn from_yaml(yaml: &str, origin: &Path) -> Result<Self, DevIdpConfigError> {
        let yaml_error = |line, col, message| DevIdpConfigError::Yaml {
            path: origin.to_path_buf(),
            line,
            col,
            message,
        };
        // Through a JSON tree so that serde_path_to_error can name the offending key.
        let tree: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| {
            let (line, col) = gatehouse_core::yaml::error_location(&e);
            yaml_error(line, col, gatehouse_core::yaml::error_message(&e))
        })?;
        if !tree.is_object() {
            return Err(yaml_error(
                1,
                1,
                "expected a mapping at the top level".into(),
            ));
        }
        let config: DevIdpConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            DevIdpConfigError::Key {
                path: origin.to_path_buf(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config
            .validate()
            .map_err(|(key, source)| DevIdpConfigError::Invalid {
                path: origin.to_path_buf(),
                key,
                source,
            })?;
        Ok(config)
    }

    /// The first refused value and its key.
    fn validate(&self) -> Result<(), (String, InvalidValue)> {
        if let Some(issuer) = &self.issuer {
            validate_issuer(issuer).map_err(|m| ("issuer".to_string(), m))?;
        }
        if self.clients.is_empty() {
            return Err(("clients".into(), InvalidValue::NoClients));
        }
        let mut ids = HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = |field: &str| format!("clients[{i}].{field}");
            if c.client_id.is_empty() || !ids.insert(c.client_id.as_str()) {
                return Err((key("client_id"), InvalidValue::EmptyOrRepeated));
            }
            if c.client_secret.is_empty() {
                return Err((key("client_secret"), InvalidValue::Empty));
            }
            if c.redirect_uris.is_empty() {
                return Err((key("redirect_uris"), InvalidValue::NoRedirectUris));
            }
            for (j, uri) in c.redirect_uris.iter().enumerate() {
                validate_uri(uri).map_err(|m| (key(&format!("redirect_uris[{j}]")), m))?;
            }
            for (j, uri) in c.post_logout_redirect_uris.iter().enumerate() {
                validate_uri(uri)
                    .map_err(|m| (key(&format!("post_logout_redirect_uris[{j}]")), m))?;
            }
            if let Some(uri) = &c.backchannel_logout_uri {
                validate_uri(uri).map_err(|m| (key("backchannel_logout_uri"), m))?;
            }
        }
        let mut names = HashSet::new();
        let mut subjects = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = |field: &str| format!("users[{i}].{field}");
            if u.username.is_empty() || !names.insert(u.username.as_str()) {
                return Err((key("username"), InvalidValue::EmptyOrRepeated));
            }
            if !subjects.insert(u.subject()) {
                return Err((key("sub"), InvalidValue::Repeated));
            }
            if u.password.is_empty() {
                return Err((key("password"), InvalidValue::Empty));
            }
            if !u.email.contains('@') {
                return Err((key("email"), InvalidValue::NotEmail(u.email.clone())));
            }
        }
        Ok(())
    }

    pub fn client(&self, client_id: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub fn user(&self, username: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// The issuer is compared byte for byte by relying parties, and the dev IdP serves its
/// endpoints at the root, so it must be a bare `http(s)://host:port`.
pub fn validate_issuer(issuer: &str) -> Result<(), InvalidValue> {
    let url = Url::parse(issuer).map_err(|source| InvalidValue::NotUrl {
        url: issuer.to_string(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(InvalidValue::IssuerNotHttp(issuer.to_string()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(InvalidValue::IssuerNotRoot(issuer.to_string()));
    }
    Ok(())
}

fn validate_uri(uri: &str) -> Result<(), InvalidValue> {
    let url = Url::parse(uri).map_err(|source| InvalidValue::NotAbsoluteUrl {
        url: uri.to_string(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidValue::NotHttp(uri.to_string()));
    }
    if url.fragment().is_some() {
        return Err(InvalidValue::Fragment(uri.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
clients:
  - client_id: gatehouse
    client_secret: s
    redirect_uris: [http://127.0.0.1:4180/auth/callback]
users:
  - username: alice
    password: alice
    email: alice@example.com
    groups: [staff]
";

    fn parse(yaml: &str) -> Result<DevIdpConfig, DevIdpConfigError> {
        DevIdpConfig::from_yaml(yaml, Path::new("idp.yaml"))
    }

    #[test]
    fn a_minimal_file_loads_with_defaults() {
        let c = parse(GOOD).unwrap();
        let alice = c.user("alice").unwrap();
        assert_eq!(alice.subject(), "alice");
        assert!(alice.email_verified);
        assert!(
            c.client("gatehouse")
                .unwrap()
                .backchannel_logout_uri
                .is_none()
        );
        assert!(c.issuer.is_none());
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dev-idp.yaml");
        let c = DevIdpConfig::load(&path).unwrap();
        assert!(c.client("gatehouse").is_some());
        assert!(c.users.len() >= 2);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse(&GOOD.replace("groups: [staff]", "grups: [staff]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("users[0]") && err.contains("grups"), "{err}");
        let err = parse(&format!("{GOOD}extra: 1\n")).unwrap_err().to_string();
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("issuer: http://127.0.0.1:5556/idp\n", "issuer"),
            ("issuer: ftp://x\n", "issuer"),
        ];
        for (prefix, key) in cases {
            let err = parse(&format!("{prefix}{GOOD}")).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
        let err = parse(&GOOD.replace("http://127.0.0.1:4180/auth/callback", "/auth/callback"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("clients[0].redirect_uris[0]"), "{err}");
        let dup = format!("{GOOD}  - username: alice\n    password: x\n    email: a@b\n");
        let err = parse(&dup).unwrap_err().to_string();
        assert!(err.contains("users[1].username"), "{err}");
        let err = parse(&GOOD.replace("alice@example.com", "alice"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("users[0].email"), "{err}");
    }

    #[test]
    fn an_issuer_with_only_a_trailing_slash_is_accepted() {
        assert!(validate_issuer("http://127.0.0.1:5556").is_ok());
        assert!(validate_issuer("http://127.0.0.1:5556/").is_ok());
        assert!(matches!(
            validate_issuer("http://127.0.0.1:5556/?x=1"),
            Err(InvalidValue::IssuerNotRoot(_))
        ));
    }
}
