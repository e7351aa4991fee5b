//! How settings are read: the built-in defaults, a file and `LANEHUB__…` variables merged into one
//! TOML tree that remembers where every value came from, so every error names its file or
//! variable and key, and never a secret's value.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// The merged TOML tree with the source of every leaf, so errors can name where a value came from.
pub(super) struct Layers {
    root: toml::Value,
    origin: BTreeMap<String, String>,
}

impl Layers {
    pub(super) fn new(text: &str, source: &str) -> Result<Self, ConfigError> {
        let mut layers = Layers {
            root: toml::Value::Table(toml::Table::new()),
            origin: BTreeMap::new(),
        };
        layers.merge_file(text, source)?;
        Ok(layers)
    }

    /// The built-in defaults, then `file`, then the `LANEHUB__…` variables of `env`.
    pub(super) fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut layers = Layers::new(DEFAULTS, DEFAULTS_SOURCE)?;
        if let Some(path) = file {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: source.clone(),
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            })?;
            layers.merge_file(&text, &source)?;
        }
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                layers.set_env(&name, rest, &value)?;
            }
        }
        Ok(layers)
    }

    fn merge_file(&mut self, text: &str, source: &str) -> Result<(), ConfigError> {
        // toml's own rendering quotes the offending line, which may hold a secret: only the
        // position and the parser's description are shown.
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            });
            ConfigError {
                origin: source.to_owned(),
                key: String::new(),
                message: format!("not valid TOML{at}: {}", e.message().trim_end()),
            }
        })?;
        let root = self
            .root
            .as_table_mut()
            .expect("the root is always a table");
        merge(root, table, "", source, &mut self.origin);
        Ok(())
    }

    fn set_env(&mut self, name: &str, rest: &str, raw: &str) -> Result<(), ConfigError> {
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let err = |message: String| ConfigError {
            origin: format!("environment variable {name}"),
            key: path.join("."),
            message,
        };
        if path.iter().any(|p| p.is_empty()) {
            return Err(err("expected LANEHUB__SECTION__KEY".into()));
        }
        let mut node: &mut toml::Value = &mut self.root;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            node = match node {
                toml::Value::Table(t) => {
                    if last {
                        let value = env_value(t.get(seg.as_str()), raw);
                        t.insert(seg.clone(), value);
                        break;
                    }
                    t.entry(seg.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                }
                toml::Value::Array(a) => {
                    let idx: usize = seg
                        .parse()
                        .map_err(|_| err(format!("`{seg}` is not an array index")))?;
                    let len = a.len();
                    let slot = a
                        .get_mut(idx)
                        .ok_or_else(|| err(format!("index {idx} is past the {len} entries")))?;
                    if last {
                        *slot = env_value(Some(slot), raw);
                        break;
                    }
                    slot
                }
                _ => return Err(err(format!("`{seg}` is below a value, not a section"))),
            };
        }
        let key = path
            .iter()
            .fold(String::new(), |acc, seg| match seg.parse::<usize>() {
                Ok(i) => format!("{acc}[{i}]"),
                Err(_) => join_key(&acc, seg),
            });
        self.origin
            .insert(key, format!("environment variable {name}"));
        Ok(())
    }

    pub(super) fn into_typed<T: serde::de::DeserializeOwned>(self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize::<_, T>(self.root.clone()).map_err(|e| {
            let key = toml_path(e.path());
            let message = e.inner().to_string();
            // For unknown fields the path may or may not end in the field itself.
            let leaf = match unknown_field(&message) {
                Some(f) if !key.ends_with(f) => join_key(&key, f),
                _ => key,
            };
            let source = origin_of(&self.origin, &leaf)
                .unwrap_or(DEFAULTS_SOURCE)
                .to_owned();
            // serde quotes wrong values ("invalid type: integer `123`"); a secret's is not shown.
            let message = if is_secret_key(&leaf) && unknown_field(&message).is_none() {
                "expected a string (the value is a secret and not shown)".to_owned()
            } else {
                self.redact(message)
            };
            ConfigError {
                origin: source,
                key: leaf,
                message,
            }
        })
    }
}

/// The last part of every key that holds a secret.
/// `postgres_url` is one: it may carry the database password.
pub(super) const SECRET_KEYS: [&str; 6] = [
    "admin_token",
    "client_secret",
    "subscription_key",
    "token",
    "http_token",
    "postgres_url",
];

pub(super) fn is_secret_key(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    SECRET_KEYS.contains(&leaf)
}

impl Layers {
    /// `message` with every secret value of the merged tree masked, in case an error about
    /// another key quotes one.
    fn redact(&self, mut message: String) -> String {
        fn walk(v: &toml::Value, key: &str, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        walk(v, &join_key(key, k), out);
                    }
                }
                toml::Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        walk(v, &format!("{key}[{i}]"), out);
                    }
                }
                v if is_secret_key(key) => {
                    let text = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out.push(text);
                }
                _ => {}
            }
        }
        let mut secrets = vec![];
        walk(&self.root, "", &mut secrets);
        // Shorter ones would mask ordinary words; no real secret is that short.
        for secret in secrets.iter().filter(|s| s.chars().count() >= 4) {
            message = message.replace(secret.as_str(), "***");
        }
        message
    }
}

pub(super) fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    source: &str,
    origin: &mut BTreeMap<String, String>,
) {
    for (k, v) in from {
        let key = join_key(prefix, &k);
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(t)) => {
                merge(existing, t, &key, source, origin)
            }
            (_, v) => {
                record_origin(&v, &key, source, origin);
                into.insert(k, v);
            }
        }
    }
}

pub(super) fn record_origin(
    v: &toml::Value,
    key: &str,
    source: &str,
    origin: &mut BTreeMap<String, String>,
) {
    origin.insert(key.to_owned(), source.to_owned());
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                record_origin(v, &join_key(key, k), source, origin);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                record_origin(v, &format!("{key}[{i}]"), source, origin);
            }
        }
        _ => {}
    }
}

/// The value of an environment override, typed like the value it replaces.
pub(super) fn env_value(existing: Option<&toml::Value>, raw: &str) -> toml::Value {
    let parsed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match existing {
        Some(toml::Value::String(_)) | None => match existing {
            None => parsed()
                .filter(|v| !v.is_str())
                .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
            _ => toml::Value::String(raw.to_owned()),
        },
        Some(_) => parsed().unwrap_or_else(|| toml::Value::String(raw.to_owned())),
    }
}

pub(super) fn join_key(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_owned()
    } else {
        format!("{prefix}.{k}")
    }
}

pub(super) fn toml_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

pub(super) fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// The source of `key`, or of its nearest parent with a recorded source.
pub(super) fn origin_of<'a>(origin: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    let mut k = key;
    loop {
        if let Some(s) = origin.get(k) {
            return Some(s);
        }
        let cut = k.rfind(['.', '['])?;
        k = &k[..cut];
    }
}
