//! The damaged-store policy, the same for every command that reads the store: an object that
//! is not a readable Parquet file of our schema (empty, truncated, garbage, another schema, a
//! newer schema version, a name no flowrec or flowstore writes) is named with its URL on
//! stderr when met, and the answer goes on without it: the command then exits 1 (a partial
//! answer), never 0. With `--strict-store` the query fails instead. Never a panic, never a
//! silent skip.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One object the answer had to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub url: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "damaged store object {url}: {reason} (without --strict-store the query goes on without it)"
)]
pub struct StrictStoreError {
    pub url: String,
    pub reason: String,
}

/// What a session met, shared by its tables; each object is reported once.
#[derive(Debug, Clone)]
pub struct DamageLog {
    tool: &'static str,
    strict: bool,
    met: Arc<Mutex<BTreeMap<String, String>>>,
}

impl DamageLog {
    pub fn new(tool: &'static str, strict: bool) -> DamageLog {
        DamageLog {
            tool,
            strict,
            met: Arc::default(),
        }
    }

    /// The tool named in warnings.
    pub fn tool(&self) -> &'static str {
        self.tool
    }

    /// Whether a damaged object fails the query (`--strict-store`).
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Records `damage`: an error under `--strict-store`, else a warning on stderr (once per
    /// object) and the scan goes on without it.
    pub fn report(&self, damage: Damage) -> Result<(), StrictStoreError> {
        if self.strict {
            return Err(StrictStoreError {
                url: damage.url,
                reason: damage.reason,
            });
        }
        let mut met = self.met.lock().expect("damage log lock");
        if let std::collections::btree_map::Entry::Vacant(entry) = met.entry(damage.url) {
            eprintln!(
                "{}: warning: skipped {}: {} (the answer leaves it out; --strict-store makes this an error)",
                self.tool,
                entry.key(),
                damage.reason
            );
            entry.insert(damage.reason);
        }
        Ok(())
    }

    /// Everything left out so far.
    pub fn met(&self) -> Vec<Damage> {
        self.met
            .lock()
            .expect("damage log lock")
            .iter()
            .map(|(url, reason)| Damage {
                url: url.clone(),
                reason: reason.clone(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.met.lock().expect("damage log lock").is_empty()
    }
}
