//! Running the checks of a spec: every kind is one query whose rows are the violations (the
//! rows behind a failure, shown in the report), and a limit on what may be found.

use datafusion::logical_expr::LogicalPlan;
use futures::StreamExt;

use super::spec::{Check, CheckKind, EgressToWorld, NoFlowsBetween};
use crate::exec::{plan_query, ExecError};
use crate::print::text_rows;
use crate::session::FlowSession;

/// Drops that policy decided (not the datapath).
pub const POLICY_DROP_REASONS: &str = "('POLICY_DENIED', 'POLICY_DENY', 'AUTH_REQUIRED')";

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub name: String,
    pub kind: &'static str,
    pub description: Option<String>,
    pub passed: bool,
    /// What the check counts (rows, namespaces over the threshold, events lost).
    pub found: u64,
    pub limit: u64,
    pub detail: String,
    pub columns: Vec<String>,
    /// The first rows behind the result (all of them up to `--max-rows`).
    pub rows: Vec<Vec<Option<String>>>,
    pub total_rows: u64,
}

/// A check with its query planned: planning every check first means a bad one stops the
/// report before anything ran.
pub struct Planned<'c> {
    check: &'c Check,
    plan: LogicalPlan,
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The query of a check.
pub fn sql(kind: &CheckKind) -> String {
    match kind {
        CheckKind::Sql { sql, .. } => sql.clone(),
        CheckKind::NoFlowsBetween(c) => no_flows_between(c),
        CheckKind::EgressToWorld(c) => egress_to_world(c),
        CheckKind::PolicyDrops(c) => format!(
            "SELECT namespace, count(*) AS policy_drops,
               count(DISTINCT source_pod_name) AS source_pods,
               min(time) AS first, max(time) AS last
             FROM (SELECT CASE WHEN traffic_direction = 'INGRESS' THEN destination_namespace
                          ELSE source_namespace END AS namespace, source_pod_name, time
                   FROM flows
                   WHERE verdict = 'DROPPED' AND drop_reason_desc IN {POLICY_DROP_REASONS}
                     AND (event_type IS DISTINCT FROM 5))
             GROUP BY namespace HAVING count(*) > {}
             ORDER BY policy_drops DESC, namespace",
            c.max_per_namespace
        ),
        CheckKind::RecordingComplete(_) => "SELECT time, node_name, source, num_events_lost, cpu, \
             first, last FROM lost_events ORDER BY time"
            .into(),
    }
}

const FLOW_COLUMNS: &str = "time, source_namespace, source_pod_name, destination_namespace, \
     destination_pod_name, ip_destination, destination_port, l4_protocol, verdict, \
     drop_reason_desc, uuid";

fn no_flows_between(c: &NoFlowsBetween) -> String {
    let pair = |a: &str, b: &str| {
        format!(
            "(source_namespace = {} AND destination_namespace = {})",
            literal(a),
            literal(b)
        )
    };
    let mut between = pair(&c.from, &c.to);
    if !c.one_way {
        between = format!("({between} OR {})", pair(&c.to, &c.from));
    }
    let verdict = if c.include_dropped {
        ""
    } else {
        " AND (verdict IS DISTINCT FROM 'DROPPED')"
    };
    format!(
        "SELECT {FLOW_COLUMNS} FROM flows WHERE {between}{verdict} AND is_reply IS NOT TRUE \
         ORDER BY time"
    )
}

/// An FQDN glob (`*.stripe.com`) as a regex over `array_to_string(destination_names, ' ')`.
fn fqdn_regex(glob: &str) -> String {
    let mut regex = String::from("(?i)(^| )");
    for c in glob.chars() {
        match c {
            '*' => regex.push_str("[-a-z0-9_.]*"),
            '.' => regex.push_str(r"\."),
            c => regex.push(c),
        }
    }
    regex.push_str(r"\.?( |$)");
    regex
}

fn egress_to_world(c: &EgressToWorld) -> String {
    let mut allowed = Vec::new();
    for entry in &c.allow {
        if entry.contains('/') {
            allowed.push(format!(
                "coalesce(cidr_contains({}, ip_destination), false)",
                literal(entry)
            ));
        } else {
            allowed.push(format!(
                "coalesce(regexp_like(array_to_string(destination_names, ' '), {}), false)",
                literal(&fqdn_regex(entry))
            ));
        }
    }
    let namespace = c
        .namespace
        .as_ref()
        .map(|ns| format!(" AND source_namespace = {}", literal(ns)))
        .unwrap_or_default();
    let allowed = if allowed.is_empty() {
        String::new()
    } else {
        format!(" AND NOT ({})", allowed.join(" OR "))
    };
    format!(
        "SELECT time, source_namespace, source_pod_name, ip_destination, destination_names, \
         destination_port, l4_protocol, verdict, uuid FROM flows \
         WHERE verdict = 'FORWARDED' AND is_reply IS NOT TRUE \
         AND (destination_identity IN (2, 9, 10) \
              OR coalesce(has_label(destination_labels, 'reserved:world'), false))\
         {namespace}{allowed} ORDER BY time"
    )
}

/// Plans every check; the first that cannot be planned is returned with the check's name.
pub async fn plan<'c>(
    session: &FlowSession,
    checks: &'c [Check],
) -> Result<Vec<Planned<'c>>, (String, ExecError)> {
    let mut planned = Vec::new();
    for check in checks {
        let plan = plan_query(session, &sql(&check.kind))
            .await
            .map_err(|e| (check.name.clone(), e))?;
        planned.push(Planned { check, plan });
    }
    Ok(planned)
}

impl Planned<'_> {
    pub fn name(&self) -> &str {
        &self.check.name
    }

    /// Runs the check, keeping the first `max_rows` rows.
    pub async fn run(
        self,
        session: &FlowSession,
        max_rows: usize,
    ) -> Result<CheckResult, ExecError> {
        let frame = session.frame(self.plan);
        let columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut stream = frame.execute_stream().await?;
        let mut rows = Vec::new();
        let mut total_rows = 0u64;
        let mut lost = 0u64;
        let mut disconnections = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            total_rows += batch.num_rows() as u64;
            let text = text_rows(&batch).map_err(|e| ExecError::Query(e.to_string()))?;
            if let CheckKind::RecordingComplete(_) = self.check.kind {
                for row in &text {
                    let cell = |name: &str| {
                        columns
                            .iter()
                            .position(|c| c == name)
                            .and_then(|i| row[i].clone())
                    };
                    lost += cell("num_events_lost")
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    if cell("source").as_deref() == Some("FLOWREC_DISCONNECTED") {
                        disconnections += 1;
                    }
                }
            }
            rows.extend(text.into_iter().take(max_rows.saturating_sub(rows.len())));
        }
        let (found, limit, passed, detail) = match &self.check.kind {
            CheckKind::Sql { max_rows, .. } => (
                total_rows,
                *max_rows,
                total_rows <= *max_rows,
                format!("{total_rows} row(s), at most {max_rows} expected"),
            ),
            CheckKind::NoFlowsBetween(c) => (
                total_rows,
                0,
                total_rows == 0,
                format!("{total_rows} flow(s) between {} and {}", c.from, c.to),
            ),
            CheckKind::EgressToWorld(c) => (
                total_rows,
                0,
                total_rows == 0,
                format!(
                    "{total_rows} forwarded flow(s) to the world{} outside the allowlist",
                    c.namespace
                        .as_ref()
                        .map(|n| format!(" from {n}"))
                        .unwrap_or_default()
                ),
            ),
            CheckKind::PolicyDrops(c) => (
                total_rows,
                c.max_per_namespace,
                total_rows == 0,
                format!(
                    "{total_rows} namespace(s) with more than {} policy drop(s)",
                    c.max_per_namespace
                ),
            ),
            CheckKind::RecordingComplete(c) => (
                lost,
                c.max_lost_events,
                lost <= c.max_lost_events && disconnections == 0,
                format!(
                    "{lost} event(s) lost in {total_rows} record(s), {disconnections} recorder \
                     disconnection(s); at most {} lost and no disconnection expected",
                    c.max_lost_events
                ),
            ),
        };
        Ok(CheckResult {
            name: self.check.name.clone(),
            kind: self.check.kind.label(),
            description: self.check.description.clone(),
            passed,
            found,
            limit,
            detail,
            columns,
            rows,
            total_rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_literals() {
        let re = regex::Regex::new(&fqdn_regex("*.stripe.com")).unwrap();
        assert!(re.is_match("api.stripe.com"));
        assert!(re.is_match("x.example.org api.Stripe.com."));
        assert!(!re.is_match("stripe.com.evil.org"));
        assert!(!re.is_match("apistripe.com"));
        assert_eq!(literal("o'neil"), "'o''neil'");
    }
}
