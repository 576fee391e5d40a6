//! Compiles the kernel programs in `ebpf/` (C, clang-19 `-target bpf`, CO-RE) into `OUT_DIR`,
//! where `flowrec` embeds them. A missing tool stops the build with the package to install.
//!
//! `vmlinux.h` (the kernel's types, for CO-RE) is generated from the build machine's BTF with
//! bpftool: the types only need to be a recent kernel's, the loader relocates every field
//! access to the running kernel's layout. `FLOWREC_VMLINUX_H` points at a ready-made one
//! (for build machines without /sys/kernel/btf/vmlinux).

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["flowrec"];

include!("../schemas/build/version.rs");

fn main() {
    emit_version();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sources = manifest.join("../ebpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", sources.display());
    println!("cargo:rerun-if-env-changed=FLOWREC_CLANG");
    println!("cargo:rerun-if-env-changed=FLOWREC_VMLINUX_H");
    vmlinux_h(&out.join("vmlinux.h"));
    let clang = std::env::var("FLOWREC_CLANG").unwrap_or_else(|_| "clang-19".into());
    // asm/types.h and friends live in the multiarch include directory.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("set by cargo");
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let target_arch = match arch.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    };
    for program in PROGRAMS {
        let source = sources.join(format!("{program}.bpf.c"));
        let object = out.join(format!("{program}.bpf.o"));
        let includes = [sources.as_path(), out.as_path(), Path::new(&multiarch)];
        compile(&clang, &source, &object, &includes, target_arch);
        strip(&object);
    }
}

/// Writes the kernel's types as C, from `FLOWREC_VMLINUX_H` or the build machine's BTF.
fn vmlinux_h(target: &Path) {
    if let Ok(given) = std::env::var("FLOWREC_VMLINUX_H") {
        std::fs::copy(&given, target)
            .unwrap_or_else(|e| panic!("FLOWREC_VMLINUX_H={given}: cannot copy it: {e}"));
        return;
    }
    let btf = "/sys/kernel/btf/vmlinux";
    let output = Command::new("bpftool")
        .args(["btf", "dump", "file", btf, "format", "c"])
        .output();
    match output {
        Ok(output) if output.status.success() => std::fs::write(target, output.stdout)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display())),
        Ok(output) => panic!(
            "bpftool could not dump {btf} ({}): the kernel programs need the kernel's types. \
             Build on a kernel with BTF, or set FLOWREC_VMLINUX_H to a vmlinux.h",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "bpftool not found: it generates vmlinux.h for the eBPF programs. Install it with \
             `apt-get install bpftool` (or run .ci/setup.sh), or set FLOWREC_VMLINUX_H"
        ),
        Err(error) => panic!("cannot run bpftool: {error}"),
    }
}

fn compile(clang: &str, source: &Path, object: &Path, includes: &[&Path], target_arch: &str) {
    let mut command = Command::new(clang);
    command
        .args([
            "-target", "bpf", "-mcpu=v3", "-g", "-O2", "-Wall", "-Werror",
        ])
        .arg(format!("-D__TARGET_ARCH_{target_arch}"));
    for include in includes {
        command.arg("-I").arg(include);
    }
    let status = command.arg("-c").arg(source).arg("-o").arg(object).status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{clang} failed on {} ({status})", source.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "{clang} not found: the eBPF programs need it. Install it with \
             `apt-get install clang-19 llvm-19 libbpf-dev` (or run .ci/setup.sh), \
             or point FLOWREC_CLANG at a clang >= 19"
        ),
        Err(error) => panic!("cannot run {clang}: {error}"),
    }
}

/// Drops DWARF (keeps .BTF and .BTF.ext, which CO-RE and the layout test need): ~650 KB -> 20 KB
/// embedded in the binary. Optional: without llvm-strip the object is only bigger.
fn strip(object: &Path) {
    let stripped = Command::new("llvm-strip-19").arg("-g").arg(object).status();
    if !matches!(stripped, Ok(status) if status.success()) {
        println!("cargo:warning=llvm-strip-19 unavailable: embedding unstripped eBPF objects");
    }
}
