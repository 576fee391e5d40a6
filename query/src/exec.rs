//! Running SQL: split into statements, refuse writes, execute, print.
//!
//! flowsql is read-only over the store: the store is written by flowrec alone, with the layout
//! invariants readers rely on. DDL (CREATE/DROP), DML (INSERT/UPDATE/DELETE) and COPY are refused
//! before anything runs; `SET` (session options) and `EXPLAIN` are allowed.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParser, Statement};
use flow_schema::layout::Dataset;
use flow_schema::rollup::{rollup_docs, rollup_schema};
use flow_schema::schema::column_docs;

use crate::print::{PrintError, Printer};
use crate::session::FlowSession;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("flowsql is read-only: {0} statements are refused (the store is written only by flowrec; to export results use --format and --output)")]
    ReadOnly(String),
    #[error("SQL syntax: {0}")]
    Syntax(String),
    #[error("{0}")]
    Query(String),
    #[error(transparent)]
    Print(#[from] PrintError),
    #[error("unknown table {0:?}: the tables are flows, lost_events and flows_hourly")]
    UnknownTable(String),
}

impl From<DataFusionError> for ExecError {
    fn from(error: DataFusionError) -> Self {
        ExecError::Query(explain(&error))
    }
}

/// A DataFusion error as a user needs it: without the list of all 120 valid column names, with a
/// pointer to `\d flows` instead.
fn explain(error: &DataFusionError) -> String {
    let message = error.to_string();
    // Our own errors (a damaged object under --strict-store, an unreadable catalog) say
    // everything themselves.
    let message = message
        .strip_prefix("External error: ")
        .map(str::to_string)
        .unwrap_or(message);
    match message.find("Valid fields are") {
        Some(cut) => {
            let head = message[..cut].trim_end().trim_end_matches('.');
            format!("{head} (\\d flows lists the columns)")
        }
        None => message,
    }
}

/// Runs every statement of `sql`, printing each result.
pub async fn run_sql(
    session: &FlowSession,
    sql: &str,
    printer: &mut Printer,
) -> Result<(), ExecError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| ExecError::Syntax(strip_prefix(&e)))?;
    if statements.is_empty() {
        return Err(ExecError::Syntax("no SQL statement given".into()));
    }
    // Check every statement before running any, so a script with a write runs nothing.
    let mut plans = Vec::with_capacity(statements.len());
    for statement in statements {
        plans.push(plan_statement(session, statement).await?);
    }
    for plan in plans {
        let started = Instant::now();
        // SET changes the session and returns nothing to print.
        if let LogicalPlan::Statement(_) = plan {
            session
                .ctx
                .execute_logical_plan(plan)
                .await?
                .collect()
                .await?;
            continue;
        }
        let stream = session.frame(plan).execute_stream().await?;
        let rows = printer.print_stream(stream).await?;
        if printer.is_terminal() {
            eprintln!("{rows} row(s) in {:.3}s", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// The plan of one read-only query (a report check's SQL): refused if it writes or is not
/// exactly one statement.
pub async fn plan_query(session: &FlowSession, sql: &str) -> Result<LogicalPlan, ExecError> {
    let mut statements =
        DFParser::parse_sql(sql).map_err(|e| ExecError::Syntax(strip_prefix(&e)))?;
    match (statements.pop_front(), statements.is_empty()) {
        (Some(statement), true) => plan_statement(session, statement).await,
        (None, _) => Err(ExecError::Syntax("no SQL statement given".into())),
        (Some(_), false) => Err(ExecError::Syntax("one statement expected".into())),
    }
}

async fn plan_statement(
    session: &FlowSession,
    statement: Statement,
) -> Result<LogicalPlan, ExecError> {
    let keyword = leading_keyword(&statement);
    let plan = session.ctx.state().statement_to_plan(statement).await?;
    refuse_writes(&plan, &keyword)?;
    Ok(plan)
}

fn strip_prefix(error: &DataFusionError) -> String {
    let message = error.to_string();
    message
        .strip_prefix("SQL error: ")
        .unwrap_or(&message)
        .to_string()
}

/// `INSERT`, `CREATE TABLE`, `COPY`…: how the user wrote the statement, for the refusal.
fn leading_keyword(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    let count = match words.first().map(|w| w.to_ascii_uppercase()) {
        Some(w) if w == "CREATE" || w == "DROP" => {
            if words.get(1).is_some_and(|w| w.eq_ignore_ascii_case("OR")) {
                3
            } else {
                2
            }
        }
        _ => 1,
    };
    words
        .iter()
        .take(count)
        .map(|w| w.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ")
}

fn refuse_writes(plan: &LogicalPlan, keyword: &str) -> Result<(), ExecError> {
    let writes = matches!(
        plan,
        LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_)
    );
    let nested_write = matches!(plan, LogicalPlan::Explain(e) if matches!(e.plan.as_ref(), LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Ddl(_)));
    if writes || nested_write {
        return Err(ExecError::ReadOnly(keyword.to_string()));
    }
    Ok(())
}

/// `\d`: the tables. `\d NAME`: a table's columns, types and meaning.
pub async fn describe(name: Option<&str>, printer: &mut Printer) -> Result<(), ExecError> {
    let (schema, batch) = match name {
        None => {
            let schema = Arc::new(Schema::new(vec![
                Field::new("table", DataType::Utf8, false),
                Field::new("description", DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![
                        "flows",
                        "lost_events",
                        "flows_hourly",
                    ])),
                    Arc::new(StringArray::from(vec![
                        "one row per recorded flow (Hubble fields flattened with _)",
                        "gaps in visibility: events the source reported as lost",
                        "per hour and connection: flows, packets, bytes (flowstore rollups; \
                         kept longer than raw flows)",
                    ])),
                ],
            )
            .expect("matching columns");
            (schema, batch)
        }
        Some(name) => {
            let name = name.trim().trim_end_matches(';');
            let dataset = Dataset::ALL
                .into_iter()
                .find(|d| d.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| ExecError::UnknownTable(name.to_string()))?;
            let (table_schema, docs) = match dataset.table() {
                Some(table) => (table.schema(), column_docs(table)),
                None => (rollup_schema(), rollup_docs()),
            };
            let schema = Arc::new(Schema::new(vec![
                Field::new("column", DataType::Utf8, false),
                Field::new("type", DataType::Utf8, false),
                Field::new("description", DataType::Utf8, false),
            ]));
            let names: Vec<&str> = docs.iter().map(|d| d.name).collect();
            let types: Vec<String> = table_schema
                .fields()
                .iter()
                .map(|f| describe_type(f.data_type()))
                .collect();
            let descriptions: Vec<&str> = docs.iter().map(|d| d.doc).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(names)),
                    Arc::new(StringArray::from(types)),
                    Arc::new(StringArray::from(descriptions)),
                ],
            )
            .expect("matching columns");
            (schema, batch)
        }
    };
    printer.print_batches(schema, vec![batch]).await?;
    Ok(())
}

/// SQL-ish type names (`string`, `list<string>`) rather than Arrow's debug names.
fn describe_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "string".into(),
        DataType::Dictionary(_, value) => describe_type(value),
        DataType::List(item) => format!("list<{}>", describe_type(item.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), describe_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Timestamp(_, Some(_)) => "timestamp (ns, UTC)".into(),
        DataType::Boolean => "boolean".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_of_refused_statements() {
        let keyword = |sql: &str| leading_keyword(&DFParser::parse_sql(sql).unwrap()[0]);
        assert_eq!(keyword("insert into flows values (1)"), "INSERT");
        assert_eq!(keyword("create table x as select 1"), "CREATE TABLE");
        assert_eq!(keyword("copy flows to '/tmp/x.csv'"), "COPY");
        assert_eq!(keyword("drop table flows"), "DROP TABLE");
    }
}
