//! What `flowrec run` tells its operator: one line per event on stderr, as text
//! (`flowrec: message`, for a terminal) or, with `--log-format json`, one JSON object per line
//! (`{"time", "level", "message"}`) that a DaemonSet's log pipeline (Loki, Elasticsearch,
//! CloudWatch) parses without a regex. Messages carry their context (the file, the offset, the
//! segment) themselves, in both formats the same.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Chooses the format for the rest of the process (text until called).
pub fn set_format(format: Format) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

/// One event, as one line.
pub fn emit(level: Level, message: &str) {
    eprintln!("{}", line(FORMAT.load(Ordering::Relaxed), level, message));
}

fn line(format: u8, level: Level, message: &str) -> String {
    if format != Format::Json as u8 {
        return format!("flowrec: {message}");
    }
    let level = match level {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "level": level,
        "message": message,
    })
    .to_string()
}

/// An event worth knowing in normal operation (startup, resume, recovery done).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Something went wrong and was handled (retried, skipped, counted).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// The run cannot go on.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, &format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_parse_and_text_lines_keep_their_prefix() {
        assert_eq!(
            line(Format::Text as u8, Level::Warn, "a \"quoted\" file:3"),
            "flowrec: a \"quoted\" file:3"
        );
        let json = line(Format::Json as u8, Level::Warn, "a \"quoted\" file:3\nnext");
        assert!(!json.contains('\n'), "one line: {json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["level"], "warn");
        assert_eq!(parsed["message"], "a \"quoted\" file:3\nnext");
        assert!(parsed["time"].as_str().unwrap().ends_with('Z'), "{json}");
    }
}
