//! # Theory of operation
//!
//! Event and drop counters, one plain `u64` per reason, bumped on the data
//! path without atomics (single thread). Every frame or packet we do not
//! forward is counted under exactly one `drop_*` reason. They are printed as
//! one line, `counters: name=value ...` (only non-zero ones), when the
//! daemon exits and with `--debug` on each timer tick where they changed.

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Per-reason counters; see the module documentation.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// `(name, value)` for every counter, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name)),*].into_iter()
            }

            /// Add every counter of `o` to ours (`--threads`: the sum of
            /// the workers').
            pub fn add(&mut self, o: &Counters) {
                $(self.$name += o.$name;)*
            }
        }
    };
}

counters! {
    /// Frames read from the tap.
    tap_rx_frames,
    /// Frames written to the tap.
    tap_tx_frames,
    /// Super-frames (TCP or UDP GSO, [`crate::tap::offload`]) read from the tap.
    tap_rx_gso,
    /// Super-frames (TCP GSO) queued for the tap.
    tap_tx_gso,
    /// ARP/DHCP/NDP/DHCPv6 replies sent.
    svc_replies,
    /// ARP frames read from the tap (requests or not; with the eBPF tap
    /// classifier, those it left to us).
    svc_arp_frames,
    /// Neighbour solicitations read from the tap (ICMPv6 type 135; with
    /// the eBPF tap classifier, those it left to us).
    svc_ns_requests,
    /// UDP flows created.
    udp_flows,
    /// Spliced UDP flows created.
    udp_splice_flows,
    /// Ping flows created.
    ping_flows,
    /// TCP flows created.
    tcp_flows,
    /// Spliced TCP connections (loopback to loopback, no tap).
    tcp_splice_flows,
    /// TCP connections accepted on forwarded ports towards the tap.
    tcp_inbound_flows,
    /// Connections or datagrams on forwarded ports that had nowhere to go
    /// (no guest address known yet, source not translatable, --splice-only).
    drop_fwd_nat,
    /// TCP segments sent to the tap with host data.
    tcp_segs_to_tap,
    /// TCP connections to the host refused or failed (RST to the guest).
    tcp_refused,
    /// RSTs sent for segments of no known connection.
    tcp_rst_no_flow,
    /// Host socket took only part of the guest's data.
    tcp_short_writes,
    /// Writes to a host TCP socket that carried several segments from the
    /// tap at once (one sendmsg(2), [`crate::tcp::io::Stage`]).
    tcp_batched_writes,
    /// Segments those batched writes carried.
    tcp_batched_segs,
    /// ACKs to the tap held back for less than a full segment of guest
    /// data (`crate::tcp::io::flush_acks`, one per flow and tap batch): the
    /// next segment to the tap was to carry them.
    tcp_acks_delayed,
    /// Delayed ACKs the deadline sent as pure ACKs (no segment to the tap
    /// carried them in time).
    tcp_delayed_acks_sent,
    /// Sends to a host UDP socket of several datagrams from the tap at
    /// once (UDP_SEGMENT, [`crate::udp::Stage`]).
    udp_gso_sends,
    /// Datagrams those sends carried.
    udp_gso_segs,
    /// UDP_SEGMENT sends the kernel refused (the datagrams then went one
    /// by one).
    udp_gso_fallbacks,
    /// UDP super-frames written to the tap: several datagrams from a host
    /// socket in one frame (GSO type UDP_L4, `crate::udp::emit`).
    udp_uso_frames,
    /// Datagrams those super-frames carried.
    udp_uso_segs,
    /// Retransmissions to the tap on duplicate ACKs.
    tcp_fast_retransmits,
    /// Retransmissions to the tap on timeout.
    tcp_timeout_retransmits,
    /// Frame shorter than an Ethernet header.
    drop_eth_malformed,
    /// Control frames needing no answer (RA/NA/MLD from the guest, DHCP
    /// messages we do not answer): not forwarded, but not errors either.
    ignored_ctrl,
    /// Ethertype we do not handle (not ARP, IPv4 or IPv6).
    drop_ethertype,
    /// Malformed IPv4/IPv6 header or length.
    drop_ip_malformed,
    /// IPv4 fragments or IPv6 fragment headers (not supported).
    drop_ip_fragment,
    /// Malformed UDP/ICMP/TCP header.
    drop_l4_malformed,
    /// Frames whose offload metadata (virtio-net header) contradicts the
    /// frame: GSO type not matching the protocol, gso_size 0, checksum or
    /// header length beyond the frame, legacy UFO.
    drop_offload_malformed,
    /// Malformed ARP/DHCP/NDP/DHCPv6 message.
    drop_svc_malformed,
    /// IP protocol we do not forward.
    drop_ip_proto,
    /// TCP segment with TCP disabled (--no-tcp).
    drop_tcp,
    /// ICMP other than echo request (or echo disabled).
    drop_icmp_type,
    /// UDP disabled (--no-udp), or to a service that is disabled.
    drop_udp_disabled,
    /// Source or destination address we do not forward (multicast,
    /// loopback, unspecified, wrong family for this configuration).
    drop_addr,
    /// Flow table full.
    drop_flow_table_full,
    /// Socket creation failed for a new flow.
    drop_socket,
    /// New flow refused: out of file descriptors (socket, accept or pipe
    /// failed with EMFILE or ENFILE; see [`crate::limits`]).
    drop_no_fds,
    /// ICMP/ICMPv6 "administratively prohibited" sent to the tap for a
    /// refused UDP or ping flow.
    unreach_to_tap,
    /// Such ICMP errors not sent: over [`crate::limits::UNREACH_PER_SEC`].
    unreach_limited,
    /// send()/sendto() towards the host failed.
    drop_host_send,
    /// Datagram from the host larger than a frame.
    drop_host_oversize,
    /// Reply from a ping socket that is not an echo reply.
    drop_ping_reply,
    /// Frame dropped because the tap queue was full.
    drop_tap_full,
    /// `--threads`: frames read from our tap queue for a flow another
    /// worker owns, handed to it ([`crate::threads`]).
    thread_frames_handed,
    /// `--threads`: frames handed to us by another worker.
    thread_frames_taken,
    /// `--threads`: accepted connections handed to the worker owning
    /// their tap side.
    thread_tcp_handed,
    /// `--threads`: a handoff to a worker that was gone.
    drop_thread_handoff,
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "counters:")?;
        for (n, v) in self.iter().filter(|&(_, v)| v != 0) {
            write!(f, " {n}={v}")?;
        }
        Ok(())
    }
}

impl Counters {
    /// Sum of every `drop_*` counter.
    pub fn drops(&self) -> u64 {
        self.iter().filter(|(n, _)| n.starts_with("drop_")).map(|(_, v)| v).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_only_nonzero_counters() {
        let c = Counters { tap_rx_frames: 3, drop_tcp: 2, ..Default::default() };
        assert_eq!(c.to_string(), "counters: tap_rx_frames=3 drop_tcp=2");
        assert_eq!(c.drops(), 2);
    }
}
