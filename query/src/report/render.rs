//! The report as HTML (one self-contained file: inline CSS and SVG, no script, nothing fetched),
//! Markdown and JSON, from the same [`Report`].

use super::charts::{self, escape, Overview};
use super::checks::CheckResult;

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub title: String,
    pub store: String,
    /// The period, as given (`since`/`until`, or "all recorded history").
    pub period: String,
    pub generated_at: String,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
    pub overview: Overview,
    /// Store objects the report had to leave out (damaged, foreign): its answers are partial.
    pub skipped_objects: Vec<String>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count()
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# {}\n\nStore `{}`, {}; generated {}.\n\n**{}**: {} of {} checks passed.\n\n\
             | check | kind | result | detail |\n|---|---|---|---|\n",
            self.title,
            self.store,
            self.period,
            self.generated_at,
            if self.passed { "PASSED" } else { "FAILED" },
            self.checks.len() - self.failed(),
            self.checks.len()
        );
        md = self.skipped_markdown() + &md;
        for c in &self.checks {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&c.name),
                c.kind,
                if c.passed { "pass" } else { "**FAIL**" },
                cell(&c.detail)
            ));
        }
        for c in self
            .checks
            .iter()
            .filter(|c| !c.passed && !c.rows.is_empty())
        {
            md.push_str(&format!("\n## {} — failed\n\n{}\n\n", c.name, c.detail));
            md.push_str(&format!("| {} |\n", c.columns.join(" | ")));
            md.push_str(&format!("|{}\n", "---|".repeat(c.columns.len())));
            for row in &c.rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|v| cell(v.as_deref().unwrap_or("")))
                    .collect();
                md.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            if c.total_rows > c.rows.len() as u64 {
                md.push_str(&format!(
                    "\n({} more rows not shown)\n",
                    c.total_rows - c.rows.len() as u64
                ));
            }
        }
        md
    }

    /// The warning a partial report opens with (nothing when nothing was skipped).
    fn skipped_markdown(&self) -> String {
        if self.skipped_objects.is_empty() {
            return String::new();
        }
        let mut md = format!(
            "> **Partial answer**: {} store object(s) could not be read and were left out:\n",
            self.skipped_objects.len()
        );
        for object in &self.skipped_objects {
            md.push_str(&format!("> - {}\n", cell(object)));
        }
        md + "\n"
    }

    pub fn html(&self) -> String {
        let o = &self.overview;
        let mut html = format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 4px; }} .meta {{ color: #666; margin-top: 0; }}
.verdict {{ display: inline-block; padding: 6px 14px; border-radius: 4px; font-weight: 600; color: #fff; }}
.pass {{ background: #2ca02c; }} .fail {{ background: #d62728; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
td.result-pass {{ color: #2ca02c; font-weight: 600; }} td.result-fail {{ color: #d62728; font-weight: 600; }}
.charts section {{ margin-bottom: 18px; }} .rows {{ overflow-x: auto; }}
code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>{title}</h1>
<p class="meta">Store <code>{store}</code> · {period} · generated {generated}</p>
<p><span class="verdict {class}" id="summary">{verdict}: {passed} of {total} checks passed</span></p>
<table id="checks"><tr><th>check</th><th>kind</th><th>result</th><th>detail</th></tr>
"#,
            title = escape(&self.title),
            store = escape(&self.store),
            period = escape(&self.period),
            generated = escape(&self.generated_at),
            class = if self.passed { "pass" } else { "fail" },
            verdict = if self.passed { "PASSED" } else { "FAILED" },
            passed = self.checks.len() - self.failed(),
            total = self.checks.len(),
        );
        if !self.skipped_objects.is_empty() {
            html.push_str(&format!(
                "</table>\n<p id=\"skipped\"><strong>Partial answer</strong>: {} store object(s) could not be read and were left out:</p><ul>{}</ul>\n<table>",
                self.skipped_objects.len(),
                self.skipped_objects
                    .iter()
                    .map(|o| format!("<li><code>{}</code></li>", escape(o)))
                    .collect::<String>()
            ));
        }
        for c in &self.checks {
            html.push_str(&format!(
                r##"<tr><td><a href="#{anchor}">{name}</a></td><td>{kind}</td><td class="result-{class}">{result}</td><td>{detail}</td></tr>
"##,
                anchor = anchor(&c.name),
                name = escape(&c.name),
                kind = c.kind,
                class = if c.passed { "pass" } else { "fail" },
                result = if c.passed { "pass" } else { "FAIL" },
                detail = escape(&c.detail),
            ));
        }
        html.push_str("</table>\n<div class=\"charts\">\n");
        html.push_str(&format!(
            "<section><h2>Flows and drops over time</h2><p class=\"meta\">{} flows from {} to {}, per {}; drops in red</p>{}</section>\n",
            o.flows,
            escape(o.first.as_deref().unwrap_or("-")),
            escape(o.last.as_deref().unwrap_or("-")),
            escape(&o.bucket),
            charts::drops_over_time(o)
        ));
        html.push_str(&format!(
            "<section><h2>Top pairs denied by policy</h2>{}</section>\n",
            charts::bars(
                "top-denied",
                "Top pairs denied by policy",
                &o.top_denied,
                |_| "#d62728"
            )
        ));
        html.push_str(&format!(
            "<section><h2>Verdicts</h2>{}</section>\n</div>\n",
            charts::bars(
                "verdicts",
                "Verdict mix",
                &o.verdicts,
                charts::verdict_color
            )
        ));
        for c in &self.checks {
            html.push_str(&format!(
                "<section class=\"check\" id=\"{}\"><h2>{} — {}</h2>\n<p>{}</p>\n",
                anchor(&c.name),
                escape(&c.name),
                if c.passed { "passed" } else { "FAILED" },
                escape(&c.detail)
            ));
            if let Some(description) = &c.description {
                html.push_str(&format!("<p class=\"meta\">{}</p>\n", escape(description)));
            }
            if !c.passed && !c.rows.is_empty() {
                html.push_str("<div class=\"rows\"><table class=\"violations\"><tr>");
                for column in &c.columns {
                    html.push_str(&format!("<th>{}</th>", escape(column)));
                }
                html.push_str("</tr>\n");
                for row in &c.rows {
                    html.push_str("<tr>");
                    for value in row {
                        html.push_str(&format!(
                            "<td>{}</td>",
                            escape(value.as_deref().unwrap_or(""))
                        ));
                    }
                    html.push_str("</tr>\n");
                }
                html.push_str("</table></div>\n");
                if c.total_rows > c.rows.len() as u64 {
                    html.push_str(&format!(
                        "<p class=\"meta\">{} more rows not shown</p>\n",
                        c.total_rows - c.rows.len() as u64
                    ));
                }
            }
            html.push_str("</section>\n");
        }
        html.push_str("</body></html>\n");
        html
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn anchor(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("check-{slug}")
}
