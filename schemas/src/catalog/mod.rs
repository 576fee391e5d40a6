//! The catalog: which objects of the store a reader sees. Every reader (flowsql's tables,
//! replay, regressions, reports) and the maintainer (`flowstore`) go through it, so no reader
//! ever sees a flow twice or misses one while recorders write, queries run and a compactor
//! is killed at any instant.
//!
//! The rule (ARCHITECTURE.md, "What a reader may assume"):
//! 1. An hour's files are decided by that hour's partition alone: one listing, and its latest
//!    commit when the names do not decide ([`hour`]).
//! 2. A compaction writes its outputs first (invisible: no commit names them), then creates
//!    `_commit.<seq>.json` exclusively; that one PUT switches readers from the inputs to the
//!    outputs. Inputs are deleted only after a grace period, superseded commits likewise.
//! 3. Expired hours (below the retention watermark, [`retention`]) are not listed at all.
//!
//! Nothing is cached between calls and nothing lives in memory between runs: a reader
//! restarted from scratch, or a compactor restarted after SIGKILL, decides from the store.

pub mod commit;
pub mod hour;
pub mod retention;

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::layout::{self, Dataset, NANOS_PER_HOUR};
use crate::store::Store;
pub use commit::{Commit, Output};
pub use hour::{Compaction, GarbageKind, HourListing, HourView, Inconsistency, RollupView};
pub use retention::Retention;

/// Requests in flight at once (listings, commits, footers): enough to hide an object store's
/// latency, few enough for a local disk.
pub const CONCURRENCY: usize = 32;

/// Ranges up to this long are listed prefix by prefix without asking which days exist.
const SHORT_RANGE: i64 = 6 * NANOS_PER_HOUR;

/// How often a torn view (a commit naming an output the listing missed) is listed again.
const RELISTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot list {url}: {source}")]
    List {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot read {url}: {source}")]
    Read {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url} is not a valid commit: {reason}")]
    BadCommit { url: String, reason: String },
    #[error("{url} is not a valid retention file: {reason}")]
    BadRetention { url: String, reason: String },
    #[error("hour {hour} of {dataset}: {source} (listed {RELISTS} times)")]
    Inconsistent {
        dataset: &'static str,
        hour: String,
        #[source]
        source: Inconsistency,
    },
}

/// Reads the store's catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
}

impl Catalog {
    pub fn new(store: Store) -> Catalog {
        Catalog { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn url(&self, path: &Path) -> String {
        self.store.url_of(path)
    }

    /// The retention watermarks (none when the store never expired anything).
    pub async fn retention(&self) -> Result<Retention, CatalogError> {
        let path = self.store.path(layout::RETENTION_KEY);
        let bytes = match self.store.object_store.get(&path).await {
            Ok(result) => result.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(Retention::default()),
            Err(error) => Err(error),
        }
        .map_err(|source| CatalogError::Read {
            url: self.url(&path),
            source,
        })?;
        Retention::from_json(&bytes).map_err(|reason| CatalogError::BadRetention {
            url: self.url(&path),
            reason,
        })
    }

    /// The start of every day folder of `dataset` (sorted).
    pub async fn days(&self, dataset: Dataset) -> Result<Vec<i64>, CatalogError> {
        let prefix = self.store.path(&layout::table_prefix(dataset));
        let listing = self
            .store
            .object_store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|source| CatalogError::List {
                url: self.url(&prefix),
                source,
            })?;
        let mut days: Vec<i64> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| layout::day_of_folder(p.as_ref()))
            .collect();
        days.sort_unstable();
        Ok(days)
    }

    /// Every hour partition of `dataset` with rows in `[since, until)` that the store holds,
    /// with one listing per day (whole days) or per hour, in parallel. Hours below the
    /// dataset's retention watermark are left out. Sorted by hour.
    pub async fn listings(
        &self,
        dataset: Dataset,
        since: Option<i64>,
        until: Option<i64>,
        retention: &Retention,
    ) -> Result<Vec<HourListing>, CatalogError> {
        let watermark = retention.expired_before(dataset);
        let since = match (since, watermark) {
            (Some(s), Some(w)) => Some(s.max(w)),
            (s, w) => s.or(w),
        };
        // Open-ended: up to the current hour, with an hour of slack for clock skew.
        let until = until.unwrap_or_else(|| {
            chrono::Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or(i64::MAX - NANOS_PER_HOUR)
                + NANOS_PER_HOUR
        });
        // A short window lists its few prefixes; anything longer first lists which days exist
        // (one request), so a sparse history (months between two imports) costs no empty
        // listings.
        let short = since.is_some_and(|s| until.saturating_sub(s) <= SHORT_RANGE);
        let days = if short {
            None
        } else {
            Some(self.days(dataset).await?)
        };
        let since = match (since, days.as_ref().and_then(|d| d.first())) {
            (Some(since), _) => since,
            (None, Some(oldest)) => *oldest,
            (None, None) => return Ok(Vec::new()),
        };
        let mut prefixes = layout::prefixes_for_range(dataset, since, until);
        if let Some(days) = &days {
            let days: std::collections::HashSet<i64> = days.iter().copied().collect();
            prefixes.retain(|prefix| {
                let day = layout::hour_of_key(prefix)
                    .map(|hour| hour.div_euclid(24 * NANOS_PER_HOUR) * 24 * NANOS_PER_HOUR)
                    .or_else(|| layout::day_of_folder(prefix));
                day.is_some_and(|day| days.contains(&day))
            });
        }
        let listed: Vec<Vec<ObjectMeta>> = futures::stream::iter(prefixes)
            .map(|prefix| self.list(prefix))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut hours: BTreeMap<i64, Vec<ObjectMeta>> = BTreeMap::new();
        let table_prefix = self.store.path(&layout::table_prefix(dataset));
        for meta in listed.into_iter().flatten() {
            let Some(relative) = meta.location.as_ref().strip_prefix(table_prefix.as_ref()) else {
                continue;
            };
            let Some(hour) = layout::hour_of_key(relative) else {
                continue;
            };
            if hour + NANOS_PER_HOUR > since && hour < until {
                hours.entry(hour).or_default().push(meta);
            }
        }
        Ok(hours
            .into_iter()
            .map(|(hour, objects)| HourListing {
                dataset,
                hour,
                objects,
            })
            .collect())
    }

    /// Everything under `prefix` (a key relative to the store root).
    async fn list(&self, prefix: String) -> Result<Vec<ObjectMeta>, CatalogError> {
        let path = self.store.path(&prefix);
        self.store
            .object_store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|source| CatalogError::List {
                url: self.url(&path),
                source,
            })
    }

    /// The commit at `meta`.
    pub async fn read_commit(&self, meta: &ObjectMeta) -> Result<Commit, CatalogError> {
        let bytes = self
            .store
            .object_store
            .get(&meta.location)
            .await
            .map_err(|source| CatalogError::Read {
                url: self.url(&meta.location),
                source,
            })?
            .bytes()
            .await
            .map_err(|source| CatalogError::Read {
                url: self.url(&meta.location),
                source,
            })?;
        Commit::from_json(&bytes).map_err(|reason| CatalogError::BadCommit {
            url: self.url(&meta.location),
            reason,
        })
    }

    /// The view of one listed hour: reads its latest commit if the names do not decide, and
    /// lists the hour again when the listing was torn (a commit read after its partition was
    /// listed, or a commit deleted as superseded meanwhile).
    pub async fn view(&self, listing: HourListing) -> Result<HourView, CatalogError> {
        let mut listing = listing;
        let mut last_error = None;
        for attempt in 0..RELISTS {
            if attempt > 0 {
                listing.objects = self
                    .list(layout::hour_prefix(listing.dataset, listing.hour))
                    .await?;
            }
            let commit = match listing.latest_commit() {
                Some((_, meta)) if !listing.decidable_from_names() => {
                    match self.read_commit(meta).await {
                        Ok(commit) => Some(commit),
                        Err(CatalogError::Read {
                            source: object_store::Error::NotFound { .. },
                            ..
                        }) => continue,
                        Err(error) => return Err(error),
                    }
                }
                _ => None,
            };
            match listing.view(commit.as_ref()) {
                Ok(view) => return Ok(view),
                Err(error) => last_error = Some(error),
            }
        }
        Err(CatalogError::Inconsistent {
            dataset: listing.dataset.name(),
            hour: layout::rfc3339(listing.hour),
            source: last_error.unwrap_or(Inconsistency::CommitNeeded),
        })
    }

    /// The views of every hour of `dataset` (a recorded table) in `[since, until)`.
    pub async fn views(
        &self,
        dataset: Dataset,
        since: Option<i64>,
        until: Option<i64>,
        retention: &Retention,
    ) -> Result<Vec<HourView>, CatalogError> {
        let listings = self.listings(dataset, since, until, retention).await?;
        futures::stream::iter(listings)
            .map(|listing| self.view(listing))
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// The rollup files of every hour in `[since, until)`.
    pub async fn rollup_views(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        retention: &Retention,
    ) -> Result<Vec<RollupView>, CatalogError> {
        let listings = self
            .listings(Dataset::FlowsHourly, since, until, retention)
            .await?;
        Ok(listings.iter().map(RollupView::from_listing).collect())
    }
}
