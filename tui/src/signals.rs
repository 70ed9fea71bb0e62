//! Termination signals for the shell, whose main thread sits in a blocking read: the
//! signals are blocked in every thread and taken by one thread with sigwait, which can
//! then detach every probe and restore the terminal before the process exits.
use std::os::fd::AsRawFd;

pub const INTERRUPT: libc::c_int = libc::SIGINT;

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and in the threads it starts
/// afterwards; call it before starting any thread.
pub fn block() {
    let s = set();
    // SAFETY: changes this thread's signal mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
}

/// Starts the thread that receives the blocked signals and hands each to `f`.
pub fn spawn_waiter(mut f: impl FnMut(libc::c_int) + Send + 'static) {
    std::thread::spawn(move || {
        let s = set();
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the set and writes the signal number.
            if unsafe { libc::sigwait(&s, &mut sig) } == 0 {
                f(sig);
            }
        }
    });
}

/// The terminal settings of stdin, to put back if the process must exit while a line
/// editor has the terminal in raw mode.
pub struct SavedTerminal(Option<libc::termios>);

impl SavedTerminal {
    pub fn save() -> SavedTerminal {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: tcgetattr fills a termios for a descriptor we own the use of.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            SavedTerminal((libc::tcgetattr(fd, &mut t) == 0).then_some(t))
        }
    }

    pub fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: puts back settings read from the same descriptor.
            unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, t) };
        }
    }
}
