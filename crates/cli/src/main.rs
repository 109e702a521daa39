//! `numashm`: see what the library did, and meet the project.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage.
#![deny(unsafe_code)]

mod bench;
mod demo;
mod inspect;
mod pool;
mod pool_peer;
mod topology;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use numashm_region::{MemPolicy, PageSize};

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
    /// Create a layout-4 rendezvous (default) or, with --layout 3, a segment (on tmpfs, e.g. /dev/shm/NAME).
    ///
    /// Layout 4: the file holds only the peer table and channel words; each peer
    /// that joins (numashm::pool::Peer::join) brings its own sealed pool, so
    /// nothing else is committed now. The options marked "layout 3" configure
    /// a segment and are refused with layout 4.
    Create {
        /// Path of the new file (must not exist).
        path: PathBuf,
        /// Layout: 4 (rendezvous of numashm::pool) or 3 (numashm::Segment).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=4))]
        layout: u8,
        /// Size, e.g. 64M (layout 3: required; layout 4: file size, at least what --max-peers needs).
        #[arg(long, value_parser = parse_size)]
        size: Option<usize>,
        /// Peer table capacity.
        #[arg(long, default_value_t = 64)]
        max_peers: u32,
        /// Layout 3: maximum size it may grow to (default: 4x size, at least 1G).
        #[arg(long, value_parser = parse_size)]
        max_size: Option<usize>,
        /// Layout 3: NUMA node(s), comma separated.
        #[arg(long, value_delimiter = ',')]
        node: Vec<u32>,
        /// Layout 3: placement policy with --node [default: bind].
        #[arg(long, value_enum)]
        policy: Option<PolicyArg>,
        /// Layout 3: page size [default: 4k].
        #[arg(long, value_enum)]
        pages: Option<PagesArg>,
        /// Layout 3: fault every page in now.
        #[arg(long)]
        populate: bool,
        /// Layout 3: lock the pages in RAM (in this process, while it runs).
        #[arg(long)]
        lock: bool,
        /// Layout 3: fall back to smaller pages / no lock when the policy cannot be had.
        #[arg(long)]
        fallback: bool,
        /// Layout 3: size classes, SIZE:SLOTS_PER_EXTENT comma separated (default 1k:1024,16k:256,256k:32,4m:8).
        #[arg(long, value_parser = parse_classes)]
        classes: Option<numashm::ClassConfig>,
        /// Layout 3: number of SPSC rings (capacity --ring-capacity) [default: 2].
        #[arg(long)]
        rings: Option<usize>,
        /// Layout 3: capacity of each ring (a power of two) [default: 1024].
        #[arg(long)]
        ring_capacity: Option<u32>,
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
    /// Validate and show a rendezvous (layout 4: peers, channels, each live peer's pool) or a segment (layout 3).
    Inspect {
        /// The rendezvous or segment file.
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
    /// (internal) one side of a pool ping-pong (tests of inspect).
    #[command(name = "__pool-peer", hide = true)]
    PoolPeer { path: PathBuf, role: String, rounds: u64 },
    /// (internal) the segment guest of the demo.
    #[command(name = "__demo-seg-guest", hide = true)]
    DemoSegGuest { path: PathBuf },
}

/// `1k:1024,16k:256` → size classes.
fn parse_classes(s: &str) -> Result<numashm::ClassConfig, String> {
    let mut cfg = numashm::ClassConfig::new();
    for part in s.split(',') {
        let (size, count) = part.split_once(':').ok_or_else(|| format!("`{part}`: expected SIZE:SLOTS, e.g. 16k:256"))?;
        let count: usize = count.trim().parse().map_err(|_| format!("`{count}`: not a slot count"))?;
        if count == 0 {
            return Err(format!("`{part}`: a class needs at least one slot"));
        }
        cfg = cfg.class(parse_size(size)?, count);
    }
    Ok(cfg)
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
        Command::Create {
            path,
            layout,
            size,
            max_size,
            node,
            policy,
            pages,
            populate,
            lock,
            fallback,
            classes,
            rings,
            ring_capacity,
            max_peers,
        } => {
            if layout == 4 {
                let segment_only = [
                    ("--max-size", max_size.is_some()),
                    ("--node", !node.is_empty()),
                    ("--policy", policy.is_some()),
                    ("--pages", pages.is_some()),
                    ("--populate", populate),
                    ("--lock", lock),
                    ("--fallback", fallback),
                    ("--classes", classes.is_some()),
                    ("--rings", rings.is_some()),
                    ("--ring-capacity", ring_capacity.is_some()),
                ];
                if let Some((flag, _)) = segment_only.iter().find(|(_, set)| *set) {
                    return Err(CliError(format!(
                        "create {}: {flag} configures a layout-3 segment (add --layout 3); in layout 4 each peer chooses its own pool (numashm::pool::PeerConfig)",
                        path.display()
                    )));
                }
                return pool::create(&path, max_peers, size);
            }
            let size = size.ok_or_else(|| CliError(format!("create {}: --size is required with --layout 3", path.display())))?;
            let (policy, pages) = (policy.unwrap_or(PolicyArg::Bind), pages.unwrap_or(PagesArg::Base));
            let (rings, ring_capacity) = (rings.unwrap_or(2), ring_capacity.unwrap_or(1024));
            let cache = numashm::CachePolicy {
                page_size: match pages {
                    PagesArg::Base => PageSize::Base,
                    PagesArg::Thp => PageSize::Thp,
                    PagesArg::Huge2M => PageSize::Huge2M,
                    PagesArg::Huge1G => PageSize::Huge1G,
                },
                populate,
                lock,
                ..Default::default()
            };
            let mut cfg = numashm::SegmentConfig::file(&path)
                .size(size)
                .cache_policy(cache)
                .fallback(fallback)
                .rings(vec![numashm::RingSpec::spsc(ring_capacity); rings])
                .max_peers(max_peers)
                .keep_file(true);
            if let Some(m) = max_size {
                cfg = cfg.max_size(m);
            }
            if let Some(c) = classes {
                cfg = cfg.classes(c);
            }
            if let Some(&n) = node.first() {
                cfg = cfg.node(n).policy(match policy {
                    PolicyArg::Bind => MemPolicy::Bind,
                    PolicyArg::Preferred => MemPolicy::Preferred,
                    PolicyArg::Interleave => MemPolicy::Interleave,
                });
            }
            // Populating or locking GiBs takes seconds (2–4 µs per page here): show progress.
            let spinner = (populate || lock || size >= 1 << 30).then(|| {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.set_message(format!("creating {} ({}), committing memory", path.display(), human(size as u64)));
                pb.enable_steady_tick(std::time::Duration::from_millis(200));
                pb
            });
            let seg = numashm::Segment::create(cfg).map_err(ctx("create", &path));
            if let Some(pb) = spinner {
                pb.finish_and_clear();
            }
            let seg = seg?;
            let region = seg.region();
            println!(
                "created {} ({}, max {}, {:?} pages{}, {} size classes, {} rings, {} peers max)",
                path.display(),
                human(region.len() as u64),
                human(region.max_len() as u64),
                region.cache_policy().page_size,
                region
                    .placement()
                    .map(|p| format!(", {:?} on nodes {:?}", p.policy(), p.nodes().iter().collect::<Vec<_>>()))
                    .unwrap_or_default(),
                seg.allocator().class_count(),
                seg.ring_count(),
                max_peers,
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
        Command::Inspect { path, json } if pool::is_rendezvous(&path) => pool::inspect(&path, json),
        Command::Inspect { path, json } => inspect::run(&path, json),
        Command::Demo => demo::run(),
        Command::DemoGuest { path } => demo::guest(&path),
        Command::DemoSegGuest { path } => demo::segment_guest(&path),
        Command::PoolPeer { path, role, rounds } => pool_peer::run(&path, &role, rounds),
        Command::Bench { quick, json } => bench::run(quick, json),
    }
}
