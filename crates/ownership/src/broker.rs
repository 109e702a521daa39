//! The fd-passing broker: one thread, `poll` over a `SOCK_SEQPACKET` listener
//! and its clients; peers identified by `SO_PEERCRED`; every message validated.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use numashm_region::{add_seals, seals_of, AttachOptions, Region, RegionError, SealFlags};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::descriptor::Descriptor;
use crate::error::{BrokerError, DescriptorError};
use crate::flags::{CapMode, OfferFlags, Perms};
use crate::transport::{recv, send, Received};
use crate::wire::{ErrorCode, Message, OfferInfo, OfferState, MAX_LIST};

/// Most simultaneous clients.
pub const MAX_CLIENTS: usize = 128;
/// Most offers (pending or claimed) one process may have.
pub const MAX_OFFERS_PER_PROCESS: usize = 64;
/// Most regions one client may register.
pub const MAX_REGIONS_PER_CLIENT: usize = 8;

/// A bound broker socket, not yet serving.
///
/// Clients connect with [`BrokerClient::connect`](crate::BrokerClient::connect).
/// Only peers with the broker's effective uid are served (others get
/// [`ErrorCode::Forbidden`] and are disconnected).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{Broker, BrokerClient, OfferInfo};
/// let path = std::env::temp_dir().join(format!("numashm-doc-broker-{}.sock", std::process::id()));
/// let handle = Broker::bind(&path)?.spawn()?;
/// let client = BrokerClient::connect(&path)?;
/// assert_eq!(client.list_offers(&mut [OfferInfo::default(); 4])?, 0);
/// drop(client);
/// handle.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Broker {
    listener: OwnedFd,
    path: PathBuf,
}

/// A broker serving on its own thread; [`BrokerHandle::stop`] (or drop) stops
/// it and removes the socket file.
///
/// # Examples
///
/// See [`Broker`].
#[derive(Debug)]
pub struct BrokerHandle {
    stop_tx: Option<OwnedFd>,
    thread: Option<JoinHandle<Result<(), BrokerError>>>,
}

impl BrokerHandle {
    /// Stops the broker and waits for its thread.
    ///
    /// # Examples
    ///
    /// See [`Broker`].
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Closing the pipe's write end wakes the broker's poll with POLLHUP.
        drop(self.stop_tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Broker {
    /// Creates a `SOCK_SEQPACKET` Unix socket at `path` and listens on it
    /// (mode 0600 through the umask of the bind: the socket is made private).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Syscall`] (`EADDRINUSE` when the path exists).
    ///
    /// # Examples
    ///
    /// See [`Broker`].
    #[doc(alias = "SOCK_SEQPACKET")]
    pub fn bind(path: impl AsRef<Path>) -> Result<Broker, BrokerError> {
        let path = path.as_ref().to_path_buf();
        let listener = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(|e| BrokerError::sys("socket", e))?;
        let addr = SocketAddrUnix::new(&path).map_err(|e| BrokerError::sys("bind", e))?;
        rustix::net::bind(&listener, &addr).map_err(|e| BrokerError::sys("bind", e))?;
        rustix::fs::chmod(&path, Mode::from_raw_mode(0o600)).map_err(|e| BrokerError::sys("chmod", e))?;
        rustix::net::listen(&listener, 64).map_err(|e| BrokerError::sys("listen", e))?;
        Ok(Broker { listener, path })
    }

    /// The socket's path.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("numashm-doc-bpath-{}.sock", std::process::id()));
    /// let b = numashm_ownership::Broker::bind(&path)?;
    /// assert_eq!(b.path(), path);
    /// # drop(b); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves on a new thread until the handle is stopped or dropped.
    ///
    /// # Errors
    ///
    /// `pipe` failing.
    ///
    /// # Examples
    ///
    /// See [`Broker`].
    pub fn spawn(self) -> Result<BrokerHandle, BrokerError> {
        let (rx, tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| BrokerError::sys("pipe", e))?;
        let thread = std::thread::Builder::new()
            .name("numashm-broker".into())
            .spawn(move || self.serve_until(rx.as_fd()))
            .map_err(|e| BrokerError::sys("spawn", Errno::from_io_error(&e).unwrap_or(Errno::AGAIN)))?;
        Ok(BrokerHandle { stop_tx: Some(tx), thread: Some(thread) })
    }

    /// Serves in the calling thread until `stop` becomes readable or hung up
    /// (e.g. the read end of a pipe whose write end is closed).
    ///
    /// # Errors
    ///
    /// `poll` or `accept` failing in a way that is not the client's fault.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let broker = numashm_ownership::Broker::bind("/run/user/1000/numashm.sock")?;
    /// let (stop_rx, _stop_tx) = rustix::pipe::pipe()?;
    /// broker.serve_until(std::os::fd::AsFd::as_fd(&stop_rx))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn serve_until(self, stop: BorrowedFd<'_>) -> Result<(), BrokerError> {
        let mut state = State { clients: HashMap::new(), offers: Vec::new(), regions: Vec::new(), next_id: 1 };
        let uid = rustix::process::geteuid().as_raw();
        let result = loop {
            let ids: Vec<u64> = state.clients.keys().copied().collect();
            let mut ready = Vec::new();
            let (stop_ready, listen_ready) = {
                let mut fds = Vec::with_capacity(ids.len() + 2);
                fds.push(PollFd::new(&stop, PollFlags::IN));
                fds.push(PollFd::new(&self.listener, PollFlags::IN));
                for id in &ids {
                    fds.push(PollFd::new(&state.clients[id].sock, PollFlags::IN));
                }
                match poll(&mut fds, None) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => break Err(BrokerError::sys("poll", e)),
                }
                for (i, id) in ids.iter().enumerate() {
                    if !fds[i + 2].revents().is_empty() {
                        ready.push(*id);
                    }
                }
                (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
            };
            if stop_ready {
                break Ok(());
            }
            if listen_ready {
                state.accept(&self.listener, uid);
            }
            for id in ready {
                state.service(id);
            }
        };
        let _ = std::fs::remove_file(&self.path);
        result
    }
}

#[derive(Debug)]
struct Client {
    sock: OwnedFd,
    pid: u32,
}

#[derive(Debug)]
struct Offer {
    id: u64,
    src_conn: u64,
    src_pid: u32,
    dest_pid: u32,
    addr: u64,
    len: u64,
    flags: OfferFlags,
    fd: Option<OwnedFd>,
    state: OfferState,
    /// While claiming: the claimant's connection and the permissions it asked for.
    claimant: Option<(u64, Perms)>,
}

#[derive(Debug)]
struct Registered {
    conn: u64,
    owner_pid: u32,
    region: Region,
}

struct State {
    clients: HashMap<u64, Client>,
    offers: Vec<Offer>,
    regions: Vec<Registered>,
    next_id: u64,
}

fn error(code: ErrorCode, detail: u64) -> Message {
    Message::Error { code, detail }
}

impl State {
    fn accept(&mut self, listener: &OwnedFd, uid: u32) {
        let sock = match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(s) => s,
            Err(_) => return, // the peer went away between connect and accept
        };
        let cred = match rustix::net::sockopt::socket_peercred(&sock) {
            Ok(c) => c,
            Err(_) => return,
        };
        if cred.uid.as_raw() != uid || self.clients.len() >= MAX_CLIENTS {
            let _ = send(sock.as_fd(), &error(ErrorCode::Forbidden, u64::from(cred.uid.as_raw())), None, true);
            return;
        }
        let pid = cred.pid.as_raw_nonzero().get() as u32;
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(id, Client { sock, pid });
    }

    fn reply(&mut self, conn: u64, msg: &Message, fd: Option<BorrowedFd<'_>>) -> bool {
        let ok = match self.clients.get(&conn) {
            Some(c) => send(c.sock.as_fd(), msg, fd, true).is_ok(),
            None => false,
        };
        if !ok {
            // A client that does not read its answers loses its connection,
            // rather than blocking the broker.
            self.disconnect(conn);
        }
        ok
    }

    fn disconnect(&mut self, conn: u64) {
        if self.clients.remove(&conn).is_none() {
            return;
        }
        // The offerer's offers die with its connection; a claimant waiting on one is told.
        let mut waiting = Vec::new();
        self.offers.retain(|o| {
            if o.src_conn == conn {
                if let Some((c, _)) = o.claimant {
                    if o.state == OfferState::Claiming {
                        waiting.push(c);
                    }
                }
                false
            } else {
                true
            }
        });
        for o in &mut self.offers {
            if o.state == OfferState::Claiming && o.claimant.is_some_and(|(c, _)| c == conn) {
                // The claimant left mid-claim: the offer can be claimed again.
                o.state = OfferState::Pending;
                o.claimant = None;
            }
        }
        self.regions.retain(|r| r.conn != conn);
        for c in waiting {
            self.reply(c, &error(ErrorCode::Withdrawn, 0), None);
        }
    }

    fn service(&mut self, conn: u64) {
        let received = match self.clients.get(&conn) {
            Some(c) => recv(c.sock.as_fd(), true),
            None => return,
        };
        match received {
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(_) | Ok(Received::Eof) => self.disconnect(conn),
            Ok(Received::Bad(_)) => {
                self.reply(conn, &error(ErrorCode::BadMessage, 0), None);
            }
            Ok(Received::Message(msg, fds)) => self.handle(conn, msg, fds),
        }
    }

    fn handle(&mut self, conn: u64, msg: Message, mut fds: Vec<OwnedFd>) {
        let Some(pid) = self.clients.get(&conn).map(|c| c.pid) else { return };
        let answer = match msg {
            Message::Offer { dest_pid, flags, addr, len: 0 } => {
                let _ = (dest_pid, flags);
                self.cancel(pid, addr)
            }
            Message::Offer { dest_pid, flags, addr, len } => match fds.pop() {
                Some(fd) => self.offer(conn, pid, dest_pid, flags, addr, len, fd),
                None => error(ErrorCode::BadFd, 0),
            },
            Message::Claim { src_pid, flags, addr } => match self.claim(conn, pid, src_pid, flags, addr) {
                Some(m) => m,
                None => return, // answered later (after the offerer's drops), or already answered
            },
            Message::List { max } => self.list(pid, max),
            Message::DropDone { offer_id, errno } => {
                self.drop_done(conn, offer_id, errno);
                return;
            }
            Message::RegisterRegion => match fds.pop() {
                Some(fd) => self.register(conn, pid, fd),
                None => error(ErrorCode::BadFd, 0),
            },
            Message::AttachCapability { owner_pid, token } => {
                self.attach_capability(conn, pid, owner_pid, token);
                return;
            }
            _ => error(ErrorCode::BadMessage, 0), // answers are not requests
        };
        self.reply(conn, &answer, None);
    }

    fn cancel(&mut self, pid: u32, addr: u64) -> Message {
        let Some(i) = self.offers.iter().position(|o| o.src_pid == pid && o.addr == addr) else {
            return error(ErrorCode::NoSuchOffer, 0);
        };
        if self.offers[i].state != OfferState::Pending {
            return error(ErrorCode::AlreadyClaimed, 0);
        }
        let o = self.offers.remove(i);
        Message::Done { value: o.id }
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(&mut self, conn: u64, pid: u32, dest_pid: u32, flags: OfferFlags, addr: u64, len: u64, fd: OwnedFd) -> Message {
        if let Some(i) = self.offers.iter().position(|o| o.src_pid == pid && o.addr == addr) {
            if self.offers[i].state != OfferState::Claimed {
                return error(ErrorCode::AlreadyOffered, 0);
            }
            // A claimed record only remembers that cancelling is too late; a new offer replaces it.
            self.offers.remove(i);
        }
        if self.offers.iter().filter(|o| o.src_pid == pid).count() >= MAX_OFFERS_PER_PROCESS {
            return error(ErrorCode::Limit, MAX_OFFERS_PER_PROCESS as u64);
        }
        if let Err(e) = check_offer_fd(&fd, len, flags.grants()) {
            return error(ErrorCode::BadFd, e.raw_os_error() as u64);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.offers.push(Offer {
            id,
            src_conn: conn,
            src_pid: pid,
            dest_pid,
            addr,
            len,
            flags,
            fd: Some(fd),
            state: OfferState::Pending,
            claimant: None,
        });
        Message::Done { value: id }
    }

    fn claim(&mut self, conn: u64, pid: u32, src_pid: u32, flags: OfferFlags, addr: u64) -> Option<Message> {
        let Some(i) = self.offers.iter().position(|o| o.src_pid == src_pid && o.addr == addr) else {
            return Some(error(ErrorCode::NoSuchOffer, 0));
        };
        let o = &mut self.offers[i];
        if o.dest_pid != pid {
            return Some(error(ErrorCode::WrongClaimant, u64::from(o.dest_pid)));
        }
        if o.state != OfferState::Pending {
            return Some(error(ErrorCode::AlreadyClaimed, 0));
        }
        let asked = flags.grants();
        if !o.flags.grants().contains(asked) {
            return Some(error(ErrorCode::NotGranted, u64::from(o.flags.grants().bits())));
        }
        o.state = OfferState::Claiming;
        o.claimant = Some((conn, asked));
        let drop = o.flags.drops();
        if drop.is_empty() {
            let id = o.id;
            self.complete(id);
            return None;
        }
        let req = Message::DropRequest { offer_id: o.id, addr: o.addr, len: o.len, drop };
        let src_conn = o.src_conn;
        if !self.reply(src_conn, &req, None) {
            // `reply` disconnected the offerer, which withdrew the offer and told the claimant.
            return None;
        }
        None
    }

    fn drop_done(&mut self, conn: u64, offer_id: u64, errno: u32) {
        let Some(o) = self.offers.iter_mut().find(|o| o.id == offer_id && o.src_conn == conn) else {
            return; // stale or forged: nothing to do
        };
        if o.state != OfferState::Claiming {
            return;
        }
        if errno == 0 {
            self.complete(offer_id);
        } else {
            o.state = OfferState::Pending;
            if let Some((c, _)) = o.claimant.take() {
                self.reply(c, &error(ErrorCode::DropFailed, u64::from(errno)), None);
            }
        }
    }

    /// Hands the fd to the claimant and marks the offer claimed.
    fn complete(&mut self, offer_id: u64) {
        let Some(i) = self.offers.iter().position(|o| o.id == offer_id) else { return };
        let Some((claimant, perms)) = self.offers[i].claimant else { return };
        let Some(fd) = self.offers[i].fd.take() else { return };
        let msg = Message::Claimed { offer_id, len: self.offers[i].len, perms };
        let o = &mut self.offers[i];
        o.state = OfferState::Claimed;
        o.claimant = None;
        if self.clients.contains_key(&claimant) {
            self.reply(claimant, &msg, Some(fd.as_fd()));
        }
        // The broker's copy of the fd closes here: it keeps no access.
    }

    fn list(&self, pid: u32, max: u32) -> Message {
        let mine: Vec<OfferInfo> = self
            .offers
            .iter()
            .filter(|o| o.src_pid == pid || o.dest_pid == pid)
            .map(|o| OfferInfo {
                src_pid: o.src_pid,
                dest_pid: o.dest_pid,
                addr: o.addr,
                len: o.len,
                flags: o.flags,
                state: Some(o.state),
            })
            .collect();
        if mine.len() > max as usize || mine.len() > MAX_LIST {
            return error(ErrorCode::BufferTooSmall, mine.len() as u64);
        }
        Message::Offers { total: mine.len() as u32, entries: mine }
    }

    fn register(&mut self, conn: u64, pid: u32, fd: OwnedFd) -> Message {
        if self.regions.iter().filter(|r| r.conn == conn).count() >= MAX_REGIONS_PER_CLIENT {
            return error(ErrorCode::Limit, MAX_REGIONS_PER_CLIENT as u64);
        }
        // Memory the client could shrink under us would kill the broker with
        // SIGBUS at its next read: only memory sealed against shrinking is
        // kept (we add the seal when the client's memfd still allows sealing).
        if let Err(e) = seal_against_shrinking(&fd) {
            return error(ErrorCode::BadFd, e.raw_os_error() as u64);
        }
        // Region::attach_fd validates the file type and the region header as
        // hostile; Descriptor::open then validates the descriptor.
        let region = match Region::attach_fd_with(fd, AttachOptions { read_only: false }) {
            Ok(r) => r,
            Err(e) => return error(ErrorCode::BadFd, e.errno().map_or(0, |e| e.raw_os_error() as u64)),
        };
        match Descriptor::open(&region).and_then(|d| d.owner()) {
            Ok(owner) if owner.pid == pid => {}
            Ok(_) => return error(ErrorCode::Forbidden, 0),
            Err(_) => return error(ErrorCode::BadFd, 0),
        }
        self.regions.push(Registered { conn, owner_pid: pid, region });
        Message::Done { value: self.regions.len() as u64 }
    }

    fn attach_capability(&mut self, conn: u64, pid: u32, owner_pid: u32, token: u64) {
        let mut answer = error(ErrorCode::NoSuchCapability, 0);
        let mut fd = None;
        for r in self.regions.iter().filter(|r| r.owner_pid == owner_pid) {
            let desc = match Descriptor::open(&r.region) {
                Ok(d) => d,
                Err(_) => continue,
            };
            match desc.redeem_capability(token, pid) {
                Ok(mode) => {
                    match reopen(r.region.as_fd(), mode) {
                        Ok(f) => {
                            fd = Some(f);
                            answer = Message::Attached { mode };
                        }
                        Err(e) => answer = error(ErrorCode::Internal, e.raw_os_error() as u64),
                    }
                    break;
                }
                Err(DescriptorError::NoSuchCapability) => continue,
                Err(DescriptorError::WrongProcess { bound, .. }) => {
                    answer = error(ErrorCode::CapabilityDenied, u64::from(bound));
                    break;
                }
                Err(DescriptorError::TargetGone { .. }) => {
                    answer = error(ErrorCode::CapabilityDenied, 0);
                    break;
                }
                Err(_) => {
                    answer = error(ErrorCode::Internal, 0);
                    break;
                }
            }
        }
        let fd_ref = fd.as_ref().map(|f| f.as_fd());
        self.reply(conn, &answer, fd_ref);
    }
}

/// Makes sure `fd` can never shrink: a memfd with `F_SEAL_SHRINK`, added here
/// if missing. Errors: `EINVAL` (not shmem: a regular file can be truncated by
/// its owner at any time), `EPERM` (sealing is closed without that seal, or the
/// fd is not writable).
fn seal_against_shrinking(fd: &OwnedFd) -> Result<(), Errno> {
    let have = seals_of(fd.as_fd()).map_err(errno)?;
    if !have.contains(SealFlags::SHRINK) {
        add_seals(fd.as_fd(), SealFlags::SHRINK).map_err(errno)?;
    }
    Ok(())
}

/// The errno of a failed seal call (they only fail with one).
fn errno(e: RegionError) -> Errno {
    e.errno().unwrap_or(Errno::INVAL)
}

/// A new open file description of the region's object: read-only for
/// `ReadOnly` capabilities, so `mmap(PROT_WRITE, MAP_SHARED)` on it fails.
fn reopen(fd: BorrowedFd<'_>, mode: CapMode) -> Result<OwnedFd, Errno> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let access = if mode == CapMode::ReadOnly { OFlags::RDONLY } else { OFlags::RDWR };
    rustix::fs::open(format!("/proc/self/fd/{raw}"), access | OFlags::CLOEXEC, Mode::empty())
}

/// Accepts only a sealable memfd (shmem that supports `F_ADD_SEALS`) of exactly
/// `len` bytes, and seals it so the receiver can rely on it: no shrinking (no
/// SIGBUS), no growing, and for grants without W, no new writable mapping.
fn check_offer_fd(fd: &OwnedFd, len: u64, grants: Perms) -> Result<(), Errno> {
    let st = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Errno::BADF);
    }
    if st.st_size as u64 != len {
        return Err(Errno::INVAL);
    }
    let mut want = SealFlags::SHRINK | SealFlags::GROW;
    if !grants.contains(Perms::W) {
        want |= SealFlags::FUTURE_WRITE;
    }
    let have = seals_of(fd.as_fd()).map_err(errno)?; // EINVAL: not shmem
    if !have.contains(want) {
        add_seals(fd.as_fd(), want - have).map_err(errno)?; // EPERM: F_SEAL_SEAL without what we need
    }
    if !seals_of(fd.as_fd()).map_err(errno)?.contains(want) {
        return Err(Errno::PERM);
    }
    Ok(())
}
