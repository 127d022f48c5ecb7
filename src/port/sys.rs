//! Thin libc helpers for the I/O corner (Linux only).
//!
//! Every raw syscall the port layer makes goes through [`cvt`], which turns
//! the C convention (-1 and `errno`) into `io::Error`, so callers use `?` and
//! never read `errno` themselves, or through [`cvt_r`], which also makes
//! the call again when a signal interrupted it. Each `unsafe` block states
//! why it is sound.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Maps a C return value to `io::Result`: -1 means failure with `errno`.
#[inline]
pub fn cvt<T: PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Runs `f` (one system call) until it is not interrupted by a signal,
/// mapping its result as [`cvt`] does: EINTR means the call did nothing
/// and may be made again, so no caller needs its own retry loop.
#[inline]
pub fn cvt_r<T, F>(mut f: F) -> io::Result<T>
where
    T: PartialEq + From<i8>,
    F: FnMut() -> T,
{
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Whether `e` only means "try again later" (EAGAIN/EWOULDBLOCK, EINTR).
#[inline]
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Sets an integer socket option.
pub fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that outlives the call and its
    // size is passed alongside; a bad `fd` is an error, not unsoundness.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Reads an integer socket option.
pub fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, a c_int
    // exclusively borrowed for the call.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// The interface a bound `AF_PACKET` socket listens on (`sll_ifindex` of
/// its name); an error for a socket of another family.
pub fn packet_socket_ifindex(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `sll`, exclusively
    // borrowed for the call.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    })?;
    if i32::from(sll.sll_family) != libc::AF_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a socket of family {}, not AF_PACKET", sll.sll_family),
        ));
    }
    Ok(sll.sll_ifindex as u32)
}

/// Sets a socket's send (`send`) or receive buffer to `bytes`: above
/// `net.core.*mem_max` with the FORCE option when we may (root), else as
/// far as the sysctl allows. Best effort: a smaller buffer still works.
pub fn set_socket_buffer(fd: RawFd, bytes: usize, send: bool) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    let (force, plain) = if send {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    } else {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    };
    for opt in [force, plain] {
        if setsockopt_int(fd, libc::SOL_SOCKET, opt, v).is_ok() {
            return;
        }
    }
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}"),
        ));
    }
    Ok(idx)
}

/// Moves the calling thread (only it: network namespaces are per thread)
/// into the network namespace at `path` (e.g. `/var/run/netns/NAME`).
/// Sockets and devices opened afterwards by this thread live there; ones
/// opened before keep their namespace.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: `f` is an open namespace file for the duration of the call;
    // setns reads no memory of ours.
    cvt(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Waits up to `timeout_ms` (-1: forever) for `fd` to become readable.
/// Returns `false` on timeout or a signal.
pub fn poll_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd array of length 1 on our stack.
    match cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks the kernel to process an AF_XDP socket's fill ring (the rx side of
/// need_wakeup): a zero-length non-blocking recvfrom, which the kernel
/// docs give as the way to wake the driver without waiting.
pub fn xsk_kick_rx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length receive with null buffers writes no memory.
    let ret = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    kick_result(ret)
}

/// A kick's outcome: the errors that only mean "not now" (the driver is
/// busy, the device queue full, the link down) leave the frames on their
/// ring for the next kick.
fn kick_result(ret: libc::ssize_t) -> io::Result<()> {
    match cvt(ret) {
        Ok(_) => Ok(()),
        Err(e) if is_transient(&e) => Ok(()),
        Err(e) => match e.raw_os_error() {
            Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::ENETDOWN) => Ok(()),
            _ => Err(e),
        },
    }
}

/// Asks the kernel to transmit what is on an AF_XDP socket's tx ring (the
/// tx side of need_wakeup, and the only way copy mode transmits): a
/// zero-length non-blocking sendto, as the kernel docs give it.
pub fn xsk_kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer and no address reads
    // no memory.
    let ret = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    kick_result(ret)
}

/// `struct ethtool_channels` from `<linux/ethtool.h>`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// The receive queues device `name` has in use right now (its rx plus
/// combined channels), as `ethtool -l` shows them; `Ok(None)` when the driver
/// does not report channels.
///
/// Netlink's `IFLA_NUM_RX_QUEUES` is the number *allocated*, which can be
/// larger: a veth made without `numrxqueues` allocates one per CPU but uses
/// one, and binding an AF_XDP socket to an unused queue fails with EINVAL.
pub fn rx_channels(name: &str) -> io::Result<Option<u32>> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: plain socket creation; the descriptor is owned right below.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL reads the name and writes at most
    // size_of::<EthtoolChannels>() bytes through ifru_data, which points at
    // `ch`, alive and exclusively borrowed for the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    match cvt(ret) {
        Ok(_) => {
            let n = ch.rx_count + ch.combined_count;
            Ok((n > 0).then_some(n))
        }
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no device {name}"),
        )),
        Err(e) => Err(e),
    }
}

/// Opens the namespace file at `path` for `setns` and `IFLA_NET_NS_FD`,
/// after checking, without side effects, that it is a network namespace.
///
/// The path is hostile input: it is opened with `O_PATH` first (no device
/// is opened, no FIFO blocks, nothing is read), must lie on nsfs (a bind
/// mount of a namespace or a `/proc/PID/ns/*` link), and only then is
/// reopened for reading through `/proc/self/fd`, which names the very inode
/// just checked. Errors: `NotFound` when nothing is at `path`;
/// `InvalidInput` for a file that is no namespace or another kind of
/// namespace; other errors as the kernel gives them.
pub fn open_netns(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "namespace path has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let probe = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: statfs is plain old data; all zeros is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, exclusively borrowed statfs for the call.
    cvt(unsafe { libc::fstatfs(probe.as_raw_fd(), &mut st) })?;
    // The field's type differs between architectures; the magic fits all.
    if st.f_type as u64 != libc::NSFS_MAGIC as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a namespace file", path.display()),
        ));
    }
    let again = CString::new(format!("/proc/self/fd/{}", probe.as_raw_fd()))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "fd path"))?;
    // SAFETY: `again` is a valid NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::open(again.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let ns = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type.
    let kind = cvt(unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_NSTYPE as _) })?;
    if kind != libc::CLONE_NEWNET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a network namespace", path.display()),
        ));
    }
    Ok(ns)
}

/// Moves the calling thread into the network namespace `ns` (an open
/// namespace file, e.g. from [`open_netns`]); see [`enter_netns`].
pub fn enter_netns_fd(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `ns` is an open descriptor for the duration of the call;
    // setns reads no memory of ours.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Fills `name` into a zeroed `ifreq`; the name must fit (checked).
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// `struct ethtool_value` from `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

const ETHTOOL_STXCSUM: u32 = 0x17;

/// Turns tx checksum offload of device `name` (in the calling thread's
/// network namespace) on or off, as `ethtool -K NAME tx on|off` does; the
/// kernel drops the offloads that need it (TSO) with it.
pub fn set_tx_checksum(name: &str, on: bool) -> io::Result<()> {
    let mut ifr = ifreq_for(name)?;
    // SAFETY: plain socket creation; the descriptor is owned right below.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut v = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads the name and at most
    // size_of::<EthtoolValue>() bytes through ifru_data, which points at
    // `v`, alive and exclusively borrowed for the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) })?;
    Ok(())
}

/// `BPF_OBJ_GET_INFO_BY_FD` and `BPF_LINK_GET_FD_BY_ID` (`enum bpf_cmd`).
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
/// `BPF_LINK_TYPE_XDP` (`enum bpf_link_type`).
const BPF_LINK_TYPE_XDP: u32 = 6;

/// `struct bpf_link_info` as far as an XDP link goes: type, id, program
/// id, then the union whose `xdp.ifindex` comes first; the rest of the
/// union's largest member is padding the kernel may fill.
#[repr(C)]
#[derive(Default)]
struct BpfLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    _rest: [u32; 23],
}

/// One `bpf(2)` call with `attr` (`union bpf_attr`'s member for `cmd`).
///
/// # Safety
/// `attr` must be the member `cmd` reads, and every pointer in it valid
/// for what the kernel writes through it.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the size passed is `attr`'s own.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    })
}

/// What the kernel says of an XDP bpf_link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpLinkInfo {
    /// The link's id.
    pub id: u32,
    /// The id of the program it runs.
    pub prog_id: u32,
    /// The interface it is attached to.
    pub ifindex: u32,
}

/// The kernel's id of BPF link `fd`, the program it runs and the interface
/// it attaches XDP to; an error when `fd` is not an XDP link.
pub fn bpf_xdp_link_info(fd: BorrowedFd<'_>) -> io::Result<XdpLinkInfo> {
    let mut info = BpfLinkInfo::default();
    // SAFETY: `BpfLinkInfo` is the head of `struct bpf_link_info`, with
    // no pointer in it.
    unsafe { obj_info(fd, &mut info) }?;
    if info.link_type != BPF_LINK_TYPE_XDP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("BPF link of type {}, not XDP", info.link_type),
        ));
    }
    Ok(XdpLinkInfo {
        id: info.id,
        prog_id: info.prog_id,
        ifindex: info.ifindex,
    })
}

/// `BPF_LINK_CREATE` (`enum bpf_cmd`), `BPF_XDP` (`enum bpf_attach_type`),
/// `BPF_PROG_TYPE_XDP` (`enum bpf_prog_type`).
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_XDP: u32 = 37;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE` (`if_link.h`).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Attaches XDP program `prog` to interface `ifindex` through a new
/// bpf_link (`flags`: [`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]);
/// the link stays attached while any descriptor of it is open. `EINVAL`
/// on a kernel without XDP links.
pub fn bpf_xdp_link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        prog_fd: u32,
        target_ifindex: u32,
        attach_type: u32,
        flags: u32,
    }
    let mut attr = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: `attr` is the head of the `link_create` member of `union
    // bpf_attr` (the kernel reads the rest as zero), and holds no pointer.
    let fd = unsafe { bpf(BPF_LINK_CREATE, &mut attr) }?;
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns
    // (BPF descriptors are created close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `struct bpf_prog_info` up to `map_ids` and its name; the kernel fills
/// no more than the size given.
#[repr(C)]
#[derive(Default)]
struct BpfProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// Most map ids [`bpf_xdp_prog_info`] reads.
const MAX_PROG_MAPS: usize = 16;

/// The id of XDP program `fd` and the ids of the maps it uses (at most
/// [`MAX_PROG_MAPS`]); an error when `fd` is not an XDP program.
pub fn bpf_xdp_prog_info(fd: BorrowedFd<'_>) -> io::Result<(u32, Vec<u32>)> {
    let mut ids = [0u32; MAX_PROG_MAPS];
    let mut info = BpfProgInfo {
        nr_map_ids: MAX_PROG_MAPS as u32,
        map_ids: ids.as_mut_ptr() as u64,
        ..BpfProgInfo::default()
    };
    // SAFETY: `BpfProgInfo` is the head of `struct bpf_prog_info`;
    // `map_ids` points at `ids`, of `nr_map_ids` entries, alive here.
    unsafe { obj_info(fd, &mut info) }?;
    if info.prog_type != BPF_PROG_TYPE_XDP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("BPF program of type {}, not XDP", info.prog_type),
        ));
    }
    let n = (info.nr_map_ids as usize).min(MAX_PROG_MAPS);
    Ok((info.id, ids[..n].to_vec()))
}

/// `BPF_MAP_TYPE_HASH` and `BPF_MAP_TYPE_XSKMAP` (`enum bpf_map_type`).
pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;

/// What the kernel says of a BPF map.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BpfMapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// The kernel's description of BPF map `fd` (type, id, sizes).
pub fn bpf_map_info(fd: BorrowedFd<'_>) -> io::Result<BpfMapInfo> {
    let mut info = BpfMapInfo::default();
    // SAFETY: `BpfMapInfo` is the head of `struct bpf_map_info`, with no
    // pointer in it.
    unsafe { obj_info(fd, &mut info) }?;
    Ok(info)
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info`.
///
/// # Safety
/// `T` must be the head of the info struct of `fd`'s kind of object, and
/// every pointer in it valid for the length beside it.
unsafe fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: (info as *mut T) as u64,
    };
    // SAFETY: `attr` is the `info` member of `union bpf_attr`; the kernel
    // writes at most `info_len` bytes to `info`, alive for the call, and
    // through its pointers, which the caller vouches for.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(())
}

/// A new descriptor of BPF link `id` (needs `CAP_SYS_ADMIN`): the link
/// stays attached while any descriptor of it is open.
pub fn bpf_link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        link_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = Attr {
        link_id: id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: `attr` is the `*_GET_FD_BY_ID` member of `union bpf_attr`,
    // which holds no pointer.
    let fd = unsafe { bpf(BPF_LINK_GET_FD_BY_ID, &mut attr) }?;
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns
    // (BPF descriptors are created close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Creates a persistent multi-queue TUN device `name` (raw IP, no packet
/// information) in the calling thread's network namespace and lets go of
/// it: the device stays, with no queue attached, until deleted. Whoever
/// attaches the first queue sets its per-device flags (`IFF_VNET_HDR`).
/// Fails with `EBUSY` when any device of that name exists (`IFF_TUN_EXCL`).
pub fn tun_create_persistent(name: &str) -> io::Result<()> {
    let mut ifr = ifreq_for(name)?;
    // SAFETY: `c"/dev/net/tun"` is a valid NUL-terminated path.
    let fd = cvt(unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_TUN_EXCL)
            as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq, alive and exclusively
    // borrowed for the call.
    cvt(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) })?;
    let persist: libc::c_ulong = 1;
    // SAFETY: TUNSETPERSIST takes its flag by value and touches no memory.
    cvt(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST as _, persist) })?;
    Ok(())
}

/// Descriptors one handover message carries at most (the kernel's
/// `SCM_MAX_FD` is 253).
pub const MAX_FDS_PER_MSG: usize = 250;

/// Sends `data` as one message on the `SOCK_SEQPACKET` socket `sock` with
/// `fds` attached (`SCM_RIGHTS`, at most [`MAX_FDS_PER_MSG`]): the receiver
/// gets descriptors of its own for the same open files (sockets, TUN
/// queues), which stay open as long as either side holds one.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    if fds.len() > MAX_FDS_PER_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message (at most {MAX_FDS_PER_MSG})",
                fds.len()
            ),
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let iov = [io::IoSlice::new(data)];
    loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == data.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "message cut: {n} of {} bytes sent",
                    data.len()
                )))
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message of the `SOCK_SEQPACKET` socket `sock` into `buf`
/// with up to `max_fds` descriptors (close-on-exec). Returns its length
/// (0: the peer closed) and the descriptors. A message longer than `buf`,
/// or with more descriptors than `max_fds`, is an error, and whatever
/// descriptors came with it are closed.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut space = vec![0u8; nix::sys::socket::cmsg_space::<RawFd>() * max_fds.max(1)];
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    let cmsgs = msg.cmsgs();
    if let Ok(cmsgs) = cmsgs {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel installed `fd` in our table for
                    // this message; nobody else knows or owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    let flags = msg.flags;
    let len = msg.bytes;
    if flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > max_fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message with more than {max_fds} descriptors"),
        ));
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message longer than {} bytes", buf.len()),
        ));
    }
    Ok((len, fds))
}

/// Puts `fd` in non-blocking mode (a file status flag: every descriptor
/// of the same open file, in any process, sees it).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take and return plain integers; a bad
    // `fd` is an error, not unsoundness.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Takes the descriptor out of a TUN device opened by tun-rs.
pub fn tun_into_fd(dev: tun_rs::SyncDevice) -> OwnedFd {
    use std::os::fd::IntoRawFd;
    // SAFETY: `into_raw_fd` gives up the device's open descriptor; we are
    // its only owner from here on.
    unsafe { OwnedFd::from_raw_fd(dev.into_raw_fd()) }
}

/// The flags (`IFF_TUN`, `IFF_VNET_HDR`, `IFF_MULTI_QUEUE`, ...) and the
/// device name of TUN queue `fd` (`TUNGETIFF`); an error when `fd` is not
/// an attached TUN queue.
pub fn tun_info(fd: BorrowedFd<'_>) -> io::Result<(libc::c_short, String)> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes the name and flags into the ifreq, alive and
    // exclusively borrowed for the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, &mut ifr) })?;
    // SAFETY: TUNGETIFF filled ifru_flags.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    let name: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((flags, String::from_utf8_lossy(&name).into_owned()))
}

/// Marks every open descriptor from `min` up close-on-exec, so that a
/// process this one starts inherits none of them, whoever opened them
/// (our own are close-on-exec; a library's may not be): an AF_XDP socket
/// copied into a successor would keep its queue bound and its UMEM pinned.
pub fn cloexec_from(min: RawFd) -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if fd < min {
            continue;
        }
        // SAFETY: F_GETFD and F_SETFD take and return plain integers; a
        // descriptor closed meanwhile (the directory's own) is EBADF.
        let Ok(flags) = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }) else {
            continue;
        };
        if flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: as above.
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
        }
    }
    Ok(())
}

/// The process id of the peer of connected Unix socket `fd`, as it was
/// when it connected (`SO_PEERCRED`).
pub fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: ucred is plain data; all zeroes is a valid value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cred`, alive and
    // exclusively borrowed for the call.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    u32::try_from(cred.pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::other("the peer has no process id in this namespace"))
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`, blocking
/// only before the pool is first seeded at boot).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        let rest = &mut buf[off..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`,
        // which is exclusively borrowed for the call.
        match cvt(unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) }) {
            Ok(n) => off += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvt_maps_minus_one_to_errno() {
        assert_eq!(cvt(5i32).unwrap(), 5);
        assert!(cvt(-1isize).is_err());
    }

    #[test]
    fn cvt_r_retries_only_an_interrupted_call() {
        let mut calls = 0;
        let r = cvt_r(|| {
            calls += 1;
            if calls < 3 {
                // SAFETY: errno is thread-local; writing it is what a
                // failing system call does.
                unsafe { *libc::__errno_location() = libc::EINTR };
                -1
            } else {
                7i32
            }
        });
        assert_eq!((r.unwrap(), calls), (7, 3));

        let mut calls = 0;
        let r = cvt_r(|| {
            calls += 1;
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = libc::EAGAIN };
            -1isize
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(calls, 1);
    }

    #[test]
    fn ifindex_of_loopback_and_of_nothing() {
        assert!(ifindex("lo").unwrap() > 0);
        assert_eq!(
            ifindex("io-no-such-dev").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            ifindex("a\0b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn loopback_reports_no_channels_and_nothing_is_not_found() {
        // lo has no get_channels: the caller falls back to netlink's count.
        assert_eq!(rx_channels("lo").unwrap(), None);
        assert_eq!(
            rx_channels("io-no-such-dev").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn poll_times_out_on_a_quiet_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!poll_readable(s.as_raw_fd(), 0).unwrap());
    }
}
