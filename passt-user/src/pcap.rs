//! # Theory of operation
//!
//! `-p/--pcap FILE` (passt(1)): every frame to and from the tap is written
//! to FILE in the classic pcap format, readable by tcpdump(8) and
//! wireshark, as it goes.
//!
//! Format (pcap-savefile(5), also draft-ietf-opsawg-pcap): a 24-byte file
//! header (magic 0xa1b2c3d4 in host order, so readers detect the byte
//! order; version 2.4; snaplen 65535 + 14; link type 1, Ethernet), then per
//! frame a 16-byte record header (seconds, microseconds of the wall clock;
//! captured and original length) and the frame. Fields are in host byte
//! order, as the format allows.
//!
//! Frames are appended to a buffer and written once per batch
//! ([`Pcap::flush`]), so a capture costs one write(2) per batch; a write
//! error stops the capture with one warning and never affects traffic.
//!
//! Syscalls: openat, write, clock_gettime (vDSO).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Link type of the capture: Ethernet (LINKTYPE_ETHERNET).
const LINKTYPE_ETHERNET: u32 = 1;
/// Longest frame captured whole.
const SNAPLEN: u32 = 65535 + 14;
/// Buffered bytes that trigger a write before the end of the batch.
const FLUSH_AT: usize = 1 << 20;

/// A capture file being written.
#[derive(Debug)]
pub struct Pcap {
    file: Option<File>,
    buf: Vec<u8>,
}

/// The 24-byte pcap file header.
fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs: 0
    h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

impl Pcap {
    /// Create (or truncate) `path` and write the file header.
    ///
    /// # Errors
    /// The OS error of open or write.
    pub fn create(path: &Path) -> io::Result<Pcap> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        f.write_all(&file_header())?;
        Ok(Pcap { file: Some(f), buf: Vec::with_capacity(FLUSH_AT + 65536) })
    }

    /// Add one frame, time-stamped now.
    pub fn frame(&mut self, frame: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let cap = frame.len().min(SNAPLEN as usize);
        self.buf.extend_from_slice(&(now.as_secs() as u32).to_ne_bytes());
        self.buf.extend_from_slice(&now.subsec_micros().to_ne_bytes());
        self.buf.extend_from_slice(&(cap as u32).to_ne_bytes());
        self.buf.extend_from_slice(&(frame.len() as u32).to_ne_bytes());
        self.buf.extend_from_slice(&frame[..cap]);
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Add a batch of frames, time-stamped now, and write them.
    pub fn frames<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) {
        for f in frames {
            self.frame(f);
        }
        self.flush();
    }

    /// Write the buffered frames.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(&self.buf) {
                log::warn!("Cannot write to pcap file: {e}, capture stopped");
                self.file = None;
            }
        }
        self.buf.clear();
    }
}

impl Drop for Pcap {
    /// Write what is still buffered: a capture survives to the end.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_are_laid_out_as_pcap_savefile_says() {
        let p = std::env::temp_dir().join(format!("passt-rs-pcap-{}", std::process::id()));
        let mut c = Pcap::create(&p).unwrap();
        let f1 = [0xaau8; 60];
        let f2 = [0x55u8; 1514];
        c.frame(&f1);
        c.frame(&f2);
        c.flush();
        let b = std::fs::read(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 0xa1b2_c3d4);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 2);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 4);
        assert_eq!(u32_at(16), 65549);
        assert_eq!(u32_at(20), 1);
        assert_eq!(b.len(), 24 + 16 + 60 + 16 + 1514);
        assert_eq!((u32_at(24 + 8), u32_at(24 + 12)), (60, 60));
        assert!(u32_at(28) < 1_000_000, "microseconds");
        assert_eq!(&b[40..100], &f1[..]);
        assert_eq!((u32_at(100 + 8), u32_at(100 + 12)), (1514, 1514));
        assert_eq!(&b[116..], &f2[..]);
    }

    #[test]
    fn nothing_is_written_until_flush() {
        let p = std::env::temp_dir().join(format!("passt-rs-pcap2-{}", std::process::id()));
        let mut c = Pcap::create(&p).unwrap();
        c.frame(&[1u8; 100]);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 24);
        c.flush();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 24 + 16 + 100);
        let _ = std::fs::remove_file(&p);
    }
}
