//! The object stores of a cluster's scheduler and executors: a plan names its files by URL
//! (`s3://bucket/…`, `file:///…`), and each process opens the bucket on first use with its own
//! environment (AWS_*), as flowsql opens `--store`. Nothing about a store travels in a plan:
//! credentials stay where they are configured (the pods' environment or service account).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use flow_schema::store::{Patience, Store};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use url::Url;

/// Buckets opened so far, by `scheme://bucket`.
#[derive(Debug, Default)]
pub struct FlowObjectStores {
    opened: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

fn key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""))
}

impl FlowObjectStores {
    fn open(url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "file" => Ok(Arc::new(LocalFileSystem::new())),
            "s3" => {
                let bucket = format!("s3://{}", url.host_str().unwrap_or(""));
                Store::open(&bucket, &Patience::INTERACTIVE)
                    .map(|store| store.object_store)
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            }
            other => Err(DataFusionError::Configuration(format!(
                "flowsql cluster: {url}: no object store for {other}:// (s3:// and file:// only)"
            ))),
        }
    }
}

impl ObjectStoreRegistry for FlowObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        opened.insert(key(url), store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = key(url);
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = opened.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store = Self::open(url)?;
        opened.insert(key, Arc::clone(&store));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_opened_once_and_other_schemes_are_refused() {
        let stores = FlowObjectStores::default();
        let a = Url::parse("s3://bucket-a/flows/v1/x.parquet").unwrap();
        let first = stores.get_store(&a).unwrap();
        let again = stores
            .get_store(&Url::parse("s3://bucket-a/other").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let b = stores
            .get_store(&Url::parse("s3://bucket-b/").unwrap())
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &b));
        let error = stores
            .get_store(&Url::parse("gs://bucket/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("gs://bucket/x") && error.contains("no object store"),
            "{error}"
        );
    }
}
