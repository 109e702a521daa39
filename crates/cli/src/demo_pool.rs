//! `numashm demo`, part 4: a ping-pong between two processes through sealed
//! pools (layout 4, `numashm::pool`). The demo process creates a rendezvous
//! and re-executes itself as the guest (`numashm __demo-pool-guest PATH`);
//! each side allocates in its own pool, writes in place and sends; the other
//! reads the payload through its read-only mapping of the sender's pool and
//! returns the slot by dropping the message.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use numashm::pool::{ChannelError, Message, Peer, PeerConfig, Receiver, Sender};

use crate::util::{human, CliError};

/// Round trips measured (after [`WARMUP`] unmeasured ones).
const ROUND_TRIPS: usize = 20_000;
const WARMUP: usize = 1_000;
/// Messages of [`BURST_LEN`] bytes in flight at once, half way through.
const BURST: usize = 128;
const BURST_LEN: usize = 16 << 10;
/// Longest any single wait of either side (a dead or stuck peer ends the demo, not hangs it).
const WAIT: Duration = Duration::from_secs(10);
/// Longest the guest lives, whatever happens to the host.
const GUEST_WATCHDOG: Duration = Duration::from_secs(60);
/// Each pool may grow to this (address space reserved once, memory committed on demand).
const RESERVE: usize = 64 << 20;

fn config(name: &str) -> PeerConfig {
    // Bound to the node of the CPU that joins; where that cannot be had, no placement.
    PeerConfig::new(name).reserve(RESERVE).fallback(true)
}

/// Spins on `try_recv` a while (a reply usually lands within microseconds),
/// then waits with the bounded, parking `recv_timeout` (which also finishes the
/// bind handshake with a producer that has just joined).
fn recv<'p>(rx: &Receiver<'p>) -> Result<Message<'p>, ChannelError> {
    for _ in 0..1 << 14 {
        match rx.try_recv() {
            Err(ChannelError::Empty) => std::hint::spin_loop(),
            other => return other,
        }
    }
    rx.recv_timeout(WAIT)
}

fn send(tx: &Sender<'_>, len: usize, fill: u8) -> Result<(), String> {
    let mut m = tx.alloc(len).map_err(|e| e.to_string())?;
    m.fill(fill);
    tx.send_timeout(m, WAIT).map_err(|e| e.error.to_string())
}

/// The `/proc/self/maps` line of the mapping holding `addr`: (permissions, what is mapped).
fn mapping_of(addr: usize) -> Option<(String, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        // range perms offset dev inode [path, which may hold spaces]
        let f: Vec<&str> = l.split_whitespace().collect();
        let (s, e) = f.first()?.split_once('-')?;
        let range = usize::from_str_radix(s, 16).ok()?..usize::from_str_radix(e, 16).ok()?;
        let what = if f.len() > 5 { f[5..].join(" ") } else { "anonymous memory".into() };
        range.contains(&addr).then(|| (f.get(1).copied().unwrap_or("?").to_string(), what))
    })
}

/// The guest child; killed and reaped if the host leaves early.
struct Guest(Option<Child>);

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn ping_pong(dir: &Path) -> Result<(), CliError> {
    println!("\n-- 4. two processes, each sending from its own sealed pool: 64 B ping-pong, a burst that grows a pool --");
    let path = dir.join(format!("numashm-demo-{}-rendezvous", std::process::id()));
    let fail = |e: &dyn std::fmt::Display| CliError(format!("pool ping-pong on {}: {e}", path.display()));
    // The creator removes the rendezvous file when `host` goes.
    let host = Peer::create(&path, 4, config("numashm-demo-host")).map_err(|e| fail(&e))?;
    let (tx, rx) = (host.sender(0).map_err(|e| fail(&e))?, host.receiver(1).map_err(|e| fail(&e))?);
    let exe = std::env::current_exe().map_err(|e| CliError(format!("current_exe: {e}")))?;
    let mut guest = Guest(Some(
        Command::new(exe)
            .arg("__demo-pool-guest")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| CliError(format!("spawn guest: {e}")))?,
    ));
    let deadline = Instant::now() + WAIT;
    while host.peers().len() < 2 {
        if let Some(status) = guest.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(fail(&format!("the guest exited before joining ({status})")));
        }
        if Instant::now() > deadline {
            return Err(fail(&"the guest did not join within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let committed_before = host.census().committed;
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    let mut committed_burst = committed_before;
    for i in 0..WARMUP + ROUND_TRIPS {
        if i == WARMUP + ROUND_TRIPS / 2 {
            // A burst in flight at once: the 16 KiB class needs memory our pool
            // has not committed yet; it grows, and the guest's read-only mapping follows.
            for _ in 0..BURST {
                send(&tx, BURST_LEN, 0xAB).map_err(|e| fail(&e))?;
            }
            committed_burst = host.census().committed;
            for _ in 0..BURST {
                let m = recv(&rx).map_err(|e| fail(&e))?;
                if m.len() != BURST_LEN || m.iter().any(|&b| b != 0xAB) {
                    return Err(fail(&"burst reply corrupted"));
                }
            }
        }
        let t = Instant::now();
        send(&tx, 64, i as u8).map_err(|e| fail(&e))?;
        let reply = recv(&rx).map_err(|e| fail(&e))?;
        if reply.len() != 64 || reply.iter().any(|&b| b != i as u8) {
            return Err(fail(&format!("round trip {i}: reply corrupted")));
        }
        drop(reply);
        if i >= WARMUP {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    // Take back what the guest has returned so far (at most a return ring's
    // worth per channel and call). Handles it could not fit in its return ring
    // wait on its side for room: they stay lent, none is lost.
    for _ in 0..64 {
        if host.collect_returns() == 0 {
            break;
        }
    }
    let census = host.census();
    let lent = census.classes.iter().map(|c| c.lent).sum::<u64>() + census.dedicated.lent;
    let (accepted, bad) = host.returns();
    let report = numashm::pool::inspect(&path).map_err(|e| fail(&e))?;
    // A zero-length message tells the guest to stop.
    let mut stop = tx.alloc(1).map_err(|e| fail(&e))?;
    stop.set_len(0).map_err(|e| fail(&e))?;
    tx.send_timeout(stop, WAIT).map_err(|e| fail(&e.error))?;
    let out = guest.0.take().map(Child::wait_with_output).transpose().map_err(|e| CliError(format!("wait guest: {e}")))?;
    let Some(out) = out else { return Err(fail(&"no guest")) };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  guest> {line}");
    }
    if !out.status.success() {
        return Err(CliError(format!("guest failed: {}", out.status)));
    }
    rtts.sort_unstable();
    println!(
        "host: {ROUND_TRIPS} pool round trips of 64 B (alloc in my pool, write, send; the guest reads in place, returns, replies from its pool): median {} ns, p99 {} ns",
        rtts[rtts.len() / 2],
        rtts[rtts.len() * 99 / 100]
    );
    println!(
        "host: {BURST} messages of {} in flight at once grew my pool from {} to {} committed (of {} reserved)",
        human(BURST_LEN as u64),
        human(committed_before as u64),
        human(committed_burst as u64),
        human(census.reserved as u64)
    );
    println!(
        "host: {} messages sent, {accepted} slots returned by the guest and accepted (each checked: lent to it, not yet returned), {bad} refused, {lent} still lent (the guest keeps their returns until its return ring has room)",
        WARMUP + ROUND_TRIPS + BURST
    );
    println!(
        "host: my pool is {}",
        host.pool_region()
            .placement()
            .map(|p| format!("{:?} to nodes {:?}", p.policy(), p.nodes().iter().collect::<Vec<_>>()))
            .unwrap_or_else(|| "not placed (first touch)".into())
    );
    for e in report.live_peers() {
        let who = if e.pid == std::process::id() { "host" } else { "guest" };
        let pages = match &e.pool {
            Some(Ok(p)) => match &p.pages {
                Ok(pg) => format!("{} committed, resident pages per node {:?}", human(p.committed as u64), pg.per_node),
                Err(err) => format!("pages: {err}"),
            },
            Some(Err(err)) => format!("error: {err}"),
            None => "no pool".into(),
        };
        println!("inspect: entry {} ({who}, pid {}): pool {pages}", e.index, e.pid);
    }
    Ok(())
}

/// The guest: join by path with a pool of its own, echo every message on
/// channel 0 back on channel 1 until a zero-length one, and say how the host's
/// pool is mapped here.
pub fn guest(path: &Path) -> Result<(), CliError> {
    std::thread::spawn(|| {
        std::thread::sleep(GUEST_WATCHDOG);
        eprintln!("numashm demo guest: still running after {GUEST_WATCHDOG:?}, leaving");
        std::process::exit(3);
    });
    let fail = |e: &dyn std::fmt::Display| CliError(format!("guest on {}: {e}", path.display()));
    let peer = Peer::join(path, config("numashm-demo-guest")).map_err(|e| fail(&e))?;
    let (rx, tx) = (peer.receiver(0).map_err(|e| fail(&e))?, peer.sender(1).map_err(|e| fail(&e))?);
    println!("joined as entry {}, with a pool of my own ({} committed)", peer.entry(), human(peer.census().committed as u64));
    let mut n = 0u64;
    let mut seen_lens = Vec::new();
    loop {
        let msg = recv(&rx).map_err(|e| fail(&e))?;
        if msg.is_empty() {
            break;
        }
        if !seen_lens.contains(&msg.len()) {
            seen_lens.push(msg.len());
            let (perms, what) = mapping_of(msg.as_ptr() as usize).ok_or_else(|| fail(&"payload not in /proc/self/maps"))?;
            let read_only = if perms.contains('w') { "WRITABLE" } else { "read-only" };
            println!("a {} message is read in place at {:p}: mapped {perms} ({read_only}) from {what}", human(msg.len() as u64), msg.as_ptr());
        }
        let mut reply = tx.alloc(msg.len()).map_err(|e| fail(&e))?;
        reply.copy_from_slice(&msg);
        drop(msg); // returns the host's slot
        tx.send_timeout(reply, WAIT).map_err(|e| fail(&e.error))?;
        n += 1;
    }
    println!("echoed {n} messages, each from my own pool ({} committed now)", human(peer.census().committed as u64));
    Ok(())
}
