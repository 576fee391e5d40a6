//! Policy files as users have them: one or many YAML (or JSON) documents per file, folders of
//! them, `List` objects and `kubectl get -A -o yaml` dumps. Every document is a network policy
//! or a list of them; anything else is an error naming the file, the document and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::model::{CiliumPolicy, NetworkPolicy};

/// Where a policy came from: `file`, its `document` (1-based) and, in a `List`, its `item`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
    pub item: Option<usize>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// One policy document, typed.
#[derive(Debug, Clone)]
pub enum Document {
    Kubernetes(NetworkPolicy),
    Cilium(CiliumPolicy),
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub origin: Origin,
    pub document: Document,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{origin}: not YAML: {error}")]
    Yaml { origin: Origin, error: String },
    #[error("{origin}: {path}: {error}")]
    Field {
        origin: Origin,
        path: String,
        error: String,
    },
    #[error("{origin}: {what} is not a network policy (NetworkPolicy networking.k8s.io/v1, CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy cilium.io/v2, or a List of them)")]
    Kind { origin: Origin, what: String },
    #[error("{0}: no policy in it (a folder of .yaml/.yml/.json files, or such a file)")]
    Empty(String),
}

/// Every policy of `paths` (files or folders, folders read recursively in name order).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, LoadError> {
    let mut loaded = Vec::new();
    for path in paths {
        let files = files_of(path)?;
        let before = loaded.len();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|error| LoadError::Read {
                path: file.display().to_string(),
                error,
            })?;
            loaded.extend(parse(&file.display().to_string(), &text)?);
        }
        if loaded.len() == before {
            return Err(LoadError::Empty(path.display().to_string()));
        }
    }
    Ok(loaded)
}

fn files_of(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let read = |error| LoadError::Read {
        path: path.display().to_string(),
        error,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            files.extend(files_of(&entry)?);
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// The policies of one file's text (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<Vec<Loaded>, LoadError> {
    let mut loaded = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: file.to_owned(),
            document: index + 1,
            item: None,
        };
        let value = yaml_serde::Value::deserialize(document).map_err(|e| LoadError::Yaml {
            origin: origin.clone(),
            error: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        document_of(value, origin, &mut loaded)?;
    }
    Ok(loaded)
}

fn text_of<'a>(value: &'a yaml_serde::Value, key: &str) -> &'a str {
    value.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

fn document_of(
    value: yaml_serde::Value,
    origin: Origin,
    out: &mut Vec<Loaded>,
) -> Result<(), LoadError> {
    let kind = text_of(&value, "kind").to_owned();
    let api = text_of(&value, "apiVersion").to_owned();
    let typed = |value: yaml_serde::Value| -> Result<Document, LoadError> {
        let field = |e: serde_path_to_error::Error<yaml_serde::Error>| LoadError::Field {
            origin: origin.clone(),
            path: e.path().to_string(),
            error: e.inner().to_string(),
        };
        match (kind.as_str(), api.as_str()) {
            ("NetworkPolicy", "networking.k8s.io/v1") => Ok(Document::Kubernetes(
                serde_path_to_error::deserialize(value).map_err(field)?,
            )),
            ("CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy", "cilium.io/v2") => Ok(
                Document::Cilium(serde_path_to_error::deserialize(value).map_err(field)?),
            ),
            _ => Err(LoadError::Kind {
                origin: origin.clone(),
                what: format!("kind {kind:?} (apiVersion {api:?})"),
            }),
        }
    };
    if kind == "List" || kind.ends_with("List") {
        let items = match value.get("items") {
            Some(yaml_serde::Value::Sequence(items)) => items.clone(),
            _ => {
                return Err(LoadError::Field {
                    origin,
                    path: "items".into(),
                    error: format!("a {kind} needs a list of items"),
                })
            }
        };
        for (index, item) in items.into_iter().enumerate() {
            let origin = Origin {
                item: Some(index + 1),
                ..origin.clone()
            };
            if text_of(&item, "kind").ends_with("List") {
                return Err(LoadError::Kind {
                    origin,
                    what: "a List inside a List".into(),
                });
            }
            document_of(item, origin, out)?;
        }
        return Ok(());
    }
    let document = typed(value)?;
    out.push(Loaded { origin, document });
    Ok(())
}
