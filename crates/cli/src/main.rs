//! `numashm`: see what the library did, and meet the project.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage.
#![deny(unsafe_code)]

mod bench;
mod demo;
mod inspect;
mod topology;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use numashm_region::{MemPolicy, PageSize, RegionOptions};

use util::{ctx, human, parse_size, CliError};

#[derive(Parser)]
#[command(name = "numashm", version, about = "NUMA-placed shared memory between processes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Bind,
    Preferred,
    Interleave,
}

#[derive(Clone, Copy, ValueEnum)]
enum PagesArg {
    #[value(name = "4k")]
    Base,
    Thp,
    #[value(name = "2m")]
    Huge2M,
    #[value(name = "1g")]
    Huge1G,
}

#[derive(Subcommand)]
enum Command {
    /// NUMA nodes, memory, CPUs, distances, huge pages, THP and memlock limits.
    Topology {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create a named region (on tmpfs, e.g. /dev/shm/NAME, for placement).
    Create {
        /// Path of the new file (must not exist).
        path: PathBuf,
        /// Size, e.g. 64M.
        #[arg(long, value_parser = parse_size)]
        size: usize,
        /// Maximum size it may grow to (default: 4x size, at least 1G).
        #[arg(long, value_parser = parse_size)]
        max_size: Option<usize>,
        /// NUMA node(s), comma separated.
        #[arg(long, value_delimiter = ',')]
        node: Vec<u32>,
        /// Placement policy with --node.
        #[arg(long, value_enum, default_value = "bind")]
        policy: PolicyArg,
        /// Page size.
        #[arg(long, value_enum, default_value = "4k")]
        pages: PagesArg,
        /// Fault every page in now.
        #[arg(long)]
        populate: bool,
        /// Lock the pages in RAM (in this process, while it runs).
        #[arg(long)]
        lock: bool,
        /// Fall back to smaller pages / no lock when the policy cannot be had.
        #[arg(long)]
        fallback: bool,
    },
    /// Grow a named region in place.
    Grow {
        /// The region's file.
        path: PathBuf,
        /// New size, e.g. 128M.
        #[arg(long, value_parser = parse_size)]
        to: usize,
    },
    /// Remove a named region (after checking that it is one).
    Rm {
        /// The region's file.
        path: PathBuf,
        /// Remove even if the header is not a valid region.
        #[arg(long)]
        force: bool,
    },
    /// Validate and show a region: header, size, epoch, placement, pages per node.
    Inspect {
        /// The region's file.
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The README's demo: topology, a region per node, growth seen by a guest process.
    Demo,
    /// Side-by-side report: each path, its baseline measured in the same run, the ratio.
    Bench {
        /// Finish in under a minute.
        #[arg(long)]
        quick: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// (internal) the guest side of the demo.
    #[command(name = "__demo-guest", hide = true)]
    DemoGuest { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits with 2 on usage errors
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("numashm: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Topology { json } => topology::run(json),
        Command::Create { path, size, max_size, node, policy, pages, populate, lock, fallback } => {
            let mut opts = RegionOptions::new(size)
                .page_size(match pages {
                    PagesArg::Base => PageSize::Base,
                    PagesArg::Thp => PageSize::Thp,
                    PagesArg::Huge2M => PageSize::Huge2M,
                    PagesArg::Huge1G => PageSize::Huge1G,
                })
                .populate(populate)
                .lock(lock)
                .fallback(fallback);
            if let Some(m) = max_size {
                opts = opts.max_len(m);
            }
            if !node.is_empty() {
                opts = opts.nodes(&node).policy(match policy {
                    PolicyArg::Bind => MemPolicy::Bind,
                    PolicyArg::Preferred => MemPolicy::Preferred,
                    PolicyArg::Interleave => MemPolicy::Interleave,
                });
            }
            let mut region = opts.create_file(&path).map_err(ctx("create", &path))?;
            region.release_ownership();
            println!(
                "created {} ({}, max {}, {:?} pages{})",
                path.display(),
                human(region.len() as u64),
                human(region.max_len() as u64),
                region.cache_policy().page_size,
                region
                    .placement()
                    .map(|p| format!(", {:?} on nodes {:?}", p.policy(), p.nodes().iter().collect::<Vec<_>>()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Grow { path, to } => {
            let region = numashm_region::Region::attach_file(&path).map_err(ctx("attach", &path))?;
            let before = region.len();
            region.resize(to).map_err(ctx("grow", &path))?;
            println!("grew {} from {} to {} (epoch {})", path.display(), human(before as u64), human(to as u64), region.epoch());
            Ok(())
        }
        Command::Rm { path, force } => {
            if !force {
                // Only remove what is a region: attach validates the header.
                let region = numashm_region::Region::attach_file(&path).map_err(|e| {
                    CliError(format!("rm {}: {e} (use --force to remove it anyway)", path.display()))
                })?;
                drop(region);
            }
            std::fs::remove_file(&path).map_err(ctx("rm", &path))?;
            println!("removed {}", path.display());
            Ok(())
        }
        Command::Inspect { path, json } => inspect::run(&path, json),
        Command::Demo => demo::run(),
        Command::DemoGuest { path } => demo::guest(&path),
        Command::Bench { quick, json } => bench::run(quick, json),
    }
}
