//! # Theory of operation
//!
//! TCP without a TCP stack (DESIGN.md §4, and upstream's rationale in the
//! seed commit log): the guest's TCP talks to the host kernel's TCP through
//! us, and we keep no data buffers of our own.
//!
//! - [`conn`] is the tap-side state machine: sequence numbers, windows,
//!   handshake, FIN and RST, retransmission and timers. It is sans-IO: no
//!   fds, no clock; callers pass `now` and act on what it returns.
//! - [`io`] binds it to a host socket and to the tap: guest data is written
//!   to the socket and acknowledged only once the socket took it; host data
//!   is read with MSG_PEEK at SO_PEEK_OFF straight into transmit slots and
//!   removed from the socket only when the guest acknowledges it, so the
//!   kernel's socket buffer is our retransmission buffer.
//!
//! Every segment towards the tap is built in place (TCP, IP and Ethernet
//! headers in front of data received directly into the slot).

pub mod conn;
pub mod io;

