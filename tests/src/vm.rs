//! Other kernels: Debian's kernel images (6.1, the Debian 12 kernel, and 6.12; installed by
//! scripts/setup.sh into .tools/kernels) booted under qemu without acceleration (TCG:
//! this machine's KVM cannot run them), with an initramfs made here of busybox,
//! periscope, the guest checks (src/bin/kernel-check.rs) and the fixtures. What the
//! guest prints on its serial console comes back as text.
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A kernel image and its version (`6.1.0-57-amd64`).
#[derive(Debug, Clone)]
pub struct Kernel {
    pub version: String,
    pub image: PathBuf,
}

/// The kernels set-up installed, oldest first.
pub fn kernels() -> Vec<Kernel> {
    kernels_in(".tools/kernels")
}

/// Kernels periscope cannot run on (set-up installs Debian 11's 5.10): it must say so.
pub fn old_kernels() -> Vec<Kernel> {
    kernels_in(".tools/old-kernels")
}

fn kernels_in(dir: &str) -> Vec<Kernel> {
    let dir = crate::repo_root().join(dir);
    let mut found: Vec<Kernel> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", dir.display()))
        .flatten()
        .filter_map(|e| {
            let image = e.path().join("vmlinuz");
            image.exists().then(|| Kernel {
                version: e.file_name().to_string_lossy().into_owned(),
                image,
            })
        })
        .collect();
    found.sort_by_key(|k| version_key(&k.version));
    assert!(
        !found.is_empty(),
        "no kernel in {} (run `make setup`)",
        dir.display()
    );
    found
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// An initramfs in the kernel's `newc` cpio format, uncompressed (the kernel takes it
/// as it is, and qemu loads it in memory).
#[derive(Default)]
pub struct Initramfs {
    buf: Vec<u8>,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
    ino: u32,
}

impl Initramfs {
    pub fn new() -> Initramfs {
        let mut fs = Initramfs::default();
        for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "root", "fx"] {
            fs.dir(d);
        }
        fs
    }

    fn header(&mut self, name: &str, mode: u32, size: usize, nlink: u32) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// A directory and its parents.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if self.dirs.insert(at.clone()) {
                let name = at.clone();
                self.header(&name, 0o040755, 0, 2);
            }
        }
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        let path = path.trim_start_matches('/');
        if !self.files.insert(path.to_string()) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.header(path, 0o100000 | mode, data.len(), 1);
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A file of this machine at `path` in the image.
    pub fn copy(&mut self, from: &Path, path: &str) {
        let data = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        self.file(path, &data, 0o755);
    }

    /// A dynamically linked program of this machine, with the libraries it loads, at
    /// the same paths.
    pub fn program(&mut self, from: &Path, path: &str) {
        self.copy(from, path);
        let out = Command::new("ldd").arg(from).output().expect("ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-… (0x…)"
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                let real = std::fs::canonicalize(lib).unwrap_or_else(|_| PathBuf::from(lib));
                self.copy(&real, lib);
            }
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1);
        self.buf
    }
}

/// The guest's /init: mounts what periscope needs, runs `command` with its output on
/// the serial console between markers, and powers off.
pub fn init_script(command: &str) -> String {
    format!(
        "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts
mount -t devpts -o ptmxmode=666 devpts /dev/pts && ln -sf pts/ptmx /dev/ptmx
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ip link set lo up 2>/dev/null
echo \"guest: kernel $(uname -r)\"
echo GUEST-BEGIN
{command} 2>&1
echo GUEST-END
poweroff -f
"
    )
}

/// Boots `kernel` with `initramfs` under qemu (2 CPUs, 2 GiB) and returns its serial
/// console's text, once it powers off or after `limit`.
pub fn boot(kernel: &Kernel, initramfs: &[u8], limit: Duration) -> String {
    let image = std::env::temp_dir().join(format!(
        "periscope-vm-{}-{}.cpio",
        kernel.version,
        std::process::id()
    ));
    std::fs::File::create(&image)
        .and_then(|mut f| f.write_all(initramfs))
        .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&image)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (run `make setup`)");
    let start = Instant::now();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signal 0 only checks whether our child still runs.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return false;
            }
        }
        // SAFETY: ends our own child, which overran its time.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    });
    let out = child.wait_with_output().expect("qemu");
    let overran = watchdog.join().unwrap_or(false);
    let _ = std::fs::remove_file(&image);
    let mut text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    if overran {
        text.push_str(&format!(
            "\nhost: the VM was stopped after {} s\n",
            limit.as_secs()
        ));
    }
    text
}

/// What the guest printed between its markers.
pub fn guest_output(console: &str) -> Option<&str> {
    let start = console.find("GUEST-BEGIN\n")? + "GUEST-BEGIN\n".len();
    let end = console[start..]
        .find("GUEST-END")
        .map_or(console.len(), |e| start + e);
    Some(&console[start..end])
}

/// The image the kernel checks and benches boot: busybox, periscope, `kernel_check`
/// (src/bin/kernel-check.rs), each fixture `(name, file)` at /fx/NAME, and an /init that
/// runs `kernel-check ARGS` with periscope at /periscope.
pub fn checks_image(kernel_check: &Path, fixtures: &[(String, PathBuf)], args: &str) -> Vec<u8> {
    let mut fs = Initramfs::new();
    fs.copy(Path::new("/bin/busybox"), "bin/busybox");
    fs.program(&crate::periscope(), "periscope");
    fs.program(kernel_check, "kernel-check");
    for (name, file) in fixtures {
        fs.copy(file, &format!("fx/{name}"));
    }
    let command = format!("PERISCOPE_BIN=/periscope /kernel-check {args}");
    fs.file("init", init_script(&command).as_bytes(), 0o755);
    fs.finish()
}
