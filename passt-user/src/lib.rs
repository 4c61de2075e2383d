//! passt and pasta: user-mode networking that translates between a guest's
//! (or a network namespace's) Layer-2 frames and the host's Layer-4 sockets.
//!
//! See DESIGN.md in the project's shared documents for the map; every module
//! opens with its own theory of operation.

pub mod conf;
pub mod host;
pub mod netlink;
pub mod svc;
pub mod wire;
pub mod epoll;
pub mod flow;
pub mod tap;
pub mod counters;
pub mod daemon;
pub mod entry;
pub mod fwd;
pub mod fwd_rule;
pub mod fwd_scan;
pub mod icmp;
pub mod log;
pub mod pasta;
pub mod signals;
pub mod sys;
pub mod udp;
pub mod tcp;
pub mod netns;
pub mod listen;
pub mod limits;
pub mod pcap;
pub mod stats;
pub mod ebpf;
pub mod isolation;
pub mod threads;
#[doc(hidden)]
pub mod fuzz_entry;
