//! Client configuration: where services are (an endpoint, or a data directory to open
//! in-process) and the key pair to sign with. Read from a config file written by
//! `avl configure`, then overridden by the environment, as the AWS tools do.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::credentials::Credentials;
use crate::error::{Error, Result};

/// The endpoint of a served deployment (`http://host:port` or `https://...`).
pub const ENV_ENDPOINT: &str = "AVL_ENDPOINT";
/// The data directory for in-process services.
pub const ENV_DATA_DIR: &str = "AVL_DATA_DIR";
/// The access key id to sign with.
pub const ENV_ACCESS_KEY_ID: &str = "AVL_ACCESS_KEY_ID";
/// The secret access key to sign with.
pub const ENV_SECRET_ACCESS_KEY: &str = "AVL_SECRET_ACCESS_KEY";
/// The region named in signatures.
pub const ENV_REGION: &str = "AVL_REGION";
/// The config file profile to use.
pub const ENV_PROFILE: &str = "AVL_PROFILE";
/// A config file path replacing the default.
pub const ENV_CONFIG_FILE: &str = "AVL_CONFIG_FILE";
/// A PEM file of extra CA certificates to trust (a self-signed server's, say).
pub const ENV_CA_FILE: &str = "AVL_CA_FILE";

/// The data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./avl-data";
/// The region when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The profile when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// One profile of the config file. Every field is optional.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// The region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Extra CA certificates (PEM) to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("region", &self.region)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// An error for a TOML file that does not parse, naming the line but never quoting it:
/// the file may hold secrets, and the parser's own message shows the offending line.
pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let at = e
        .span()
        .map(|span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
            format!(" at line {line}")
        })
        .unwrap_or_default();
    Error::invalid_input(
        path.display().to_string(),
        format!("not a valid file{at}: {}", e.message()),
    )
}

/// The config file: profiles by name, as TOML tables (`[default]`, `[staging]`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigFile {
    /// The profiles.
    pub profiles: BTreeMap<String, Profile>,
}

impl ConfigFile {
    /// The default location: `$AVL_CONFIG_FILE`, else `<user config dir>/avl/config.toml`.
    pub fn default_path() -> Result<PathBuf> {
        Self::path_from(&std_env)
    }

    fn path_from(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf> {
        if let Some(p) = env(ENV_CONFIG_FILE) {
            return Ok(PathBuf::from(p));
        }
        dirs::config_dir()
            .map(|d| d.join("avl").join("config.toml"))
            .ok_or_else(|| {
                Error::unavailable(format!(
                    "no user config directory (set HOME or {ENV_CONFIG_FILE})"
                ))
            })
    }

    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| toml_error(path, &text, &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::from(e).context(format!("cannot read {}", path.display()))),
        }
    }

    /// Writes the file with mode 0600 (it holds secrets), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self)
            .map_err(|e| Error::internal(format!("cannot encode config: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::from(e).context(format!("cannot create {}", dir.display())))?;
        }
        write_private(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` readable by the owner only (0600), through a temporary file
/// renamed into place, so readers never see half a file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let context =
        |e: std::io::Error| Error::from(e).context(format!("cannot write {}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    // create_new: never through a planted symlink, never reusing another file's mode.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Makes the rename durable; not every platform can sync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(context)
}

fn std_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where a client's services are and how it signs: the merge of the config file's
/// profile and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The endpoint of a served deployment; `None` means in-process.
    pub endpoint: Option<String>,
    /// The data directory for in-process services.
    pub data_dir: PathBuf,
    /// The key pair for the endpoint.
    pub credentials: Option<Credentials>,
    /// The region named in signatures.
    pub region: String,
    /// Extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            credentials: None,
            region: DEFAULT_REGION.into(),
            ca_file: None,
        }
    }
}

impl ClientConfig {
    /// In-process services on `data_dir`.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        ClientConfig {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// A served deployment at `endpoint`, signing with `credentials`.
    pub fn remote(endpoint: impl Into<String>, credentials: Credentials) -> Self {
        ClientConfig {
            endpoint: Some(endpoint.into()),
            credentials: Some(credentials),
            ..Self::default()
        }
    }

    /// The configuration from the config file (profile `$AVL_PROFILE` or `default`) and
    /// the `AVL_*` environment variables, which win. Without a user config directory
    /// (and no `$AVL_CONFIG_FILE`), only the environment counts.
    pub fn load() -> Result<Self> {
        Self::resolve(&Self::user_file()?, &std_env)
    }

    /// Like [`ClientConfig::load`], with the profile named by the caller (a command-line
    /// flag, say) instead of `$AVL_PROFILE`.
    pub fn load_profile(profile: &str) -> Result<Self> {
        let env = |name: &str| {
            if name == ENV_PROFILE {
                Some(profile.to_string())
            } else {
                std_env(name)
            }
        };
        Self::resolve(&Self::user_file()?, &env)
    }

    fn user_file() -> Result<ConfigFile> {
        match ConfigFile::default_path() {
            Ok(path) => ConfigFile::load(&path),
            Err(_) => Ok(ConfigFile::default()),
        }
    }

    /// The merge of `file` and `env` (a lookup of environment variables): testable
    /// without touching the process environment.
    pub fn resolve(file: &ConfigFile, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let profile_name = env(ENV_PROFILE).unwrap_or_else(|| DEFAULT_PROFILE.into());
        let profile = match file.profiles.get(&profile_name) {
            Some(p) => p.clone(),
            None if profile_name == DEFAULT_PROFILE => Profile::default(),
            None => {
                return Err(Error::not_found(format!(
                    "profile `{profile_name}` is not in the config file (run `avl configure --profile {profile_name}`)"
                )));
            }
        };
        let endpoint = env(ENV_ENDPOINT).or(profile.endpoint);
        if let Some(e) = &endpoint {
            validate_endpoint(e)?;
        }
        let key_id = env(ENV_ACCESS_KEY_ID).or(profile.access_key_id);
        let secret = env(ENV_SECRET_ACCESS_KEY).or(profile.secret_access_key);
        let credentials = match (key_id, secret) {
            (Some(id), Some(secret)) => Some(Credentials::new(id, secret)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::invalid_input(
                    "secret_access_key",
                    format!(
                        "an access key id is configured without its secret ({ENV_SECRET_ACCESS_KEY})"
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid_input(
                    "access_key_id",
                    format!(
                        "a secret is configured without its access key id ({ENV_ACCESS_KEY_ID})"
                    ),
                ));
            }
        };
        Ok(ClientConfig {
            endpoint,
            data_dir: env(ENV_DATA_DIR)
                .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from),
            credentials,
            region: env(ENV_REGION)
                .or(profile.region)
                .unwrap_or_else(|| DEFAULT_REGION.into()),
            ca_file: env(ENV_CA_FILE).map(PathBuf::from).or(profile.ca_file),
        })
    }
}

/// Checks that an endpoint is an `http://` or `https://` URL with a host.
pub fn validate_endpoint(endpoint: &str) -> Result<()> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| Error::invalid_input("endpoint", format!("`{endpoint}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(Error::invalid_input(
            "endpoint",
            format!("`{endpoint}` must look like http://host:port or https://host"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file_with(endpoint: &str) -> ConfigFile {
        let mut file = ConfigFile::default();
        file.profiles.insert(
            "default".into(),
            Profile {
                endpoint: Some(endpoint.into()),
                access_key_id: Some("FILEKEY".into()),
                secret_access_key: Some("file-secret-123".into()),
                region: Some("sa-east-1".into()),
                ca_file: None,
            },
        );
        file
    }

    #[test]
    fn defaults_mean_in_process_on_avl_data() {
        let c = ClientConfig::resolve(&ConfigFile::default(), &env_of(&[])).unwrap();
        assert_eq!(c, ClientConfig::default());
        assert_eq!(c.data_dir, PathBuf::from("./avl-data"));
        assert!(c.endpoint.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = file_with("http://10.0.0.1:4510");
        let c = ClientConfig::resolve(&file, &env_of(&[])).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://10.0.0.1:4510"));
        assert_eq!(c.region, "sa-east-1");
        assert_eq!(c.credentials.as_ref().unwrap().access_key_id, "FILEKEY");

        let env = env_of(&[
            (ENV_ENDPOINT, "https://avl.example.com"),
            (ENV_ACCESS_KEY_ID, "ENVKEY"),
            (ENV_SECRET_ACCESS_KEY, "env-secret-456"),
            (ENV_REGION, "us-east-2"),
            (ENV_DATA_DIR, "/var/lib/avl"),
        ]);
        let c = ClientConfig::resolve(&file, &env).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://avl.example.com"));
        assert_eq!(c.region, "us-east-2");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/avl"));
        let creds = c.credentials.unwrap();
        assert_eq!(creds.access_key_id, "ENVKEY");
        assert_eq!(creds.secret_access_key.expose(), "env-secret-456");
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let half = env_of(&[(ENV_ACCESS_KEY_ID, "ONLYID")]);
        let e = ClientConfig::resolve(&ConfigFile::default(), &half).unwrap_err();
        assert_eq!(e.field(), Some("secret_access_key"));
        let bad = env_of(&[(ENV_ENDPOINT, "ftp://x")]);
        assert!(ClientConfig::resolve(&ConfigFile::default(), &bad).is_err());
        let missing = env_of(&[(ENV_PROFILE, "staging")]);
        let e = ClientConfig::resolve(&ConfigFile::default(), &missing).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotFound);
    }

    #[test]
    fn config_file_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("config.toml");
        let file = file_with("http://127.0.0.1:4510");
        file.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "[default]\nendpont = 'typo'\n").unwrap();
        assert!(ConfigFile::load(&path).is_err());
        // A secret on a bad line is never quoted back.
        std::fs::write(&path, "[default]\nsecret_acces_key = 'wJalrXUtnFEMI'\n").unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert!(!e.to_string().contains("wJalrXUtnFEMI"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let profile = file.profiles["default"].clone();
        assert!(!format!("{profile:?}").contains("file-secret-123"));
        assert_eq!(
            ConfigFile::load(&dir.path().join("none")).unwrap(),
            ConfigFile::default()
        );
    }
}
