//! An IPv4 or IPv6 address in 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped
//! IPv6 address (RFC 4291 §2.5.5.2), network byte order. One type for both
//! families keeps flowsides fixed-size and hashable without branching.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address of either family; see the module documentation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inany(pub [u8; 16]);

impl Inany {
    /// 0.0.0.0.
    pub const UNSPEC4: Inany = Inany([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);
    /// ::.
    pub const UNSPEC6: Inany = Inany([0; 16]);
    /// 127.0.0.1.
    pub const LOOPBACK4: Inany = Inany([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
    /// ::1.
    pub const LOOPBACK6: Inany = Inany([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

    /// The IPv4 address, if this is one.
    pub fn v4(&self) -> Option<Ipv4Addr> {
        if self.0[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
            Some(Ipv4Addr::new(self.0[12], self.0[13], self.0[14], self.0[15]))
        } else {
            None
        }
    }

    /// True for an IPv4 address.
    pub fn is_v4(&self) -> bool {
        self.v4().is_some()
    }

    /// The address as an IPv6 address (IPv4 ones mapped).
    pub fn v6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.0)
    }

    /// The standard library's view.
    pub fn ip(&self) -> IpAddr {
        match self.v4() {
            Some(a) => IpAddr::V4(a),
            None => IpAddr::V6(self.v6()),
        }
    }

    /// Loopback (127.0.0.0/8 or ::1).
    pub fn is_loopback(&self) -> bool {
        match self.v4() {
            Some(a) => a.is_loopback(),
            None => self.v6().is_loopback(),
        }
    }

    /// Multicast, or IPv4 broadcast (limited).
    pub fn is_multicast_or_broadcast(&self) -> bool {
        match self.v4() {
            Some(a) => a.is_multicast() || a.is_broadcast(),
            None => self.v6().is_multicast(),
        }
    }

    /// Unspecified (0.0.0.0 or ::).
    pub fn is_unspecified(&self) -> bool {
        *self == Self::UNSPEC4 || *self == Self::UNSPEC6
    }
}

impl From<Ipv4Addr> for Inany {
    fn from(a: Ipv4Addr) -> Self {
        Inany(a.to_ipv6_mapped().octets())
    }
}

impl From<Ipv6Addr> for Inany {
    fn from(a: Ipv6Addr) -> Self {
        Inany(a.octets())
    }
}

impl From<IpAddr> for Inany {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => a.into(),
            IpAddr::V6(a) => a.into(),
        }
    }
}

impl std::fmt::Debug for Inany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ip())
    }
}

impl std::fmt::Display for Inany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips_through_mapped_form() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let i = Inany::from(a);
        assert_eq!(i.v4(), Some(a));
        assert_eq!(i.ip(), IpAddr::V4(a));
    }

    #[test]
    fn ipv6_is_not_v4() {
        let i = Inany::from("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(i.v4(), None);
        assert!(!Inany::LOOPBACK6.is_v4() && Inany::LOOPBACK6.is_loopback());
        assert!(Inany::LOOPBACK4.is_loopback());
    }

    #[test]
    fn classifies_multicast_and_broadcast() {
        assert!(Inany::from(Ipv4Addr::BROADCAST).is_multicast_or_broadcast());
        assert!(Inany::from(Ipv4Addr::new(224, 0, 0, 1)).is_multicast_or_broadcast());
        assert!(Inany::from("ff02::1".parse::<Ipv6Addr>().unwrap()).is_multicast_or_broadcast());
        assert!(!Inany::from(Ipv4Addr::new(192, 0, 2, 1)).is_multicast_or_broadcast());
    }
}
