//! The control socket: a Unix `SOCK_SEQPACKET` socket (each message whole,
//! with the descriptors it carries), at a path or an abstract name, that only
//! this user may use (`SO_PEERCRED`), and sending and receiving a message with
//! descriptors (`SCM_RIGHTS`), through rustix.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// The largest message: a batch of records, or one record alone (its
/// bounds, `runtime::handover::state`, keep it under this).
pub(crate) const MAX_MESSAGE: usize = 384 << 10;
/// Most descriptors in one message (the kernel's SCM_MAX_FD is 253).
pub(crate) const MAX_FDS: usize = 128;

/// Where the control socket is: a path, or `@name` for an abstract name.
pub(crate) fn address(socket: &str) -> io::Result<SocketAddrUnix> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddrUnix::new_abstract_name(name.as_bytes()),
        None => SocketAddrUnix::new(socket),
    };
    addr.map_err(io::Error::from)
}

fn socket() -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // Room for the largest message (the kernel may grant less; a message
    // it refuses fails the hand-over, which then falls back).
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&fd, MAX_MESSAGE * 2);
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, MAX_MESSAGE * 2);
    Ok(fd)
}

/// Listens on `socket`. A path left by a process that died is replaced; one
/// a live process listens on is not (`AddrInUse`).
pub(crate) fn listen(socket_name: &str) -> io::Result<OwnedFd> {
    let addr = address(socket_name)?;
    if !socket_name.starts_with('@') && std::fs::symlink_metadata(socket_name).is_ok() {
        if connect(socket_name)?.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process listens on the hand-over socket",
            ));
        }
        let _ = std::fs::remove_file(socket_name);
    }
    let fd = socket()?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 8)?;
    Ok(fd)
}

/// Stops listening on `socket_name`: a path is removed, so that the next
/// process can bind it.
pub(crate) fn unlisten(socket_name: &str, fd: OwnedFd) {
    if !socket_name.starts_with('@') {
        let _ = std::fs::remove_file(socket_name);
    }
    drop(fd);
}

/// Connects to the process listening on `socket`; `None` when nobody is
/// (no such path or name, or nobody listening on it).
pub(crate) fn connect(socket_name: &str) -> io::Result<Option<OwnedFd>> {
    let addr = address(socket_name)?;
    let fd = socket()?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Waits up to `timeout` for a connection on `listener`; `None` on timeout.
pub(crate) fn accept(listener: &OwnedFd, timeout: Duration) -> io::Result<Option<OwnedFd>> {
    let mut fds = [rustix::event::PollFd::new(
        listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec::try_from(timeout).map_err(io::Error::other)?;
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the peer of `fd` runs as this process's user.
pub(crate) fn same_user(fd: &OwnedFd) -> io::Result<bool> {
    let cred = rustix::net::sockopt::socket_peercred(fd)?;
    Ok(cred.uid == rustix::process::getuid())
}

/// Bounds each receive on `fd` to `timeout` (`None`: wait for ever).
pub(crate) fn set_timeout(fd: &OwnedFd, timeout: Option<Duration>) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(fd, rustix::net::sockopt::Timeout::Recv, timeout)?;
    Ok(())
}

/// Sends `bytes` with `fds` as one message.
pub(crate) fn send(fd: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS || bytes.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message too large",
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "descriptors do not fit the control buffer",
        ));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            fd,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    if sent != bytes.len() {
        return Err(io::Error::other("message cut short"));
    }
    Ok(())
}

/// Receives one message: its bytes and the descriptors it carried (each
/// owned here, close-on-exec). An empty message with no descriptor means
/// the peer has gone. A message cut short (bytes or descriptors) is an
/// error; the descriptors that did arrive are closed.
pub(crate) fn recv(fd: &OwnedFd) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message cut short",
        ));
    }
    buf.truncate(got.bytes);
    Ok((buf, fds))
}

/// The descriptors of `owned`, borrowed for [`send`].
pub(crate) fn borrow(owned: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    owned.iter().map(AsFd::as_fd).collect()
}
