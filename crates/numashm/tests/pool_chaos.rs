//! Segment layout v4 (pools) under a hostile peer with real processes: two
//! honest processes ping-pong checksummed messages through a rendezvous file
//! while a chaos process, killed with SIGKILL at random moments and started
//! again, writes random words into everything it can write (the whole
//! rendezvous past its region header, and its own pool) and sends messages of
//! random bytes on both honest channels.
//!
//! Knobs: `NUMASHM_MESSAGES` (honest round trips, default 100 000),
//! `NUMASHM_CHAOS_SECS` (run for that many seconds instead of a count),
//! `NUMASHM_CHAOS_SEED` (the kill schedule's seed; printed on every run),
//! `NUMASHM_CHAOS_ONLY` (`rendezvous` or `pool`: the chaos writes only there).

mod common;

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Output};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use numashm::pool::{
    ChannelError, Peer, PeerConfig, Receiver, Sender, RENDEZVOUS_MAGIC, RENDEZVOUS_VERSION,
};
use numashm::Region;

/// Entries of the rendezvous: host, echo, the chaos child and room for dead chaos entries.
const MAX_PEERS: u32 = 8;
/// The chaos children killed at least this often in any run (the run goes on until then).
const MIN_KILLS: u64 = 5;
/// The region header (growth words, the region layer's own): the one part the chaos skips.
const REGION_HEADER: usize = 4096;
/// The honest messages' magic (bytes 0..4).
const MAGIC: [u8; 4] = *b"HON!";
/// The sequence number of the stop message (the echo replies to it and ends).
const STOP: u32 = u32::MAX;
/// No honest progress for this long fails the test.
const WATCHDOG: Duration = Duration::from_secs(60);

fn chaos_secs() -> Option<u64> {
    std::env::var("NUMASHM_CHAOS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over `a` then `b`.
fn sum2(a: &[u8], b: &[u8]) -> u64 {
    a.iter().chain(b).fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Honest message `seq`'s length: mostly small, some a few KiB, one in 16 of 64 KiB (16 B .. 64 KiB).
fn len_of(seq: u32) -> usize {
    if seq == STOP {
        return 16;
    }
    let x = splitmix(u64::from(seq));
    match x % 16 {
        0 => 64 << 10,
        1..=4 => 1024 + (x >> 8) as usize % 7000,
        _ => 16 + (x >> 8) as usize % 500,
    }
}

/// Honest message `seq`: `MAGIC`, `seq` (u32), the checksum of bytes 0..8 and
/// 16.., then bytes derived from `seq` (every byte is known to the reader).
fn fill(seq: u32, buf: &mut [u8]) {
    for (k, b) in buf[16..].iter_mut().enumerate() {
        *b = (seq as usize * 31 + k * 7) as u8;
    }
    buf[..4].copy_from_slice(&MAGIC);
    buf[4..8].copy_from_slice(&seq.to_le_bytes());
    let sum = sum2(&buf[..8], &buf[16..]);
    buf[8..16].copy_from_slice(&sum.to_le_bytes());
}

/// The sequence number of an honest message (magic and checksum right); `None`: foreign.
fn honest(msg: &[u8]) -> Option<u32> {
    if msg.len() < 16 || msg[..4] != MAGIC {
        return None;
    }
    let sum = u64::from_le_bytes(msg[8..16].try_into().ok()?);
    (sum == sum2(&msg[..8], &msg[16..])).then(|| u32::from_le_bytes(msg[4..8].try_into().unwrap()))
}

/// Why honest message `want` is not exactly `msg` (length and every byte), if it is not.
fn mismatch(want: u32, msg: &[u8]) -> Option<String> {
    let mut expect = vec![0u8; len_of(want)];
    fill(want, &mut expect);
    if msg.len() != expect.len() {
        return Some(format!(
            "message {want}: length {} instead of {}",
            msg.len(),
            expect.len()
        ));
    }
    let at = msg.iter().zip(&expect).position(|(a, b)| a != b)?;
    Some(format!(
        "message {want}: byte {at} is {:#x}, not {:#x}",
        msg[at], expect[at]
    ))
}

/// Sends until it went; `Err` only for errors other than a full ring or a timeout slice.
fn send_all(tx: &Sender<'_>, seq: u32) -> Result<(), ChannelError> {
    let mut m = tx.alloc(len_of(seq))?;
    fill(seq, &mut m);
    loop {
        match tx.send_timeout(m, Duration::from_secs(1)) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.error, ChannelError::TimedOut | ChannelError::Full) => {
                m = e.message
            }
            Err(e) => return Err(e.error),
        }
    }
}

/// The parent that spawned us is gone (the test failed or its watchdog fired): stop.
fn orphaned(parent: u32) -> bool {
    std::os::unix::process::parent_id() != parent
}

/// Child entry point; a no-op as a normal test.
#[test]
fn chaos_child() {
    let Some(role) = role() else { return };
    let path = std::env::var("NUMASHM_PATH").unwrap();
    match role.as_str() {
        "echo" => echo(&path),
        "chaos" => chaos(&path),
        other => panic!("unknown role {other}"),
    }
}

/// Receives channel 0, checks every honest message exactly and in order,
/// sends it back on channel 1; counts foreign messages; ends after the stop message.
fn echo(path: &str) {
    let parent = std::os::unix::process::parent_id();
    let peer = Peer::join(path, PeerConfig::new("chaos-echo")).expect("join");
    let rx = peer.receiver(0).expect("receiver");
    let tx = peer.sender(1).expect("sender");
    let (mut next, mut foreign) = (0u32, 0u64);
    loop {
        let m = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(ChannelError::TimedOut) if orphaned(parent) => std::process::exit(7),
            Err(ChannelError::TimedOut) => continue,
            Err(e) => {
                eprintln!("echo: receive: {e}");
                std::process::exit(4);
            }
        };
        let Some(seq) = honest(&m) else {
            foreign += 1;
            continue;
        };
        if seq != STOP {
            if seq != next {
                eprintln!("echo: honest message {seq} where {next} was due");
                std::process::exit(3);
            }
            if let Some(why) = mismatch(seq, &m) {
                eprintln!("echo: {why}");
                std::process::exit(3);
            }
        }
        drop(m);
        if let Err(e) = send_all(&tx, seq) {
            eprintln!("echo: send {seq}: {e}");
            std::process::exit(5);
        }
        if seq == STOP {
            break;
        }
        next += 1;
    }
    println!("chaos-echo honest {next} foreign {foreign}");
}

/// Writes random words at random offsets into the rendezvous (all of it but
/// the region header) and into its own pool, in bursts and pauses; sends
/// messages of random bytes on channels 0 and 1; tries to claim them as
/// consumer now and then. Runs until killed.
fn chaos(path: &str) {
    report_faults();
    let parent = std::os::unix::process::parent_id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut x = splitmix(u64::from(std::process::id()) << 32 | u64::from(nanos)) | 1;
    // Our own writable mapping of the whole rendezvous, as any process of this user can make.
    let rdv = Region::attach_file(path).expect("map the rendezvous");
    let peer = match Peer::join(path, PeerConfig::new("chaos").ring_capacity(64)) {
        Ok(p) => Some(p),
        Err(e) => {
            println!("chaos-join-refused {e}");
            None
        }
    };
    let senders: Vec<Sender<'_>> = peer
        .iter()
        .flat_map(|p| [p.sender(0).ok(), p.sender(1).ok()])
        .flatten()
        .collect();
    let mut claimed: Vec<Receiver<'_>> = Vec::new();
    let (mut writes, mut printed, mut sent) = (0u64, 0u64, 0u64);
    let out = std::io::stdout();
    // A diagnostic: "rendezvous" or "pool" confines the writes to one of them.
    let only = std::env::var("NUMASHM_CHAOS_ONLY").ok();
    loop {
        if orphaned(parent) {
            std::process::exit(0);
        }
        for _ in 0..1 + xorshift(&mut x) % 256 {
            let r = xorshift(&mut x);
            let target = match (&peer, only.as_deref()) {
                (Some(p), Some("pool")) => p.pool_region(),
                (Some(p), None) if r % 2 == 0 => p.pool_region(),
                _ => &rdv,
            };
            let len = target.len();
            if len <= REGION_HEADER + 8 {
                continue;
            }
            let off = (REGION_HEADER + (r >> 1) as usize % (len - REGION_HEADER - 7)) & !7;
            let word = xorshift(&mut x).to_le_bytes();
            if target.write_at(off, &word).is_err() {
                // Region refused (not expected: both mappings are ours and writable, `off` in range).
                // SAFETY: `off + 8 <= len`: inside this process's own writable mapping
                // of its own pool (or the rendezvous); the chaos child may wreck its own memory.
                unsafe {
                    std::ptr::copy_nonoverlapping(word.as_ptr(), target.as_ptr().add(off), 8)
                };
            }
            writes += 1;
        }
        for tx in &senders {
            if xorshift(&mut x) % 2 == 0 {
                let len = 16 + xorshift(&mut x) as usize % (64 << 10);
                if let Ok(mut m) = tx.alloc(len) {
                    let mut y = xorshift(&mut x) | 1;
                    for chunk in m.chunks_mut(8) {
                        let w = xorshift(&mut y).to_le_bytes();
                        chunk.copy_from_slice(&w[..chunk.len()]);
                    }
                    if tx.send(m).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
        if let Some(p) = &peer {
            if xorshift(&mut x) % 64 == 0 {
                // A hostile claim: succeeds only where our own writes cleared or garbled the word.
                if let Ok(rx) = p.receiver((xorshift(&mut x) % 2) as usize) {
                    claimed.push(rx);
                }
            }
            for rx in &claimed {
                let _ = rx.try_recv();
            }
        }
        if writes - printed >= 1024 {
            printed = writes;
            let _ = writeln!(out.lock(), "chaos-writes {writes} sent {sent}");
        }
        match xorshift(&mut x) % 64 {
            0 => std::thread::sleep(Duration::from_millis(20)),
            1..=15 => std::thread::sleep(Duration::from_micros(xorshift(&mut x) % 3000)),
            _ => {}
        }
    }
}

/// A chaos child that faults by itself (SIGBUS, SIGSEGV) says where before it
/// dies: the faulting address, the instruction pointer and its memory map, on
/// stderr (the manager prints the stderr of every child that ended unkilled).
fn report_faults() {
    fn hex(out: &mut [u8], at: &mut usize, mut v: usize) {
        let mut digits = [0u8; 16];
        for d in digits.iter_mut().rev() {
            *d = b"0123456789abcdef"[v & 15];
            v >>= 4;
        }
        for &d in &digits {
            out[*at] = d;
            *at += 1;
        }
    }
    extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: an SA_SIGINFO handler gets valid siginfo and ucontext pointers from the kernel.
        let addr = unsafe { (*info).si_addr() } as usize;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; on x86_64 the context is a ucontext_t with RIP in its gregs.
        let ip = unsafe {
            (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RIP as usize]
        } as usize;
        #[cfg(not(target_arch = "x86_64"))]
        let ip = ctx as usize & 0;
        let mut line = [0u8; 64];
        let mut at = 0;
        for &b in b"fault sig " {
            line[at] = b;
            at += 1;
        }
        line[at] = b'0' + (sig as u8 % 10);
        at += 1;
        for &b in b" addr " {
            line[at] = b;
            at += 1;
        }
        hex(&mut line, &mut at, addr);
        for &b in b" ip " {
            line[at] = b;
            at += 1;
        }
        hex(&mut line, &mut at, ip);
        line[at] = b'\n';
        at += 1;
        let mut maps = [0u8; 4096];
        // rustix's write, open, read and close are raw system calls (no allocation, no
        // errno): async-signal-safe.
        // SAFETY: fd 2 is stderr, open for the whole life of the process.
        let stderr = unsafe { std::os::fd::BorrowedFd::borrow_raw(2) };
        let _ = rustix::io::write(stderr, &line[..at]);
        if let Ok(fd) = rustix::fs::open(c"/proc/self/maps", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()) {
            while let Ok(n @ 1..) = rustix::io::read(&fd, &mut maps) {
                let _ = rustix::io::write(stderr, &maps[..n]);
            }
        }
        // libc's _exit, sigaction and siginfo: rustix 1.1 has no public wrapper for them.
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(77) }
    }
    for sig in [libc::SIGBUS, libc::SIGSEGV] {
        // libc's sigaction: rustix 1.1 has no public one.
        // SAFETY: a zeroed sigaction is valid; the handler above is async-signal-safe and never returns.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_fault as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// What the chaos children did, as their output says.
#[derive(Debug, Default, Clone)]
struct ChaosStats {
    started: u64,
    kills: u64,
    /// Children that ended before their kill (their own pool wrecked by their own writes).
    self_ends: u64,
    last_self_end: String,
    joins_refused: u64,
    writes: u64,
    sent: u64,
}

impl ChaosStats {
    fn take_output(&mut self, out: &Output) {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut last = (0, 0);
        // libtest prints "test chaos_child ... " without a newline before the child's first line.
        for line in text
            .lines()
            .filter_map(|l| l.find("chaos-").map(|i| &l[i..]))
        {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["chaos-writes", n, "sent", s] => {
                    last = (n.parse().unwrap_or(0), s.parse().unwrap_or(0))
                }
                ["chaos-join-refused", ..] => self.joins_refused += 1,
                _ => {}
            }
        }
        self.writes += last.0;
        self.sent += last.1;
    }
}

/// Starts chaos children one after another, each killed with SIGKILL after a
/// random life (one in five before it could even join), until `stop` says so.
/// Before each start it puts back the rendezvous magic and version words (the
/// previous child's writes garble them sooner or later; a rendezvous without
/// them is refused to every joiner, and the next child could not join at all).
/// The honest peers never read them again after their own join.
fn chaos_manager(path: String, seed: u64, stats: Arc<Mutex<ChaosStats>>, stop: mpsc::Receiver<()>) {
    let rdv = Region::attach_file(&path).expect("map the rendezvous");
    let mut x = seed | 1;
    loop {
        rdv.write_at(REGION_HEADER, &RENDEZVOUS_MAGIC.to_le_bytes())
            .unwrap();
        rdv.write_at(
            REGION_HEADER + 8,
            &(RENDEZVOUS_VERSION | u64::from(MAX_PEERS) << 32).to_le_bytes(),
        )
        .unwrap();
        let mut child: Child = spawn("chaos_child", "chaos", &[("NUMASHM_PATH", path.clone())]);
        stats.lock().unwrap().started += 1;
        let life = if xorshift(&mut x) % 5 == 0 {
            Duration::from_millis(xorshift(&mut x) % 30)
        } else {
            Duration::from_millis(50 + xorshift(&mut x) % 550)
        };
        let born = Instant::now();
        let mut stopping = false;
        let mut ended = None;
        while born.elapsed() < life {
            if let Ok(Some(status)) = child.try_wait() {
                ended = Some(status);
                break;
            }
            match stop
                .recv_timeout(Duration::from_millis(5).min(life.saturating_sub(born.elapsed())))
            {
                Err(RecvTimeoutError::Timeout) => {}
                _ => {
                    stopping = true;
                    break;
                }
            }
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let mut s = stats.lock().unwrap();
        if ended.is_some() || out.status.signal() != Some(9) {
            s.self_ends += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            s.last_self_end = format!(
                "{:?}:
{err}",
                out.status
            );
        } else {
            s.kills += 1;
        }
        s.take_output(&out);
        drop(s);
        if stopping {
            return;
        }
    }
}

/// Receives on `rx` until honest message `want` arrives; every foreign message
/// on the way is counted. Panics on a wrong honest message or a dead echo.
fn recv_honest(rx: &Receiver<'_>, want: u32, echo: &mut Child, foreign: &mut u64) {
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => match honest(&m) {
                Some(seq) => {
                    assert_eq!(seq, want, "honest message {seq} arrived where {want} was due (lost, duplicated or reordered)");
                    if let Some(why) = mismatch(want, &m) {
                        panic!("a wrong byte in an honest message: {why}");
                    }
                    return;
                }
                None => *foreign += 1,
            },
            Err(ChannelError::TimedOut) => {
                if let Ok(Some(status)) = echo.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = echo.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    panic!("the echo process ended ({status:?}) waiting for {want}: {err}");
                }
            }
            Err(e) => panic!("the host's receive failed waiting for {want}: {e}"),
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_chaos_peer_killed_at_random_never_crashes_stalls_or_corrupts_the_honest_peers() {
    let path = path("pool-chaos");
    let seed = std::env::var("NUMASHM_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let (n, secs) = (messages(), chaos_secs());
    println!(
        "pool chaos: seed {seed} (NUMASHM_CHAOS_SEED), {}",
        secs.map_or(format!("{n} messages"), |s| format!("{s} s"))
    );
    let host = Peer::create(&path, MAX_PEERS, PeerConfig::new("chaos-host")).unwrap();
    let tx = host.sender(0).unwrap();
    let rx = host.receiver(1).unwrap();
    let mut echo = spawn("chaos_child", "echo", &[("NUMASHM_PATH", path.clone())]);
    let beat = watchdog("the honest ping-pong", WATCHDOG);
    let stats = Arc::new(Mutex::new(ChaosStats::default()));
    let (stop, stop_rx) = mpsc::channel();
    let mut stop_rx = Some(stop_rx);
    let mut manager = None;
    let start = Instant::now();
    let mut foreign = 0u64;
    let mut seq = 0u32;
    loop {
        let enough = match secs {
            Some(s) => start.elapsed() >= Duration::from_secs(s),
            None => u64::from(seq) >= n,
        };
        if enough && stats.lock().unwrap().kills >= MIN_KILLS {
            break;
        }
        send_all(&tx, seq).unwrap_or_else(|e| panic!("the host's send of {seq} failed: {e}"));
        recv_honest(&rx, seq, &mut echo, &mut foreign);
        beat.tick();
        if let Some(stop_rx) = stop_rx.take() {
            // The echo is bound both ways (one round trip): let the chaos in.
            let (path, stats) = (path.clone(), stats.clone());
            manager = Some(std::thread::spawn(move || {
                chaos_manager(path, seed, stats, stop_rx)
            }));
        }
        seq += 1;
    }
    stop.send(()).unwrap();
    manager.unwrap().join().expect("the chaos manager");
    let chaos = stats.lock().unwrap().clone();
    // The echo answers the stop message and ends.
    send_all(&tx, STOP).unwrap();
    recv_honest(&rx, STOP, &mut echo, &mut foreign);
    beat.done();
    let out = wait_ok(echo, Duration::from_secs(30));
    let echo_line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.find("chaos-echo").map(|i| l[i..].to_owned()));
    let echo_counts: Vec<u64> = echo_line
        .iter()
        .flat_map(|l| l.split_whitespace().filter_map(|w| w.parse().ok()))
        .collect();
    assert_eq!(
        echo_counts.first().copied(),
        Some(u64::from(seq)),
        "the echo saw every honest message: {echo_line:?}"
    );
    let echo_foreign = echo_counts.get(1).copied().unwrap_or(0);
    // Every reader of the host's slots is gone: what stays lent is what waits in its ring.
    host.collect_returns();
    let queued = tx.queued() as u64;
    let still = lent(&host) - queued;
    let (ok, bad) = host.returns();
    println!(
        "pool chaos: {seq} honest round trips in {:.1} s; chaos: {} children ({} killed, {} ended by themselves, {} joins refused), \
         {} random writes, {} random messages sent; foreign messages seen: host {foreign}, echo {echo_foreign}; \
         host returns {ok} accepted, {bad} bad; {still} slots lent beyond the {queued} queued",
        start.elapsed().as_secs_f64(),
        chaos.started,
        chaos.kills,
        chaos.self_ends,
        chaos.joins_refused,
        chaos.writes,
        chaos.sent,
    );
    if chaos.self_ends > 0 {
        println!(
            "pool chaos: last chaos child that ended by itself: {}",
            chaos.last_self_end
        );
    }
    assert_eq!(
        still,
        0,
        "slots still lent to dead readers: {:?}",
        host.census()
    );
    host.audit()
        .expect("the host's allocator tables agree with its counts");
    assert_eq!(
        bad, 0,
        "the only reader of the host's slots is the honest echo: no bad return"
    );
    assert!(
        chaos.kills >= MIN_KILLS,
        "the chaos child was killed {} times",
        chaos.kills
    );
    assert!(chaos.writes > 0, "the chaos children wrote");
    drop((tx, rx));
    drop(host);
    let _ = std::fs::remove_file(&path);
}
