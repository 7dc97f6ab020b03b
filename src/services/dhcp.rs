//! DHCPv4 server (placeholder until wire::dhcpv4 lands).
#![forbid(unsafe_code)]
use crate::config::Config;
use crate::frame::L2;
use crate::link::Tx;
use crate::stack::Counters;
use std::net::Ipv4Addr;

pub struct Server;
impl Server {
    pub fn new(_cfg: &Config) -> Server {
        Server
    }
    pub fn handle(
        &mut self,
        _cfg: &Config,
        _l2: &L2,
        _src: Ipv4Addr,
        _l4: &[u8],
        _tx: &mut Tx,
        c: &mut Counters,
    ) {
        c.dhcp_ignored += 1;
    }
}
pub fn is_dhcp(l4: &[u8]) -> bool {
    l4.len() >= 4 && l4[2..4] == [0, 67]
}
