//! Redaction of L7 secrets with Hubble's semantics (the agent's `hubble-redact-*` options),
//! applied to decoded rows before anything is written, whatever the source:
//!
//! - URL query: the query and the fragment are removed from `http_url`;
//! - URL userinfo (on by default, as in Hubble): the password of `user:password@` becomes
//!   `HUBBLE_REDACTED`, the user name stays;
//! - headers: with an allow list, values of headers not in it become `HUBBLE_REDACTED`; with a
//!   deny list, values of headers in it do (names compared case-insensitively, as HTTP does);
//! - Kafka: `kafka_api_key` becomes `HUBBLE_REDACTED`.
//!
//! Hubble's `Summary` repeats the URL (`HTTP/1.1 200 1ms (GET http://…?token=…)`), so the
//! original URL inside `summary` is replaced by the redacted one as well.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray, StructArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;

/// Hubble's replacement text.
pub const REDACTED: &str = "HUBBLE_REDACTED";

/// Which header values are redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Headers {
    /// None.
    #[default]
    Keep,
    /// Every header but these (lower-case names).
    Allow(Vec<String>),
    /// These (lower-case names).
    Deny(Vec<String>),
}

/// What to redact. The default is Hubble's: only URL passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub url_query: bool,
    pub user_info: bool,
    pub headers: Headers,
    pub kafka_api_key: bool,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            url_query: false,
            user_info: true,
            headers: Headers::Keep,
            kafka_api_key: false,
        }
    }
}

impl Redaction {
    /// Header lists as given (comma-separated names, any case).
    pub fn headers_from(allow: &[String], deny: &[String]) -> Headers {
        let lower = |names: &[String]| {
            names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect()
        };
        match (allow.is_empty(), deny.is_empty()) {
            (false, _) => Headers::Allow(lower(allow)),
            (true, false) => Headers::Deny(lower(deny)),
            (true, true) => Headers::Keep,
        }
    }

    fn is_noop(&self) -> bool {
        !self.url_query && !self.user_info && self.headers == Headers::Keep && !self.kafka_api_key
    }

    /// The URL as Hubble would show it.
    pub fn url(&self, url: &str) -> String {
        let mut url = url;
        if self.url_query {
            if let Some(cut) = url.find(['?', '#']) {
                url = &url[..cut];
            }
        }
        if !self.user_info {
            return url.to_string();
        }
        // scheme://user:password@host/… : the authority ends at the first / ? #.
        let Some(scheme_end) = url.find("://") else {
            return url.to_string();
        };
        let authority_start = scheme_end + 3;
        let authority_end = url[authority_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |end| authority_start + end);
        let authority = &url[authority_start..authority_end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].find(':') {
                Some(colon) => format!(
                    "{}{REDACTED}{}",
                    &url[..authority_start + colon + 1],
                    &url[authority_start + at..]
                ),
                None => url.to_string(),
            },
            None => url.to_string(),
        }
    }

    fn header_redacted(&self, name: &str) -> bool {
        match &self.headers {
            Headers::Keep => false,
            Headers::Allow(names) => !names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            Headers::Deny(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }

    /// `flows` with the secrets replaced (columns it does not have are skipped).
    pub fn apply(&self, flows: RecordBatch) -> RecordBatch {
        if self.is_noop() || flows.num_rows() == 0 {
            return flows;
        }
        let schema = flows.schema();
        let mut columns: Vec<ArrayRef> = flows.columns().to_vec();
        let index = |name: &str| schema.index_of(name).ok();
        if let (Some(url_at), true) = (index("http_url"), self.url_query || self.user_info) {
            let urls = strings(&columns[url_at]);
            let redacted: Vec<Option<String>> = urls
                .iter()
                .map(|url| url.map(|url| self.url(url)))
                .collect();
            // Most batches hold no secret: then nothing is rebuilt (the summary column is
            // every row's; rebuilding it cost ~5% of a live recording's CPU).
            let changed = urls
                .iter()
                .zip(&redacted)
                .any(|(url, new)| url != new.as_deref());
            if let Some(summary_at) = index("summary").filter(|_| changed) {
                let summaries = strings(&columns[summary_at]);
                let summaries: StringArray = summaries
                    .iter()
                    .zip(urls.iter().zip(&redacted))
                    .map(|(summary, (url, new))| match (summary, url, new) {
                        (Some(summary), Some(url), Some(new)) if url != new && !url.is_empty() => {
                            Some(summary.replace(url, new))
                        }
                        (summary, _, _) => summary.map(str::to_string),
                    })
                    .collect();
                columns[summary_at] = typed(Arc::new(summaries), columns[summary_at].data_type());
            }
            if changed {
                let redacted: StringArray = redacted.into_iter().collect();
                columns[url_at] = typed(Arc::new(redacted), columns[url_at].data_type());
            }
        }
        if let (Some(at), false) = (index("http_headers"), self.headers == Headers::Keep) {
            columns[at] = self.headers_column(&columns[at]);
        }
        if let (Some(at), true) = (index("kafka_api_key"), self.kafka_api_key) {
            let keys = strings(&columns[at]);
            let redacted: StringArray = keys.iter().map(|key| key.map(|_| REDACTED)).collect();
            columns[at] = typed(Arc::new(redacted), columns[at].data_type());
        }
        RecordBatch::try_new(schema, columns).expect("same schema, same lengths")
    }

    fn headers_column(&self, column: &ArrayRef) -> ArrayRef {
        let list = column.as_list::<i32>();
        let entries = list.values().as_struct();
        let keys = strings(entries.column(0));
        let values = strings(entries.column(1));
        let redacted: StringArray = keys
            .iter()
            .zip(values.iter())
            .map(|(key, value)| match (key, value) {
                (Some(key), Some(_)) if self.header_redacted(key) => Some(REDACTED),
                (_, value) => value,
            })
            .collect();
        let value_type = entries.column(1).data_type();
        let mut fields_columns = entries.columns().to_vec();
        fields_columns[1] = typed(Arc::new(redacted), value_type);
        let entries = StructArray::new(
            entries.fields().clone(),
            fields_columns,
            entries.nulls().cloned(),
        );
        let (field, offsets, _, nulls) = list.clone().into_parts();
        Arc::new(ListArray::new(field, offsets, Arc::new(entries), nulls))
    }
}

/// A string-like column's values (utf8 or dictionary), as a plain string array.
fn strings(column: &ArrayRef) -> StringArray {
    let utf8 = cast(column, &DataType::Utf8).expect("a string column");
    utf8.as_string::<i32>().clone()
}

/// `values` in the column's own type.
fn typed(values: ArrayRef, data_type: &DataType) -> ArrayRef {
    if values.data_type() == data_type {
        return values;
    }
    cast(&values, data_type).expect("strings cast back to their column type")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Redaction {
        Redaction {
            url_query: true,
            user_info: true,
            headers: Headers::Deny(vec!["authorization".into()]),
            kafka_api_key: true,
        }
    }

    #[test]
    fn urls_lose_their_query_fragment_and_password_as_in_hubble() {
        let r = all();
        assert_eq!(
            r.url("http://alice:s3cret@api.shop:8080/v1/pay?token=abc#frag"),
            "http://alice:HUBBLE_REDACTED@api.shop:8080/v1/pay"
        );
        assert_eq!(
            r.url("http://bob@host/x?y"),
            "http://bob@host/x",
            "no password"
        );
        assert_eq!(r.url("/relative?q=1"), "/relative");
        let default = Redaction::default();
        assert_eq!(
            default.url("http://alice:s3cret@host/a?b=c"),
            "http://alice:HUBBLE_REDACTED@host/a?b=c",
            "by default only the password"
        );
        assert_eq!(
            default.url("http://host/p@x?q"),
            "http://host/p@x?q",
            "@ in the path"
        );
    }

    #[test]
    fn header_lists_allow_or_deny_by_name_in_any_case() {
        let deny = Redaction {
            headers: Redaction::headers_from(&[], &["Authorization".into()]),
            ..Redaction::default()
        };
        assert!(deny.header_redacted("authorization"));
        assert!(!deny.header_redacted("user-agent"));
        let allow = Redaction {
            headers: Redaction::headers_from(&["User-Agent".into()], &[]),
            ..Redaction::default()
        };
        assert!(!allow.header_redacted("user-agent"));
        assert!(allow.header_redacted("Cookie"));
    }

    #[test]
    fn decoded_rows_carry_no_secret() {
        let line = r#"{"flow":{"time":"2026-11-26T10:00:00Z","Type":"L7","l7":{"type":"REQUEST","http":{"method":"GET","url":"http://alice:s3cret@api/pay?token=abc","headers":[{"key":"Authorization","value":"Bearer xyz"},{"key":"User-Agent","value":"curl"}]},"kafka":null},"Summary":"HTTP/1.1 GET http://alice:s3cret@api/pay?token=abc"}}"#;
        let decoded = crate::hubble::HubbleDecoder::new(crate::CaptureSource::Import, None)
            .decode(line.as_bytes(), 1);
        let flows = all().apply(decoded.flows);
        let text = format!("{:?}", flows.columns());
        for secret in ["s3cret", "token=abc", "Bearer xyz"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert!(text.contains("curl"), "other headers kept");
        assert!(
            text.contains("HTTP/1.1 GET http://alice:HUBBLE_REDACTED@api/pay"),
            "{text}"
        );
    }
}
