//! # Theory of operation
//!
//! `--stats DELAY` (passt(1)): "Display events statistics with a minimum
//! DELAY seconds between updates. If there is no event, statistics are not
//! displayed."
//!
//! The epoll loop counts every event it dispatches by the kind of fd it
//! came from ([`StatEvent`]): one array increment on the hot path, and
//! nothing at all without `--stats`. After a batch of events, if one was
//! counted in that batch and at least DELAY seconds went by since the last
//! print (or nothing was printed yet), one row of running totals goes to standard
//! error, in upstream's layout: a row is a space, then each counter
//! right-aligned in a 7-column field (`" %6u"`), in [`StatEvent`] order;
//! every 20 rows, a header names the columns top down, one per line,
//! indented to its column, with `|` marking the columns named above it.
//!
//! The periodic (1 s) timer is not counted: upstream's equivalent is
//! epoll_wait's timeout, not an event, and an idle daemon prints nothing.
//!
//! Syscalls: write (standard error), clock_gettime (vDSO).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::epoll::{EpollRef, EpollType};

/// The kinds of events counted, in column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum StatEvent {
    /// The tap: tun device, guest stream socket or vhost-user socket.
    Tap = 0,
    /// A TCP socket of a flow to or from the tap.
    TcpSock,
    /// A socket of a spliced TCP flow.
    TcpSplice,
    /// A listening TCP socket of a forwarding rule.
    TcpListen,
    /// The millisecond TCP timer (window re-checks).
    TcpTimer,
    /// A bound UDP socket of a forwarding rule.
    UdpListen,
    /// A UDP socket of a flow.
    UdpFlow,
    /// A socket of a spliced UDP flow.
    UdpSplice,
    /// A ping socket.
    Ping,
    /// The signalfd.
    Signal,
    /// The eBPF programs' log source.
    Ebpf,
}

/// What an epoll reference's fd is, for `--trace` lines (upstream's
/// wording where it has the same kind of fd).
pub fn epoll_type_str(kind: Option<EpollType>) -> &'static str {
    match kind {
        Some(EpollType::Tap) => "tap",
        Some(EpollType::UdpFlow) => "UDP flow socket",
        Some(EpollType::PingFlow) => "ICMP/ICMPv6 ping socket",
        Some(EpollType::Timer) => "periodic timer",
        Some(EpollType::Signal) => "signal fd",
        Some(EpollType::TcpSock) => "connected TCP socket",
        Some(EpollType::FastTimer) => "TCP timer",
        Some(EpollType::Listen) => "listening socket",
        Some(EpollType::TcpSplice) => "connected spliced TCP socket",
        Some(EpollType::UdpSplice) => "spliced UDP flow socket",
        Some(EpollType::Ebpf) => "eBPF log source",
        Some(EpollType::Handoff) => "worker inbox",
        None => "unknown reference",
    }
}

/// Number of [`StatEvent`] kinds.
pub const STAT_EVENTS: usize = StatEvent::Ebpf as usize + 1;

/// Rows between two headers (upstream's).
const HEADER_EVERY: u64 = 20;
/// Width of a column, separator included.
const COLUMN: usize = 7;

/// Event counters and print pacing for `--stats`.
#[derive(Debug)]
pub struct Stats {
    delay: Duration,
    names: [&'static str; STAT_EVENTS],
    events: [u64; STAT_EVENTS],
    /// An event was counted since the last [`Stats::poll`] (in this batch).
    pending: bool,
    /// When the last row was printed.
    before: Option<Instant>,
    /// Rows printed so far.
    rows: u64,
}

impl Stats {
    /// Counters printed at most every `delay_s` seconds; `tap` names the
    /// tap's column (e.g. "/dev/net/tun device").
    pub fn new(delay_s: u64, tap: &'static str) -> Stats {
        Stats {
            delay: Duration::from_secs(delay_s),
            names: [
                tap,
                "connected TCP socket",
                "connected spliced TCP socket",
                "listening TCP socket",
                "TCP timer",
                "listening UDP socket",
                "UDP flow socket",
                "spliced UDP flow socket",
                "ICMP/ICMPv6 ping socket",
                "signal fd",
                "eBPF log source",
            ],
            events: [0; STAT_EVENTS],
            pending: false,
            before: None,
            rows: 0,
        }
    }

    /// Count one event.
    #[inline]
    pub fn count(&mut self, e: StatEvent) {
        self.events[e as usize] += 1;
        self.pending = true;
    }

    /// Count the event for epoll reference `r`; `listen_tcp` tells whether
    /// a [`EpollType::Listen`] reference is a TCP listener (else UDP).
    /// Timer and unknown references are not counted.
    pub fn count_ref(&mut self, r: EpollRef, listen_tcp: impl FnOnce() -> bool) {
        let e = match r.kind() {
            Some(EpollType::Tap) => StatEvent::Tap,
            Some(EpollType::TcpSock) => StatEvent::TcpSock,
            Some(EpollType::TcpSplice) => StatEvent::TcpSplice,
            Some(EpollType::Listen) if listen_tcp() => StatEvent::TcpListen,
            Some(EpollType::Listen) => StatEvent::UdpListen,
            Some(EpollType::FastTimer) => StatEvent::TcpTimer,
            Some(EpollType::UdpFlow) => StatEvent::UdpFlow,
            Some(EpollType::UdpSplice) => StatEvent::UdpSplice,
            Some(EpollType::PingFlow) => StatEvent::Ping,
            Some(EpollType::Signal) => StatEvent::Signal,
            Some(EpollType::Ebpf) => StatEvent::Ebpf,
            Some(EpollType::Timer) | Some(EpollType::Handoff) | None => return,
        };
        self.count(e);
    }

    /// After a batch of events: the text to print (header every
    /// `HEADER_EVERY` rows, then a row) if an event was counted in this
    /// batch and the delay has passed since the last row, else `None`. As
    /// upstream, counts of a burst that ended within the delay wait for the
    /// next event.
    pub fn poll(&mut self, now: Instant) -> Option<String> {
        let counted = std::mem::replace(&mut self.pending, false);
        if !counted || self.before.is_some_and(|b| now.saturating_duration_since(b) < self.delay) {
            return None;
        }
        self.before = Some(now);
        let mut s = String::new();
        if self.rows.is_multiple_of(HEADER_EVERY) {
            s += &self.header();
        }
        s += &self.row();
        self.rows += 1;
        Some(s)
    }

    /// Column names, top down, each indented to its column, `|` marking
    /// the columns named above.
    fn header(&self) -> String {
        let mut s = String::new();
        for (i, name) in self.names.iter().enumerate() {
            for j in 0..(i + 1) * COLUMN {
                s.push(if j > 0 && j % COLUMN == 0 { '|' } else { ' ' });
            }
            s += name;
            s.push('\n');
        }
        s
    }

    /// One row of totals.
    fn row(&self) -> String {
        let mut s = String::from(" ");
        for v in self.events {
            let _ = write!(s, " {v:6}");
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_columns_top_down_with_bars_under_earlier_ones() {
        let st = Stats::new(1, "/dev/net/tun device");
        let h = st.header();
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines.len(), STAT_EVENTS);
        assert_eq!(lines[0], "       /dev/net/tun device");
        assert_eq!(lines[1], "       |      connected TCP socket");
        assert_eq!(lines[2], "       |      |      connected spliced TCP socket");
        assert!(
            lines[10].starts_with("       |      |      |      |      |      |      |      |      |      |      eBPF")
        );
    }

    #[test]
    fn rows_right_align_totals_under_their_names() {
        let mut st = Stats::new(1, "tap");
        let t0 = Instant::now();
        st.count(StatEvent::Tap);
        st.count(StatEvent::Tap);
        st.count(StatEvent::UdpFlow);
        let out = st.poll(t0).unwrap();
        let row = out.lines().last().unwrap();
        assert_eq!(row, format!("       2{}      1{}", "      0".repeat(5), "      0".repeat(4)));
        // Column i's name starts at offset 7 * (i + 1), where its value's
        // last digit is.
        assert_eq!(&row[..8], "       2");
    }

    #[test]
    fn nothing_is_printed_without_events_or_before_the_delay() {
        let mut st = Stats::new(2, "tap");
        let t0 = Instant::now();
        assert_eq!(st.poll(t0), None, "no event yet");
        st.count(StatEvent::Signal);
        assert!(st.poll(t0).is_some(), "first event prints at once");
        st.count(StatEvent::Signal);
        assert_eq!(st.poll(t0 + Duration::from_millis(1999)), None, "within the delay");
        assert_eq!(st.poll(t0 + Duration::from_secs(2)), None, "delay over, but no event in this batch");
        st.count(StatEvent::Signal);
        let row = st.poll(t0 + Duration::from_secs(3)).expect("event after the delay");
        assert!(row.ends_with(&format!("{}      3{}\n", "      0".repeat(9), "      0")), "{row:?}");
        assert_eq!(st.poll(t0 + Duration::from_secs(10)), None, "idle");
    }

    #[test]
    fn header_comes_back_every_20_rows() {
        let mut st = Stats::new(0, "tap");
        let t0 = Instant::now();
        let mut headers = 0;
        for i in 0..41u64 {
            st.count(StatEvent::Tap);
            let s = st.poll(t0 + Duration::from_secs(i)).unwrap();
            if s.contains("tap\n") {
                headers += 1;
                assert!(i % 20 == 0, "header at row {i}");
            }
        }
        assert_eq!(headers, 3);
    }

    #[test]
    fn timer_is_not_counted_and_listeners_split_by_protocol() {
        let mut st = Stats::new(1, "tap");
        st.count_ref(EpollRef::new(EpollType::Timer, 3, 0), || unreachable!());
        assert!(!st.pending);
        st.count_ref(EpollRef::new(EpollType::Listen, 3, 0), || true);
        st.count_ref(EpollRef::new(EpollType::Listen, 3, 0), || false);
        st.count_ref(EpollRef::new(EpollType::Listen, 3, 0), || false);
        assert_eq!(st.events[StatEvent::TcpListen as usize], 1);
        assert_eq!(st.events[StatEvent::UdpListen as usize], 2);
    }
}
