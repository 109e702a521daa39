//! Gated rendezvous: peers exchange messages only with peers a gatekeeper
//! admitted.
//!
//! Every peer may write the rendezvous, so nothing there can keep a process
//! out: a rogue can always write itself an entry. What a gate decides is who
//! an honest peer *talks to*. The gatekeeper grants a process a join ticket:
//! a capability in the gatekeeper's own pool (its ownership descriptor, which
//! only it can write: the pool is sealed), bound to that process's pid and
//! start time. The holder puts the ticket's token in its own pool header (only
//! it writes that). Before an honest peer links a producer's ring or binds a
//! consumer, it checks that peer's pool: the kernel says which process writes
//! it (maps it writable: `/proc/PID/maps`; holding an fd is not enough, every
//! reader holds one), and the gatekeeper's
//! descriptor must hold an active capability with that token bound to that
//! process (same start time). A token copied from another peer's header is
//! bound to the other process and admits nobody else.
//!
//! Admission is per process (peers of one process share its pid), checked when
//! a link or binding is made (a slow path), not per message.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use numashm_ownership::{CapMode, Descriptor};
use numashm_region::process::is_same_live_process;
use numashm_region::{AttachOptions, Region};

use crate::pool::error::PoolError;
use crate::pool::own::P_TICKET;
use crate::pool::peer::Peer;
use crate::pool::remote::RemotePool;

/// Most refused processes a peer remembers (`Peer::refused_peers`).
const REFUSED_KEPT: usize = 64;

/// Who a peer exchanges messages with (`PeerConfig::gatekeeper`, `PeerConfig::ticket`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Everybody in the rendezvous (the default).
    #[default]
    Open,
    /// We are the gatekeeper: peers we granted a ticket (and our own process).
    Keeper,
    /// Peers admitted by this ticket's gatekeeper (and the gatekeeper).
    Ticket(JoinTicket),
}

/// A gatekeeper's permission for one process to exchange messages in a gated
/// rendezvous ([`Peer::grant_join`]): the gatekeeper (pid, start time, the fd
/// number of its pool in its process) and a random token the gatekeeper's
/// pool holds as a capability bound to the admitted process. Passed to the
/// admitted process out of band, as text (`Display` / `FromStr`).
///
/// # Examples
///
/// ```
/// use numashm::pool::{JoinTicket, Peer, PeerConfig};
/// let gate = Peer::create_anonymous("doc-ticket", 4, PeerConfig::new("doc-gate").gatekeeper())?;
/// let ticket = gate.grant_join(std::process::id())?;
/// let text = ticket.to_string();
/// assert_eq!(text.parse::<JoinTicket>()?, ticket);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTicket {
    /// The gatekeeper's pid.
    pub gate_pid: u32,
    /// The gatekeeper's start time (clock ticks since boot).
    pub gate_started: u64,
    /// Its pool's fd number in the gatekeeper process.
    pub gate_pool_fd: u32,
    /// The capability's token (never 0).
    pub token: u64,
}

const TICKET_PREFIX: &str = "nshm-ticket-1";

impl fmt::Display for JoinTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TICKET_PREFIX}:{}:{}:{}:{:016x}", self.gate_pid, self.gate_started, self.gate_pool_fd, self.token)
    }
}

impl FromStr for JoinTicket {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, PoolError> {
        let bad = |detail| PoolError::Config { field: "ticket", detail };
        let mut parts = s.trim().split(':');
        if parts.next() != Some(TICKET_PREFIX) {
            return Err(bad("not a join ticket (nshm-ticket-1:PID:START:FD:TOKEN)"));
        }
        let mut next = || parts.next().ok_or(bad("too few fields"));
        let gate_pid = next()?.parse().map_err(|_| bad("gatekeeper pid"))?;
        let gate_started = next()?.parse().map_err(|_| bad("gatekeeper start time"))?;
        let gate_pool_fd = next()?.parse().map_err(|_| bad("gatekeeper pool fd"))?;
        let token = u64::from_str_radix(next()?, 16).map_err(|_| bad("token"))?;
        if parts.next().is_some() {
            return Err(bad("too many fields"));
        }
        if gate_pid == 0 || token == 0 {
            return Err(bad("zero pid or token"));
        }
        Ok(JoinTicket { gate_pid, gate_started, gate_pool_fd, token })
    }
}

/// What a peer keeps for its gate: the gatekeeper's pool (mapped read-only
/// once, kept: capabilities stay checkable if the gatekeeper goes) and the
/// processes it refused.
#[derive(Debug, Default)]
pub(crate) struct GateState {
    gate_pool: RefCell<Option<Arc<Region>>>,
    refused: RefCell<Vec<u32>>,
}

impl Peer {
    /// Grants process `pid` a ticket to exchange messages in this gated
    /// rendezvous: a capability in our pool's descriptor bound to `pid` and its
    /// start time. Only a gatekeeper ([`PeerConfig::gatekeeper`](crate::pool::PeerConfig::gatekeeper)) grants.
    ///
    /// # Errors
    ///
    /// [`PoolError::Config`] when we are not a gatekeeper; [`PoolError::Ownership`]
    /// when `pid` does not exist or the capability table is full.
    ///
    /// # Examples
    ///
    /// See [`JoinTicket`].
    pub fn grant_join(&self, pid: u32) -> Result<JoinTicket, PoolError> {
        if self.cfg.gate != Gate::Keeper {
            return Err(PoolError::Config { field: "gate", detail: "only a gatekeeper peer grants join tickets" });
        }
        let token = self.descriptor()?.create_capability(pid, CapMode::ReadWrite)?;
        Ok(JoinTicket { gate_pid: self.pid, gate_started: self.started, gate_pool_fd: self.pool_fd_number(), token })
    }

    /// Withdraws a ticket: the process it names is refused from its next link
    /// or binding on (those made before stay).
    ///
    /// # Errors
    ///
    /// [`PoolError::Ownership`] (no such active ticket; we are not the gatekeeper).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::pool::{Peer, PeerConfig};
    /// let gate = Peer::create_anonymous("doc-revoke", 4, PeerConfig::new("doc-gate").gatekeeper())?;
    /// let t = gate.grant_join(std::process::id())?;
    /// gate.revoke_join(&t)?;
    /// assert!(gate.revoke_join(&t).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn revoke_join(&self, ticket: &JoinTicket) -> Result<(), PoolError> {
        Ok(self.descriptor()?.revoke(ticket.token)?)
    }

    /// Processes (pids) we refused to link or bind because no ticket of our
    /// gate admits them, oldest first (the last 64).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-refused", 2, numashm::pool::PeerConfig::new("doc-r"))?;
    /// assert!(p.refused_peers().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refused_peers(&self) -> Vec<u32> {
        self.gate_state.refused.borrow().clone()
    }

    /// Whether we may exchange messages with the owner of `remote` (a slow
    /// path: before a link or a binding is made). Refusals are remembered.
    pub(crate) fn admits(&self, remote: &RemotePool) -> bool {
        let verdict = match &self.cfg.gate {
            Gate::Open => return true,
            Gate::Keeper => self.descriptor().and_then(|d| admitted_by(&self.pool.region, &d, remote)),
            Gate::Ticket(t) => self.gate_pool(t).and_then(|r| admitted_by(&r, &Descriptor::open(&r)?, remote)),
        };
        if verdict.unwrap_or(false) {
            return true;
        }
        let mut refused = self.gate_state.refused.borrow_mut();
        if !refused.contains(&remote.pid) {
            if refused.len() == REFUSED_KEPT {
                refused.remove(0);
            }
            refused.push(remote.pid);
        }
        false
    }

    /// The gatekeeper's pool, opened once through `/proc/PID/fd` (a sealed
    /// memfd held by that process, whose descriptor names it as owner, and the
    /// process the ticket names: same start time).
    fn gate_pool(&self, t: &JoinTicket) -> Result<Arc<Region>, PoolError> {
        if let Some(r) = self.gate_state.gate_pool.borrow().as_ref() {
            return Ok(r.clone());
        }
        let fd = i32::try_from(t.gate_pool_fd).map_err(|_| PoolError::Config { field: "ticket", detail: "gatekeeper pool fd" })?;
        let region = Arc::new(Region::attach_pool_of(t.gate_pid, fd, AttachOptions { read_only: true })?);
        let owner = Descriptor::open(&region)?.owner()?;
        if owner.pid != t.gate_pid || !is_same_live_process(t.gate_pid, t.gate_started) {
            return Err(PoolError::Corrupt { what: "gatekeeper pool", field: "owner", value: u64::from(owner.pid) });
        }
        *self.gate_state.gate_pool.borrow_mut() = Some(region.clone());
        Ok(region)
    }
}

/// Whether the gate whose pool is `gate_pool` (its descriptor: `gate`)
/// admits the process that holds `remote`.
fn admitted_by(gate_pool: &Region, gate: &Descriptor<'_>, remote: &RemotePool) -> Result<bool, PoolError> {
    // The gatekeeper's pool itself, whoever drives it (the kernel says it is
    // the same memfd): also while a hand-over moves it to a successor.
    if same_object(gate_pool, &remote.region) {
        return Ok(true);
    }
    // Whose pool is it? The process the kernel says maps it writable (its
    // owner, or the owner's hand-over successor), not merely a process that
    // holds an fd of it: any peer that looked at a pool holds one, read-only,
    // and a rogue could advertise its pool under that peer's pid.
    let Some(writer) = remote.writer() else { return Ok(false) };
    // The gatekeeper's own process (its other peers): the one the descriptor
    // names as owner now (only the pool's writer changes that word: the
    // gatekeeper, or the successor it handed the pool to), alive with its
    // recorded start time.
    if writer == gate.owner()?.pid && gate.owner_alive()? {
        return Ok(true);
    }
    // The token the pool's writer published in its header (only it writes
    // there); the capability must be bound to that very process.
    let token = remote.header_word(P_TICKET);
    Ok(matches!(gate.redeem_capability(token, writer), Ok(CapMode::ReadWrite)))
}

/// Whether two mappings are of one memory object (same device and inode).
fn same_object(a: &Region, b: &Region) -> bool {
    use std::os::fd::AsFd;
    match (rustix::fs::fstat(a.as_fd()), rustix::fs::fstat(b.as_fd())) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}
