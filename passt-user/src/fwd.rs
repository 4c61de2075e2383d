//! # Theory of operation
//!
//! Forwarding and NAT for flows initiated from the tap: given the address
//! and port the guest sent to, decide which host endpoint the flow's target
//! side talks to (passt(1), NOTES, "Handling of traffic with loopback
//! destination and source addresses", and --dns-forward/--dns-host):
//!
//! 1. multicast, broadcast, unspecified and loopback destinations are not
//!    forwarded;
//! 2. DNS (port 53, and 853 for DNS over TLS) to the `dns_match` address
//!    goes to `dns_host` (this also covers a mapped gateway that is a host
//!    resolver);
//! 3. the `map_host_loopback` address becomes 127.0.0.1 or ::1;
//! 4. anything else goes where the guest sent it.
//!
//! Replies are translated back by the flow itself: the tap side of a flow
//! keeps the address the guest used, so nothing here runs for them.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::Inany;

/// NAT settings for one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwdFamily<A> {
    /// Guest-side address standing for the host's loopback.
    pub map_host_loopback: Option<A>,
    /// Guest-side address whose DNS traffic goes to `dns_host`.
    pub dns_match: Option<A>,
    /// Host resolver for `dns_match` traffic.
    pub dns_host: Option<A>,
    /// Source address for outbound sockets (`-o`).
    pub outbound: Option<A>,
}

impl<A> Default for FwdFamily<A> {
    fn default() -> Self {
        FwdFamily { map_host_loopback: None, dns_match: None, dns_host: None, outbound: None }
    }
}

/// Forwarding rules for flows from the tap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fwd {
    /// IPv4 rules.
    pub v4: FwdFamily<Ipv4Addr>,
    /// IPv6 rules.
    pub v6: FwdFamily<Ipv6Addr>,
}

/// The L4 protocols that can carry DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// ICMP/ICMPv6 echo: no ports.
    Ping,
}

fn is_dns_port(l4: L4, port: u16) -> bool {
    l4 != L4::Ping && (port == 53 || port == 853)
}

impl Fwd {
    /// The host-side endpoint address for a flow the guest opened towards
    /// `dst` port `dport`; `None` when it must not be forwarded.
    pub fn from_tap(&self, l4: L4, dst: Inany, dport: u16) -> Option<Inany> {
        if dst.is_unspecified() || dst.is_multicast_or_broadcast() || dst.is_loopback() {
            return None;
        }
        if let Some(d) = dst.v4() {
            let f = &self.v4;
            if is_dns_port(l4, dport) && f.dns_match == Some(d) {
                if let Some(h) = f.dns_host {
                    return Some(h.into());
                }
            }
            if f.map_host_loopback == Some(d) {
                return Some(Inany::LOOPBACK4);
            }
        } else {
            let d = dst.v6();
            let f = &self.v6;
            if is_dns_port(l4, dport) && f.dns_match == Some(d) {
                if let Some(h) = f.dns_host {
                    return Some(h.into());
                }
            }
            if f.map_host_loopback == Some(d) {
                return Some(Inany::LOOPBACK6);
            }
        }
        Some(dst)
    }

    /// Source address to bind outbound sockets to for this family, if any.
    pub fn outbound(&self, v4: bool) -> Option<Inany> {
        if v4 {
            self.v4.outbound.map(Inany::from)
        } else {
            self.v6.outbound.map(Inany::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd() -> Fwd {
        Fwd {
            v4: FwdFamily {
                map_host_loopback: Some(Ipv4Addr::new(192, 0, 2, 1)),
                dns_match: Some(Ipv4Addr::new(192, 0, 2, 1)),
                dns_host: Some(Ipv4Addr::new(192, 0, 2, 1)),
                outbound: None,
            },
            v6: FwdFamily {
                map_host_loopback: Some("fe80::1".parse().unwrap()),
                dns_match: Some("fd00::53".parse().unwrap()),
                dns_host: Some("2001:db8::53".parse().unwrap()),
                outbound: None,
            },
        }
    }

    #[test]
    fn gateway_maps_to_host_loopback() {
        let gw = Inany::from(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(fwd().from_tap(L4::Udp, gw, 7), Some(Inany::LOOPBACK4));
        assert_eq!(fwd().from_tap(L4::Ping, gw, 53), Some(Inany::LOOPBACK4));
        let gw6 = Inany::from("fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(fwd().from_tap(L4::Udp, gw6, 7), Some(Inany::LOOPBACK6));
    }

    #[test]
    fn dns_to_gateway_that_is_a_resolver_goes_to_the_resolver() {
        let gw = Inany::from(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(fwd().from_tap(L4::Udp, gw, 53), Some(gw));
        assert_eq!(fwd().from_tap(L4::Tcp, gw, 853), Some(gw));
    }

    #[test]
    fn dns_forward_address_goes_to_dns_host() {
        let m = Inany::from("fd00::53".parse::<Ipv6Addr>().unwrap());
        let h = Inany::from("2001:db8::53".parse::<Ipv6Addr>().unwrap());
        assert_eq!(fwd().from_tap(L4::Udp, m, 53), Some(h));
        assert_eq!(fwd().from_tap(L4::Udp, m, 54), Some(m));
    }

    #[test]
    fn other_destinations_pass_unchanged_and_martians_are_refused() {
        let d = Inany::from(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(fwd().from_tap(L4::Udp, d, 7), Some(d));
        for bad in [Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST, Ipv4Addr::new(224, 0, 0, 251)] {
            assert_eq!(fwd().from_tap(L4::Udp, bad.into(), 7), None, "{bad}");
        }
    }
}
