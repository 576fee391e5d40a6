//! Time bounds from a scan's filters: the instants a query can reach, so that a table lists
//! only the partitions of those hours and opens only the files whose time range meets them.

use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Operator};
use datafusion::prelude::Expr;
use datafusion::scalar::ScalarValue;

/// `since <= time < until` as far as the filters say (`None`: unbounded on that side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Bounds {
    fn at_least(&mut self, ns: i64) {
        self.since = Some(self.since.map_or(ns, |s| s.max(ns)));
    }

    fn below(&mut self, ns: i64) {
        self.until = Some(self.until.map_or(ns, |u| u.min(ns)));
    }

    /// No instant can match.
    pub fn is_empty(&self) -> bool {
        matches!((self.since, self.until), (Some(s), Some(u)) if s >= u)
    }

    /// Whether rows of `[min, max]` (inclusive; `None`: unknown) can meet the bounds.
    pub fn meets(&self, min: Option<i64>, max: Option<i64>) -> bool {
        let after_until = matches!((min, self.until), (Some(min), Some(until)) if min >= until);
        let before_since = matches!((max, self.since), (Some(max), Some(since)) if max < since);
        !(after_until || before_since)
    }

    /// Whether every instant of `[min, max]` (inclusive; `None`: unknown) is within the bounds.
    pub fn contains(&self, min: Option<i64>, max: Option<i64>) -> bool {
        self.since
            .is_none_or(|since| min.is_some_and(|min| min >= since))
            && self
                .until
                .is_none_or(|until| max.is_some_and(|max| max < until))
    }
}

/// The bounds on `column` of the conjuncts of `filters` (others are ignored: they narrow
/// nothing by time; an OR across time ranges is not followed either, so the result only ever
/// widens).
pub fn time_bounds(filters: &[Expr], column: &str) -> Bounds {
    let mut bounds = Bounds::default();
    for filter in filters {
        for conjunct in split_conjunction(filter) {
            bound(conjunct, column, &mut bounds);
        }
    }
    bounds
}

fn bound(expr: &Expr, column: &str, bounds: &mut Bounds) {
    let is_time = |expr: &Expr| matches!(expr, Expr::Column(c) if c.name == column);
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, ns) = match (is_time(left), nanos(right), is_time(right), nanos(left)) {
                (true, Some(ns), _, _) => (*op, ns),
                (_, _, true, Some(ns)) => match op.swap() {
                    Some(op) => (op, ns),
                    None => return,
                },
                _ => return,
            };
            match op {
                Operator::GtEq => bounds.at_least(ns),
                Operator::Gt => bounds.at_least(ns.saturating_add(1)),
                Operator::Lt => bounds.below(ns),
                Operator::LtEq => bounds.below(ns.saturating_add(1)),
                Operator::Eq => {
                    bounds.at_least(ns);
                    bounds.below(ns.saturating_add(1));
                }
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr) => {
            if let (Some(low), Some(high)) = (nanos(low), nanos(high)) {
                bounds.at_least(low);
                bounds.below(high.saturating_add(1));
            }
        }
        _ => {}
    }
}

/// A timestamp literal in ns (any unit, any time zone: the instant is the same).
fn nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(ns),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn a_range_is_contained_only_when_wholly_inside() {
        let hour = Bounds {
            since: Some(100),
            until: Some(200),
        };
        assert!(hour.contains(Some(100), Some(199)));
        assert!(!hour.contains(Some(99), Some(150)));
        assert!(!hour.contains(Some(150), Some(200)));
        assert!(!hour.contains(None, Some(150)));
        assert!(Bounds::default().contains(None, None));
    }

    #[test]
    fn bounds_from_time_predicates() {
        let f = col("time").gt_eq(ts(100)).and(col("time").lt(ts(200)));
        assert_eq!(
            time_bounds(&[f], "time"),
            Bounds {
                since: Some(100),
                until: Some(200)
            }
        );
        // Reversed operands, strict bounds, a second filter, something else.
        let f = vec![
            ts(100).lt(col("time")),
            col("time").lt_eq(ts(300)),
            col("verdict").eq(lit("DROPPED")),
        ];
        assert_eq!(
            time_bounds(&f, "time"),
            Bounds {
                since: Some(101),
                until: Some(301)
            }
        );
        let f = col("time").between(
            lit(ScalarValue::TimestampSecond(Some(1), None)),
            lit(ScalarValue::TimestampMillisecond(Some(2_500), None)),
        );
        assert_eq!(
            time_bounds(&[f], "time"),
            Bounds {
                since: Some(1_000_000_000),
                until: Some(2_500_000_001)
            }
        );
        // An OR is not followed: unbounded.
        let f = col("time").lt(ts(5)).or(col("time").gt(ts(10)));
        assert_eq!(time_bounds(&[f], "time"), Bounds::default());
        assert!(time_bounds(&[col("time").gt(ts(10)), col("time").lt(ts(5))], "time").is_empty());
        // Another column's bounds.
        assert_eq!(time_bounds(&[col("hour").lt(ts(7))], "hour").until, Some(7));
        assert_eq!(
            time_bounds(&[col("hour").lt(ts(7))], "time"),
            Bounds::default()
        );
    }

    #[test]
    fn files_meet_bounds_by_their_time_range() {
        let b = Bounds {
            since: Some(10),
            until: Some(20),
        };
        assert!(b.meets(Some(5), Some(10)));
        assert!(!b.meets(Some(5), Some(9)));
        assert!(!b.meets(Some(20), Some(30)));
        assert!(b.meets(Some(19), Some(30)));
        assert!(b.meets(None, None));
        assert!(Bounds::default().meets(Some(1), Some(2)));
    }
}
