//! A `GetFlowsRequest` checked and turned into what to read, with the semantics of a Hubble
//! server (../shared/docs/observer-api.md §3): `since` and `until` both inclusive, `until`
//! defaulting to the request's arrival, `number` the newest N unless `first`, 0 (or 2^64-1)
//! meaning every flow, `first` with `follow` refused, a follow without history starting at
//! the newest flow. Every refusal is `InvalidArgument` naming the field.

use datafusion::prelude::Expr;
use flow_schema::timerange::TimeRange;
use hubble_api::field_mask::FlowMask;
use hubble_api::observe_flags::FilterLists;
use hubble_api::observer::GetFlowsRequest;
use tonic::Status;

use crate::replay::history::Selection;
use crate::replay::predicate;

/// What a GetFlows stream delivers.
#[derive(Debug)]
pub struct FlowsPlan {
    /// The history part's window, `until` exclusive (one nanosecond past the request's).
    pub range: TimeRange,
    /// `None`: no history part (a follow that starts at the newest flow).
    pub history: Option<Selection>,
    pub follow: bool,
    /// The request's `until`, exclusive, which also ends a follow.
    pub until: Option<i64>,
    /// whitelist minus blacklist, as one predicate.
    pub predicate: Option<Expr>,
    pub mask: Option<FlowMask>,
}

/// The request as a plan, or the status a Hubble client expects.
pub fn plan(request: &GetFlowsRequest, now_ns: i64) -> Result<FlowsPlan, Status> {
    if request.first && request.follow {
        return Err(Status::invalid_argument(
            "first cannot be specified with follow",
        ));
    }
    let since = instant("since", request.since.as_ref())?;
    let until = instant("until", request.until.as_ref())?;
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            return Err(Status::invalid_argument(format!(
                "since ({}) is after until ({})",
                flow_schema::layout::rfc3339(since),
                flow_schema::layout::rfc3339(until)
            )));
        }
    }
    // Both ends inclusive, as Hubble's; our windows end before `until`.
    let until = until.map(|u| u.saturating_add(1));
    let history_until = match (until, request.follow) {
        (Some(until), _) => Some(until),
        // A window without an end ends when the request arrived, unless it follows.
        (None, false) => Some(now_ns.saturating_add(1)),
        (None, true) => None,
    };
    let number = usize::try_from(request.number).unwrap_or(usize::MAX);
    let history = match (request.first, number) {
        (_, 0) if request.follow && since.is_none() => None,
        (_, 0) | (false, usize::MAX) => Some(Selection::All),
        (true, n) => Some(Selection::First(n)),
        (false, n) => Some(Selection::Last(n)),
    };
    let lists = FilterLists {
        allow: request.whitelist.clone(),
        deny: request.blacklist.clone(),
    };
    let predicate = predicate::predicate(&lists)
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
    let paths = match (&request.field_mask, &request.experimental) {
        (Some(mask), _) if !mask.paths.is_empty() => mask.paths.as_slice(),
        (_, Some(experimental)) => experimental
            .field_mask
            .as_ref()
            .map_or(&[][..], |mask| mask.paths.as_slice()),
        _ => &[],
    };
    let mask = FlowMask::new(paths).map_err(|error| Status::invalid_argument(error.to_string()))?;
    Ok(FlowsPlan {
        range: TimeRange {
            since,
            until: history_until,
        },
        history,
        follow: request.follow,
        until,
        predicate,
        mask,
    })
}

/// A request timestamp in nanoseconds, refused when it is not a valid instant.
fn instant(field: &str, time: Option<&pbjson_types::Timestamp>) -> Result<Option<i64>, Status> {
    let Some(time) = time else {
        return Ok(None);
    };
    let valid = (0..1_000_000_000).contains(&time.nanos);
    time.seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(i64::from(time.nanos)))
        .filter(|_| valid)
        .map(Some)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "{field}: invalid timestamp (seconds {}, nanos {})",
                time.seconds, time.nanos
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubble_api::flow::FlowFilter;
    use tonic::Code;

    fn at(seconds: i64) -> Option<pbjson_types::Timestamp> {
        Some(pbjson_types::Timestamp { seconds, nanos: 0 })
    }

    const NOW: i64 = 2_000_000_000_000_000_000;

    #[test]
    fn the_cli_requests_select_as_hubble_does() {
        let request = |number, first, follow, since: Option<i64>| GetFlowsRequest {
            number,
            first,
            follow,
            since: since.and_then(at),
            ..Default::default()
        };
        let history = |r: GetFlowsRequest| plan(&r, NOW).unwrap().history;
        assert_eq!(
            history(request(20, false, false, None)),
            Some(Selection::Last(20))
        );
        assert_eq!(
            history(request(5, true, false, None)),
            Some(Selection::First(5))
        );
        assert_eq!(
            history(request(u64::MAX, false, false, None)),
            Some(Selection::All)
        );
        assert_eq!(history(request(0, false, true, None)), None);
        assert_eq!(
            history(request(3, false, true, None)),
            Some(Selection::Last(3))
        );
        assert_eq!(
            history(request(0, false, true, Some(100))),
            Some(Selection::All)
        );
        assert_eq!(
            history(request(0, false, false, Some(100))),
            Some(Selection::All)
        );
    }

    #[test]
    fn since_and_until_are_inclusive_and_until_defaults_to_now() {
        let p = plan(
            &GetFlowsRequest {
                since: at(100),
                until: at(200),
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        assert_eq!(p.range.since, Some(100_000_000_000));
        assert_eq!(p.range.until, Some(200_000_000_001));
        let p = plan(&GetFlowsRequest::default(), NOW).unwrap();
        assert_eq!(p.range.until, Some(NOW + 1));
        let p = plan(
            &GetFlowsRequest {
                follow: true,
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        assert_eq!((p.range.until, p.until), (None, None));
    }

    #[test]
    fn bad_requests_are_invalid_arguments_naming_the_field() {
        let refused = |r: GetFlowsRequest| {
            let status = plan(&r, NOW).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            status.message().to_owned()
        };
        assert_eq!(
            refused(GetFlowsRequest {
                first: true,
                follow: true,
                ..Default::default()
            }),
            "first cannot be specified with follow"
        );
        assert!(refused(GetFlowsRequest {
            since: at(200),
            until: at(100),
            ..Default::default()
        })
        .contains("since"));
        assert!(refused(GetFlowsRequest {
            since: Some(pbjson_types::Timestamp {
                seconds: 1,
                nanos: -1
            }),
            ..Default::default()
        })
        .starts_with("since: invalid timestamp"));
        assert!(refused(GetFlowsRequest {
            field_mask: Some(pbjson_types::FieldMask {
                paths: vec!["nope".into()]
            }),
            ..Default::default()
        })
        .starts_with("invalid fieldmask"));
        assert!(refused(GetFlowsRequest {
            whitelist: vec![FlowFilter {
                source_ip: vec!["10.0.0.0/99".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .contains("source_ip"));
    }

    #[test]
    fn a_v1_18_client_mask_is_honoured() {
        let p = plan(
            &GetFlowsRequest {
                experimental: Some(hubble_api::observer::get_flows_request::Experimental {
                    field_mask: Some(pbjson_types::FieldMask {
                        paths: vec!["time".into()],
                    }),
                }),
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        assert!(p.mask.is_some());
    }
}
