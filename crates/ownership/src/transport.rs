//! One message per `SOCK_SEQPACKET` datagram, with its fds in `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::error::WireError;
use crate::wire::{decode_message, Message, MAX_MESSAGE};

/// Room for more fds than any message carries, so that a sender attaching too
/// many is seen (and refused) rather than silently truncated.
const FD_ROOM: usize = 8;

/// What one receive produced.
#[derive(Debug)]
pub(crate) enum Received {
    /// A valid message with exactly the fds its kind carries.
    Message(Message, Vec<OwnedFd>),
    /// The peer closed the connection.
    Eof,
    /// A datagram that is not a valid message; its fds are already closed.
    Bad(#[allow(dead_code)] WireError), // the reason shows in Debug output
}

/// Sends `msg` with `fd` attached (the message's kind decides whether one must be).
pub(crate) fn send(sock: BorrowedFd<'_>, msg: &Message, fd: Option<BorrowedFd<'_>>, dontwait: bool) -> Result<(), Errno> {
    debug_assert_eq!(msg.fd_count(), usize::from(fd.is_some()));
    let bytes = msg.encode();
    let fds = fd.map(|f| [f]);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if let Some(fds) = &fds {
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(Errno::NOBUFS);
        }
    }
    let flags = if dontwait { SendFlags::DONTWAIT | SendFlags::NOSIGNAL } else { SendFlags::NOSIGNAL };
    let n = sendmsg(sock, &[IoSlice::new(&bytes)], &mut control, flags)?;
    if n != bytes.len() {
        return Err(Errno::MSGSIZE);
    }
    Ok(())
}

/// Sends raw bytes (tests and hostile-client simulations use this).
pub(crate) fn send_raw(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FD_ROOM))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::NOBUFS);
    }
    sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Receives one datagram and validates it.
pub(crate) fn recv(sock: BorrowedFd<'_>, dontwait: bool) -> Result<Received, Errno> {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FD_ROOM))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if dontwait {
        flags |= RecvFlags::DONTWAIT;
    }
    let got = recvmsg(sock, &mut [IoSliceMut::new(&mut buf)], &mut control, flags)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if got.bytes == 0 && fds.is_empty() {
        return Ok(Received::Eof);
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Ok(Received::Bad(WireError::BadFd("more file descriptors than any message carries")));
    }
    if got.flags.contains(ReturnFlags::TRUNC) || got.bytes > MAX_MESSAGE {
        return Ok(Received::Bad(WireError::TooLong { len: got.bytes, max: MAX_MESSAGE }));
    }
    let msg = match decode_message(&buf[..got.bytes]) {
        Ok(m) => m,
        Err(e) => return Ok(Received::Bad(e)),
    };
    if fds.len() != msg.fd_count() {
        return Ok(Received::Bad(WireError::FdCount { kind: "message", expected: msg.fd_count(), got: fds.len() }));
    }
    Ok(Received::Message(msg, fds))
}
