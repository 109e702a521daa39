//! `numashm bridge out|in`: a segment's channel to a Zenoh key, and back.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use numashm_bridge::{BackPressure, BridgeConfig, Inbound, Mode, Outbound, Stop};

use crate::util::CliError;

#[derive(Subcommand)]
pub enum BridgeCommand {
    /// Publish what a channel of a segment receives to a Zenoh key (the bridge consumes the channel).
    Out {
        /// The segment's rendezvous file.
        #[arg(long)]
        segment: PathBuf,
        /// The channel (ring) to consume.
        #[arg(long)]
        ring: usize,
        /// The Zenoh key to publish to.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        zenoh: ZenohArgs,
        /// Messages kept until the inbound side acknowledges them (a restarted inbound
        /// bridge gets them again); 0: no replay (plain Zenoh subscribers only).
        #[arg(long, default_value_t = 1024)]
        window: usize,
    },
    /// Send what a Zenoh key expression carries into a channel of a segment (the bridge produces on the channel).
    In {
        /// The Zenoh key expression to subscribe to.
        #[arg(long)]
        key: String,
        /// The segment's rendezvous file.
        #[arg(long)]
        segment: PathBuf,
        /// The channel (ring) to send into.
        #[arg(long)]
        ring: usize,
        #[command(flatten)]
        zenoh: ZenohArgs,
        /// Where the bridge keeps each stream's position and its counts
        /// (default: SEGMENT.bridge-in-RING); a restart resumes from it.
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct ZenohArgs {
    /// Zenoh peer or client.
    #[arg(long, value_enum, default_value_t = ModeArg::Peer)]
    mode: ModeArg,
    /// Endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// Endpoint to connect to, e.g. tcp/HOST:7447 (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// Turn multicast and gossip scouting on (off: only the endpoints given).
    #[arg(long)]
    scouting: bool,
    /// When the side fed is full: wait (nothing lost) or drop (counted).
    #[arg(long, value_enum, default_value_t = PressureArg::Block)]
    back_pressure: PressureArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Peer,
    Client,
}

#[derive(Clone, Copy, ValueEnum)]
enum PressureArg {
    Block,
    Drop,
}

impl ZenohArgs {
    fn config(&self) -> BridgeConfig {
        let mut cfg = BridgeConfig::new()
            .mode(match self.mode {
                ModeArg::Peer => Mode::Peer,
                ModeArg::Client => Mode::Client,
            })
            .scouting(self.scouting)
            .back_pressure(match self.back_pressure {
                PressureArg::Block => BackPressure::Block,
                PressureArg::Drop => BackPressure::Drop,
            });
        for e in &self.listen {
            cfg = cfg.listen(e);
        }
        for e in &self.connect {
            cfg = cfg.connect(e);
        }
        cfg
    }
}

/// Runs a bridge until SIGINT or SIGTERM; prints `ready` once it is
/// attached and its session is open, and its counts when it stops.
pub fn run(cmd: BridgeCommand) -> Result<(), CliError> {
    let stop = Stop::new();
    stop_on_signals(&stop)?;
    let mut ready = || {
        println!("ready");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };
    match cmd {
        BridgeCommand::Out { segment, ring, key, zenoh, window } => {
            let cfg = zenoh.config().window(window);
            let s = Outbound::new(&segment, ring, &key, cfg).run(&stop, &mut ready).map_err(fail(&segment))?;
            println!(
                "bridge out {} ring {ring} -> {key}: published {}, republished {}, forgotten {} (stream {:016x})",
                segment.display(),
                s.published,
                s.republished,
                s.forgotten,
                s.stream
            );
        }
        BridgeCommand::In { key, segment, ring, zenoh, state } => {
            let mut bridge = Inbound::new(&key, &segment, ring, zenoh.config());
            if let Some(p) = state {
                bridge = bridge.state_file(p);
            }
            let s = bridge.run(&stop, &mut ready).map_err(fail(&segment))?;
            println!(
                "bridge in {key} -> {} ring {ring}: delivered {}, duplicates skipped {}, lost {}, dropped {}, in doubt {}, unstamped {} (over {} runs; state {})",
                segment.display(),
                s.delivered,
                s.duplicates,
                s.lost,
                s.dropped,
                s.in_doubt,
                s.unstamped,
                s.runs,
                bridge.state_path().display()
            );
        }
    }
    Ok(())
}

fn fail(segment: &Path) -> impl Fn(numashm_bridge::BridgeError) -> CliError + '_ {
    move |e| CliError(format!("bridge {}: {e}", segment.display()))
}

/// SIGINT and SIGTERM set `stop` (from a thread of signal-hook's: the handler
/// itself only writes a pipe).
fn stop_on_signals(stop: &Stop) -> Result<(), CliError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| CliError(format!("signals: {e}")))?;
    let stop = stop.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop.stop();
        }
    });
    Ok(())
}
