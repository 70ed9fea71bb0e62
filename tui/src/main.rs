//! periscope: see what a running Go program is doing, without touching it.
use clap::{Parser, Subcommand};
use periscope::{app, cli, target};

// The catalog of a large binary is ~100,000 small allocations made from several
// threads at once, and the decoder allocates per value: mimalloc loads cmd/go's catalog
// ~20% faster than glibc's malloc here (measured: best of 8, 185 ms -> 145 ms).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "periscope",
    version,
    about = "A terminal debugger for live Go processes, built on eBPF uprobes"
)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
struct Cli {
    /// Open the full-screen debugger on this process.
    pid: Option<u32>,
    /// Open it on every process that runs this executable (a path, or the file name of
    /// a running program), those that start later included.
    #[arg(long, value_name = "PATH_OR_NAME", conflicts_with = "pid")]
    exe: Option<String>,
    /// Most of the target's CPU time the probes may take (5%, 0.5%, off): past it,
    /// return points are attached part of the time, and every summary says what share
    /// of calls it saw.
    #[arg(long, global = true, default_value = "5%", value_parser = parse_budget)]
    budget: Budget,
    /// Serve the probes' counters and latency histograms for Prometheus at
    /// http://ADDR/metrics (`127.0.0.1:9464`; port 0 picks a free one).
    #[arg(long, global = true, value_name = "ADDR")]
    metrics: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Clone, Copy)]
struct Budget(Option<f64>);

fn parse_budget(s: &str) -> Result<Budget, String> {
    periscope::budget::parse(s).map(Budget)
}

#[derive(Subcommand)]
enum Cmd {
    /// A line-oriented debugger console on a running process (rustyline).
    Shell {
        /// The process to debug.
        #[arg(required_unless_present = "exe")]
        pid: Option<u32>,
        /// Every process that runs this executable (a path, or a running program's
        /// file name), those that start later included.
        #[arg(long, value_name = "PATH_OR_NAME", conflicts_with = "pid")]
        exe: Option<String>,
    },
    /// Run a probe file (programs and their probes, in TOML) headless as a service:
    /// SIGHUP reloads it, SIGTERM detaches and flushes. `--check` checks it against the
    /// binaries instead, attaching nothing: every mistake with its line.
    Agent {
        /// The probe file to run.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "check",
            conflicts_with = "check"
        )]
        config: Option<std::path::PathBuf>,
        /// The probe file to check.
        #[arg(long, value_name = "FILE")]
        check: Option<std::path::PathBuf>,
    },
    /// List the functions of a Go binary or process, with signatures and locations.
    List {
        /// A pid or the path of a Go executable.
        target: String,
        /// Only functions whose name matches this regular expression.
        regex: Option<String>,
        /// One JSON object per line, with locations and probe addresses.
        #[arg(long)]
        json: bool,
    },
    /// Trace calls of functions in a running Go process (headless).
    Trace {
        /// The process to trace; again for several processes of one program.
        #[arg(long, short, required_unless_present = "exe")]
        pid: Vec<u32>,
        /// Every process that runs this executable, now and later: a path (no process
        /// needs to run yet), or the file name of a running program.
        #[arg(long, value_name = "PATH_OR_NAME", conflicts_with = "pid")]
        exe: Option<String>,
        /// Stop after this long (10s, 500ms, 2m); default: until Ctrl-C or the target exits.
        #[arg(long)]
        duration: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep one call in N (per probe).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        sample: u32,
        /// Capture arguments.
        #[arg(long)]
        args: bool,
        /// Capture results.
        #[arg(long)]
        ret: bool,
        /// Record call-to-return latency.
        #[arg(long)]
        latency: bool,
        /// Longest string captured, in bytes (1 to 512).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=512))]
        max_string: u16,
        /// One latency histogram per value of EXPR: a bool, an integer, a short string
        /// (32 values, then "other") or a comparison (`err != nil`); implies --latency.
        #[arg(long)]
        by: Option<String>,
        /// Record each call's callers (innermost first), symbolized from .gopclntab.
        #[arg(long)]
        stack: bool,
        /// Paths captured before anything else, comma-separated: `r.URL.Path,r.Host`
        /// (the condition syntax; pointers are followed along them).
        #[arg(long, value_delimiter = ',')]
        capture: Vec<String>,
        /// A message per call: `'login {username} -> {r1} in {latency}'`, values named
        /// as conditions name them; it decides what is captured.
        #[arg(long, value_name = "TEMPLATE")]
        log: Option<String>,
        /// Function names, each optionally followed by `if CONDITION`.
        #[arg(required = true)]
        probes: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let Some(cmd) = cli.cmd else {
        let scope = scope(cli.pid.into_iter().collect(), cli.exe);
        exit_on_error(app::runtime::run(
            scope,
            cli.budget.0,
            cli.metrics.as_deref(),
        ));
        return;
    };
    let result = match cmd {
        Cmd::Shell { pid, exe } => periscope::shell::run(
            scope(pid.into_iter().collect(), exe),
            cli.budget.0,
            cli.metrics.as_deref(),
        ),
        Cmd::Agent { config, check } => match (config, check) {
            (_, Some(check)) => cli::agent::check(&check),
            (Some(config), None) => cli::agent::run(&config),
            (None, None) => unreachable!("clap requires one"),
        },
        Cmd::List {
            target,
            regex,
            json,
        } => cli::list::run(&target::Target::parse(&target), regex.as_deref(), json),
        Cmd::Trace {
            pid,
            exe,
            duration,
            json,
            sample,
            args,
            ret,
            latency,
            max_string,
            stack,
            by,
            capture,
            log,
            probes,
        } => {
            // A log template alone captures what it names.
            let all = !(args || ret || latency || log.is_some());
            // --by splits the latency histogram: it records latency.
            let latency = latency || by.is_some();
            (|| {
                let duration = duration
                    .as_deref()
                    .map(periscope::format::parse_duration)
                    .transpose()?;
                check_capture_list(&capture)?;
                cli::trace::run(cli::trace::Options {
                    scope: scope(pid, exe),
                    duration,
                    json,
                    budget: cli.budget.0,
                    spec: periscope::session::ProbeSpec {
                        args: all || args,
                        ret: all || ret,
                        latency: all || latency,
                        sample: sample.max(1),
                        condition: None,
                        paths: capture,
                        stack,
                        by,
                    },
                    max_string,
                    metrics: cli.metrics,
                    log,
                    probes,
                })
            })()
        }
    };
    exit_on_error(result);
}

/// What the user named: `--exe`, else the pids (clap requires one or the other).
fn scope(pids: Vec<u32>, exe: Option<String>) -> periscope::session::Scope {
    use periscope::session::Scope;
    match exe {
        Some(exe) => Scope::Exe(exe),
        None => {
            // The same pid twice is one process.
            let mut seen = Vec::new();
            for p in pids {
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
            Scope::Pids(seen)
        }
    }
}

fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("periscope: {}", one_line(&e));
        std::process::exit(2);
    }
}

/// The error and its causes on one line: a cause whose text the message already holds
/// is not repeated (library errors often print their source), and line breaks that a
/// quoted input carried become spaces (which keeps columns pointing at the same place).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.replace(['\n', '\r', '\t'], " ")
}

/// `--capture a,,b`: clap splits at the commas, so an empty path is an element of its
/// own; said with its column in the list as typed.
fn check_capture_list(paths: &[String]) -> anyhow::Result<()> {
    let mut col = 1;
    for p in paths {
        if p.trim().is_empty() {
            anyhow::bail!(
                "--capture `{}`, column {col}: an empty path (separate paths with one comma: r.URL.Path,r.Host)",
                paths.join(",")
            );
        }
        col += p.chars().count() + 1;
    }
    Ok(())
}
