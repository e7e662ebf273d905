//! `avl configure`: write the endpoint, key pair and region to the user's config file,
//! as `aws configure` does.

use std::io::{BufRead, Write};

use avl_core::config::{ConfigFile, Profile, validate_endpoint};
use avl_core::{Credentials, Error, Result};

pub(crate) struct ConfigureArgs {
    pub(crate) profile: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) region: Option<String>,
}

/// Shows a secret by its last four characters only.
fn masked(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

/// Asks for one value on stdin; an empty answer keeps `current`.
fn ask(
    input: &mut impl BufRead,
    label: &str,
    current: Option<String>,
    shown: Option<String>,
) -> Result<Option<String>> {
    print!("{label} [{}]: ", shown.as_deref().unwrap_or("None"));
    std::io::stdout().flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        current
    } else {
        Some(answer.to_string())
    })
}

pub(crate) fn run(args: ConfigureArgs) -> Result<()> {
    let path = ConfigFile::default_path()?;
    let mut file = ConfigFile::load(&path)?;
    let current = file
        .profiles
        .get(&args.profile)
        .cloned()
        .unwrap_or_default();
    let interactive = args.endpoint.is_none()
        && args.access_key_id.is_none()
        && args.secret_access_key.is_none()
        && args.region.is_none();
    let profile = if interactive {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let endpoint = ask(
            &mut input,
            "AVL endpoint",
            current.endpoint.clone(),
            current.endpoint.clone(),
        )?;
        let key = ask(
            &mut input,
            "AVL access key id",
            current.access_key_id.clone(),
            current.access_key_id.as_deref().map(masked),
        )?;
        let secret = ask(
            &mut input,
            "AVL secret access key",
            current.secret_access_key.clone(),
            current.secret_access_key.as_deref().map(masked),
        )?;
        let region = ask(
            &mut input,
            "Region",
            current.region.clone(),
            current.region.clone(),
        )?;
        Profile {
            endpoint,
            access_key_id: key,
            secret_access_key: secret,
            region,
            ca_file: current.ca_file,
        }
    } else {
        Profile {
            endpoint: args.endpoint.or(current.endpoint),
            access_key_id: args.access_key_id.or(current.access_key_id),
            secret_access_key: args.secret_access_key.or(current.secret_access_key),
            region: args.region.or(current.region),
            ca_file: current.ca_file,
        }
    };
    if let Some(endpoint) = &profile.endpoint {
        validate_endpoint(endpoint)?;
    }
    match (&profile.access_key_id, &profile.secret_access_key) {
        (Some(id), Some(secret)) => {
            Credentials::new(id.clone(), secret.clone())?;
        }
        (None, None) => {}
        _ => {
            return Err(Error::invalid_input(
                "credentials",
                "give both an access key id and a secret access key",
            ));
        }
    }
    file.profiles.insert(args.profile.clone(), profile);
    file.save(&path)?;
    out!("saved profile `{}` to {}", args.profile, path.display());
    Ok(())
}
