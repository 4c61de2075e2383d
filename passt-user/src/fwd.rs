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
//!
//! Flows arriving on forwarded ports ([`Fwd::nat_from_host`], passt(1)
//! NOTES, "Handling of local traffic in pasta"):
//!
//! 1. in pasta, unless `--no-splice`, a client on a loopback address with
//!    no target address in the rule is spliced: a socket in the namespace
//!    connects to the namespace's own address (or, with
//!    `--host-lo-to-ns-lo`, to the loopback address the client used), and
//!    the kernel picks the source;
//! 2. otherwise the flow enters through the tap: its source is the
//!    client's address, except that 127.0.0.1 / ::1 become the
//!    `--map-host-loopback` address and the host's own address becomes the
//!    `--map-guest-addr` address; sources the guest could not answer
//!    (other loopback addresses, the guest's own address) become our tap
//!    address (the gateway); the destination is the rule's target address,
//!    or the guest's address as last seen on the tap.
//!
//! Flows from the namespace's loopback (`-T`/`-U`, [`Fwd::nat_from_splice`])
//! go to the same loopback address on the host.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::{FlowSide, Inany, Pif};

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
    /// `--map-guest-addr`: guest-side address standing for `addr` on the
    /// host.
    pub map_guest_addr: Option<A>,
    /// The address assigned to the guest (by default the host's own).
    pub addr: Option<A>,
    /// The guest's address as last seen on the tap (global scope for IPv6).
    pub addr_seen: Option<A>,
    /// Our address on the tap, source of inbound flows whose real source
    /// the guest could not answer (the gateway, or our link-local address
    /// for IPv6).
    pub our_tap_addr: Option<A>,
}

impl<A> Default for FwdFamily<A> {
    fn default() -> Self {
        FwdFamily {
            map_host_loopback: None,
            dns_match: None,
            dns_host: None,
            outbound: None,
            map_guest_addr: None,
            addr: None,
            addr_seen: None,
            our_tap_addr: None,
        }
    }
}

/// Forwarding rules for flows from the tap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fwd {
    /// IPv4 rules.
    pub v4: FwdFamily<Ipv4Addr>,
    /// IPv6 rules.
    pub v6: FwdFamily<Ipv6Addr>,
    /// The guest's IPv6 link-local address as last seen on the tap.
    pub ll_seen6: Option<Ipv6Addr>,
    /// pasta, without `--no-splice`: loopback clients are spliced.
    pub splice: bool,
    /// `--splice-only`: nothing goes through a tap.
    pub splice_only: bool,
    /// `--host-lo-to-ns-lo`.
    pub host_lo_to_ns_lo: bool,
    /// `--outbound-if4`: interface IPv4 outbound sockets are bound to.
    pub outbound_if4: Option<String>,
    /// `--outbound-if6`: interface IPv6 outbound sockets are bound to.
    pub outbound_if6: Option<String>,
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
            if let (true, Some(a)) = (f.map_guest_addr == Some(d), f.addr) {
                return Some(a.into());
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
            if let (true, Some(a)) = (f.map_guest_addr == Some(d), f.addr) {
                return Some(a.into());
            }
        }
        Some(dst)
    }

    /// Forget the addresses learnt from the guest (a new guest attached).
    pub fn guest_reset(&mut self) {
        self.v4.addr_seen = None;
        self.v6.addr_seen = None;
        self.ll_seen6 = None;
    }

    /// The guest's address to send inbound flows to, matching the family
    /// and scope of `src` (the source the guest will see): last seen on
    /// the tap, else the assigned one.
    pub fn guest_addr(&self, src: Inany) -> Option<Inany> {
        if src.is_v4() {
            return self.v4.addr_seen.or(self.v4.addr).map(Inany::from);
        }
        if src.v6().is_unicast_link_local() {
            // Until the guest's link-local address was seen, its global
            // one (on-link either way).
            if let Some(ll) = self.ll_seen6 {
                return Some(ll.into());
            }
        }
        self.v6.addr_seen.or(self.v6.addr).map(Inany::from)
    }

    /// Source address for an inbound flow from `client` on the host, as
    /// the guest will see it; `None` if there is none it could answer.
    fn inbound_src(&self, client: Inany) -> Option<Inany> {
        if let Some(c) = client.v4() {
            let f = &self.v4;
            let a = if c == Ipv4Addr::LOCALHOST {
                f.map_host_loopback
            } else if Some(c) == f.addr {
                f.map_guest_addr
            } else if c.is_loopback() || c.is_unspecified() || c.is_multicast() || c.is_broadcast() {
                None
            } else {
                return Some(client);
            };
            return a.or(f.our_tap_addr).map(Inany::from);
        }
        let c = client.v6();
        let f = &self.v6;
        let a = if c == Ipv6Addr::LOCALHOST {
            f.map_host_loopback
        } else if Some(c) == f.addr {
            f.map_guest_addr
        } else if c.is_unspecified() || c.is_multicast() || c.is_loopback() {
            None
        } else {
            return Some(client);
        };
        a.or(f.our_tap_addr).map(Inany::from)
    }

    /// Where a flow accepted on a forwarded port goes (see the module
    /// documentation): `ini` is the host side (`eaddr`/`eport` the client,
    /// `oaddr`/`oport` the local address and port it reached), `to` the
    /// target port, `taddr` the rule's target address. Returns the target
    /// interface and side; `None` if it can't be forwarded.
    pub fn nat_from_host(&self, l4: L4, ini: &FlowSide, to: u16, taddr: Option<Inany>) -> Option<(Pif, FlowSide)> {
        let taddr = taddr.filter(|a| !a.is_unspecified());
        let v4 = ini.eaddr.is_v4();
        if self.splice && taddr.is_none() && ini.eaddr.is_loopback() && l4 != L4::Ping {
            let any = if v4 { Inany::UNSPEC4 } else { Inany::UNSPEC6 };
            let eaddr = if self.host_lo_to_ns_lo && ini.oaddr.is_loopback() {
                ini.oaddr
            } else if self.host_lo_to_ns_lo {
                // The local address is not known (a UDP socket bound to any
                // address): the loopback address of the client's family.
                if v4 { Inany::LOOPBACK4 } else { Inany::LOOPBACK6 }
            } else if v4 {
                self.v4.addr_seen.or(self.v4.addr).map(Inany::from)?
            } else {
                self.v6.addr_seen.or(self.v6.addr).map(Inany::from)?
            };
            let oport = if l4 == L4::Udp { ini.eport } else { 0 };
            return Some((Pif::Splice, FlowSide { eaddr, eport: to, oaddr: any, oport }));
        }
        if self.splice_only {
            return None;
        }
        let oaddr = self.inbound_src(ini.eaddr)?;
        let eaddr = match taddr {
            Some(t) => t,
            None => self.guest_addr(oaddr)?,
        };
        Some((Pif::Tap, FlowSide { eaddr, eport: to, oaddr, oport: ini.eport }))
    }

    /// Where a flow accepted on a `-T`/`-U` port in the namespace goes:
    /// the same loopback address on the host, port `to`. `None` unless
    /// both of `ini`'s addresses are loopback (passt(1): `-T` binds to
    /// loopback in the namespace).
    pub fn nat_from_splice(l4: L4, ini: &FlowSide, to: u16) -> Option<FlowSide> {
        if !ini.eaddr.is_loopback() || !ini.oaddr.is_loopback() {
            return None;
        }
        let oport = if l4 == L4::Udp { ini.eport } else { 0 };
        Some(FlowSide { eaddr: ini.oaddr, eport: to, oaddr: ini.eaddr, oport })
    }

    /// Note the guest's source address from a frame (IPv4, global or
    /// link-local IPv6), used as destination of inbound flows.
    pub fn saw_guest(&mut self, src: Inany) {
        if let Some(a) = src.v4() {
            if !a.is_unspecified() && self.v4.addr_seen != Some(a) {
                self.v4.addr_seen = Some(a);
            }
            return;
        }
        let a = src.v6();
        if a.is_unspecified() || a.is_multicast() {
            return;
        }
        if a.is_unicast_link_local() {
            self.ll_seen6 = Some(a);
        } else if self.v6.addr_seen != Some(a) {
            self.v6.addr_seen = Some(a);
        }
    }

    /// Source address to bind outbound sockets to for this family, if any.
    pub fn outbound(&self, v4: bool) -> Option<Inany> {
        if v4 {
            self.v4.outbound.map(Inany::from)
        } else {
            self.v6.outbound.map(Inany::from)
        }
    }

    /// Bind `fd`, a new outbound socket of this family towards `dst`, to
    /// the `--outbound-if4/6` interface (SO_BINDTODEVICE, socket(7));
    /// nothing without the option, or for a loopback `dst` (as `-o`).
    ///
    /// # Errors
    /// The OS error of setsockopt(2) (ENODEV: no such interface now): the
    /// caller drops the flow rather than let it out through another
    /// interface.
    pub fn bind_outbound_if(&self, fd: std::os::fd::RawFd, v4: bool, dst: Inany) -> std::io::Result<()> {
        let ifname = if v4 { &self.outbound_if4 } else { &self.outbound_if6 };
        match ifname {
            Some(i) if !dst.is_loopback() => crate::sys::bind_to_device(fd, i),
            _ => Ok(()),
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
                ..FwdFamily::default()
            },
            v6: FwdFamily {
                map_host_loopback: Some("fe80::1".parse().unwrap()),
                dns_match: Some("fd00::53".parse().unwrap()),
                dns_host: Some("2001:db8::53".parse().unwrap()),
                outbound: None,
                ..FwdFamily::default()
            },
            ..Fwd::default()
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

    #[test]
    fn inbound_nat_splices_loopback_clients_and_keeps_other_sources() {
        let mut f = fwd();
        f.splice = true;
        f.v4.addr = Some(Ipv4Addr::new(192, 0, 2, 2));
        f.v4.our_tap_addr = Some(Ipv4Addr::new(192, 0, 2, 1));
        f.v6.addr = Some("2001:db8::2".parse().unwrap());
        f.v6.our_tap_addr = Some("fe80::1".parse().unwrap());
        let side = |e: Inany, o: Inany| FlowSide { eaddr: e, eport: 40000, oaddr: o, oport: 8080 };
        // Loopback client: spliced to the namespace's address, port 80.
        let (pif, t) = f.nat_from_host(L4::Tcp, &side(Inany::LOOPBACK4, Inany::LOOPBACK4), 80, None).unwrap();
        assert_eq!((pif, t.eaddr, t.eport, t.oport), (Pif::Splice, Ipv4Addr::new(192, 0, 2, 2).into(), 80, 0));
        f.host_lo_to_ns_lo = true;
        let (_, t) = f.nat_from_host(L4::Udp, &side(Inany::LOOPBACK6, Inany::UNSPEC6), 53, None).unwrap();
        assert_eq!((t.eaddr, t.oport), (Inany::LOOPBACK6, 40000), "UDP keeps the client's port");
        // A remote client goes through the tap with its own address.
        let r = Inany::from(Ipv4Addr::new(198, 51, 100, 1));
        let (pif, t) = f.nat_from_host(L4::Tcp, &side(r, Ipv4Addr::new(192, 0, 2, 2).into()), 80, None).unwrap();
        assert_eq!((pif, t.oaddr, t.oport, t.eaddr), (Pif::Tap, r, 40000, Ipv4Addr::new(192, 0, 2, 2).into()));
        // The host's own address, unmapped: our tap address; IPv6 from our
        // link-local goes to the global address until a link-local is seen.
        let own6 = Inany::from("2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let (_, t) = f.nat_from_host(L4::Tcp, &side(own6, own6), 80, None).unwrap();
        assert_eq!((t.oaddr, t.eaddr), (Inany::from("fe80::1".parse::<Ipv6Addr>().unwrap()), own6));
        f.saw_guest(Inany::from("fe80::2".parse::<Ipv6Addr>().unwrap()));
        let (_, t) = f.nat_from_host(L4::Tcp, &side(own6, own6), 80, None).unwrap();
        assert_eq!(t.eaddr, Inany::from("fe80::2".parse::<Ipv6Addr>().unwrap()));
        // -T: loopback to the same loopback on the host; anything else refused.
        let t = Fwd::nat_from_splice(L4::Tcp, &side(Inany::LOOPBACK4, Inany::LOOPBACK4), 22).unwrap();
        assert_eq!((t.eaddr, t.eport), (Inany::LOOPBACK4, 22));
        assert!(Fwd::nat_from_splice(L4::Tcp, &side(r, Inany::LOOPBACK4), 22).is_none());
    }
}
