//! Compiles the kernel programs in `ebpf/` (C, clang-19 `-target bpf`) into `OUT_DIR`, where
//! `flowrec` embeds them. A missing compiler stops the build with the package to install.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["tc_flow"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sources = manifest.join("../ebpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", sources.display());
    println!("cargo:rerun-if-env-changed=FLOWREC_CLANG");
    let clang = std::env::var("FLOWREC_CLANG").unwrap_or_else(|_| "clang-19".into());
    // asm/types.h and friends live in the multiarch include directory.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("set by cargo");
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    for program in PROGRAMS {
        let source = sources.join(format!("{program}.bpf.c"));
        let object = out.join(format!("{program}.bpf.o"));
        compile(&clang, &source, &object, &sources, &multiarch);
        strip(&object);
    }
}

fn compile(clang: &str, source: &Path, object: &Path, include: &Path, multiarch: &str) {
    let status = Command::new(clang)
        .args([
            "-target", "bpf", "-mcpu=v3", "-g", "-O2", "-Wall", "-Werror",
        ])
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(multiarch)
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .status();
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
