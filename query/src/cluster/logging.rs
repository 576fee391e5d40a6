//! What a scheduler or executor says: Ballista reports through the `log` facade, and these
//! long-running processes print it on stderr, one line per record, for `kubectl logs`.
//! `FLOWSQL_LOG` sets the level (error, warn, info, debug; default info).

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The environment variable that sets the level.
pub const LOG_ENV: &str = "FLOWSQL_LOG";

struct Stderr {
    level: LevelFilter,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        eprintln!(
            "{} {level} {}: {}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// The level `FLOWSQL_LOG` names, or an error naming the variable.
pub fn level_from_env() -> Result<LevelFilter, String> {
    match std::env::var(LOG_ENV) {
        Err(_) => Ok(LevelFilter::Info),
        Ok(value) => value.parse().map_err(|_| {
            format!("{LOG_ENV}={value:?}: expected error, warn, info, debug or trace")
        }),
    }
}

static LOGGER: std::sync::OnceLock<Stderr> = std::sync::OnceLock::new();

/// Installs the stderr logger (once; later calls keep the first).
pub fn init(level: LevelFilter) {
    if log::set_logger(LOGGER.get_or_init(|| Stderr { level })).is_ok() {
        log::set_max_level(level);
    }
}
