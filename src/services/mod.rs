//! What airlock answers itself, as the virtual network: ARP, DHCPv4, NDP,
//! DHCPv6, and echo replies from the virtual addresses. Pure frame-in,
//! frame-out code: no sockets; only TFTP reads files (beneath its DIR).
#![forbid(unsafe_code)]

pub mod arp;
pub mod dhcp;
pub mod dhcpv6;
pub mod echo;
pub mod ndp;
pub mod tftp;
