//! Why frames were dropped or refused: one counter per reason, bumped by
//! every layer, printed at exit with `--debug`. A leaf module: it uses
//! nothing else of airlock.

use std::fmt;

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// Why frames were dropped or refused, by reason.
        #[derive(Debug, Default, Clone)]
        pub struct Counters { $($(#[$m])* pub $name: u64,)* }
        impl fmt::Display for Counters {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if self.$name != 0 { writeln!(f, "{}: {}", stringify!($name), self.$name)?; })*
                Ok(())
            }
        }
    };
}

counters! {
    /// Frames with an EtherType airlock does not speak.
    eth_unknown_type,
    arp_malformed,
    /// ARP for addresses that are not airlock's to answer.
    arp_ignored,
    ipv4_malformed,
    ipv4_bad_checksum,
    /// IPv4 when IPv4 is disabled, or from the wrong source.
    ipv4_ignored,
    ipv6_malformed,
    /// IPv6 when IPv6 is disabled, or of a kind airlock does not carry.
    ipv6_ignored,
    /// NDP with a bad checksum, length, option, or a hop limit not 255.
    ndp_malformed,
    /// NDP airlock has no answer for (the guest's own addresses among them).
    ndp_ignored,
    tcp_malformed,
    tcp_bad_checksum,
    /// Guest connections refused: nothing there, restricted, or host error.
    tcp_refused,
    udp_malformed,
    udp_bad_checksum,
    udp_dropped,
    icmp_malformed,
    icmp_dropped,
    dhcp_malformed,
    dhcp_ignored,
    dhcpv6_malformed,
    dhcpv6_ignored,
    /// A new flow found the table full.
    flows_full,
    flows_opened,
    flows_closed,
    /// `sendmsg` calls that wrote a flow's payloads held over a receive
    /// batch ([`crate::flow::Held`]), and the payloads they carried.
    tcp_held_writes,
    tcp_held_segments,
    /// Datagrams from the host larger than the MTU lets through.
    udp_host_oversize,
    /// ICMP errors relayed from the host's error queues.
    icmp_errors_to_guest,
    /// Echo requests not carried: ping sockets are not allowed.
    icmp_ping_denied,
    frag_reassembled,
    /// Fragments dropped: overlap, oversize, malformed.
    frag_dropped,
    /// Incomplete datagrams that timed out.
    frag_expired,
    forward_accept_failed,
    tftp_malformed,
    /// TFTP errors sent: refused names, unknown transfers, bad requests.
    tftp_errors,
    tftp_transfers,
    tftp_transfers_done,
    /// Guest messages of a kind turned off (passt's `--no-tcp` and kin).
    disabled,
}
