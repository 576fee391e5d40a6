//! Who may see what: `--access FILE` maps client certificate identities (mTLS) to the
//! namespaces they may see. A flow is served when one of its ends is in an allowed namespace;
//! the other end's pod name, labels and workloads are masked when it is not. Status, nodes and
//! namespaces are counted over what the client may see. Without `--access` every client that
//! passes TLS (or every client, without TLS) sees everything.
//!
//! ```yaml
//! clients:
//!   - identity: team-a.clients.example.com   # the certificate's subject CN or a DNS/URI SAN
//!     namespaces: [team-a, shared]
//!   - identity: sre
//!     namespaces: ["*"]                      # everything
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use datafusion::prelude::{col, lit, Expr};
use hubble_api::flow::{Endpoint, Flow};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("--access {file}: cannot read it: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--access {file}: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    clients: Vec<Client>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Client {
    identity: String,
    namespaces: Vec<String>,
}

/// The access rules of a server.
#[derive(Debug, Clone, Default)]
pub struct Access {
    clients: Option<Vec<Client>>,
}

/// What one client may see.
#[derive(Debug, Clone)]
pub struct Visibility {
    /// `None`: everything.
    namespaces: Option<BTreeSet<String>>,
}

impl Access {
    /// Every client sees everything.
    pub fn open() -> Access {
        Access::default()
    }

    pub fn load(path: &Path) -> Result<Access, AccessError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            file: file.clone(),
            source,
        })?;
        let config: Config = yaml_serde::from_str(&text).map_err(|e| AccessError::Invalid {
            file: file.clone(),
            message: e.to_string(),
        })?;
        for client in &config.clients {
            if client.identity.trim().is_empty() {
                return Err(AccessError::Invalid {
                    file,
                    message: "a client has an empty identity".into(),
                });
            }
        }
        Ok(Access {
            clients: Some(config.clients),
        })
    }

    pub fn is_configured(&self) -> bool {
        self.clients.is_some()
    }

    /// The visibility of the client of `request`: refused when rules exist and its
    /// certificate names none of them.
    pub fn of<T>(&self, request: &Request<T>) -> Result<Visibility, Status> {
        let Some(clients) = &self.clients else {
            return Ok(Visibility { namespaces: None });
        };
        let identities = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|der| identities(der.as_ref())))
            .unwrap_or_default();
        if identities.is_empty() {
            return Err(Status::permission_denied(
                "this server maps client certificates to namespaces (--access): connect with a client certificate",
            ));
        }
        let mut allowed = BTreeSet::new();
        let mut known = false;
        for client in clients.iter().filter(|c| identities.contains(&c.identity)) {
            known = true;
            if client.namespaces.iter().any(|n| n == "*") {
                return Ok(Visibility { namespaces: None });
            }
            allowed.extend(client.namespaces.iter().cloned());
        }
        if !known {
            return Err(Status::permission_denied(format!(
                "client {} is not in the server's access list",
                identities.join(", ")
            )));
        }
        Ok(Visibility {
            namespaces: Some(allowed),
        })
    }
}

/// The subject CN and the DNS and URI SANs of a DER certificate.
fn identities(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) => names.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    names
}

impl Visibility {
    pub fn namespaces(&self) -> Option<&BTreeSet<String>> {
        self.namespaces.as_ref()
    }

    /// `predicate` and "one end is in an allowed namespace".
    pub fn restrict(&self, predicate: Option<Expr>) -> Option<Expr> {
        let Some(allowed) = &self.namespaces else {
            return predicate;
        };
        let list: Vec<Expr> = allowed.iter().map(|n| lit(n.as_str())).collect();
        let either = col("source_namespace")
            .in_list(list.clone(), false)
            .or(col("destination_namespace").in_list(list, false));
        // No namespace at all: nothing.
        let visible = if allowed.is_empty() {
            lit(false)
        } else {
            either
        };
        Some(match predicate {
            Some(predicate) => predicate.and(visible),
            None => visible,
        })
    }

    /// The `Flow` fields [`Visibility::mask_other_end`] reads (as a field mask names them).
    pub fn fields_read(&self) -> &'static [&'static str] {
        match self.namespaces {
            Some(_) => &["source.namespace", "destination.namespace"],
            None => &[],
        }
    }

    /// Masks the end of `flow` the client may not see.
    pub fn mask_other_end(&self, flow: &mut Flow) {
        let Some(allowed) = &self.namespaces else {
            return;
        };
        for end in [&mut flow.source, &mut flow.destination]
            .into_iter()
            .flatten()
        {
            if !allowed.contains(&end.namespace) {
                mask(end);
            }
        }
    }
}

fn mask(end: &mut Endpoint) {
    end.pod_name.clear();
    end.labels.clear();
    end.workloads.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_end_is_masked() {
        let visibility = Visibility {
            namespaces: Some(BTreeSet::from(["shop".to_owned()])),
        };
        let end = |namespace: &str| Endpoint {
            namespace: namespace.into(),
            pod_name: "p".into(),
            labels: vec!["k8s:app=x".into()],
            ..Default::default()
        };
        let mut flow = Flow {
            source: Some(end("shop")),
            destination: Some(end("db")),
            ..Default::default()
        };
        visibility.mask_other_end(&mut flow);
        assert_eq!(flow.source, Some(end("shop")));
        let destination = flow.destination.unwrap();
        assert_eq!(
            (
                destination.namespace.as_str(),
                destination.pod_name.as_str(),
                destination.labels.len()
            ),
            ("db", "", 0)
        );
    }

    #[test]
    fn a_bad_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.yaml");
        std::fs::write(&path, "clients:\n- identity: a\n  namespace: [x]\n").unwrap();
        let error = Access::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("access.yaml") && error.contains("namespace"),
            "{error}"
        );
    }
}
