//! The broker's client: offer, cancel, claim, list, register, attach with a
//! capability. A reader thread receives the broker's messages and applies the
//! drops of this process's offers when they are claimed.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use numashm_region::{add_seals, protect_range, revoke_range, AttachOptions, FdMapping, Protection, Region, SealFlags, SharedObject};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::descriptor::Descriptor;
use crate::error::OfferError;
use crate::flags::{CapMode, OfferFlags, Perms};
use crate::transport::{recv, send, Received};
use crate::wire::{ErrorCode, Message, OfferInfo};

const PAGE: usize = 4096;
/// Default time to wait for the broker's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

type Incoming = (Message, Vec<OwnedFd>);

#[derive(Debug)]
struct LocalOffer {
    len: usize,
    /// What this process still has on the range.
    perms: Perms,
}

#[derive(Debug)]
struct Inner {
    sock: OwnedFd,
    send_lock: Mutex<()>,
    answers: Mutex<Receiver<Incoming>>,
    offers: Mutex<HashMap<u64, LocalOffer>>,
    /// Set after a timeout: a late answer could be taken for the next one.
    broken: AtomicBool,
}

/// A connection to a [`Broker`](crate::Broker).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{Broker, BrokerClient, OfferFlags, OfferInfo};
/// use numashm_region::RegionOptions;
/// let path = std::env::temp_dir().join(format!("numashm-doc-client-{}.sock", std::process::id()));
/// let _broker = Broker::bind(&path)?.spawn()?;
/// let client = BrokerClient::connect(&path)?;
/// let region = RegionOptions::new(64 << 10).create_anonymous("doc-offer")?;
/// region.write_at(16 << 10, b"for you")?;
/// let me = std::process::id();
/// // SAFETY: nothing in this example touches the range after the claim in a
/// // way the (absent) drops forbid.
/// let addr = unsafe { client.offer(me, &region, 16 << 10..24 << 10, OfferFlags::GRANT_R)? };
/// let mut list = [OfferInfo::default(); 4];
/// assert_eq!(client.list_offers(&mut list)?, 1);
/// let claimed = client.claim(me, addr, OfferFlags::GRANT_R)?;
/// let mut buf = [0u8; 7];
/// claimed.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"for you");
/// assert!(claimed.write_at(0, b"x").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BrokerClient {
    inner: Arc<Inner>,
    reader: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl BrokerClient {
    /// Connects to the broker listening at `path`.
    ///
    /// # Errors
    ///
    /// [`OfferError::Syscall`] from `socket`/`connect` (with a hint when no broker listens).
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn connect(path: impl AsRef<Path>) -> Result<BrokerClient, OfferError> {
        let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(|e| OfferError::sys("socket", e))?;
        let addr = SocketAddrUnix::new(path.as_ref()).map_err(|e| OfferError::sys("connect", e))?;
        rustix::net::connect(&sock, &addr).map_err(|e| OfferError::sys("connect", e))?;
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            sock,
            send_lock: Mutex::new(()),
            answers: Mutex::new(rx),
            offers: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
        });
        let thread_inner = Arc::clone(&inner);
        let reader = std::thread::Builder::new()
            .name("numashm-offer-reader".into())
            .spawn(move || read_loop(&thread_inner, &tx))
            .map_err(|e| OfferError::sys("spawn", Errno::from_io_error(&e).unwrap_or(Errno::AGAIN)))?;
        Ok(BrokerClient { inner, reader: Some(reader), timeout: DEFAULT_TIMEOUT })
    }

    /// Sets how long requests wait for the broker's answer (default 20 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut c = numashm_ownership::BrokerClient::connect("/tmp/numashm.sock")?;
    /// c.set_timeout(std::time::Duration::from_secs(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn request(&self, msg: &Message, fd: Option<BorrowedFd<'_>>) -> Result<Incoming, OfferError> {
        // Relaxed: the flag only guards this client's own later requests.
        if self.inner.broken.load(Ordering::Relaxed) {
            return Err(OfferError::Disconnected);
        }
        let answers = self.inner.answers.lock().map_err(|_| OfferError::Disconnected)?;
        {
            let _g = self.inner.send_lock.lock().map_err(|_| OfferError::Disconnected)?;
            send(self.inner.sock.as_fd(), msg, fd, false).map_err(|e| match e {
                Errno::PIPE | Errno::CONNRESET => OfferError::Disconnected,
                e => OfferError::sys("sendmsg", e),
            })?;
        }
        match answers.recv_timeout(self.timeout) {
            Ok((Message::Error { code, detail }, _)) => Err(OfferError::Refused { code, detail }),
            Ok(answer) => Ok(answer),
            Err(RecvTimeoutError::Timeout) => {
                self.inner.broken.store(true, Ordering::Relaxed); // Relaxed: see the load above.
                Err(OfferError::Timeout(self.timeout))
            }
            Err(RecvTimeoutError::Disconnected) => Err(OfferError::Disconnected),
        }
    }

    /// Offers `range` (offsets from the region's base, page-aligned, past the
    /// header) of `region` to process `dest_pid`, and returns the address of the
    /// range in this process, which identifies the offer. An empty range
    /// cancels the offer at `region`'s `range.start` (see [`BrokerClient::cancel`]).
    ///
    /// The range is first moved to a memfd of its own: its bytes are copied
    /// there and the memfd is mapped over the range (same address, same
    /// permissions), so the receiver gets exactly the range and nothing else of
    /// the region. From then on, in this process, the range is that memfd; other
    /// processes attached to the region no longer see this process's writes to it.
    /// For grants without `GRANT_W` the memfd is sealed `F_SEAL_FUTURE_WRITE`.
    ///
    /// Nothing else changes until the receiver claims; then this process's
    /// reader thread applies the drops (`mprotect`, or replacing the range with
    /// an inaccessible reservation when every permission is dropped) before the
    /// receiver gets the memory.
    ///
    /// # Safety
    ///
    /// - After a claim, nothing in this process may access the range in a way
    ///   the drops remove (a dropped range faults: `region.read_at` on it is
    ///   then undefined behaviour, as any access to unmapped memory).
    /// - No other thread writes the range while `offer` copies it (such writes may be lost).
    ///
    /// # Errors
    ///
    /// [`OfferError::InvalidArgument`] for a bad range or a hugetlb region,
    /// [`OfferError::Refused`] (e.g. [`ErrorCode::AlreadyOffered`]), syscall errors.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    #[doc(alias = "memfd_create")]
    pub unsafe fn offer(
        &self,
        dest_pid: u32,
        region: &Region,
        range: std::ops::Range<usize>,
        flags: OfferFlags,
    ) -> Result<usize, OfferError> {
        let (offset, end) = (range.start, range.end);
        let addr = region.as_ptr() as usize + offset;
        if end == offset {
            self.cancel(dest_pid, addr)?;
            return Ok(addr);
        }
        let len = end.checked_sub(offset).ok_or_else(|| invalid("range", "end before start"))?;
        if region.page_size() != PAGE {
            return Err(invalid("region", "hugetlb and THP regions cannot be offered by range (use base pages)"));
        }
        if offset % PAGE != 0 || len % PAGE != 0 {
            return Err(invalid("range", format!("{offset:#x}..{end:#x} is not page-aligned")));
        }
        if offset < region.data_offset() || end > region.len() {
            return Err(invalid("range", format!("{offset:#x}..{end:#x} is not inside the data area")));
        }
        if flags.grants().is_empty() {
            return Err(invalid("flags", "an offer must grant at least one permission"));
        }
        let memfd = SharedObject::with_len("numashm-offer", len)?;
        let mut chunk = vec![0u8; len.min(1 << 20)];
        let mut done = 0;
        while done < len {
            let n = chunk.len().min(len - done);
            region.read_at(offset + done, &mut chunk[..n])?;
            let mut w = 0;
            while w < n {
                w += rustix::io::pwrite(&memfd, &chunk[w..n], (done + w) as u64)
                    .map_err(|e| OfferError::sys("pwrite", e))?;
            }
            done += n;
        }
        let (prot, perms) = if region.is_writable() { (Protection::ReadWrite, Perms::RW) } else { (Protection::Read, Perms::R) };
        // SAFETY: the caller guarantees no concurrent writer; the new mapping has
        // the range's permissions and its contents, so every access that was
        // allowed stays allowed and sees the same bytes.
        unsafe { region.add_fd_mapping(offset, len, memfd.as_fd(), 0, prot)? };
        let mut seals = SealFlags::SHRINK | SealFlags::GROW;
        if !flags.grants().contains(Perms::W) {
            seals |= SealFlags::FUTURE_WRITE;
        }
        add_seals(memfd.as_fd(), seals)?;
        self.inner
            .offers
            .lock()
            .map_err(|_| OfferError::Disconnected)?
            .insert(addr as u64, LocalOffer { len, perms });
        let msg = Message::Offer { dest_pid, flags, addr: addr as u64, len: len as u64 };
        match self.request(&msg, Some(memfd.as_fd())) {
            Ok((Message::Done { .. }, _)) => Ok(addr),
            Ok(_) => Err(OfferError::Refused { code: ErrorCode::BadMessage, detail: 0 }),
            Err(e) => {
                if let Ok(mut o) = self.inner.offers.lock() {
                    o.remove(&(addr as u64));
                }
                Err(e)
            }
        }
    }

    /// Cancels this process's pending offer at `addr` (an offer of size 0 at the
    /// same address). Fails with [`ErrorCode::AlreadyClaimed`] once claimed.
    ///
    /// # Errors
    ///
    /// [`OfferError::Refused`] with [`ErrorCode::NoSuchOffer`] or [`ErrorCode::AlreadyClaimed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{Broker, BrokerClient, ErrorCode, OfferError, OfferFlags};
    /// let path = std::env::temp_dir().join(format!("numashm-doc-cancel-{}.sock", std::process::id()));
    /// let _broker = Broker::bind(&path)?.spawn()?;
    /// let c = BrokerClient::connect(&path)?;
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-cancel")?;
    /// let me = std::process::id();
    /// // SAFETY: the offer is cancelled, never claimed: no drop ever applies.
    /// let addr = unsafe { c.offer(me, &r, 8192..12288, OfferFlags::GRANT_R)? };
    /// c.cancel(me, addr)?;
    /// let err = c.claim(me, addr, OfferFlags::GRANT_R).unwrap_err();
    /// assert!(matches!(err, OfferError::Refused { code: ErrorCode::NoSuchOffer, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self, dest_pid: u32, addr: usize) -> Result<(), OfferError> {
        let msg = Message::Offer { dest_pid, flags: OfferFlags::GRANT_R, addr: addr as u64, len: 0 };
        self.request(&msg, None)?;
        if let Ok(mut o) = self.inner.offers.lock() {
            o.remove(&(addr as u64));
        }
        Ok(())
    }

    /// Claims the offer `src_pid` made at its address `remote_addr`, mapping it
    /// here with the grant bits of `flags` (which the offer must grant). The
    /// mapping lives as long as the returned [`Claimed`].
    ///
    /// # Errors
    ///
    /// [`OfferError::Refused`] with [`ErrorCode::NoSuchOffer`],
    /// [`ErrorCode::WrongClaimant`], [`ErrorCode::NotGranted`],
    /// [`ErrorCode::AlreadyClaimed`], [`ErrorCode::Withdrawn`]; the mmap errno.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn claim(&self, src_pid: u32, remote_addr: usize, flags: OfferFlags) -> Result<Claimed, OfferError> {
        let msg = Message::Claim { src_pid, flags, addr: remote_addr as u64 };
        let (answer, mut fds) = self.request(&msg, None)?;
        let (Message::Claimed { len, perms, .. }, Some(fd)) = (answer, fds.pop()) else {
            return Err(OfferError::Refused { code: ErrorCode::BadMessage, detail: 0 });
        };
        let len = usize::try_from(len).map_err(|_| invalid("len", "too large"))?;
        // The fd comes from the broker: check it is what was announced.
        let st = rustix::fs::fstat(&fd).map_err(|e| OfferError::sys("fstat", e))?;
        if st.st_size as u64 != len as u64 {
            return Err(invalid("len", "the received memfd's size differs from the announced length"));
        }
        // The memfd is sealed against shrinking (the broker checked), so
        // touching the mapping cannot SIGBUS.
        let map = FdMapping::map(fd.as_fd(), len, perms.protection())?;
        Ok(Claimed { map, perms, fd })
    }

    /// Lists the offers this process sent and received. When `buf` is too small
    /// nothing is written and the error carries the count needed.
    ///
    /// # Errors
    ///
    /// [`OfferError::BufferTooSmall`].
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn list_offers(&self, buf: &mut [OfferInfo]) -> Result<usize, OfferError> {
        let max = buf.len().min(crate::wire::MAX_LIST) as u32;
        match self.request(&Message::List { max }, None) {
            Ok((Message::Offers { entries, .. }, _)) if entries.len() <= buf.len() => {
                buf[..entries.len()].copy_from_slice(&entries);
                Ok(entries.len())
            }
            Ok(_) => Err(OfferError::Refused { code: ErrorCode::BadMessage, detail: 0 }),
            Err(OfferError::Refused { code: ErrorCode::BufferTooSmall, detail }) => {
                Err(OfferError::BufferTooSmall { needed: detail as usize, given: buf.len() })
            }
            Err(e) => Err(e),
        }
    }

    /// Registers a region whose descriptor this process owns, so that the
    /// capabilities in it can be redeemed through the broker.
    ///
    /// # Errors
    ///
    /// [`OfferError::Refused`] ([`ErrorCode::Forbidden`] when we are not the owner,
    /// [`ErrorCode::BadFd`] when the region or its descriptor does not validate).
    ///
    /// # Examples
    ///
    /// See [`BrokerClient::attach_with_capability`].
    pub fn register_region(&self, region: &Region) -> Result<(), OfferError> {
        self.request(&Message::RegisterRegion, Some(region.as_fd()))?;
        Ok(())
    }

    /// Redeems capability `token` on a region `owner_pid` registered, and
    /// attaches the region: read-only for `ReadOnly`, read-write otherwise;
    /// `Move` also makes this process the owner. The broker checks, with the
    /// pid the kernel reports for this socket (`SO_PEERCRED`), that the
    /// capability is bound to this process. For `ReadWrite` and `Move` this
    /// process's mapping is registered in the descriptor.
    ///
    /// # Errors
    ///
    /// [`OfferError::Refused`] with [`ErrorCode::CapabilityDenied`] (bound to
    /// another process) or [`ErrorCode::NoSuchCapability`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{Broker, BrokerClient, CapMode, Descriptor};
    /// let path = std::env::temp_dir().join(format!("numashm-doc-cap-{}.sock", std::process::id()));
    /// let _broker = Broker::bind(&path)?.spawn()?;
    /// let c = BrokerClient::connect(&path)?;
    /// let host = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-capb")?;
    /// let desc = Descriptor::create(&host)?;
    /// c.register_region(&host)?;
    /// let me = std::process::id();
    /// let token = desc.create_capability(me, CapMode::ReadOnly)?;
    /// desc.unregister()?; // this example plays both processes
    /// let guest = c.attach_with_capability(me, token)?;
    /// assert!(!guest.is_writable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_with_capability(&self, owner_pid: u32, token: u64) -> Result<Region, OfferError> {
        let (answer, mut fds) = self.request(&Message::AttachCapability { owner_pid, token }, None)?;
        let (Message::Attached { mode }, Some(fd)) = (answer, fds.pop()) else {
            return Err(OfferError::Refused { code: ErrorCode::BadMessage, detail: 0 });
        };
        let region = Region::attach_fd_with(fd, AttachOptions { read_only: mode == CapMode::ReadOnly })?;
        if mode != CapMode::ReadOnly {
            // A read-only attacher cannot write the mapping table.
            Descriptor::open(&region).and_then(|d| d.register()).map_err(|e| invalid("descriptor", e.to_string()))?;
        }
        Ok(region)
    }
}

impl Drop for BrokerClient {
    fn drop(&mut self) {
        // Wakes the reader thread (its recvmsg returns 0) so it can be joined.
        let _ = rustix::net::shutdown(&self.inner.sock, rustix::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn invalid(what: &'static str, detail: impl Into<String>) -> OfferError {
    OfferError::InvalidArgument { what, detail: detail.into() }
}

fn read_loop(inner: &Inner, answers: &Sender<Incoming>) {
    loop {
        match recv(inner.sock.as_fd(), false) {
            Ok(Received::Message(Message::DropRequest { offer_id, addr, len, drop }, _)) => {
                let errno = apply_drop(inner, addr, len, drop).err().map_or(0, |e| e.raw_os_error() as u32);
                let done = Message::DropDone { offer_id, errno };
                let Ok(_g) = inner.send_lock.lock() else { return };
                if send(inner.sock.as_fd(), &done, None, false).is_err() {
                    return;
                }
            }
            Ok(Received::Message(m, fds)) => {
                if answers.send((m, fds)).is_err() {
                    return;
                }
            }
            Err(Errno::INTR) => {}
            // EOF, a broken socket, or a broker speaking nonsense: the connection is over.
            Ok(Received::Eof | Received::Bad(_)) | Err(_) => return,
        }
    }
}

/// Gives up `drop` on one of our offered ranges.
fn apply_drop(inner: &Inner, addr: u64, len: u64, drop: Perms) -> Result<(), Errno> {
    let mut offers = inner.offers.lock().map_err(|_| Errno::NOLCK)?;
    let Some(o) = offers.get_mut(&addr) else { return Err(Errno::INVAL) };
    if o.len as u64 != len {
        return Err(Errno::INVAL);
    }
    let left = o.perms.without(drop);
    let ptr = addr as usize as *mut u8;
    let errno = |e: numashm_region::RegionError| e.errno().unwrap_or(Errno::INVAL);
    if left.is_empty() || !left.contains(Perms::R) {
        // Every permission dropped (or read dropped: writes alone cannot be had
        // on x86): the memfd mapping is replaced by an inaccessible reservation
        // (a bare munmap would leave a hole inside the region's reserved range).
        // SAFETY: `addr..addr+len` is the range this process offered (recorded by
        // `offer`, whose caller promised not to access it after the drop).
        unsafe { revoke_range(ptr, o.len) }.map_err(errno)?;
        offers.remove(&addr);
    } else {
        // SAFETY: as above; the protection only loses what was dropped.
        unsafe { protect_range(ptr, o.len, left.protection()) }.map_err(errno)?;
        o.perms = left;
    }
    Ok(())
}

/// Memory claimed from an offer, mapped in this process; unmapped on drop.
///
/// # Examples
///
/// See [`BrokerClient`].
#[derive(Debug)]
pub struct Claimed {
    map: FdMapping,
    perms: Perms,
    fd: OwnedFd,
}

impl Claimed {
    /// `(local_addr, size)`.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn parts(&self) -> (usize, usize) {
        (self.map.addr(), self.map.len())
    }

    /// Where the memory is mapped here.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn addr(&self) -> usize {
        self.map.addr()
    }

    /// Bytes mapped.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always `false`: offers are at least one page.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The permissions of the mapping.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn perms(&self) -> Perms {
        self.perms
    }

    /// Copies bytes out at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when out of bounds.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), OfferError> {
        self.check(offset, buf.len())?;
        Ok(self.map.read_at(offset, buf)?)
    }

    /// Copies bytes in at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when out of bounds or the claim has no write permission.
    ///
    /// # Examples
    ///
    /// See [`BrokerClient`].
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), OfferError> {
        if !self.perms.contains(Perms::W) {
            return Err(invalid("write", "the claim is not writable"));
        }
        self.check(offset, data.len())?;
        Ok(self.map.write_at(offset, data)?)
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), OfferError> {
        if offset.checked_add(len).map_or(true, |end| end > self.map.len()) {
            return Err(invalid("range", format!("{offset:#x}+{len:#x} outside {:#x} bytes", self.map.len())));
        }
        Ok(())
    }
}

impl AsFd for Claimed {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
