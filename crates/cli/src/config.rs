//! Where `wh login` keeps the control plane's URL and the API token:
//! `$XDG_CONFIG_HOME/wisehosting/config.json` (else `~/.config/…`), the directory mode 0700
//! and the file 0600. `WH_URL` and `WH_TOKEN` override what is stored, each on its own.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::CliError;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Login {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("url", &self.url).field("token", &"[redacted]").finish()
    }
}

/// The config directory: `$XDG_CONFIG_HOME/wisehosting`, else `$HOME/.config/wisehosting`.
pub fn dir() -> Result<PathBuf, CliError> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config"))
        })
        .ok_or_else(|| {
            CliError::Usage(
                "neither XDG_CONFIG_HOME nor HOME is set; set one so `wh login` can keep the login".into(),
            )
        })?;
    Ok(base.join("wisehosting"))
}

pub fn path() -> Result<PathBuf, CliError> {
    Ok(dir()?.join("config.json"))
}

/// The stored login with the environment's overrides; `None` when there is neither.
pub fn load() -> Result<Option<Login>, CliError> {
    let path = path()?;
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str::<Login>(&text).map_err(|e| CliError::Config {
            path: path.display().to_string(),
            reason: format!("it is not a login `wh login` wrote ({e}); run `wh login` again"),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CliError::Config { path: path.display().to_string(), reason: e.to_string() }),
    };
    let url = std::env::var("WH_URL").ok().filter(|v| !v.is_empty());
    let token = std::env::var("WH_TOKEN").ok().filter(|v| !v.is_empty());
    Ok(match (stored, url, token) {
        (stored, Some(url), Some(token)) => Some(Login { url, token }).or(stored),
        (Some(stored), url, token) => {
            Some(Login { url: url.unwrap_or(stored.url), token: token.unwrap_or(stored.token) })
        }
        (None, _, _) => None,
    })
}

/// Writes the login (the file is created 0600, in a 0700 directory).
pub fn save(login: &Login) -> Result<PathBuf, CliError> {
    let dir = dir()?;
    let path = dir.join("config.json");
    let fail =
        |e: std::io::Error| CliError::Config { path: path.display().to_string(), reason: e.to_string() };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(fail)?;
    // A new file each time: never through an existing one with looser permissions.
    let _ = std::fs::remove_file(&path);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(fail)?;
    let text = serde_json::to_string_pretty(login).map_err(|e| fail(std::io::Error::other(e)))?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    Ok(path)
}

/// Forgets the stored login; true when there was one.
pub fn remove() -> Result<bool, CliError> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::Config { path: path.display().to_string(), reason: e.to_string() }),
    }
}
