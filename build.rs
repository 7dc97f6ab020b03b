//! Generates the seccomp policy from the `#syscalls:` annotations in `src/`.
//!
//! 1. Collects the annotations (seccomp/generator.rs) and merges them.
//! 2. Rewrites `seccomp/airlock.json` and the generated section of
//!    `docs/security.md` when their content changes (not under CI, where a
//!    test fails instead, so a stale checked-in file cannot slip through).
//! 3. Compiles the filter for the target arch with seccompiler, twice
//!    (default action kill_process and log), and stores the BPF in OUT_DIR
//!    as 8-byte little-endian `sock_filter` records for `include_bytes!`.
//! 4. Compiles every arch's filter as a check, so a policy that seccompiler
//!    rejects on aarch64 fails the x86_64 build too.

#[path = "seccomp/generator.rs"]
mod generator;

use std::path::{Path, PathBuf};

fn write_if_changed(path: &Path, content: &str) {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return;
    }
    if std::env::var_os("CI").is_some() {
        println!(
            "cargo:warning={} is stale: build locally (outside CI) and commit it",
            path.display()
        );
        return;
    }
    if let Err(e) = std::fs::write(path, content) {
        println!("cargo:warning=cannot update {}: {e}", path.display());
    }
}

fn compile(policy: &generator::Policy, arch: &str, action: &str) -> Vec<u8> {
    let json = generator::render_compilable(policy, arch, action).expect("arch in policy");
    let target: seccompiler::TargetArch = arch.try_into().expect("seccompiler arch");
    let mut map = seccompiler::compile_from_json(json.as_bytes(), target)
        .unwrap_or_else(|e| panic!("seccompiler rejects the {arch} policy: {e}"));
    let program = map.remove("main").expect("filter named main");
    let mut out = Vec::with_capacity(program.len() * 8);
    for insn in program {
        out.extend_from_slice(&insn.code.to_le_bytes());
        out.push(insn.jt);
        out.push(insn.jf);
        out.extend_from_slice(&insn.k.to_le_bytes());
    }
    out
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("out dir"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=seccomp/generator.rs");
    println!("cargo:rerun-if-changed=seccomp/syscalls");
    println!("cargo:rerun-if-env-changed=CI");

    let annotations = generator::collect(&root.join("src")).unwrap_or_else(|e| panic!("{e}"));
    let policy = generator::build_policy(&annotations).unwrap_or_else(|e| panic!("{e}"));

    write_if_changed(
        &root.join("seccomp/airlock.json"),
        &generator::render_json(&policy),
    );
    let doc_path = root.join("docs/security.md");
    if let Ok(doc) = std::fs::read_to_string(&doc_path) {
        if let Some(new) = generator::splice_doc(&doc, &generator::render_markdown(&policy)) {
            write_if_changed(&doc_path, &new);
        }
    }

    for arch in generator::ARCHES {
        compile(&policy, arch, "kill_process");
    }
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let (enforce, log) = if generator::ARCHES.contains(&target_arch.as_str()) {
        (
            compile(&policy, &target_arch, "kill_process"),
            compile(&policy, &target_arch, "log"),
        )
    } else {
        println!("cargo:warning=no seccomp policy for {target_arch}: the filter is unavailable");
        (Vec::new(), Vec::new())
    };
    let count = policy
        .filters
        .iter()
        .find(|(a, _)| *a == target_arch)
        .map_or(0, |(_, f)| f.len());
    println!("cargo:rustc-env=AIRLOCK_SECCOMP_SYSCALLS={count}");
    std::fs::write(out_dir.join("seccomp-enforce.bpf"), enforce).expect("write bpf");
    std::fs::write(out_dir.join("seccomp-log.bpf"), log).expect("write bpf");
}
