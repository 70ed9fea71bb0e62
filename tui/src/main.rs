//! periscope: see what a running Go program is doing, without touching it.
mod cli;
mod target;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "periscope",
    version,
    about = "A terminal debugger for live Go processes, built on eBPF uprobes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::List {
            target,
            regex,
            json,
        } => cli::list::run(&target::Target::parse(&target), regex.as_deref(), json),
    };
    if let Err(e) = result {
        eprintln!("periscope: {e:#}");
        std::process::exit(2);
    }
}
