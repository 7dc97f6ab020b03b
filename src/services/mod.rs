//! What airlock answers itself, as the virtual network: ARP, DHCPv4, and
//! echo replies from the virtual addresses. Pure frame-in, frame-out code:
//! no sockets, no syscalls.
#![forbid(unsafe_code)]

pub mod arp;
pub mod dhcp;
pub mod echo;
