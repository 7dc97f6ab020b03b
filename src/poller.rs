//! The epoll set and what its events are about. Everything that owns a host
//! socket registers it here; the engine owns the set and waits on it.
//!
//! #syscalls: epoll_create1 epoll_ctl epoll_wait|epoll_pwait|epoll_pwait2

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::os::fd::BorrowedFd;

/// What an epoll event is about: the low byte of its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Link,
    Signal,
    /// A forward's listening socket, by index.
    Listener(u32),
    /// The D-Bus connection (`--dbus-address`).
    Bus,
    /// A flow's host socket: slot index and generation (stale events for a
    /// slot that was freed and reused carry the old generation).
    Flow(u32, u32),
}

impl Token {
    pub fn encode(self) -> u64 {
        match self {
            Token::Link => 0,
            Token::Signal => 1,
            Token::Listener(i) => 2 | (i as u64) << 8,
            Token::Flow(i, g) => 3 | ((i as u64) & 0xff_ffff) << 8 | (g as u64) << 32,
            Token::Bus => 4,
        }
    }

    pub fn decode(v: u64) -> Token {
        match v & 0xff {
            0 => Token::Link,
            1 => Token::Signal,
            2 => Token::Listener((v >> 8) as u32),
            4 => Token::Bus,
            _ => Token::Flow(((v >> 8) & 0xff_ffff) as u32, (v >> 32) as u32),
        }
    }
}

/// The epoll set, shared by everything that owns a host socket.
pub struct Poller {
    epoll: Epoll,
}

impl Poller {
    pub fn new() -> std::io::Result<Poller> {
        Ok(Poller {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    pub fn add(&self, fd: BorrowedFd<'_>, token: Token, flags: EpollFlags) -> std::io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(flags, token.encode()))
            .map_err(Into::into)
    }

    pub fn modify(
        &self,
        fd: BorrowedFd<'_>,
        token: Token,
        flags: EpollFlags,
    ) -> std::io::Result<()> {
        let mut ev = EpollEvent::new(flags, token.encode());
        self.epoll.modify(fd, &mut ev).map_err(Into::into)
    }

    /// Wait for events (the engine's loop).
    pub fn wait(&self, events: &mut [EpollEvent], timeout: EpollTimeout) -> nix::Result<usize> {
        self.epoll.wait(events, timeout)
    }

    /// Closing an fd removes it from epoll; this is for sockets kept open.
    pub fn delete(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Link,
            Token::Signal,
            Token::Bus,
            Token::Listener(0),
            Token::Listener(77),
            Token::Flow(0, 0),
            Token::Flow(0xff_ffff, u32::MAX),
            Token::Flow(12, 3),
        ] {
            assert_eq!(Token::decode(t.encode()), t);
        }
    }
}
