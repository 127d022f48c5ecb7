//! Compiles vxrouter's XDP program (bpf/vxrouter_xdp.c) to BPF bytecode in
//! OUT_DIR; src/port/xdp.rs embeds it with include_bytes!. Linux only: other
//! targets have no XDP and build nothing here.
//!
//! Overrides: `CLANG` (compiler path), `VXROUTER_BPF_INCLUDE` (directory that
//! holds `bpf/bpf_helpers.h`, default: libbpf-dev's /usr/include).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SRC: &str = "bpf/vxrouter_xdp.c";

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=VXROUTER_BPF_INCLUDE");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("vxrouter_xdp.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    let mut cmd = Command::new(&clang);
    cmd.args([
        "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c", SRC, "-o",
    ])
    .arg(&out);
    // The BPF target has no multiarch include path of its own; asm/types.h
    // lives under the host triple's directory on Debian.
    for dir in multiarch_include_dirs() {
        cmd.arg("-idirafter").arg(dir);
    }
    let helpers = helper_include_dir();
    match &helpers {
        Some(dir) => {
            cmd.arg("-I").arg(dir);
        }
        None => fail(
            "bpf/bpf_helpers.h not found: install libbpf-dev (apt-get install libbpf-dev) \
             or set VXROUTER_BPF_INCLUDE to the directory that contains bpf/bpf_helpers.h",
        ),
    }

    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(&format!(
            "`{clang}` not found: the XDP program needs clang with the BPF target \
             (apt-get install clang llvm), or set CLANG to its path"
        )),
        Err(e) => fail(&format!("could not run `{clang}`: {e}")),
    };
    if !output.status.success() {
        fail(&format!(
            "`{clang}` failed to compile {SRC} ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

/// Include directories for the host's multiarch headers (asm/types.h).
fn multiarch_include_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        _ => "",
    };
    if !triple.is_empty() {
        let d = Path::new("/usr/include").join(triple);
        if d.is_dir() {
            dirs.push(d);
        }
    }
    dirs
}

/// The directory whose `bpf/` subdirectory holds bpf_helpers.h.
fn helper_include_dir() -> Option<PathBuf> {
    if let Ok(dir) = env::var("VXROUTER_BPF_INCLUDE") {
        return Some(PathBuf::from(dir));
    }
    let sys = Path::new("/usr/include");
    sys.join("bpf/bpf_helpers.h")
        .is_file()
        .then(|| sys.to_path_buf())
}

fn fail(msg: &str) -> ! {
    eprintln!("error: vxrouter build: {msg}");
    println!(
        "cargo:warning=vxrouter build: {}",
        msg.lines().next().unwrap_or(msg)
    );
    std::process::exit(1);
}
