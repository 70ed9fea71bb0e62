//! The keeper: a small process, forked when the engine starts, that holds a duplicate
//! of every uprobe link and closes it when asked, or when periscope goes away for any
//! reason (its end of the socket closes, even under SIGKILL).
//!
//! Why: closing the last descriptor of a uprobe link makes the kernel write the
//! original instruction back into the target (through get_user_pages). That write is
//! refused while the closing thread has a fatal signal pending: the kernel then logs
//! "failed to unregister, leaking uprobe" and the int3 stays in the target for as long
//! as it runs, every call trapping. A process that is exiting (exit_group, SIGKILL) has
//! exactly that pending. The keeper is in its own session, ignores the terminal's
//! signals and holds the last reference, so the removal always runs in a process that
//! is not dying. periscope closes its own copies at any time: they are never the last.
//!
//! The keeper also *makes* the links: were periscope to make a link and then hand it
//! over, a SIGKILL between the two would leave periscope's exit holding the only
//! reference, and the kernel would leak that uprobe (seen: 1 kill in 3 during a
//! 300-function attach). periscope gives the keeper its programs once, writes where each
//! uprobe goes into memory the two processes share (mapped before the fork), and asks;
//! a link never exists outside the keeper.
//!
//! Protocol (SOCK_SEQPACKET, 8-byte messages): HOLD id + up to FDS_PER_MSG descriptors
//! (SCM_RIGHTS); PROG kind + a program's descriptor; MAKE id: make the links the shared
//! request describes, under id, send copies of them back (LINKS id + descriptors) and
//! answer MADE errno; RELEASE id; the keeper answers
//! RELEASED id once every link of that id is closed, i.e. once its uprobes are gone
//! from the target. Messages are processed in order, so the HOLDs and MAKEs of an id
//! always precede its RELEASE.
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const OP_HOLD: u32 = 1;
const OP_RELEASE: u32 = 2;
const OP_RELEASED: u32 = 3;
const OP_PROG: u32 = 4;
const OP_MAKE: u32 = 5;
const OP_MADE: u32 = 6;
const OP_LINKS: u32 = 7;
/// PROG kinds: the program for perf-event links, and its copy for uprobe_multi links.
pub const PROG_PERF: u32 = 0;
pub const PROG_MULTI: u32 = 1;
/// Points of one MAKE request (the engine splits longer lists).
pub const MAX_POINTS: usize = 8192;

/// A MAKE request, in memory shared with the keeper (MAP_SHARED before the fork: at the
/// same address in both processes, so the pointers the system calls take are valid in
/// the keeper).
#[repr(C)]
struct Request {
    /// PROG_PERF: one perf-event link per point; PROG_MULTI: one uprobe_multi link.
    kind: u32,
    pid: u32,
    /// The uprobe PMU's type (perf-event links).
    pmu: u32,
    cnt: u32,
    /// Uprobes made, written by the keeper before it answers.
    made: u32,
    /// Links made (the keeper's descriptors, sent back as copies before the answer).
    links: u32,
    fds: [RawFd; MAX_POINTS],
    path: [u8; 4096],
    offsets: [u64; MAX_POINTS],
    cookies: [u64; MAX_POINTS],
}
const FDS_PER_MSG: usize = 64;
/// Links the keeper can hold at once; the engine refuses to attach more.
pub const CAPACITY: usize = 65_536;

/// What a MAKE did: uprobes made, periscope's copies of the links, the first error.
pub struct Made {
    pub uprobes: usize,
    pub links: Vec<OwnedFd>,
    pub result: io::Result<()>,
}

pub struct Keeper {
    sock: OwnedFd,
    pid: libc::pid_t,
    /// Links handed over and not yet released, by id.
    held: HashMap<u32, usize>,
    /// Ids whose release was asked for, with their number of links.
    releasing: HashMap<u32, usize>,
    /// RELEASED answers read while waiting for a MADE.
    early: Vec<u32>,
    /// The shared MAKE request.
    request: *mut Request,
    /// Programs given to the keeper (by kind), so it can make links.
    progs: [bool; 2],
    alive: bool,
}

// SAFETY: `request` is memory this Keeper alone writes in this process (the keeper
// process reads it only between a MAKE and its answer, while `make` waits).
unsafe impl Send for Keeper {}

impl Keeper {
    /// Forks the keeper. The child allocates nothing (its tables are allocated here,
    /// before the fork), so forking a multi-threaded process is safe.
    pub fn spawn() -> io::Result<Keeper> {
        let mut sv = [0 as RawFd; 2];
        // SAFETY: socketpair writes two descriptors into the array.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                sv.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        let mut held: Vec<(u32, RawFd)> = Vec::with_capacity(CAPACITY);
        // SAFETY: a new shared anonymous mapping, zeroed, of the request's size.
        let request = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Request>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if request == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let request = request.cast::<Request>();
        // SAFETY: fork; the child only runs `child`, which makes raw system calls and
        // uses memory allocated above, then _exits without returning.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => child(theirs.as_raw_fd(), &mut held, request),
            pid => Ok(Keeper {
                sock: ours,
                pid,
                held: HashMap::new(),
                releasing: HashMap::new(),
                early: Vec::new(),
                request,
                progs: [false; 2],
                alive: true,
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Waits for a keeper that has gone (its socket closed: it is exiting) to end, so
    /// that no zombie is left beside its replacement.
    pub fn reap(self) {
        // SAFETY: waits for our own child; its descriptors are closed already.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }

    /// Links held for all ids.
    pub fn held(&self) -> usize {
        self.held.values().sum()
    }

    /// Hands duplicates of `links` (all of probe `id`) to the keeper.
    pub fn hold(&mut self, id: u32, links: &[BorrowedFd<'_>]) -> io::Result<()> {
        if self.held() + links.len() > CAPACITY {
            return Err(io::Error::other(format!(
                "more than {CAPACITY} uprobes at once"
            )));
        }
        for chunk in links.chunks(FDS_PER_MSG) {
            let fds: Vec<RawFd> = chunk.iter().map(|f| f.as_raw_fd()).collect();
            self.send(OP_HOLD, id, &fds)?;
            *self.held.entry(id).or_default() += fds.len();
        }
        Ok(())
    }

    /// Gives the keeper a program (PROG_PERF or PROG_MULTI) to make links with.
    pub fn give_prog(&mut self, kind: u32, prog: BorrowedFd<'_>) -> io::Result<()> {
        self.send(OP_PROG, kind, &[prog.as_raw_fd()])?;
        self.progs[kind as usize] = true;
        Ok(())
    }

    /// Whether the keeper can make links with program `kind`.
    pub fn makes(&self, kind: u32) -> bool {
        self.alive && self.progs.get(kind as usize) == Some(&true)
    }

    /// Has the keeper make the links of `id` for `points` (file offset, cookie; at most
    /// MAX_POINTS) of `path` in process `pid`: one uprobe_multi link (PROG_MULTI) or a
    /// perf-event link per point (PROG_PERF; every point is tried).
    pub fn make(
        &mut self,
        id: u32,
        kind: u32,
        pmu: u32,
        path: &std::ffi::CStr,
        pid: u32,
        points: &[(u64, u64)],
    ) -> Made {
        let failed = |e| Made {
            uprobes: 0,
            links: Vec::new(),
            result: Err(e),
        };
        let bytes = path.to_bytes_with_nul();
        if points.len() > MAX_POINTS || bytes.len() > 4096 {
            return failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request too large",
            ));
        }
        if self.held() + points.len() > CAPACITY {
            return failed(io::Error::other(format!(
                "more than {CAPACITY} uprobes at once"
            )));
        }
        // SAFETY: the mapping is ours and the keeper reads it only after the MAKE below.
        let r = unsafe { &mut *self.request };
        r.kind = kind;
        r.pid = pid;
        r.pmu = pmu;
        r.cnt = points.len() as u32;
        r.made = 0;
        r.path[..bytes.len()].copy_from_slice(bytes);
        for (i, &(offset, cookie)) in points.iter().enumerate() {
            r.offsets[i] = offset;
            r.cookies[i] = cookie;
        }
        if let Err(e) = self.send(OP_MAKE, id, &[]) {
            return failed(e);
        }
        // Copies of the links, then the answer; RELEASED answers of the closers may come
        // in between.
        let mut links = Vec::new();
        loop {
            let mut incoming: [(u32, RawFd); FDS_PER_MSG] = [(0, -1); FDS_PER_MSG];
            let mut n_in = 0;
            let got = receive(self.sock.as_raw_fd(), &mut incoming, &mut n_in);
            // SAFETY: descriptors this process just received and owns.
            links.extend(
                incoming[..n_in]
                    .iter()
                    .map(|&(_, fd)| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
            match got {
                Received::Message(OP_RELEASED, released) => self.early.push(released),
                Received::Message(OP_MADE, errno) => {
                    // SAFETY: the keeper wrote `made` before answering.
                    let made = unsafe { std::ptr::read_volatile(&raw const (*self.request).made) }
                        as usize;
                    if !links.is_empty() {
                        *self.held.entry(id).or_default() += links.len();
                    }
                    let result = match errno {
                        0 => Ok(()),
                        errno => Err(io::Error::from_raw_os_error(errno as i32)),
                    };
                    return Made {
                        uprobes: made,
                        links,
                        result,
                    };
                }
                Received::Message(..) | Received::Nothing => {}
                Received::Closed => {
                    self.alive = false;
                    let e = io::Error::new(io::ErrorKind::BrokenPipe, "keeper exited");
                    return Made {
                        uprobes: 0,
                        links,
                        result: Err(e),
                    };
                }
            }
        }
    }

    /// Asks the keeper to close every link of `id`; `poll` says when it has.
    pub fn release(&mut self, id: u32) -> io::Result<()> {
        let n = self.held.remove(&id).unwrap_or(0);
        self.send(OP_RELEASE, id, &[])?;
        *self.releasing.entry(id).or_default() += n;
        Ok(())
    }

    /// Links whose release is asked for and not yet done.
    pub fn releasing(&self) -> usize {
        self.releasing.values().sum()
    }

    /// Ids whose links are all closed since the last call. With `block`, waits for at
    /// least one when any release is outstanding.
    pub fn poll(&mut self, block: bool) -> Vec<u32> {
        let mut done: Vec<u32> = std::mem::take(&mut self.early)
            .into_iter()
            .filter(|id| self.releasing.remove(id).is_some())
            .collect();
        loop {
            let wait = block && done.is_empty() && !self.releasing.is_empty();
            let mut msg = [0u32; 2];
            // SAFETY: recv writes at most 8 bytes into `msg`.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    msg.as_mut_ptr().cast(),
                    8,
                    if wait { 0 } else { libc::MSG_DONTWAIT },
                )
            };
            if n == 8 && msg[0] == OP_RELEASED {
                if self.releasing.remove(&msg[1]).is_some() {
                    done.push(msg[1]);
                }
                continue;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return done,
                    _ => {}
                }
            }
            // The keeper is gone (EOF or error). Whatever it held was closed when it
            // exited; nothing more will be answered.
            self.alive = false;
            done.extend(self.releasing.drain().map(|(id, _)| id));
            return done;
        }
    }

    fn send(&mut self, op: u32, id: u32, fds: &[RawFd]) -> io::Result<()> {
        if !self.alive {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "keeper exited"));
        }
        match send_msg(self.sock.as_raw_fd(), op, id, fds) {
            0 => Ok(()),
            errno => {
                self.alive = false;
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `spawn`, used by nothing once the Keeper goes (a
        // replaced keeper's would otherwise stay mapped).
        unsafe { libc::munmap(self.request.cast(), std::mem::size_of::<Request>()) };
    }
}

/// Sends one message with up to FDS_PER_MSG descriptors (SCM_RIGHTS), blocking; 0 or
/// an errno. Allocates nothing: the keeper's child sends with it too.
fn send_msg(sock: RawFd, op: u32, id: u32, fds: &[RawFd]) -> i32 {
    let fds = &fds[..fds.len().min(FDS_PER_MSG)];
    let msg = [op, id];
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: 8,
    };
    let mut cbuf = [0u64; cmsg_words(FDS_PER_MSG)];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives sendmsg.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds) as u32;
        hdr.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        hdr.msg_controllen = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        // SAFETY: the control buffer is CMSG_SPACE(bytes) long (≤ cbuf), so the
        // first header and its data fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: hdr and everything it points to are valid for the call.
        let n = unsafe { libc::sendmsg(sock, &hdr, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return 0;
        }
        let errno = crate::uprobe::errno();
        if errno != libc::EINTR {
            return errno;
        }
    }
}

/// u64 words of a control buffer for `n` descriptors (CMSG_SPACE, rounded up).
const fn cmsg_words(n: usize) -> usize {
    (std::mem::size_of::<libc::cmsghdr>() + n * 4).div_ceil(8) + 1
}

/// The keeper's whole life. Raw system calls only, no allocation (`held` has its
/// capacity already), and `_exit` at the end: nothing of the parent's state (locks,
/// buffers, destructors) is touched after the fork.
///
/// Two threads: this one receives, a closer closes. A unix datagram socket queues only
/// `net.unix.max_dgram_qlen` (10) messages, and one close can take the kernel ~0.1 s:
/// were both in one thread, periscope's sends would wait behind the closing.
fn child(sock: RawFd, held: &mut Vec<(u32, RawFd)>, request: *mut Request) -> ! {
    // SAFETY: plain system calls on this process's own state.
    unsafe {
        // Out of periscope's session and process group: Ctrl-C or a signal to the
        // group does not reach the keeper, and it has no controlling terminal.
        libc::setsid();
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_NAME, c"periscope-keep".as_ptr());
        // Keep only the socket: the parent's other descriptors (its BPF maps and
        // program, the terminal, pipes a reader waits on) must not live on here.
        if sock > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (sock - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (sock + 1) as u32, u32::MAX, 0u32);
    }
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: pipe writes two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        // No closer: close everything now, while periscope is alive and well.
        for &(_, fd) in held.iter() {
            // SAFETY: descriptors this process owns.
            unsafe { libc::close(fd) };
        }
        // SAFETY: ends the process.
        unsafe { libc::_exit(1) };
    }
    let table = std::sync::Mutex::new(std::mem::take(held));
    let closer = Closer {
        table: &table,
        sock,
        ids: pipe[0],
    };
    // Several closers: closing a uprobe_multi link waits for RCU grace periods (tens of
    // ms), and the links released after it (the return points of a budget window, say)
    // would stay attached, and cost, all that time.
    let mut threads: [libc::pthread_t; CLOSERS] = [0; CLOSERS];
    let mut started = 0;
    // Small stacks: a closer only makes system calls, and there are many.
    // SAFETY: a zeroed attr is initialized by pthread_attr_init before use; neither call
    // allocates.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 128 * 1024);
    }
    for t in threads.iter_mut() {
        // SAFETY: `closer` outlives the threads, which are joined before this function
        // ends.
        if unsafe {
            libc::pthread_create(
                t,
                &attr,
                closer_main,
                (&closer as *const Closer).cast_mut().cast(),
            )
        } == 0
        {
            started += 1;
        } else {
            break;
        }
    }
    let tell = |id: u32| {
        if started > 0 {
            // SAFETY: a 4-byte write to our own pipe (64 KiB: thousands of ids).
            unsafe { libc::write(pipe[1], (&id as *const u32).cast(), 4) };
        } else {
            closer.release(id);
        }
    };
    // The programs periscope gave (PROG_PERF, PROG_MULTI).
    let mut progs: [RawFd; 2] = [-1; 2];
    loop {
        // Received outside the lock (a receive blocks until periscope says something).
        let mut incoming: [(u32, RawFd); FDS_PER_MSG] = [(0, -1); FDS_PER_MSG];
        let mut n_in = 0;
        let got = receive(sock, &mut incoming, &mut n_in);
        if let Received::Message(OP_PROG, kind) = got {
            if let (Some(slot), true) = (progs.get_mut(kind as usize), n_in > 0) {
                if *slot >= 0 {
                    // SAFETY: a program descriptor this process owns, replaced.
                    unsafe { libc::close(*slot) };
                }
                *slot = incoming[0].1;
            }
            continue;
        }
        let mut lock = table.lock().unwrap_or_else(|e| e.into_inner());
        for &(id, fd) in &incoming[..n_in] {
            if lock.len() < lock.capacity() {
                lock.push((id, fd));
            }
            // Past capacity (the engine never sends that many) the descriptor is left
            // open: leaking a descriptor beats leaking a breakpoint.
        }
        drop(lock);
        if let Received::Message(OP_MAKE, id) = got {
            // SAFETY: periscope wrote the request before its MAKE and waits for the
            // answer; nobody else touches it meanwhile.
            // SAFETY: as above.
            let r = unsafe { &mut *request };
            let errno = make(r, &progs, id, &table);
            // Copies of the links go back to periscope, so that the keeper's copies are
            // never the last either: a keeper killed by SIGKILL leaks nothing while
            // periscope lives, and periscope then removes the uprobes itself.
            for chunk in r.fds[..r.links as usize].chunks(FDS_PER_MSG) {
                send_msg(sock, OP_LINKS, id, chunk);
            }
            // Blocking: periscope waits for the answer.
            send_msg(sock, OP_MADE, errno as u32, &[]);
            continue;
        }
        match got {
            Received::Message(OP_RELEASE, id) => tell(id),
            Received::Message(..) | Received::Nothing => {}
            Received::Closed => break,
        }
    }
    // periscope is gone (or closed its end): remove everything, then leave. Each
    // closer takes one ALL (they share the work) and ends.
    for _ in 0..started.max(1) {
        tell(ALL);
    }
    for &t in &threads[..started] {
        // SAFETY: joins a thread started above.
        unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
    }
    // SAFETY: ends this process without running any of the parent's code.
    unsafe { libc::_exit(0) }
}

/// Makes the links a MAKE request describes, under `id`, into `table` (each link is
/// in the table before the next is made; the lock is taken for each, so the closers
/// go on meanwhile). Returns 0 or the first errno; `made` says how many uprobes were
/// made.
fn make(
    r: &mut Request,
    progs: &[RawFd; 2],
    id: u32,
    table: &std::sync::Mutex<Vec<(u32, RawFd)>>,
) -> i32 {
    let cnt = (r.cnt as usize).min(MAX_POINTS);
    let Some(&prog) = progs.get(r.kind as usize).filter(|&&p| p >= 0) else {
        return libc::EBADF;
    };
    r.made = 0;
    r.links = 0;
    let push = |r: &mut Request, fd: RawFd| {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        // The engine checks the capacity before it asks (see Keeper::make).
        if t.len() < t.capacity() {
            t.push((id, fd));
        }
        r.fds[r.links as usize] = fd;
        r.links += 1;
    };
    {
        let t = table.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() + cnt > t.capacity() {
            return libc::ENOSPC;
        }
    }
    // The path is NUL-terminated by periscope; make sure of it.
    r.path[r.path.len() - 1] = 0;
    let path = r.path.as_ptr().cast::<libc::c_char>();
    if r.kind == PROG_MULTI {
        return match crate::multi::attach_raw(
            prog,
            path,
            &r.offsets[..cnt],
            &r.cookies[..cnt],
            r.pid,
        ) {
            Ok(fd) => {
                push(r, fd);
                r.made = cnt as u32;
                0
            }
            Err(errno) => errno,
        };
    }
    let mut first = 0;
    for i in 0..cnt {
        match crate::uprobe::attach_raw(prog, r.pmu, path, r.offsets[i], r.pid, r.cookies[i]) {
            Ok(fd) => {
                push(r, fd);
                r.made += 1;
            }
            Err(errno) if first == 0 => first = errno,
            Err(_) => {}
        }
    }
    first
}

/// "Close everything": what the receiver tells the closers when periscope is gone.
const ALL: u32 = u32::MAX;

/// Closer threads of the keeper. Closing a uprobe_multi link waits for RCU grace
/// periods, which the kernel shares among the closes waiting at the same time: 983
/// uprobes of 300 functions (one id each) were removed in 6.7 s by 4 closers, 0.5 s by
/// 64. Perf-event uprobes (kernels before 6.6) are removed one at a time under a kernel
/// mutex whatever the number of closers (~0.1 s each here, 4 closers or 64).
const CLOSERS: usize = 64;

struct Closer<'a> {
    table: &'a std::sync::Mutex<Vec<(u32, RawFd)>>,
    sock: RawFd,
    ids: RawFd,
}

impl Closer<'_> {
    /// Closes every link of `id` (of every id for ALL), one at a time outside the lock,
    /// then answers RELEASED.
    fn release(&self, id: u32) {
        loop {
            let fd = {
                let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
                match t.iter().position(|h| id == ALL || h.0 == id) {
                    // Keep the order of attachment: returns before entries is not
                    // needed here (the plan is already disabled), but it costs nothing.
                    Some(pos) => t.remove(pos).1,
                    None => break,
                }
            };
            // SAFETY: a descriptor this process received and owns. Here is where the
            // kernel removes the uprobe from the target.
            unsafe { libc::close(fd) };
        }
        if id != ALL {
            let msg = [OP_RELEASED, id];
            // Blocking: an answer must not be dropped (periscope waits for it), and
            // periscope reads answers on every drain. If periscope is gone, this fails
            // at once; the error is of no consequence.
            // SAFETY: sends 8 bytes from a live array.
            unsafe { libc::send(self.sock, msg.as_ptr().cast(), 8, libc::MSG_NOSIGNAL) };
        }
    }
}

extern "C" fn closer_main(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the `Closer` that `child` keeps alive until this thread is joined.
    let closer = unsafe { &*(arg as *const Closer<'_>) };
    loop {
        let mut id = 0u32;
        // SAFETY: reads 4 bytes into a local.
        let n = unsafe { libc::read(closer.ids, (&mut id as *mut u32).cast(), 4) };
        if n == 4 {
            closer.release(id);
            if id == ALL {
                return std::ptr::null_mut();
            }
        } else if n == 0
            || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
        {
            closer.release(ALL);
            return std::ptr::null_mut();
        }
    }
}

enum Received {
    Message(u32, u32),
    Nothing,
    Closed,
}

/// Receives one message (blocking); the descriptors of a HOLD go into `incoming`.
fn receive(sock: RawFd, incoming: &mut [(u32, RawFd); FDS_PER_MSG], n_in: &mut usize) -> Received {
    let mut msg = [0u32; 2];
    let mut iov = libc::iovec {
        iov_base: msg.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let mut cbuf = [0u64; cmsg_words(FDS_PER_MSG)];
    // SAFETY: a zeroed msghdr is valid; its pointers refer to the buffers above.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cbuf.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: recvmsg writes into the buffers described by hdr.
    let n = unsafe { libc::recvmsg(sock, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => Received::Nothing,
            _ => Received::Closed,
        };
    }
    if n == 0 {
        return Received::Closed;
    }
    // SAFETY: walking the control messages recvmsg wrote, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count.min(FDS_PER_MSG - *n_in) {
                    incoming[*n_in] = (msg[1], std::ptr::read_unaligned(data.add(i)));
                    *n_in += 1;
                }
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    Received::Message(msg[0], msg[1])
}
