//! The process's open-files limit (RLIMIT_NOFILE), which bounds how many connections can be held.
//!
//! Every connection is a file descriptor, and so are the database files and the outbound HTTP
//! connections. When the limit is reached `accept` fails with EMFILE and every new request times
//! out, so the connection cap is kept below it (`http::server`).

/// Raises the soft limit to the hard limit (an unprivileged process may) and returns the soft
/// limit now in force; `None` when it cannot be read.
#[cfg(unix)]
pub fn raise_to_hard_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct we pass. It may refuse (macOS caps the soft
        // limit at OPEN_MAX when the hard one is infinite): then the old limit stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // rlim_t is u64 on Linux but not on every unix.
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> Option<u64> {
    None
}
