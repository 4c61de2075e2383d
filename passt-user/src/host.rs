//! # Theory of operation
//!
//! What the host has, read once at start-up: the outbound interface for each
//! IP version (the one holding the first default route; else the only
//! interface with any route; `-i` overrides), its addresses and routes, its
//! default gateway, and the resolvers and search list in /etc/resolv.conf.
//! Everything is read over rtnetlink ([`crate::netlink`]); nothing here
//! changes the host.
//!
//! Choice rules, from passt(1) under -i and -g: default routes are taken in
//! kernel order (lowest metric first); for a multipath default route, the
//! first next hop with the highest weight gives interface and gateway.
//! Loopback interfaces never qualify, and routes to link-local prefixes
//! (169.254.0.0/16, fe80::/10) do not make an interface "have routes", since
//! every IPv6 interface that is up has fe80::/64. An interface without a
//! usable non-loopback address of a version gives nothing for that version:
//! deprecated and DAD-failed addresses are not usable, tentative ones are.
//!
//! resolv.conf(5) is parsed the way the C library reads it (keywords in the
//! first column, first address of a `nameserver` line, last `search` or
//! `domain` wins); anything else is skipped, never an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::netlink::{
    IfAddr, IpFamily, Link, Netlink, NetlinkError, NextHop, RouteEntry, IFA_F_DADFAILED,
    IFA_F_DEPRECATED,
};

/// One route of the host's outbound interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<A> {
    /// Destination prefix (unspecified with `prefix_len` 0 for default).
    pub dst: A,
    /// Destination prefix length in bits.
    pub prefix_len: u8,
    /// Next hop, if any (`None`: on-link).
    pub gw: Option<A>,
    /// RTA_PRIORITY, if set.
    pub metric: Option<u32>,
}

/// The host interface chosen for one IP version, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIf<A> {
    /// Interface name, e.g. "eth0".
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Interface MTU in bytes.
    pub mtu: u32,
    /// Addresses with prefix lengths, in kernel order; link-local included.
    pub addrs: Vec<(A, u8)>,
    /// Gateway of the default route via this interface (highest-weight
    /// nexthop for multipath), if any.
    pub gw: Option<A>,
    /// Every route via this interface in the main table.
    pub routes: Vec<Route<A>>,
}

/// The host's network, as [`discover`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNet {
    /// IPv4 outbound interface, if the host has one with an address.
    pub v4: Option<HostIf<Ipv4Addr>>,
    /// IPv6 outbound interface, if the host has one with an address.
    pub v6: Option<HostIf<Ipv6Addr>>,
}

/// Resolver settings from resolv.conf(5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolv {
    /// `nameserver` lines, in order (zone ids on IPv6 dropped).
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line, split on white space.
    pub search: Vec<String>,
}

/// Next hop with the highest weight among those whose interface passes
/// `accept`; the first one in kernel order among equals (passt(1), -g).
fn best_nexthop<A: IpFamily>(
    hops: &[NextHop<A>],
    accept: impl Fn(u32) -> bool,
) -> Option<&NextHop<A>> {
    let mut best: Option<&NextHop<A>> = None;
    for nh in hops.iter().filter(|nh| accept(nh.index)) {
        if best.is_none_or(|b| nh.weight > b.weight) {
            best = Some(nh);
        }
    }
    best
}

/// The outbound interface for one IP version when -i is not given
/// (passt(1), -i and -g): the interface of the first default route (for a
/// multipath one, of its highest-weight next hop); failing that, the only
/// interface with any route, routes to link-local prefixes not counted.
/// Loopback interfaces never qualify.
fn choose_link<'a, A: IpFamily>(links: &'a [Link], routes: &[RouteEntry<A>]) -> Option<&'a Link> {
    let usable = |index: u32| links.iter().any(|l| l.index == index && !l.loopback);
    let by_index = |index: u32| links.iter().find(|l| l.index == index);

    for r in routes.iter().filter(|r| r.prefix_len == 0) {
        if let Some(nh) = best_nexthop(&r.nexthops, usable) {
            return by_index(nh.index);
        }
    }

    let mut only: Option<u32> = None;
    for r in routes
        .iter()
        .filter(|r| !r.dst.is_link_local_prefix(r.prefix_len))
    {
        for nh in r.nexthops.iter().filter(|nh| usable(nh.index)) {
            match only {
                None => only = Some(nh.index),
                Some(index) if index != nh.index => return None,
                Some(_) => {}
            }
        }
    }
    only.and_then(by_index)
}

/// What the host has on `link` for one IP version, from the address and
/// route dumps; `None` if it has no non-loopback address of that version.
///
/// Deprecated addresses and those that failed duplicate address detection
/// are left out: the host does not use them as sources either. Each route
/// via `link` is reported with the highest-weight next hop via `link`.
fn host_if<A: IpFamily>(
    link: &Link,
    addrs: &[IfAddr<A>],
    routes: &[RouteEntry<A>],
) -> Option<HostIf<A>> {
    let addrs: Vec<(A, u8)> = addrs
        .iter()
        .filter(|a| a.index == link.index && a.flags & (IFA_F_DEPRECATED | IFA_F_DADFAILED) == 0)
        .map(|a| (a.addr, a.prefix_len))
        .collect();
    if !addrs.iter().any(|(a, _)| !a.is_loopback_addr()) {
        return None;
    }
    let routes: Vec<Route<A>> = routes
        .iter()
        .filter_map(|r| {
            let nh = best_nexthop(&r.nexthops, |index| index == link.index)?;
            Some(Route {
                dst: r.dst,
                prefix_len: r.prefix_len,
                gw: nh.gw,
                metric: r.metric,
            })
        })
        .collect();
    let gw = routes.iter().find(|r| r.prefix_len == 0).and_then(|r| r.gw);
    Some(HostIf {
        name: link.name.clone(),
        index: link.index,
        mtu: link.mtu,
        addrs,
        gw,
        routes,
    })
}

/// Discovery for one IP version: pick the interface (`iface` if given), then
/// read its addresses.
fn discover_family<A: IpFamily>(
    nl: &mut Netlink,
    links: &[Link],
    iface: Option<&str>,
) -> Result<Option<HostIf<A>>, NetlinkError> {
    let routes = nl.routes::<A>()?;
    let link = match iface {
        Some(name) => links.iter().find(|l| l.name == name),
        None => choose_link(links, &routes),
    };
    let Some(link) = link else {
        return Ok(None);
    };
    let addrs = nl.addrs::<A>(link.index)?;
    Ok(host_if(link, &addrs, &routes))
}

/// Find the host's outbound interface for IPv4 (if `want4`) and IPv6 (if
/// `want6`) and read what it holds, as passt(1) describes under -i and -g.
///
/// `iface` names the interface of each version, IPv4 then IPv6 (-i for
/// both, else `--outbound-if4` / `--outbound-if6`). Without a name, the
/// interface of the first default route of that version is taken (for a
/// multipath default route, the interface and gateway of the first next
/// hop with the highest weight); if there is no default route and exactly
/// one non-loopback interface has routes of that version (link-local
/// prefixes not counted), that one; else none. A version whose
/// interface has no non-loopback address of that version (deprecated and
/// DAD-failed addresses left out) is `None`.
///
/// Read-only: RTM_GETLINK, RTM_GETROUTE and RTM_GETADDR dumps.
///
/// # Errors
/// [`NetlinkError::NotFound`] if a name in `iface` is no interface; any
/// [`NetlinkError`] from the dumps.
///
/// Syscalls: sendto, recvfrom.
pub fn discover(
    nl: &mut Netlink,
    iface: [Option<&str>; 2],
    want4: bool,
    want6: bool,
) -> Result<HostNet, NetlinkError> {
    if !want4 && !want6 {
        return Ok(HostNet::default());
    }
    let links = nl.links()?;
    for (name, want) in iface.iter().zip([want4, want6]) {
        if let Some(name) = name.filter(|_| want) {
            if !links.iter().any(|l| l.name == name) {
                return Err(NetlinkError::NotFound(format!("interface {name}")));
            }
        }
    }
    let v4 = if want4 {
        discover_family::<Ipv4Addr>(nl, &links, iface[0])?
    } else {
        None
    };
    let v6 = if want6 {
        discover_family::<Ipv6Addr>(nl, &links, iface[1])?
    } else {
        None
    };
    Ok(HostNet { v4, v6 })
}

/// Read and parse resolv.conf(5) at `path` (normally /etc/resolv.conf); see
/// [`parse_resolv_conf`]. A missing or unreadable file gives an empty
/// [`Resolv`] (logged at debug level); invalid UTF-8 is replaced.
///
/// Syscalls: openat, read, close.
pub fn read_resolv_conf(path: &Path) -> Resolv {
    match std::fs::read(path) {
        Ok(bytes) => parse_resolv_conf(&String::from_utf8_lossy(&bytes)),
        Err(e) => {
            log::debug!("cannot read {}: {e}", path.display());
            Resolv::default()
        }
    }
}

/// Parse resolv.conf(5) text: `nameserver ADDR` lines in order (IPv4 or
/// IPv6; an IPv6 `%zone` suffix is dropped, as is anything after the first
/// address), and the last `search` or `domain` line for the search list.
/// Keywords must start in the first column, as for the C library's resolver;
/// comments start with `#` or `;` anywhere on a line. Unknown keywords and
/// lines that do not parse are skipped. Never fails or panics.
pub fn parse_resolv_conf(text: &str) -> Resolv {
    let mut resolv = Resolv::default();
    for line in text.lines() {
        // As in glibc and musl, keywords start in the first column.
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let Some(word) = words.next() else { continue };
                let addr = word.split('%').next().unwrap_or(word);
                match addr.parse::<IpAddr>() {
                    Ok(ip) => resolv.nameservers.push(ip),
                    Err(_) => log::debug!("resolv.conf: skipping nameserver {word:?}"),
                }
            }
            Some("search") => resolv.search = words.map(str::to_owned).collect(),
            Some("domain") => resolv.search = words.next().map(str::to_owned).into_iter().collect(),
            _ => {}
        }
    }
    resolv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::test_ns::{in_netns, veth_up};

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn link(index: u32, name: &str, loopback: bool) -> Link {
        Link {
            index,
            name: name.into(),
            mtu: 1500,
            mac: None,
            up: true,
            loopback,
        }
    }

    fn links() -> Vec<Link> {
        vec![
            link(1, "lo", true),
            link(2, "eth0", false),
            link(3, "eth1", false),
        ]
    }

    fn rt<A: IpFamily>(dst: A, prefix_len: u8, hops: &[(u32, Option<A>, u16)]) -> RouteEntry<A> {
        RouteEntry {
            dst,
            prefix_len,
            table: crate::netlink::RT_TABLE_MAIN,
            protocol: 4,
            scope: 0,
            metric: None,
            nexthops: hops
                .iter()
                .map(|&(index, gw, weight)| NextHop { index, gw, weight })
                .collect(),
        }
    }

    fn addr<A: IpFamily>(index: u32, addr: A, prefix_len: u8, flags: u32) -> IfAddr<A> {
        IfAddr {
            index,
            addr,
            prefix_len,
            scope: 0,
            flags,
        }
    }

    fn chosen<A: IpFamily>(routes: &[RouteEntry<A>]) -> Option<String> {
        let links = links();
        choose_link(&links, routes).map(|l| l.name.clone())
    }

    #[test]
    fn first_default_route_picks_interface() {
        let routes = [
            rt(v4("10.1.0.0"), 24, &[(3, None, 1)]),
            rt(Ipv4Addr::UNSPECIFIED, 0, &[(2, Some(v4("10.0.0.254")), 1)]),
            rt(Ipv4Addr::UNSPECIFIED, 0, &[(3, Some(v4("10.1.0.254")), 1)]),
        ];
        assert_eq!(chosen(&routes).as_deref(), Some("eth0"));
    }

    #[test]
    fn default_route_via_loopback_is_skipped() {
        let routes = [
            rt(Ipv6Addr::UNSPECIFIED, 0, &[(1, None, 1)]),
            rt(Ipv6Addr::UNSPECIFIED, 0, &[(3, Some(v6("fe80::1")), 1)]),
        ];
        assert_eq!(chosen(&routes).as_deref(), Some("eth1"));
    }

    #[test]
    fn multipath_default_picks_highest_weight_then_first() {
        let gw_a = Some(v4("10.0.0.254"));
        let gw_b = Some(v4("10.1.0.254"));
        let routes = [rt(Ipv4Addr::UNSPECIFIED, 0, &[(2, gw_a, 1), (3, gw_b, 3)])];
        assert_eq!(chosen(&routes).as_deref(), Some("eth1"));
        let routes = [rt(Ipv4Addr::UNSPECIFIED, 0, &[(3, gw_b, 2), (2, gw_a, 2)])];
        assert_eq!(chosen(&routes).as_deref(), Some("eth1"));
        let routes = [rt(Ipv4Addr::UNSPECIFIED, 0, &[(2, gw_a, 2), (3, gw_b, 2)])];
        assert_eq!(chosen(&routes).as_deref(), Some("eth0"));
        // The highest weight via loopback does not count.
        let routes = [rt(Ipv4Addr::UNSPECIFIED, 0, &[(3, gw_b, 1), (1, None, 9)])];
        assert_eq!(chosen(&routes).as_deref(), Some("eth1"));
    }

    #[test]
    fn without_default_route_the_only_interface_with_routes_is_chosen() {
        let routes = [
            rt(v4("10.1.0.0"), 24, &[(3, None, 1)]),
            rt(v4("10.2.0.0"), 16, &[(3, Some(v4("10.1.0.1")), 1)]),
            rt(v4("127.0.0.0"), 8, &[(1, None, 1)]),
            rt(v4("169.254.0.0"), 16, &[(2, None, 1)]),
        ];
        assert_eq!(chosen(&routes).as_deref(), Some("eth1"));
        let routes6 = [
            rt(v6("2001:db8::"), 64, &[(2, None, 1)]),
            rt(v6("fe80::"), 64, &[(3, None, 1)]),
        ];
        assert_eq!(chosen(&routes6).as_deref(), Some("eth0"));
    }

    #[test]
    fn without_default_route_two_interfaces_with_routes_choose_none() {
        let routes = [
            rt(v4("10.1.0.0"), 24, &[(3, None, 1)]),
            rt(v4("10.0.0.0"), 24, &[(2, None, 1)]),
        ];
        assert_eq!(chosen(&routes), None);
        let multi = [rt(v6("2001:db8::"), 48, &[(2, None, 1), (3, None, 1)])];
        assert_eq!(chosen(&multi), None);
        assert_eq!(chosen::<Ipv4Addr>(&[]), None);
        // A route through an index that is not a known link counts for nothing.
        assert_eq!(chosen(&[rt(v4("10.0.0.0"), 8, &[(42, None, 1)])]), None);
    }

    #[test]
    fn host_if_keeps_usable_addresses_and_routes_via_the_link() {
        let eth0 = link(2, "eth0", false);
        let addrs = [
            addr(2, v6("2001:db8::5"), 64, 0),
            addr(2, v6("2001:db8::6"), 64, IFA_F_DEPRECATED),
            addr(2, v6("2001:db8::7"), 64, IFA_F_DADFAILED),
            addr(2, v6("fe80::5"), 64, crate::netlink::IFA_F_TENTATIVE),
            addr(3, v6("2001:db8:1::5"), 64, 0),
        ];
        let mut metric = rt(v6("2001:db8:9::"), 48, &[(2, Some(v6("fe80::9")), 1)]);
        metric.metric = Some(77);
        let routes = [
            rt(v6("2001:db8::"), 64, &[(2, None, 1)]),
            rt(v6("2001:db8:1::"), 64, &[(3, None, 1)]),
            rt(
                Ipv6Addr::UNSPECIFIED,
                0,
                &[
                    (3, Some(v6("fe80::3")), 4),
                    (2, Some(v6("fe80::1")), 2),
                    (2, Some(v6("fe80::2")), 3),
                ],
            ),
            metric,
        ];
        let h = host_if(&eth0, &addrs, &routes).unwrap();
        assert_eq!(
            h,
            HostIf {
                name: "eth0".into(),
                index: 2,
                mtu: 1500,
                addrs: vec![(v6("2001:db8::5"), 64), (v6("fe80::5"), 64)],
                gw: Some(v6("fe80::2")),
                routes: vec![
                    Route {
                        dst: v6("2001:db8::"),
                        prefix_len: 64,
                        gw: None,
                        metric: None
                    },
                    Route {
                        dst: Ipv6Addr::UNSPECIFIED,
                        prefix_len: 0,
                        gw: Some(v6("fe80::2")),
                        metric: None
                    },
                    Route {
                        dst: v6("2001:db8:9::"),
                        prefix_len: 48,
                        gw: Some(v6("fe80::9")),
                        metric: Some(77)
                    },
                ],
            }
        );
    }

    #[test]
    fn host_if_without_non_loopback_address_is_none() {
        let eth0 = link(2, "eth0", false);
        let routes = [rt(
            Ipv4Addr::UNSPECIFIED,
            0,
            &[(2, Some(v4("10.0.0.1")), 1)],
        )];
        assert_eq!(host_if::<Ipv4Addr>(&eth0, &[], &routes), None);
        assert_eq!(
            host_if(&eth0, &[addr(2, v4("127.0.0.2"), 8, 0)], &routes),
            None
        );
        assert_eq!(
            host_if(
                &eth0,
                &[addr(2, v4("10.0.0.2"), 24, IFA_F_DEPRECATED)],
                &routes
            ),
            None
        );
        assert_eq!(
            host_if(&eth0, &[addr(3, v4("10.0.0.2"), 24, 0)], &routes),
            None
        );
        let h = host_if(&eth0, &[addr(2, v4("169.254.1.1"), 16, 0)], &routes).unwrap();
        assert_eq!(h.addrs, vec![(v4("169.254.1.1"), 16)]);
        assert_eq!(h.gw, Some(v4("10.0.0.1")));
    }

    #[test]
    fn host_if_gateway_is_from_first_default_route_even_if_on_link() {
        let eth0 = link(2, "eth0", false);
        let routes = [
            rt(Ipv4Addr::UNSPECIFIED, 0, &[(2, None, 1)]),
            rt(Ipv4Addr::UNSPECIFIED, 0, &[(2, Some(v4("10.0.0.1")), 1)]),
        ];
        let h = host_if(&eth0, &[addr(2, v4("10.0.0.2"), 24, 0)], &routes).unwrap();
        assert_eq!(h.gw, None);
        assert_eq!(h.routes.len(), 2);
    }

    // resolv.conf(5)

    fn ns(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn search(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolv_empty_text_gives_nothing() {
        assert_eq!(parse_resolv_conf(""), Resolv::default());
        assert_eq!(parse_resolv_conf("\n\n   \n"), Resolv::default());
    }

    #[test]
    fn resolv_nameservers_in_order_both_families() {
        let r = parse_resolv_conf(
            "nameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver\t198.51.100.7\n",
        );
        assert_eq!(
            r.nameservers,
            ns(&["192.0.2.1", "2001:db8::53", "198.51.100.7"])
        );
        assert!(r.search.is_empty());
    }

    #[test]
    fn resolv_ipv6_zone_is_stripped() {
        let r = parse_resolv_conf("nameserver fe80::1%eth0\nnameserver fe80::2%3\n");
        assert_eq!(r.nameservers, ns(&["fe80::1", "fe80::2"]));
    }

    #[test]
    fn resolv_comments_are_ignored() {
        let text =
            "# nameserver 192.0.2.9\n; nameserver 192.0.2.8\nnameserver 192.0.2.1 # primary\n\
                    nameserver 192.0.2.2;secondary\nsearch a.example # b.example\n";
        let r = parse_resolv_conf(text);
        assert_eq!(r.nameservers, ns(&["192.0.2.1", "192.0.2.2"]));
        assert_eq!(r.search, search(&["a.example"]));
    }

    #[test]
    fn resolv_last_search_or_domain_wins() {
        let r = parse_resolv_conf("search a.example b.example\nsearch c.example d.example\n");
        assert_eq!(r.search, search(&["c.example", "d.example"]));
        let r = parse_resolv_conf("search a.example b.example\ndomain c.example\n");
        assert_eq!(r.search, search(&["c.example"]));
        let r = parse_resolv_conf("domain c.example extra\nsearch\ta.example  b.example \n");
        assert_eq!(r.search, search(&["a.example", "b.example"]));
        let r = parse_resolv_conf("search a.example\nsearch\n");
        assert!(r.search.is_empty());
    }

    #[test]
    fn resolv_garbage_lines_are_skipped() {
        let text = "nameserver\nnameserver example.com\nnameserver 192.0.2.300\nnameserver 1.2.3.4.5\n\
                    nameservers 192.0.2.5\nNAMESERVER 192.0.2.6\n  nameserver 192.0.2.7\noptions ndots:2 edns0\n\
                    sortlist 130.155.160.0/255.255.240.0\n%%%\n\u{0}\u{7f}\nnameserver 192.0.2.1 192.0.2.2\n\
                    nameserver ::ffff:192.0.2.3\nnameserver %eth0\n";
        let r = parse_resolv_conf(text);
        assert_eq!(r.nameservers, ns(&["192.0.2.1", "::ffff:192.0.2.3"]));
        assert!(r.search.is_empty());
    }

    #[test]
    fn resolv_crlf_line_endings_are_accepted() {
        let r = parse_resolv_conf("nameserver 192.0.2.1\r\nsearch example.org\r\n");
        assert_eq!(r.nameservers, ns(&["192.0.2.1"]));
        assert_eq!(r.search, search(&["example.org"]));
    }

    #[test]
    fn resolv_arbitrary_bytes_never_panic() {
        let mut x: u32 = 0x1234_5678;
        let alphabet = b"nameserver search domain #;%:.0123456789abcdef \t\r\n\xff";
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    alphabet[(x as usize) % alphabet.len()]
                })
                .collect();
            let r = parse_resolv_conf(&String::from_utf8_lossy(&bytes));
            assert!(r.nameservers.len() <= len);
        }
    }

    #[test]
    fn read_resolv_conf_reads_file_and_tolerates_bad_utf8_or_absence() {
        let dir = std::env::temp_dir().join(format!("passt-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(
            &path,
            b"nameserver 192.0.2.1\n\xff\xfe bad\nsearch example.net\n",
        )
        .unwrap();
        let r = read_resolv_conf(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.nameservers, ns(&["192.0.2.1"]));
        assert_eq!(r.search, search(&["example.net"]));
        assert_eq!(read_resolv_conf(&dir.join("missing")), Resolv::default());
    }

    // discover() against the kernel, in private network namespaces.

    /// Two veth pairs, pa0 (MTU 1400) <-> pa0p and pb0 <-> pb0p, all up.
    /// Addresses on pa0: 10.0.0.1/24, 2001:db8::1/64; on pb0 (if `both`):
    /// 10.1.0.1/24, 2001:db8:1::1/64.
    fn two_links(nl: &mut Netlink, both: bool) -> (u32, u32) {
        let (a, _) = veth_up(nl, "pa0", "pa0p", 1400);
        let (b, _) = veth_up(nl, "pb0", "pb0p", 1500);
        nl.addr_add4(a, v4("10.0.0.1"), 24).unwrap();
        nl.addr_add6(a, v6("2001:db8::1"), 64).unwrap();
        if both {
            nl.addr_add4(b, v4("10.1.0.1"), 24).unwrap();
            nl.addr_add6(b, v6("2001:db8:1::1"), 64).unwrap();
        }
        (a, b)
    }

    fn default_via<A: IpFamily>(gw: A, metric: Option<u32>) -> Route<A> {
        Route {
            dst: A::UNSPECIFIED,
            prefix_len: 0,
            gw: Some(gw),
            metric,
        }
    }

    /// Routes sorted by (prefix length, destination), for comparison.
    fn sorted<A: IpFamily + Ord>(mut r: Vec<Route<A>>) -> Vec<Route<A>> {
        r.sort_by_key(|r| (r.prefix_len, r.dst));
        r
    }

    #[test]
    fn discover_takes_interfaces_of_first_default_routes() {
        in_netns(|nl| {
            let (a, b) = two_links(nl, true);
            nl.route_add4(a, &default_via(v4("10.0.0.254"), None))
                .unwrap();
            nl.route_add6(b, &default_via(v6("2001:db8:1::fe"), None))
                .unwrap();
            let h = discover(nl, [None, None], true, true).unwrap();

            let h4 = h.v4.unwrap();
            assert_eq!((h4.name.as_str(), h4.index, h4.mtu), ("pa0", a, 1400));
            assert_eq!(h4.addrs, vec![(v4("10.0.0.1"), 24)]);
            assert_eq!(h4.gw, Some(v4("10.0.0.254")));
            assert_eq!(
                sorted(h4.routes),
                vec![
                    Route {
                        dst: Ipv4Addr::UNSPECIFIED,
                        prefix_len: 0,
                        gw: Some(v4("10.0.0.254")),
                        metric: None
                    },
                    Route {
                        dst: v4("10.0.0.0"),
                        prefix_len: 24,
                        gw: None,
                        metric: None
                    },
                ]
            );

            let h6 = h.v6.unwrap();
            assert_eq!((h6.name.as_str(), h6.index, h6.mtu), ("pb0", b, 1500));
            assert_eq!(
                h6.addrs.first(),
                Some(&(v6("2001:db8:1::1"), 64)),
                "{:?}",
                h6.addrs
            );
            // Besides ours, only the kernel's own link-local address.
            assert!(
                h6.addrs[1..]
                    .iter()
                    .all(|(a, p)| a.is_unicast_link_local() && *p == 64),
                "{:?}",
                h6.addrs
            );
            assert_eq!(h6.gw, Some(v6("2001:db8:1::fe")));
            let r6: Vec<_> = sorted(h6.routes)
                .into_iter()
                .filter(|r| !r.dst.is_unicast_link_local())
                .collect();
            assert_eq!(
                r6,
                vec![
                    Route {
                        dst: Ipv6Addr::UNSPECIFIED,
                        prefix_len: 0,
                        gw: Some(v6("2001:db8:1::fe")),
                        metric: Some(1024)
                    },
                    Route {
                        dst: v6("2001:db8:1::"),
                        prefix_len: 64,
                        gw: None,
                        metric: Some(256)
                    },
                ]
            );
        });
    }

    #[test]
    fn discover_multipath_default_uses_highest_weight_next_hop() {
        in_netns(|nl| {
            let (a, b) = two_links(nl, true);
            let hops4 = [
                NextHop {
                    index: a,
                    gw: Some(v4("10.0.0.254")),
                    weight: 1,
                },
                NextHop {
                    index: b,
                    gw: Some(v4("10.1.0.254")),
                    weight: 3,
                },
            ];
            nl.route_add_multipath(Ipv4Addr::UNSPECIFIED, 0, None, &hops4)
                .unwrap();
            let hops6 = [
                NextHop {
                    index: a,
                    gw: Some(v6("2001:db8::fe")),
                    weight: 5,
                },
                NextHop {
                    index: b,
                    gw: Some(v6("2001:db8:1::fe")),
                    weight: 2,
                },
            ];
            nl.route_add_multipath(Ipv6Addr::UNSPECIFIED, 0, None, &hops6)
                .unwrap();
            let h = discover(nl, [None, None], true, true).unwrap();
            let (h4, h6) = (h.v4.unwrap(), h.v6.unwrap());
            assert_eq!((h4.name.as_str(), h4.gw), ("pb0", Some(v4("10.1.0.254"))));
            assert_eq!((h6.name.as_str(), h6.gw), ("pa0", Some(v6("2001:db8::fe"))));
        });
    }

    #[test]
    fn discover_multipath_tie_takes_first_next_hop() {
        in_netns(|nl| {
            let (a, b) = two_links(nl, true);
            let hops = [
                NextHop {
                    index: a,
                    gw: Some(v4("10.0.0.254")),
                    weight: 2,
                },
                NextHop {
                    index: b,
                    gw: Some(v4("10.1.0.254")),
                    weight: 2,
                },
            ];
            nl.route_add_multipath(Ipv4Addr::UNSPECIFIED, 0, None, &hops)
                .unwrap();
            let h4 = discover(nl, [None, None], true, false).unwrap().v4.unwrap();
            assert_eq!((h4.name.as_str(), h4.gw), ("pa0", Some(v4("10.0.0.254"))));
        });
    }

    #[test]
    fn discover_without_default_route_takes_the_only_interface_with_routes() {
        in_netns(|nl| {
            // pb0 is up with no address: only its fe80::/64 route, which
            // does not count.
            let (a, _) = two_links(nl, false);
            let h = discover(nl, [None, None], true, true).unwrap();
            let (h4, h6) = (h.v4.unwrap(), h.v6.unwrap());
            assert_eq!((h4.index, h4.gw), (a, None));
            assert_eq!((h6.index, h6.gw), (a, None));
            assert_eq!(
                h4.routes,
                vec![Route {
                    dst: v4("10.0.0.0"),
                    prefix_len: 24,
                    gw: None,
                    metric: None
                }]
            );
        });
    }

    #[test]
    fn discover_without_default_route_and_two_interfaces_finds_nothing() {
        in_netns(|nl| {
            two_links(nl, true);
            assert_eq!(discover(nl, [None, None], true, true).unwrap(), HostNet::default());
        });
    }

    #[test]
    fn discover_interface_option_overrides_choice() {
        in_netns(|nl| {
            let (a, b) = two_links(nl, true);
            nl.route_add4(a, &default_via(v4("10.0.0.254"), Some(100)))
                .unwrap();
            nl.route_add4(b, &default_via(v4("10.1.0.254"), Some(200)))
                .unwrap();
            nl.route_add6(a, &default_via(v6("2001:db8::fe"), Some(100)))
                .unwrap();
            nl.route_add6(b, &default_via(v6("2001:db8:1::fe"), Some(200)))
                .unwrap();

            let h = discover(nl, [None, None], true, true).unwrap();
            assert_eq!(h.v4.unwrap().name, "pa0");
            assert_eq!(h.v6.unwrap().name, "pa0");

            let h = discover(nl, [Some("pb0"), Some("pb0")], true, true).unwrap();
            let (h4, h6) = (h.v4.unwrap(), h.v6.unwrap());
            assert_eq!((h4.name.as_str(), h4.gw), ("pb0", Some(v4("10.1.0.254"))));
            assert_eq!(h4.addrs, vec![(v4("10.1.0.1"), 24)]);
            assert_eq!(
                (h6.name.as_str(), h6.gw),
                ("pb0", Some(v6("2001:db8:1::fe")))
            );

            // --outbound-if4 alone: IPv4 from pb0, IPv6 by the default route.
            let h = discover(nl, [Some("pb0"), None], true, true).unwrap();
            assert_eq!((h.v4.unwrap().name.as_str(), h.v6.unwrap().name.as_str()), ("pb0", "pa0"));

            // The peer has no IPv4 address: nothing for IPv4.
            let h = discover(nl, [Some("pb0p"), Some("pb0p")], true, false).unwrap();
            assert_eq!(h, HostNet::default());

            let e = discover(nl, [Some("nosuch0"), Some("nosuch0")], true, true).unwrap_err();
            assert!(
                matches!(&e, NetlinkError::NotFound(s) if s.contains("nosuch0")),
                "{e:?}"
            );
        });
    }

    #[test]
    fn discover_interface_without_address_gives_none() {
        in_netns(|nl| {
            let (_, b) = two_links(nl, false);
            nl.route_add4(
                b,
                &Route {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gw: None,
                    metric: None,
                },
            )
            .unwrap();
            assert_eq!(discover(nl, [None, None], true, false).unwrap().v4, None);
        });
    }

    #[test]
    fn discover_skips_unwanted_versions() {
        in_netns(|nl| {
            let (a, _) = two_links(nl, false);
            let h = discover(nl, [None, None], false, true).unwrap();
            assert_eq!(h.v4, None);
            assert_eq!(h.v6.unwrap().index, a);
            let h = discover(nl, [None, None], true, false).unwrap();
            assert_eq!(h.v4.unwrap().index, a);
            assert_eq!(h.v6, None);
            assert_eq!(
                discover(nl, [Some("nosuch0"), Some("nosuch0")], false, false).unwrap(),
                HostNet::default()
            );
        });
    }

    #[test]
    fn discover_in_empty_namespace_finds_nothing() {
        in_netns(|nl| {
            assert_eq!(discover(nl, [None, None], true, true).unwrap(), HostNet::default());
            // Loopback up: its routes live in the local table, and lo never
            // qualifies anyway.
            nl.link_set_up(1).unwrap();
            assert_eq!(discover(nl, [None, None], true, true).unwrap(), HostNet::default());
            assert_eq!(
                discover(nl, [Some("lo"), Some("lo")], true, true).unwrap(),
                HostNet::default()
            );
        });
    }
}
