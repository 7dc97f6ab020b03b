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

use crate::config::Config;
use crate::counters::Counters;
use crate::link::Tx;
use crate::wire::{icmpv6, ip_proto, ipv6, Mac};
use std::time::Instant;

/// The servers that keep state: DHCPv4 leases, NDP's router
/// advertisements, DHCPv6 leases, TFTP transfers.
pub struct Services {
    pub dhcp: dhcp::Server,
    pub ndp: ndp::Router,
    pub dhcp6: dhcpv6::Server,
    pub tftp: tftp::Server,
}

impl Services {
    pub fn new(cfg: &Config) -> Services {
        Services {
            dhcp: dhcp::Server::new(cfg),
            ndp: ndp::Router::new(cfg),
            dhcp6: dhcpv6::Server::new(cfg),
            tftp: tftp::Server::new(cfg),
        }
    }

    /// An unfragmented IPv6 packet (`proto` and `l4` past its extension
    /// headers) for NDP, DHCPv6 or echo to a virtual address; false if it
    /// is none of those. These come from link-local and unspecified
    /// sources too, so they are answered before the source is checked.
    #[allow(clippy::too_many_arguments)]
    pub fn on_ipv6(
        &mut self,
        cfg: &Config,
        eth_src: Mac,
        repr: &ipv6::Repr,
        proto: u8,
        l4: &[u8],
        tx: &mut Tx,
        now: Instant,
        counters: &mut Counters,
    ) -> bool {
        let Some(net) = cfg.net6.as_ref() else {
            return false;
        };
        let pkt = ndp::Incoming {
            eth_src,
            src: repr.src,
            dst: repr.dst,
            hop_limit: repr.hop_limit,
        };
        match proto {
            // passt's --no-icmp: NDP and echo alike go unanswered.
            ip_proto::ICMPV6 if cfg.off.icmp => {
                counters.disabled += 1;
                true
            }
            ip_proto::ICMPV6 => {
                let Ok(icmp) = icmpv6::Packet::new_checked(l4) else {
                    counters.icmp_malformed += 1;
                    return true;
                };
                match icmp.msg_type() {
                    icmpv6::msg_type::ROUTER_SOLICIT..=icmpv6::msg_type::REDIRECT => {
                        self.ndp.handle(cfg, &pkt, l4, now, tx, counters);
                        true
                    }
                    icmpv6::msg_type::ECHO_REQUEST if net.is_virtual(repr.dst) => {
                        echo::reply_v6(eth_src, repr.src, repr.dst, l4, tx, counters);
                        true
                    }
                    _ => false,
                }
            }
            ip_proto::UDP if dhcpv6::is_dhcpv6(l4) => {
                if cfg.off.dhcpv6 {
                    counters.disabled += 1;
                } else {
                    self.dhcp6.handle(cfg, &pkt, l4, tx, counters);
                }
                true
            }
            _ => false,
        }
    }
}
