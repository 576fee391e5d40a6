//! The interactive shell: `flowsql` with no SQL. Statements end with `;` and may span lines;
//! history is kept in `~/.flowsql_history`. Backslash commands: `\d`, `\d TABLE`, `\q`, `\?`.

use std::io::IsTerminal;
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use crate::exec::{self, ExecError};
use crate::print::{OutputFormat, Printer};
use crate::session::FlowSession;

const HELP: &str = "\
  \\d          list the tables
  \\d TABLE    columns of a table (flows, lost_events)
  \\q          quit (also Ctrl-D)
  \\?          this help
SQL ends with ';' and may span several lines. Forensics functions:
  cidr_contains('10.0.0.0/8', ip_source), has_label(source_labels, 'k8s:app=frontend'),
  label_value(destination_labels, 'app')";

/// `~/.flowsql_history`, for a person at a terminal only: SQL piped in by a script is not history.
fn history_file() -> Option<PathBuf> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".flowsql_history"))
}

/// What a backslash command asks for.
enum Command<'a> {
    Quit,
    Help,
    Describe(Option<&'a str>),
    Unknown(&'a str),
}

fn parse_command(line: &str) -> Command<'_> {
    let mut words = line.trim().splitn(2, char::is_whitespace);
    match (words.next().unwrap_or(""), words.next().map(str::trim)) {
        ("\\q" | "\\quit", _) => Command::Quit,
        ("\\?" | "\\h" | "\\help", _) => Command::Help,
        ("\\d", table) => Command::Describe(table.filter(|t| !t.is_empty())),
        (other, _) => Command::Unknown(other),
    }
}

pub async fn run(session: &FlowSession, format: OutputFormat) -> Result<(), ExecError> {
    let mut editor = DefaultEditor::new()
        .map_err(|e| ExecError::Query(format!("cannot start the shell: {e}")))?;
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "flowsql over {} — \\? for help, \\q to quit",
        session.store.location
    );
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "flowsql> "
        } else {
            "     ..> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(ExecError::Query(format!("cannot read input: {error}"))),
        };
        if pending.is_empty() && line.trim_start().starts_with('\\') {
            let _ = editor.add_history_entry(line.as_str());
            let mut printer = Printer::new(format, None)?;
            match parse_command(&line) {
                Command::Quit => break,
                Command::Help => eprintln!("{HELP}"),
                Command::Describe(table) => report(exec::describe(table, &mut printer).await),
                Command::Unknown(command) => {
                    eprintln!("unknown command {command}; \\? lists the commands")
                }
            }
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(sql.trim());
        let mut printer = Printer::new(format, None)?;
        let run = exec::run_sql(session, &sql, &mut printer);
        match session.cluster {
            None => report(run.await),
            Some(cluster) => match cluster.within(run).await {
                Ok(result) => report(result),
                Err(timeout) => report(Err(ExecError::Query(timeout.to_string()))),
            },
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// In the shell an error is printed and the session goes on.
fn report(result: Result<(), ExecError>) {
    if let Err(error) = result {
        eprintln!("error: {error}");
        if let Some(hint) = crate::hints::for_failure(&error.to_string()) {
            eprintln!("hint: {hint}");
        }
    }
}
