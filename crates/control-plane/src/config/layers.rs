//! The layers a config is read from, merged in order: defaults → YAML → `WH__` environment →
//! systemd credentials; and the tree helpers they share.

use std::path::Path;

use yaml_serde::{Mapping, Value};

use super::{CREDENTIALS, Config, ConfigError, ENV_PREFIX, Origin};

pub(super) fn collect_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let Value::Mapping(map) = value else {
        out.push(prefix.to_string());
        return;
    };
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        let key = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
        collect_keys(v, &key, out);
    }
}

pub(super) fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_yaml(&text, &path.display().to_string())
}

pub(super) fn parse_yaml(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let value: Value = yaml_serde::from_str(text)
        .map_err(|e| ConfigError::Yaml { path: origin.to_string(), message: e.to_string() })?;
    match value {
        // An empty file is an empty config.
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(value),
        _ => Err(ConfigError::Yaml {
            path: origin.to_string(),
            message: "the top level must be a mapping of keys to values".into(),
        }),
    }
}

pub(super) fn from_tree(tree: Value, origin: &Origin) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            // The path already ends at the unknown field.
            let key = if path == "." || path.is_empty() { field.to_string() } else { path };
            let expected =
                expected.trim_start_matches(", expected one of ").trim_start_matches(", expected ");
            return ConfigError::UnknownKey { origin: origin.0.clone(), key, expected: expected.to_string() };
        }
        ConfigError::BadValue { origin: origin.0.clone(), key: path, message: clean_serde_message(&message) }
    })
}

/// The YAML parser appends positions that mean nothing after env overlays; keep the essence.
fn clean_serde_message(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_string()
}

/// Applies `WH__SECTION__KEY=value` variables. Values are read as YAML scalars so numbers and
/// booleans keep their types; the key path must exist in the config's shape.
pub(super) fn overlay_env(tree: &mut Value, env: &[(String, String)]) -> Result<(), ConfigError> {
    let known = Config::known_keys();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let key = path.join(".");
        if !known.contains(&key) {
            return Err(ConfigError::UnknownEnvKey { var: var.clone(), key });
        }
        let value = yaml_serde::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        let value = match value {
            Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => Value::String(raw.clone()),
            scalar => scalar,
        };
        set_path(tree, &path, value);
    }
    Ok(())
}

pub(super) fn overlay_credentials(tree: &mut Value, dir: &Path) -> Result<(), ConfigError> {
    for (name, path) in CREDENTIALS {
        let file = dir.join(name);
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                set_path(tree, &path, Value::String(value));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Credential { path: file, source }),
        }
    }
    Ok(())
}

/// Deep-merges `over` into `base`: mappings merge key by key, anything else replaces.
pub(super) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (k, v) in over {
                match base.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = tree;
    for part in parents {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        node = map.entry(Value::String(part.clone())).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if !node.is_mapping() {
        *node = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(map) = node {
        map.insert(Value::String(last.clone()), value);
    }
}
