// Included (`include!`) by the build scripts of the crates that make binaries (flowrec, flowsql
// and flowstore), so that `--version` names the commit a binary was built from: an operator
// with an image in hand, or a bug report, can tell which code it is.

/// Emits `FLOW_VERSION` ("0.1.0 (git 1a2b3c4d5e6f)") for `env!` in the binaries' `--version`.
///
/// The commit comes from `FLOW_BUILD_GIT` when set (an image build without the `.git` folder
/// passes it as a build argument), else from `git rev-parse`; "unknown" when neither can tell.
fn emit_version() {
    println!("cargo:rerun-if-env-changed=FLOW_BUILD_GIT");
    let git = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = match std::env::var("FLOW_BUILD_GIT") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_string(),
        _ => {
            // A new commit or checkout moves HEAD or the branch it names: rebuild then.
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                println!("cargo:rerun-if-changed={dir}/HEAD");
                if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={dir}/{reference}");
                }
                println!("cargo:rerun-if-changed={dir}/packed-refs");
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    println!("cargo:rustc-env=FLOW_VERSION={version} (git {commit})");
}
