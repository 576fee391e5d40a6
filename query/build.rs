//! Names the commit flowsql and flowstore were built from, for their `--version`.

include!("../schemas/build/version.rs");

fn main() {
    emit_version();
}
