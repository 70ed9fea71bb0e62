//! periscope on the kernels users run, not only this machine's: each kernel set-up
//! installed (Debian 12's 6.1, which has no uprobe_multi and an older verifier, and
//! 6.12) boots under qemu with periscope, the checks of src/bin/kernel-check.rs and the
//! kinds fixture built by Go 1.19 and 1.27 (and stripped); every check must
//! pass in the guest: arguments and results call for call, conditions, latency of known
//! sleeps, a `--by` split, stacks, a budget window, the shell, the TUI in a terminal, 40
//! probes stopped at once, and the target's text
//! equal to its file after every stop.
use std::path::Path;
use std::time::Duration;

use periscope_tests::vm::{
    Initramfs, boot, checks_image, guest_output, init_script, kernels, old_kernels,
};
use periscope_tests::{Variant, fixture, toolchains};

#[test]
fn every_kernel_feature_works_on_older_kernels_in_a_vm() {
    let tcs = toolchains();
    let (oldest, newest) = (&tcs[0], &tcs[tcs.len() - 1]);
    let mut fixtures = Vec::new();
    for tc in [oldest, newest] {
        fixtures.push((tc.label.clone(), fixture("kinds", tc, Variant::Plain)));
    }
    fixtures.push((
        "stripped".to_string(),
        fixture("kinds", newest, Variant::Stripped),
    ));
    let args: Vec<String> = fixtures
        .iter()
        .map(|(name, _)| format!("{name}=/fx/{name}"))
        .collect();
    let image = checks_image(
        Path::new(env!("CARGO_BIN_EXE_kernel-check")),
        &fixtures,
        &args.join(" "),
    );
    // The kernels boot side by side: a guest spends much of its time waiting (on the
    // fixture, on windows of the budget), and each is a few minutes under emulation.
    let runs: Vec<_> = kernels()
        .into_iter()
        .map(|kernel| {
            let image = image.clone();
            std::thread::spawn(move || {
                let console = boot(&kernel, &image, Duration::from_secs(900));
                (kernel, console)
            })
        })
        .collect();
    let mut failed = Vec::new();
    for run in runs {
        let (kernel, console) = run.join().unwrap();
        let Some(out) = guest_output(&console) else {
            panic!(
                "{}: the guest never ran the checks:\n{console}",
                kernel.version
            );
        };
        // Shown with --nocapture: what each check measured on this kernel.
        eprintln!("kernel {}:\n{out}", kernel.version);
        let checks: Vec<&str> = out.lines().filter(|l| l.starts_with("check ")).collect();
        // Nine checks on each of two fixtures, and the stripped one.
        assert_eq!(
            checks.len(),
            2 * 9 + 1,
            "{}: not every check ran:\n{out}",
            kernel.version
        );
        assert!(out.contains("checks done"), "{}:\n{out}", kernel.version);
        failed.extend(
            checks
                .iter()
                .filter(|l| !l.contains(": ok"))
                .map(|l| format!("{}: {l}", kernel.version)),
        );
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_kernel_too_old_is_refused_in_one_line() {
    // Debian 11's 5.10 has no bpf_loop: periscope cannot load its program there, and
    // must say why in one line (not the verifier's log) and exit 2.
    let mut fs = Initramfs::new();
    fs.copy(Path::new("/bin/busybox"), "bin/busybox");
    fs.program(&periscope_tests::periscope(), "periscope");
    let newest = &toolchains()[toolchains().len() - 1];
    fs.copy(&fixture("kinds", newest, Variant::Plain), "fx/kinds");
    // The line names the file that holds the verifier's whole log: the guest shows its
    // mode and counts its lines.
    let command = "sleep 600 | /fx/kinds > /dev/null & sleep 1; /periscope trace --pid $! --duration 1s main.Hot 2>/tmp/err; echo \"status $?\"; cat /tmp/err; f=$(sed -n 's/.*its whole log is in \\([^ ]*\\) .*/\\1/p' /tmp/err); echo \"log $(ls -l $f | cut -c1-10) $(wc -l < $f) lines\"";
    fs.file("init", init_script(command).as_bytes(), 0o755);
    let image = fs.finish();
    for kernel in old_kernels() {
        let console = boot(&kernel, &image, Duration::from_secs(300));
        let out = guest_output(&console)
            .unwrap_or_else(|| panic!("{}: the guest never ran:\n{console}", kernel.version));
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.first(),
            Some(&"status 2"),
            "{}:\n{out}",
            kernel.version
        );
        assert_eq!(lines.len(), 3, "one line expected:\n{out}");
        assert!(
            lines[1].contains(&format!("Linux {}", kernel.version))
                && lines[1].contains("needs Linux 5.17 or newer"),
            "{out}"
        );
        // The whole log (5.10 stops at the BTF check: a few lines), private to its user.
        let log: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(log[..2], ["log", "-rw-------"], "{out}");
        assert!(log[2].parse::<u32>().unwrap_or(0) > 0, "{out}");
    }
}
