//! Compiles the BPF programs with Debian's clang and mirrors periscope.h into Rust
//! with bindgen, so the wire format has one definition.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let obj = out.join("periscope.bpf.o");
    println!("cargo:rerun-if-changed=bpf/periscope.bpf.c");
    println!("cargo:rerun-if-changed=include/periscope.h");
    let st = Command::new("clang")
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-Werror",
        ])
        .args([
            "-I/usr/include/x86_64-linux-gnu",
            "-Iinclude",
            "-c",
            "bpf/periscope.bpf.c",
            "-o",
        ])
        .arg(&obj)
        .status()
        .expect("clang not found: run `make setup` (installs clang and libbpf-dev)");
    assert!(st.success(), "compiling bpf/periscope.bpf.c failed");
    bindgen::Builder::default()
        .header("include/periscope.h")
        .clang_arg("-I/usr/include/x86_64-linux-gnu")
        .allowlist_type("psc_.*")
        .allowlist_var("PSC_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .generate()
        .expect("bindgen on periscope.h")
        .write_to_file(out.join("wire.rs"))
        .unwrap();
    // The kernel's own UAPI structs for attaching uprobes ourselves (see uprobe.rs).
    bindgen::Builder::default()
        .header_contents(
            "kernel_abi.h",
            "#include <linux/bpf.h>\n#include <linux/perf_event.h>\n",
        )
        .clang_arg("-I/usr/include/x86_64-linux-gnu")
        .allowlist_type("bpf_attr|perf_event_attr")
        .allowlist_var("PERF_FLAG_FD_CLOEXEC")
        .allowlist_type("bpf_cmd|bpf_attach_type")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen on linux/bpf.h")
        .write_to_file(out.join("kernel_abi.rs"))
        .unwrap();
}
