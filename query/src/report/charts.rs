//! The report's overview: drops over time, top pairs denied by policy, verdict mix — queried
//! once, drawn as inline SVG (the HTML report needs no script and no network).

use futures::StreamExt;

use super::checks::POLICY_DROP_REASONS;
use crate::exec::{plan_query, ExecError};
use crate::print::text_rows;
use crate::session::FlowSession;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Overview {
    pub flows: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    /// Bucket start, flows, dropped flows.
    pub drops_over_time: Vec<(String, u64, u64)>,
    pub bucket: String,
    /// "src -> dst:port/proto", policy drops.
    pub top_denied: Vec<(String, u64)>,
    /// Verdict, flows.
    pub verdicts: Vec<(String, u64)>,
}

async fn rows(session: &FlowSession, sql: &str) -> Result<Vec<Vec<Option<String>>>, ExecError> {
    let plan = plan_query(session, sql).await?;
    let mut stream = session.frame(plan).execute_stream().await?;
    let mut rows = Vec::new();
    while let Some(batch) = stream.next().await {
        rows.extend(text_rows(&batch?).map_err(|e| ExecError::Query(e.to_string()))?);
    }
    Ok(rows)
}

fn number(cell: &Option<String>) -> u64 {
    cell.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn text(cell: &Option<String>) -> String {
    cell.clone().unwrap_or_default()
}

/// Bucket sizes a chart of ~48 bars picks from.
const BUCKETS: [(i64, &str); 10] = [
    (60, "1 minute"),
    (300, "5 minutes"),
    (900, "15 minutes"),
    (1800, "30 minutes"),
    (3600, "1 hour"),
    (3 * 3600, "3 hours"),
    (6 * 3600, "6 hours"),
    (12 * 3600, "12 hours"),
    (86400, "1 day"),
    (7 * 86400, "7 days"),
];

/// One endpoint of a connection as the charts label it (the `peer` of regressions and
/// rollups), over rollup-shaped rows.
const PAIR_LABEL: &str =
    "concat(coalesce(source_namespace, ''), '/', coalesce(source_workload, '?'), ' -> ', \
     coalesce(destination_namespace, ''), '/', coalesce(destination_workload, '?'), ':', \
     coalesce(CAST(destination_port AS VARCHAR), ''), '/', coalesce(l4_protocol, ''))";

/// The overview of the report's period, from its hourly summary (`hourly::relation`: the
/// rollups where they are exact, raw flows summed the same way elsewhere), so a month-long
/// report reads rollups rather than a month of flows. The drops-over-time chart needs raw
/// flows when its bars are shorter than an hour. Without a start (all history), raw flows.
pub async fn overview(session: &FlowSession) -> Result<Overview, ExecError> {
    let mut overview = Overview::default();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let hourly = match session.range.since {
        Some(since) => {
            let until = session.range.until.unwrap_or(now);
            let relation = crate::hourly::relation(session, "overview", since, until)
                .await
                .map_err(|e| ExecError::Query(e.to_string()))?;
            format!("({relation})")
        }
        None => format!("({})", crate::hourly::rollup_select("flows", "true")),
    };
    let span = rows(
        session,
        &format!(
            "SELECT sum(flows), min(first_seen), max(last_seen), \
             CAST(to_unixtime(max(last_seen)) - to_unixtime(min(first_seen)) AS BIGINT) FROM {hourly}"
        ),
    )
    .await?;
    let Some(span) = span.first() else {
        return Ok(overview);
    };
    overview.flows = number(&span[0]);
    if overview.flows == 0 {
        return Ok(overview);
    }
    overview.first = span[1].clone();
    overview.last = span[2].clone();
    let seconds = span[3]
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    let (bucket, label) = BUCKETS
        .iter()
        .copied()
        .find(|(size, _)| seconds / size <= 48)
        .unwrap_or(BUCKETS[BUCKETS.len() - 1]);
    overview.bucket = label.into();
    let over_time = if bucket >= 3600 {
        format!(
            "SELECT date_bin(INTERVAL '{bucket} seconds', time) AS bucket, sum(flows), \
             sum(flows) FILTER (WHERE verdict = 'DROPPED') FROM {hourly} GROUP BY 1 ORDER BY 1"
        )
    } else {
        format!(
            "SELECT date_bin(INTERVAL '{bucket} seconds', time) AS bucket, count(*), \
             count(*) FILTER (WHERE verdict = 'DROPPED') FROM flows GROUP BY 1 ORDER BY 1"
        )
    };
    overview.drops_over_time = rows(session, &over_time)
        .await?
        .iter()
        .map(|r| (text(&r[0]), number(&r[1]), number(&r[2])))
        .collect();
    // Drop events, not the policy-verdict events Cilium emits beside them.
    overview.top_denied = rows(
        session,
        &format!(
            "SELECT {PAIR_LABEL}, sum(flows - policy_verdicts) AS drops FROM {hourly} \
             WHERE verdict = 'DROPPED' AND drop_reason_desc IN {POLICY_DROP_REASONS} \
             GROUP BY 1 HAVING sum(flows - policy_verdicts) > 0 ORDER BY 2 DESC, 1 LIMIT 10"
        ),
    )
    .await?
    .iter()
    .map(|r| (text(&r[0]), number(&r[1])))
    .collect();
    overview.verdicts = rows(
        session,
        &format!(
            "SELECT coalesce(verdict, 'VERDICT_UNKNOWN'), sum(flows) FROM {hourly} \
             GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
    )
    .await?
    .iter()
    .map(|r| (text(&r[0]), number(&r[1])))
    .collect();
    Ok(overview)
}

/// Text for SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 760.0;

/// Flows and drops per bucket: grey bars of all flows, red bars of drops in front.
pub fn drops_over_time(overview: &Overview) -> String {
    let data = &overview.drops_over_time;
    let height = 220.0;
    let (left, bottom, top) = (60.0, 40.0, 20.0);
    let plot_h = height - bottom - top;
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1) as f64;
    let slot = (WIDTH - left - 10.0) / data.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart" id="drops-over-time" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" aria-label="Flows and drops over time">"#
    );
    svg.push_str(&format!(
        r##"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" stroke="#888"/><text x="{tx}" y="{ty}" font-size="11" text-anchor="end">{max}</text><text x="{tx}" y="{y}" font-size="11" text-anchor="end">0</text>"##,
        y = height - bottom,
        x2 = WIDTH - 10.0,
        tx = left - 6.0,
        ty = top + 10.0,
        max = max as u64
    ));
    for (i, (bucket, flows, drops)) in data.iter().enumerate() {
        let x = left + i as f64 * slot;
        let h_all = *flows as f64 / max * plot_h;
        let h_drop = *drops as f64 / max * plot_h;
        let w = (slot - 1.0).max(1.0);
        svg.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h_all:.1}" fill="#c7d3e0"><title>{}: {flows} flows</title></rect>"##,
            height - bottom - h_all,
            escape(bucket)
        ));
        if *drops > 0 {
            svg.push_str(&format!(
                r##"<rect class="drop-bar" x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#d62728"><title>{}: {drops} dropped</title></rect>"##,
                height - bottom - h_drop,
                h_drop.max(1.0),
                escape(bucket)
            ));
        }
    }
    if let (Some(first), Some(last)) = (data.first(), data.last()) {
        svg.push_str(&format!(
            r#"<text x="{left}" y="{y}" font-size="11">{}</text><text x="{x}" y="{y}" font-size="11" text-anchor="end">{}</text>"#,
            escape(&first.0),
            escape(&last.0),
            y = height - bottom + 16.0,
            x = WIDTH - 10.0,
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars with their labels.
pub fn bars(
    id: &str,
    label: &str,
    data: &[(String, u64)],
    color: impl Fn(&str) -> &'static str,
) -> String {
    let row = 24.0;
    let label_w = 380.0;
    let height = (data.len().max(1) as f64) * row + 10.0;
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart" id="{id}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" aria-label="{}">"#,
        escape(label)
    );
    if data.is_empty() {
        svg.push_str(r#"<text x="0" y="18" font-size="12">none</text>"#);
    }
    for (i, (name, value)) in data.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let w = (*value as f64 / max * (WIDTH - label_w - 70.0)).max(1.0);
        svg.push_str(&format!(
            r#"<text x="{tx}" y="{ty:.1}" font-size="12" text-anchor="end">{name}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{h}" fill="{fill}"/><text x="{vx:.1}" y="{ty:.1}" font-size="12">{value}</text>"#,
            tx = label_w - 8.0,
            ty = y + 14.0,
            name = escape(name),
            h = row - 6.0,
            fill = color(name),
            vx = label_w + w + 6.0,
        ));
    }
    svg.push_str("</svg>");
    svg
}

pub fn verdict_color(verdict: &str) -> &'static str {
    match verdict {
        "FORWARDED" => "#2ca02c",
        "DROPPED" => "#d62728",
        "AUDIT" => "#ff7f0e",
        "REDIRECTED" => "#1f77b4",
        "ERROR" => "#8c564b",
        _ => "#7f7f7f",
    }
}
