//! Access keys: the key pair a client signs with and a server checks.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::Principal;

/// A secret string: never printed by `Debug`, compared in constant time.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself: for signing, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with another secret.
    pub fn matches(&self, other: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An access key pair: the id travels with every signed request, the secret never does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The public half, e.g. `AVLK3J5Q...`.
    pub access_key_id: String,
    /// The secret half.
    pub secret_access_key: Secret,
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Credentials {
    /// A key pair, checked for shape.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<String>) -> Result<Self> {
        let creds = Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret),
        };
        creds.validate()?;
        Ok(creds)
    }

    /// A fresh random key pair: a 20-character id starting `AVL` and a 40-character
    /// secret (240 bits from the operating system's generator).
    pub fn generate() -> Result<Self> {
        let id = random_string(ID_ALPHABET, 17)?;
        let secret = random_string(SECRET_ALPHABET, 40)?;
        Credentials::new(format!("AVL{id}"), secret)
    }

    /// Checks the shape: an id of 3 to 128 letters and digits, a secret of 8 to 256
    /// printable characters without spaces.
    pub fn validate(&self) -> Result<()> {
        let id = &self.access_key_id;
        if !(3..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid_input(
                "access_key_id",
                "must be 3 to 128 letters and digits",
            ));
        }
        let secret = self.secret_access_key.expose();
        if !(8..=256).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_input(
                "secret_access_key",
                "must be 8 to 256 printable characters without spaces",
            ));
        }
        Ok(())
    }
}

fn random_string(alphabet: &[u8], len: usize) -> Result<String> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::internal(format!("no randomness from the operating system: {e}")))?;
    // Both alphabets have a power-of-two size, so the modulo has no bias.
    debug_assert!(alphabet.len().is_power_of_two());
    Ok(bytes
        .into_iter()
        .map(|b| char::from(alphabet[usize::from(b) % alphabet.len()]))
        .collect())
}

/// Finds the secret and principal behind an access key id, for signature checks.
///
/// `avl serve` starts with [`StaticKeys`] holding the root key pair; avl-auth's access
/// keys plug in here later.
pub trait KeyStore: Send + Sync + 'static {
    /// The secret of `access_key_id` and who it belongs to, if the key exists and is active.
    fn lookup(&self, access_key_id: &str) -> Option<(Secret, Principal)>;
}

/// A fixed set of keys.
#[derive(Debug, Clone, Default)]
pub struct StaticKeys {
    keys: Vec<(Credentials, Principal)>,
}

impl StaticKeys {
    /// Keys holding only the root pair.
    pub fn root(credentials: Credentials) -> Self {
        StaticKeys {
            keys: vec![(credentials, Principal::root())],
        }
    }

    /// Adds a key pair for `principal`.
    pub fn with(mut self, credentials: Credentials, principal: Principal) -> Self {
        self.keys.push((credentials, principal));
        self
    }
}

impl KeyStore for StaticKeys {
    fn lookup(&self, access_key_id: &str) -> Option<(Secret, Principal)> {
        self.keys
            .iter()
            .find(|(c, _)| c.access_key_id == access_key_id)
            .map(|(c, p)| (c.secret_access_key.clone(), p.clone()))
    }
}

/// Where `avl serve` keeps its generated root key pair inside a data directory.
pub const ROOT_CREDENTIALS_FILE: &str = "credentials";

/// Loads the root key pair from `<data_dir>/credentials`, creating the file (mode 0600)
/// with a fresh pair if there is none. Returns the pair and whether it was just created.
pub fn load_or_create_root(data_dir: &Path) -> Result<(Credentials, bool)> {
    let path = data_dir.join(ROOT_CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let creds: Credentials =
                toml::from_str(&text).map_err(|e| crate::config::toml_error(&path, &text, &e))?;
            creds.validate().map_err(|e| e.context(path.display()))?;
            Ok((creds, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let creds = Credentials::generate()?;
            let text = toml::to_string(&creds)
                .map_err(|e| Error::internal(format!("cannot encode credentials: {e}")))?;
            crate::config::write_private(&path, text.as_bytes())?;
            Ok((creds, true))
        }
        Err(e) => Err(Error::from(e).context(format!("cannot read {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_valid_and_distinct() {
        let a = Credentials::generate().unwrap();
        let b = Credentials::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.access_key_id.starts_with("AVL") && a.access_key_id.len() == 20);
        assert_eq!(a.secret_access_key.expose().len(), 40);
        assert!(!format!("{a:?}").contains(a.secret_access_key.expose()));
    }

    #[test]
    fn malformed_credentials_are_refused() {
        assert!(Credentials::new("AK", "secretsecret").is_err());
        assert!(Credentials::new("AK-ID", "secretsecret").is_err());
        assert!(Credentials::new("AKID", "short").is_err());
        assert!(Credentials::new("AKID", "has a space").is_err());
        assert!(Credentials::new("AKID", "long-enough/secret+").is_ok());
    }

    #[test]
    fn root_credentials_are_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create_root(dir.path()).unwrap();
        assert!(created);
        let (again, created) = load_or_create_root(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ROOT_CREDENTIALS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(ROOT_CREDENTIALS_FILE), "not = [toml").unwrap();
        assert!(load_or_create_root(dir.path()).is_err());
    }
}
