//! What to do when a query runs out of room: DataFusion's own messages name its config keys
//! and memory consumers, not the disk that filled up or the flowsql way to change them.

use std::path::PathBuf;

/// The environment variable that moves DataFusion's spill files (read by the session, see
/// `session::apply_runtime_env`).
const TEMP_DIRECTORY_VAR: &str = "DATAFUSION_RUNTIME_TEMP_DIRECTORY";

/// A hint for a failed command's message, when the failure is one the user can act on.
pub fn for_failure(message: &str) -> Option<String> {
    if message.contains("No space left on device") || message.contains("os error 28") {
        // Writing results names its own target; a query that fills a disk is spilling.
        return Some(format!(
            "the disk holding the query's spill files ({}) is full: free space there, point \
             {TEMP_DIRECTORY_VAR} at a folder on a larger disk, raise \
             DATAFUSION_RUNTIME_MEMORY_LIMIT so less is spilled, or narrow --since/--until",
            spill_folder().display()
        ));
    }
    if message.contains("could not be prepared or was rejected by executor") {
        return Some(
            "an executor of the cluster could not run a task of the query: most often it runs \
             another flowsql version, which lacks a function or table the query uses; the \
             executor's log names the cause (kubectl logs deploy/flowsql-executor)"
                .to_owned(),
        );
    }
    if message.contains("Resources exhausted") {
        return Some(
            "the query needs more memory than DATAFUSION_RUNTIME_MEMORY_LIMIT allows: raise it, \
             select fewer columns or narrow --since/--until; a sort that still fails can be \
             given more room to merge with DATAFUSION_EXECUTION_SORT_SPILL_RESERVATION_BYTES"
                .to_owned(),
        );
    }
    None
}

/// Where DataFusion writes spill files: the configured folder, else the system's temporary
/// folder (TMPDIR), as its disk manager chooses.
fn spill_folder() -> PathBuf {
    std::env::var_os(TEMP_DIRECTORY_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Prints a failed command's error (its whole cause chain) and what to do about it.
pub fn print_failure(error: &dyn std::error::Error) {
    let message = flow_schema::error_chain(error);
    eprintln!("flowsql: error: {message}");
    if let Some(hint) = for_failure(&message) {
        eprintln!("flowsql: hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spill_disk_names_the_folder_and_the_ways_out() {
        let hint = for_failure(
            "query failed while streaming results: Arrow error: Io error: IO error: No space left on device (os error 28)",
        )
        .unwrap();
        assert!(
            hint.contains(&spill_folder().display().to_string()),
            "{hint}"
        );
        assert!(hint.contains(TEMP_DIRECTORY_VAR), "{hint}");
    }

    #[test]
    fn exhausted_memory_names_the_limit_and_other_errors_get_no_hint() {
        assert!(
            for_failure("Resources exhausted: Failed to allocate additional 237.0 KB")
                .unwrap()
                .contains("DATAFUSION_RUNTIME_MEMORY_LIMIT")
        );
        assert_eq!(for_failure("SQL syntax: expected an expression"), None);
    }
}
