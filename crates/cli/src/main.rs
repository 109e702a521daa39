//! `numashm`: see what the library did, and meet the project.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage.
#![deny(unsafe_code)]

mod bench;
mod bridge;
mod demo;
mod demo_pool;
mod pool;
mod pool_peer;
mod top;
mod topology;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use util::{ctx, human, parse_size, CliError};

#[derive(Parser)]
#[command(name = "numashm", version, about = "NUMA-placed shared memory between processes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// NUMA nodes, memory, CPUs, distances, huge pages, THP and memlock limits.
    Topology {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create a layout-4 rendezvous file (on tmpfs, e.g. /dev/shm/NAME).
    ///
    /// The file holds only the peer table and channel words; each peer that
    /// joins (numashm::pool::Peer::join) brings its own sealed pool, placed and
    /// sized by its own numashm::pool::PeerConfig, so nothing else is committed now.
    Create {
        /// Path of the new file (must not exist).
        path: PathBuf,
        /// File size, e.g. 4M (at least 64 KiB and what --max-peers needs).
        #[arg(long, value_parser = parse_size)]
        size: Option<usize>,
        /// Peer table capacity (1..=1024).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=i64::from(numashm::pool::MAX_POOL_PEERS)))]
        max_peers: u32,
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
    /// Validate and show a layout-4 rendezvous: peers, channels, each live peer's pool (read-only).
    Inspect {
        /// The rendezvous file.
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Live view of a layout-4 rendezvous, refreshed: peers, channels, pools, recoveries (read-only; never joins).
    ///
    /// Each refresh inspects the rendezvous and every live peer's pool through
    /// read-only mappings (as `inspect` does); rates are the change of the
    /// pools' counters and ring positions between two refreshes. Keys: q, Esc
    /// or Ctrl-C quit.
    Top {
        /// The rendezvous file.
        path: PathBuf,
        /// Milliseconds between refreshes (and the interval `--once` measures rates over).
        #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        interval: u64,
        /// Print one frame (rates over one interval) and exit, instead of the live view.
        #[arg(long)]
        once: bool,
        /// With --once: the frame as JSON.
        #[arg(long, requires = "once")]
        json: bool,
    },
    /// Bridge a channel to a Zenoh key (out) or a Zenoh key into a channel (in), for more than one host.
    #[command(subcommand)]
    Bridge(bridge::BridgeCommand),
    /// The README's demo: topology, a region per node, growth seen by a guest process, a ping-pong between two sealed pools.
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
    /// (internal) one side of a pool ping-pong (tests of inspect).
    #[command(name = "__pool-peer", hide = true)]
    PoolPeer { path: PathBuf, role: String, rounds: u64 },
    /// (internal) the pool guest of the demo.
    #[command(name = "__demo-pool-guest", hide = true)]
    DemoPoolGuest { path: PathBuf },
}

fn main() -> ExitCode {
    numashm_benches::child_main_if_requested();
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
        Command::Create { path, size, max_peers } => pool::create(&path, max_peers, size),
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
        Command::Inspect { path, json } => pool::inspect(&path, json),
        Command::Top { path, interval, once, json } => top::run(&path, std::time::Duration::from_millis(interval), once, json),
        Command::Bridge(cmd) => bridge::run(cmd),
        Command::Demo => demo::run(),
        Command::DemoGuest { path } => demo::guest(&path),
        Command::DemoPoolGuest { path } => demo_pool::guest(&path),
        Command::PoolPeer { path, role, rounds } => pool_peer::run(&path, &role, rounds),
        Command::Bench { quick, json } => bench::run(quick, json),
    }
}
