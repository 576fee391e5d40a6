//! `flowsql policy whatif`: what a proposed NetworkPolicy / CiliumNetworkPolicy would do to
//! the connections actually recorded in a window, before it is applied. The recorded flows
//! are grouped into distinct connections ([`connections`]), the policy engine
//! (`flow_spec::policy`, no SQL) decides each before and after the change, and [`impact`]
//! classifies and prints them: NEWLY_DENIED, NEWLY_ALLOWED, L7_CHANGED, UNCERTAIN(reason),
//! UNCHANGED_*, with flows, pods, first/last seen and the deciding rule.

pub mod connections;
pub mod impact;
pub mod suggest;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use flow_schema::timerange::TimeRange;
use flow_spec::policy::{self, compile::PolicySet, Semantics};

use crate::cli::Cli;
use crate::print::{OutputFormat, Printer};
use crate::session::FlowSession;
use connections::Recorded;
use impact::{Decision, Mode};

const EXAMPLES: &str = "\
Examples:
  flowsql --since 2026-11-24T08:05Z --until 2026-11-24T09:05Z policy whatif api-access-policy.yaml
  flowsql --since 7d policy whatif new-policies/ --fail-on newly-denied --markdown > impact.md
  flowsql --since 1d policy whatif fixed.yaml --baseline current-policies/ --mode replace
  kubectl get cnp,netpol -A -o yaml > current.yaml
  flowsql --since 1d policy whatif proposal.yaml --baseline current.yaml --semantics cilium

Baselines: `recorded` (default) compares with the verdicts and policy attributions Hubble
recorded; a folder or file of policies compares the two policy sets on the same connections;
`none` compares with no policy at all. Without --since/--until, the last 24 hours.
Connections are requests (not replies): Hubble's policy verdicts and L7 requests, or the
recorder's own eBPF flows. What the recording cannot tell is UNCERTAIN with its reason.";

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// What proposed policies would deny or allow among the recorded connections
    Whatif(WhatifArgs),
    /// Least-privilege policies from the connections recorded as allowed
    Suggest(SuggestArgs),
}

const SUGGEST_EXAMPLES: &str = "\
Examples:
  flowsql --since 7d policy suggest -n prod-app > prod-app-policies.yaml
  flowsql --since 7d policy suggest -n prod-app --workload api-gateway --l7
  flowsql --since 7d policy suggest --kind knp -n shop --output shop.yaml

One policy per workload (selected by its app.kubernetes.io/name, app or k8s-app label, else
its service account), from the connections recorded as allowed in the window (the last 7 days
without --since/--until). The suggestion is checked on the same connections before it is
printed: a recorded connection it would deny is an error (exit 1). When --until is in the
past, it is also checked on the flows recorded after it (the held-out window, up to now or
--held-out long): what it would deny there is reported, not enforced, e.g.
  flowsql --since 8d --until 1d policy suggest -n prod-app   # learn 7 days, check the last one";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// CiliumNetworkPolicy (L7 and FQDN rules)
    Cnp,
    /// Kubernetes NetworkPolicy
    Knp,
}

#[derive(Debug, Args)]
#[command(after_help = SUGGEST_EXAMPLES)]
pub struct SuggestArgs {
    /// Only workloads in this namespace
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only this workload (the value of its app label)
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Policy kind to write
    #[arg(long, value_enum, default_value_t = KindArg::Cnp)]
    pub kind: KindArg,
    /// Add HTTP rules for the requests seen (CiliumNetworkPolicy)
    #[arg(long)]
    pub l7: bool,
    /// Write the policies to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Length of the held-out window after --until [default: up to now]
    #[arg(long, value_name = "DURATION", value_parser = flow_schema::units::parse_duration)]
    pub held_out: Option<std::time::Duration>,
}

const DAY_NS: i64 = 24 * 3_600_000_000_000;

/// The session over the window (`default_ns` back from now when no window is given) and the
/// window's recorded connections; the exit status when either fails.
async fn recorded(
    cli: &Cli,
    range: TimeRange,
    now: chrono::DateTime<chrono::Utc>,
    default_ns: i64,
    namespace: Option<&str>,
) -> Result<(FlowSession, TimeRange, Vec<connections::Group>), ExitCode> {
    let range = if range.is_unbounded() {
        let now = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        TimeRange {
            since: Some(now - default_ns),
            until: Some(now),
        }
    } else {
        range
    };
    let session = FlowSession::open(&cli.store, range, cli.read_options())
        .await
        .map_err(|error| crate::fail(2, &error))?;
    let groups = connections::groups(&session, namespace)
        .await
        .map_err(|error| crate::fail(1, &error))?;
    Ok((session, range, groups))
}

pub async fn run_suggest(
    cli: &Cli,
    args: &SuggestArgs,
    range: TimeRange,
    now: chrono::DateTime<chrono::Utc>,
) -> ExitCode {
    let fail = crate::fail;
    let (_session, range, groups) =
        match recorded(cli, range, now, 7 * DAY_NS, args.namespace.as_deref()).await {
            Ok(found) => found,
            Err(code) => return code,
        };
    let kind = match args.kind {
        KindArg::Cnp => suggest::Kind::Cilium,
        KindArg::Knp => suggest::Kind::Kubernetes,
    };
    let yaml = suggest::suggest(
        &groups,
        kind,
        args.l7,
        args.namespace.as_deref(),
        args.workload.as_deref(),
    );
    if yaml.is_empty() {
        eprintln!("flowsql policy suggest: no allowed connection of a labelled workload in the window: nothing to suggest");
        return ExitCode::SUCCESS;
    }
    // The loop closed: the suggestion must allow every connection it was made from.
    let semantics = match args.kind {
        KindArg::Cnp => Semantics::Cilium,
        KindArg::Knp => Semantics::Kubernetes,
    };
    let set = match policy::parse("suggestion", &yaml)
        .map_err(WhatifError::from)
        .and_then(|loaded| Ok(policy::compile(&loaded, semantics, "default")?))
    {
        Ok(set) => set,
        Err(error) => return fail(1, &error),
    };
    let same = Check::of(&set, &groups);
    let written = match &args.output {
        Some(path) => std::fs::write(path, &yaml),
        None => std::io::stdout().lock().write_all(yaml.as_bytes()),
    };
    if let Err(error) = written {
        return fail(1, &error);
    }
    eprintln!(
        "flowsql policy suggest: {} policies; checked on the same window: {} recorded connections, {} newly denied",
        yaml.matches("\nkind: ").count(),
        same.checked,
        same.denied.len()
    );
    for line in &same.denied {
        eprintln!("flowsql policy suggest: would deny {line}");
    }
    if let Some(later) = held_out(range, args.held_out, now) {
        let stamp = flow_schema::layout::rfc3339;
        let window = format!(
            "{}..{}",
            stamp(later.since.unwrap_or(0)),
            stamp(later.until.unwrap_or(0))
        );
        match recorded(cli, later, now, 0, args.namespace.as_deref()).await {
            Ok((_, _, later_groups)) => {
                let check = Check::of(&set, &later_groups);
                eprintln!(
                    "flowsql policy suggest: held-out window {window} (reported, not enforced): {} recorded connections, {} would be denied",
                    check.checked,
                    check.denied.len()
                );
                for line in check.denied.iter().take(HELD_OUT_SHOWN) {
                    eprintln!("flowsql policy suggest: held-out: would deny {line}");
                }
                if check.denied.len() > HELD_OUT_SHOWN {
                    eprintln!(
                        "flowsql policy suggest: held-out: and {} more (flowsql --since ... policy whatif FILE lists them)",
                        check.denied.len() - HELD_OUT_SHOWN
                    );
                }
            }
            // The suggestion is printed; a failed check of it is reported, not fatal.
            Err(_) => eprintln!(
                "flowsql policy suggest: the held-out window {window} could not be checked (above)"
            ),
        }
    }
    if same.denied.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Held-out connections printed; the rest are counted.
const HELD_OUT_SHOWN: usize = 20;

/// The window after the learning window's end, up to now or `length` long; none when the
/// learning window ends now (or is open).
fn held_out(
    learned: TimeRange,
    length: Option<std::time::Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<TimeRange> {
    let since = learned.until?;
    let now = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let until = match length {
        Some(length) => since.saturating_add(i64::try_from(length.as_nanos()).unwrap_or(i64::MAX)),
        None => now,
    };
    (until > since).then_some(TimeRange {
        since: Some(since),
        until: Some(until),
    })
}

/// A suggestion decided over recorded-allowed connections of the workloads it selects.
struct Check {
    checked: usize,
    /// `source -> destination port/protocol: why`, one per denied connection.
    denied: Vec<String>,
}

impl Check {
    fn of(set: &PolicySet, groups: &[connections::Group]) -> Check {
        let mut checked = 0;
        let mut denied = Vec::new();
        for g in groups.iter().filter(|g| g.recorded == Recorded::Allowed) {
            let verdict = set.decide(&g.connection);
            let selected = verdict.egress.by.is_some() || verdict.ingress.by.is_some();
            if !selected {
                continue;
            }
            checked += 1;
            if verdict.outcome != flow_spec::policy::Outcome::Allowed {
                denied.push(format!(
                    "{} -> {} {}/{}: {}",
                    g.source.name(),
                    g.destination.name(),
                    g.connection.port,
                    g.protocol,
                    impact::of_set(g, set).0.because
                ));
            }
        }
        Check { checked, denied }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// The proposal is applied on top of the baseline
    Add,
    /// The proposal replaces the baseline's policies of the same name
    Replace,
    /// The baseline's policies named in the proposal are deleted
    Remove,
}

impl ModeArg {
    fn name(self) -> &'static str {
        match self {
            ModeArg::Add => "add",
            ModeArg::Replace => "replace",
            ModeArg::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SemanticsArg {
    /// Cilium's reading (ipBlock never matches pods or nodes)
    Cilium,
    /// Plain Kubernetes (Calico, NPM): ipBlock matches any address
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 1 when a connection would be newly denied (or its L7 requests changed)
    NewlyDenied,
    /// Exit 1 on any change, UNCERTAIN included
    Changed,
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct WhatifArgs {
    /// Policy files or folders: YAML or JSON, multi-document, Lists, kubectl -o yaml dumps
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
    /// What to compare with: recorded, none, or a file/folder of the current policies
    #[arg(long, default_value = "recorded", value_name = "recorded|none|PATH")]
    pub baseline: String,
    /// How the proposal combines with the baseline
    #[arg(long, value_enum, default_value_t = ModeArg::Add)]
    pub mode: ModeArg,
    /// Whose reading of a Kubernetes NetworkPolicy
    #[arg(long, value_enum, default_value_t = SemanticsArg::Cilium)]
    pub semantics: SemanticsArg,
    /// Only connections with an end in this namespace
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Namespace of policies whose metadata names none (kubectl's current namespace)
    #[arg(long, value_name = "NS", default_value = "default")]
    pub policy_namespace: String,
    /// Exit 1 when the change would do this
    #[arg(long, value_enum, value_name = "WHAT")]
    pub fail_on: Option<FailOn>,
    /// Write a Markdown report (for a pull-request comment) instead of the table
    #[arg(long)]
    pub markdown: bool,
    /// Also list the connections that do not change (they are always counted)
    #[arg(long)]
    pub unchanged: bool,
    /// Output format [default: table]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Write results to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum WhatifError {
    #[error("{0}")]
    Load(#[from] policy::LoadError),
    #[error("{0}")]
    Compile(#[from] policy::CompileError),
}

fn compile(paths: &[PathBuf], args: &WhatifArgs) -> Result<PolicySet, WhatifError> {
    let loaded = policy::load_paths(paths)?;
    let semantics = match args.semantics {
        SemanticsArg::Cilium => Semantics::Cilium,
        SemanticsArg::Kubernetes => Semantics::Kubernetes,
    };
    Ok(policy::compile(&loaded, semantics, &args.policy_namespace)?)
}

enum Baseline {
    Recorded,
    None,
    Policies(PolicySet),
}

/// The policy set after the change, when the baseline is a policy set.
fn combined(baseline: &PolicySet, proposed: &PolicySet, mode: ModeArg) -> PolicySet {
    let named: BTreeSet<_> = proposed.policies.iter().map(|p| p.id.clone()).collect();
    let mut policies: Vec<_> = match mode {
        ModeArg::Add => baseline.policies.clone(),
        ModeArg::Replace | ModeArg::Remove => baseline
            .policies
            .iter()
            .filter(|p| !named.contains(&p.id))
            .cloned()
            .collect(),
    };
    if mode != ModeArg::Remove {
        policies.extend(proposed.policies.iter().cloned());
    }
    PolicySet { policies }
}

pub async fn run(
    cli: &Cli,
    args: &WhatifArgs,
    range: TimeRange,
    now: chrono::DateTime<chrono::Utc>,
) -> ExitCode {
    let fail = crate::fail;
    let proposed = match compile(&args.policies, args) {
        Ok(set) => set,
        Err(error) => return fail(2, &error),
    };
    let baseline = match args.baseline.as_str() {
        "recorded" => Baseline::Recorded,
        "none" => Baseline::None,
        path => match compile(&[PathBuf::from(path)], args) {
            Ok(set) => Baseline::Policies(set),
            Err(error) => return fail(2, &error),
        },
    };
    let started = std::time::Instant::now();
    let (session, range, groups) =
        match recorded(cli, range, now, DAY_NS, args.namespace.as_deref()).await {
            Ok(found) => found,
            Err(code) => return code,
        };
    let query_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let after_set = match &baseline {
        Baseline::Policies(base) => Some(combined(base, &proposed, args.mode)),
        _ => None,
    };
    let empty = PolicySet {
        policies: Vec::new(),
    };
    let mode = match args.mode {
        ModeArg::Add => Mode::Add,
        ModeArg::Replace => Mode::Replace,
        ModeArg::Remove => Mode::Remove,
    };
    // Pairs with recorded L7 requests: their L3/L4 connections are not "L7 not visible".
    let l7_pairs: BTreeSet<(String, String, u16)> = groups
        .iter()
        .filter(|g| g.connection.request.is_some())
        .map(|g| (g.source.name(), g.destination.name(), g.connection.port))
        .collect();
    let mut used = BTreeSet::new();
    let mut items = Vec::new();
    let mut other_drops = 0u64;
    for g in &groups {
        if g.recorded == Recorded::OtherDrop {
            other_drops += g.flows;
            continue;
        }
        let (before, after): (Decision, Decision) = match (&baseline, &after_set) {
            (Baseline::Recorded, _) => {
                let verdict = proposed.decide(&g.connection);
                impact::rules_used(&verdict, &mut used);
                (
                    impact::before_recorded(g),
                    impact::after_recorded(g, &proposed, &verdict, mode),
                )
            }
            (Baseline::None, _) => {
                let (after, verdict) = impact::of_set(g, &proposed);
                impact::rules_used(&verdict, &mut used);
                (impact::of_set(g, &empty).0, after)
            }
            (Baseline::Policies(base), Some(after_set)) => {
                let (after, verdict) = impact::of_set(g, after_set);
                impact::rules_used(&verdict, &mut used);
                (impact::of_set(g, base).0, after)
            }
            (Baseline::Policies(_), None) => unreachable!("a policy baseline has its after set"),
        };
        let l7_seen =
            l7_pairs.contains(&(g.source.name(), g.destination.name(), g.connection.port));
        let class = impact::classify(g, &before, &after, l7_seen);
        items.push((class, g, before, after));
    }
    let rows = impact::rows(items);
    let evaluated = groups.len();
    let engine_seconds = started.elapsed().as_secs_f64();
    let summary = Summary::of(
        &rows,
        &range,
        &args.baseline,
        args.mode,
        other_drops,
        evaluated,
    );
    let dead = impact::unused_rules(&proposed, &used);
    let shown: Vec<&impact::Row> = rows
        .iter()
        .filter(|r| args.unchanged || r.class.changed())
        .collect();
    let printed = if args.markdown {
        markdown(
            &summary,
            &shown,
            &dead,
            args.output.as_ref().or(cli.output.as_ref()),
        )
    } else {
        eprintln!("{}", summary.text());
        if !dead.is_empty() {
            eprintln!(
                "flowsql policy whatif: rules that decided no recorded connection: {}",
                dead.join("; ")
            );
        }
        let format = args.format.or(cli.format).unwrap_or(OutputFormat::Table);
        print_rows(
            format,
            args.output.clone().or_else(|| cli.output.clone()),
            &shown,
        )
        .await
    };
    if let Err(error) = printed {
        return fail(1, error.as_ref());
    }
    eprintln!(
        "flowsql policy whatif: {evaluated} distinct connections evaluated by the engine in {engine_seconds:.3} s, after {query_seconds:.2} s grouping the window's flows"
    );
    let failed = match args.fail_on {
        None => false,
        Some(FailOn::NewlyDenied) => rows.iter().any(|r| r.denies),
        Some(FailOn::Changed) => rows.iter().any(|r| r.class.changed()),
    };
    if failed || session.damaged() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Counts per class.
struct Summary {
    window: String,
    baseline: String,
    mode: ModeArg,
    classes: Vec<(String, u64, u64)>,
    connections: usize,
    flows: u64,
    other_drops: u64,
    /// Distinct connections the engine decided (before rows merge what prints alike).
    evaluated: usize,
}

impl Summary {
    fn of(
        rows: &[impact::Row],
        range: &TimeRange,
        baseline: &str,
        mode: ModeArg,
        other_drops: u64,
        evaluated: usize,
    ) -> Summary {
        let mut classes: Vec<(String, u64, u64)> = Vec::new();
        for row in rows {
            let name = row.class.name();
            match classes.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, connections, flows)) => {
                    *connections += 1;
                    *flows += row.flows;
                }
                None => classes.push((name, 1, row.flows)),
            }
        }
        let stamp = |t: Option<i64>| t.map_or_else(|| "…".to_owned(), flow_schema::layout::rfc3339);
        Summary {
            window: format!("{}..{}", stamp(range.since), stamp(range.until)),
            baseline: baseline.to_owned(),
            mode,
            connections: rows.len(),
            flows: rows.iter().map(|r| r.flows).sum(),
            classes,
            other_drops,
            evaluated,
        }
    }

    fn text(&self) -> String {
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|(name, connections, flows)| format!("{name} {connections} ({flows} flows)"))
            .collect();
        let mut text = format!(
            "flowsql policy whatif: {} connections ({} flows) in {}, baseline {}, mode {}: {}",
            self.connections,
            self.flows,
            self.window,
            self.baseline,
            self.mode.name(),
            if classes.is_empty() {
                "nothing recorded".to_owned()
            } else {
                classes.join(", ")
            }
        );

        if self.other_drops > 0 {
            text.push_str(&format!(
                "; {} flows dropped for reasons other than policy were not evaluated",
                self.other_drops
            ));
        }
        text
    }
}

fn text_column(rows: &[&impact::Row], f: impl Fn(&impact::Row) -> String) -> ArrayRef {
    Arc::new(StringArray::from(
        rows.iter().map(|r| f(r)).collect::<Vec<_>>(),
    ))
}

async fn print_rows(
    format: OutputFormat,
    output: Option<PathBuf>,
    rows: &[&impact::Row],
) -> Result<(), Box<dyn std::error::Error>> {
    let time = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("change", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("destination", DataType::Utf8, false),
        Field::new("port", DataType::Utf8, false),
        Field::new("l7", DataType::Utf8, false),
        Field::new("flows", DataType::UInt64, false),
        Field::new("source_pods", DataType::UInt64, false),
        Field::new("first_seen", time.clone(), false),
        Field::new("last_seen", time, false),
        Field::new("before", DataType::Utf8, false),
        Field::new("after", DataType::Utf8, false),
        Field::new("example_uuid", DataType::Utf8, false),
    ]));
    let stamps = |f: fn(&impact::Row) -> i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(|r| f(r)).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        text_column(rows, |r| r.class.name()),
        text_column(rows, |r| r.source.clone()),
        text_column(rows, |r| r.destination.clone()),
        text_column(rows, |r| r.port.clone()),
        text_column(rows, |r| r.l7.clone()),
        Arc::new(UInt64Array::from(
            rows.iter().map(|r| r.flows).collect::<Vec<_>>(),
        )),
        Arc::new(UInt64Array::from(
            rows.iter().map(|r| r.source_pods).collect::<Vec<_>>(),
        )),
        stamps(|r| r.first_seen),
        stamps(|r| r.last_seen),
        text_column(rows, |r| r.before.clone()),
        text_column(rows, |r| r.after.clone()),
        text_column(rows, |r| r.example_uuid.clone()),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    let mut printer = Printer::new(format, output)?;
    printer.print_batches(schema, vec![batch]).await?;
    Ok(())
}

fn markdown(
    summary: &Summary,
    rows: &[&impact::Row],
    dead: &[String],
    output: Option<&PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    writeln!(out, "### Policy what-if\n")?;
    writeln!(
        out,
        "{} recorded connections ({} flows, {} distinct connections evaluated), {}, baseline `{}`, mode `{}`.\n",
        summary.connections,
        summary.flows,
        summary.evaluated,
        summary.window,
        summary.baseline,
        summary.mode.name()
    )?;
    writeln!(out, "| change | connections | flows |\n|---|---:|---:|")?;
    for (name, connections, flows) in &summary.classes {
        writeln!(out, "| {name} | {connections} | {flows} |")?;
    }
    if summary.other_drops > 0 {
        writeln!(
            out,
            "\n{} flows dropped for reasons other than policy were not evaluated.",
            summary.other_drops
        )?;
    }
    if !rows.is_empty() {
        writeln!(out, "\n| change | source | destination | port | L7 | flows | last seen | before | after | example |\n|---|---|---|---|---|---:|---|---|---|---|")?;
        for r in rows {
            let cell = |t: &str| t.replace('|', "\\|");
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | `{}` |",
                r.class.name(),
                cell(&r.source),
                cell(&r.destination),
                r.port,
                cell(&r.l7),
                r.flows,
                flow_schema::layout::rfc3339(r.last_seen),
                cell(&r.before),
                cell(&r.after),
                r.example_uuid
            )?;
        }
    }
    if !dead.is_empty() {
        writeln!(out, "\nRules that decided no recorded connection:\n")?;
        for rule in dead {
            writeln!(out, "- {rule}")?;
        }
    }
    Ok(())
}
