//! # Theory of operation
//!
//! The `log` facade's back-end, with upstream's destinations (passt(1):
//! -d, --trace, -q, -l, --log-size, -f):
//!
//! - standard error, while we run in the foreground: not after
//!   daemonizing, nor once pasta's spawned command runs, except with `-d`
//!   and no log file, where each line also starts with the seconds since
//!   start (`12.3456: `), as upstream's.
//! - a log file with `-l/--log-file` (created or truncated, mode 0600),
//!   which starts with a header line `passt VERSION: EXE (PID)`; each entry
//!   is `SECS.FRAC: LEVEL-TAG message`.
//! - syslog(3)'s socket `/dev/log` otherwise, unless debugging (`-d`: "don't
//!   log to the system logger"). The socket is connected at start-up
//!   ([`open_syslog`]), so it keeps working in the sandbox. Each message is
//!   one datagram `<PRI> prog: message` (PRI: facility daemon, RFC 3164
//!   §4.1.1 severity); the system logger adds the time stamp.
//!
//! `-q` shows warnings and errors only, `-d` adds debug messages, `--trace`
//! adds per-packet ones.
//!
//! ## The log file is bounded (`--log-size`)
//!
//! The file never grows past `--log-size` bytes (default 1 MiB, at least
//! [`LOG_SIZE_MIN`]). Before an entry would reach the limit, the oldest
//! [`LOG_CUT_PERCENT`] % of the limit (rounded up to a 4 KiB page, the
//! largest block size `FALLOC_FL_COLLAPSE_RANGE` needs) is removed from the
//! start, in place, on the fd opened at start-up (no path is opened again,
//! so this works in the sandbox):
//!
//! 1. `fallocate(FALLOC_FL_COLLAPSE_RANGE)` where the file system has it
//!    (ext4 with extents, XFS): the kernel drops the first blocks. The
//!    now-partial first line is overwritten with the header line followed
//!    by ` - log truncated at SECS.FRAC`, padded with spaces up to its
//!    newline, so the file keeps starting with a whole header line.
//! 2. Elsewhere (tmpfs, btrfs...): the header line is written at offset 0,
//!    then everything from the first line boundary after the cut is copied
//!    down behind it with pread/pwrite, and the file is truncated.
//!
//! Entries are capped at [`LOG_LINE_MAX`] bytes, which is less than a cut,
//! so one rotation always makes room. If a rotation fails the entry is
//! dropped: the bound holds whatever happens.
//!
//! Syscalls: write (stderr), pwrite64, pread64, fallocate, ftruncate (log
//! file), sendto (syslog), clock_gettime (vDSO); at start-up only: openat,
//! socket, connect, readlink (/proc/self/exe).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Default `--log-size`, bytes (passt(1)).
pub const LOG_SIZE_DEFAULT: u64 = 1024 * 1024;
/// Smallest accepted `--log-size`, bytes: five of the larger of BUFSIZ
/// (8 KiB) and a page, as upstream.
pub const LOG_SIZE_MIN: u64 = 5 * 8192;
/// Share of `--log-size` removed at the start of the file when it is full.
pub const LOG_CUT_PERCENT: u64 = 30;
/// Longest log file entry, bytes (newline included); longer ones are cut.
pub const LOG_LINE_MAX: usize = 8192;
/// Cut sizes are rounded up to this (largest file system block size that
/// `FALLOC_FL_COLLAPSE_RANGE` requires alignment to).
const CUT_ALIGN: u64 = 4096;
/// Syslog facility LOG_DAEMON (RFC 3164 §4.1.1: 3 << 3).
const LOG_DAEMON: u8 = 3 << 3;

/// A bounded log file, rotated in place; see the module documentation.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    /// `--log-size`, bytes.
    size: u64,
    /// Bytes currently in the file.
    written: u64,
    /// Bytes removed at the start on rotation (multiple of 4 KiB).
    cut: u64,
    /// First line of the file, without newline.
    header: String,
    /// Use `fallocate(FALLOC_FL_COLLAPSE_RANGE)`; cleared for good once
    /// the file system refuses it (tests clear it to exercise the copy).
    collapse: bool,
}

/// `SECS.FRAC` as upstream prints elapsed time: seconds, then four digits
/// of tenths of milliseconds.
fn fmt_elapsed(t: Duration) -> String {
    format!("{}.{:04}", t.as_secs(), t.subsec_micros() / 100)
}

impl LogFile {
    /// Create or truncate `path` (mode 0600) and write `header` as its
    /// first line. `size` is the bound in bytes, at least [`LOG_SIZE_MIN`].
    ///
    /// # Errors
    /// The OS error of open or write.
    ///
    /// Syscalls: openat, pwrite64.
    pub fn create(path: &Path, header: String, size: u64) -> std::io::Result<LogFile> {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(path)?;
        Self::from_file(file, header, size)
    }

    fn from_file(file: File, header: String, size: u64) -> std::io::Result<LogFile> {
        let size = size.max(LOG_SIZE_MIN);
        let cut = (size * LOG_CUT_PERCENT / 100).div_ceil(CUT_ALIGN) * CUT_ALIGN;
        let mut l = LogFile { file, size, written: 0, cut, header, collapse: true };
        let h = format!("{}\n", l.header);
        l.file.write_all_at(h.as_bytes(), 0)?;
        l.written = h.len() as u64;
        Ok(l)
    }

    /// Append one entry (a newline is added if missing), rotating first if
    /// it would reach the bound. `now` is the time since start, for the
    /// "log truncated at" note. Errors are swallowed: logging never fails
    /// the caller.
    ///
    /// Syscalls: pwrite64, and on rotation fallocate, pread64, ftruncate.
    pub fn write_entry(&mut self, entry: &str, now: Duration) {
        let mut b = entry.as_bytes();
        let mut cap = LOG_LINE_MAX - 1;
        if b.len() > cap {
            while !entry.is_char_boundary(cap) {
                cap -= 1;
            }
            b = &b[..cap];
        }
        let nl = !b.ends_with(b"\n");
        let n = b.len() as u64 + u64::from(nl);
        if self.written + n >= self.size && self.rotate(now).is_err() {
            return;
        }
        if self.written + n >= self.size {
            return;
        }
        let mut buf = [0u8; LOG_LINE_MAX];
        buf[..b.len()].copy_from_slice(b);
        if nl {
            buf[b.len()] = b'\n';
        }
        if self.file.write_all_at(&buf[..n as usize], self.written).is_ok() {
            self.written += n;
        }
    }

    /// The header line written back at a cut.
    fn cut_header(&self, now: Duration) -> String {
        format!("{} - log truncated at {}", self.header, fmt_elapsed(now))
    }

    /// Remove the oldest entries; see the module documentation.
    fn rotate(&mut self, now: Duration) -> std::io::Result<()> {
        if self.collapse && self.cut < self.written {
            let flags = nix::fcntl::FallocateFlags::FALLOC_FL_COLLAPSE_RANGE;
            match nix::fcntl::fallocate(self.file.as_fd(), flags, 0, self.cut as i64) {
                Ok(()) => {
                    self.written -= self.cut;
                    return self.mend_first_line(now);
                }
                Err(_) => self.collapse = false,
            }
        }
        self.copy_down(self.cut, now)
    }

    /// After a collapse: overwrite the partial first line with the header,
    /// padded with spaces up to that line's newline. If the header does not
    /// fit in front of a newline within the first [`LOG_LINE_MAX`] bytes,
    /// fall back to a copy from the first line boundary.
    fn mend_first_line(&mut self, now: Duration) -> std::io::Result<()> {
        let h = self.cut_header(now);
        let mut buf = [0u8; LOG_LINE_MAX];
        let n = read_full_at(&self.file, &mut buf, 0)?;
        match buf[..n].iter().skip(h.len()).position(|&c| c == b'\n') {
            Some(p) => {
                let end = h.len() + p;
                buf[..h.len()].copy_from_slice(h.as_bytes());
                buf[h.len()..end].fill(b' ');
                self.file.write_all_at(&buf[..end], 0)
            }
            None => self.copy_down(0, now),
        }
    }

    /// Write the header line at 0 and move everything after the first
    /// newline at or past `from` behind it, then truncate.
    fn copy_down(&mut self, from: u64, now: Duration) -> std::io::Result<()> {
        let h = format!("{}\n", self.cut_header(now));
        let hlen = h.len() as u64;
        // The first line boundary at or after max(from, hlen): bytes before
        // it are overwritten by the header.
        let mut buf = [0u8; LOG_LINE_MAX];
        let mut src = from.max(hlen);
        loop {
            if src >= self.written {
                break;
            }
            let n = read_full_at(&self.file, &mut buf, src)?;
            if n == 0 {
                src = self.written;
                break;
            }
            if let Some(p) = buf[..n].iter().position(|&c| c == b'\n') {
                src += p as u64 + 1;
                break;
            }
            src += n as u64;
        }
        self.file.write_all_at(h.as_bytes(), 0)?;
        let mut dst = hlen;
        while src < self.written {
            let n = read_full_at(&self.file, &mut buf, src)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&buf[..n], dst)?;
            src += n as u64;
            dst += n as u64;
        }
        self.file.set_len(dst)?;
        self.written = dst;
        Ok(())
    }
}

/// pread until `buf` is full or end of file; returns the bytes read.
fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where messages go, besides standard error.
#[derive(Debug)]
enum Sink {
    /// No log file, no syslog socket.
    None,
    /// `-l/--log-file`.
    File(LogFile),
    /// syslog's socket, connected at start-up.
    Syslog(UnixDatagram),
}

struct Logger {
    prog: &'static str,
    start: Instant,
    sink: Mutex<Sink>,
    /// Still in the foreground: messages also go to standard error.
    stderr: AtomicBool,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Tag of a log file entry for `level`, fixed width (upstream's).
fn file_tag(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR:   ",
        Level::Warn => "WARNING: ",
        Level::Info => "info:    ",
        Level::Debug | Level::Trace => "         ",
    }
}

/// The syslog datagram for one message: `<PRI> prog: message\n`.
fn syslog_datagram(prog: &str, level: Level, msg: &str) -> String {
    // RFC 3164 §4.1.1 severities.
    let sev = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    let nl = if msg.ends_with('\n') { "" } else { "\n" };
    format!("<{}> {prog}: {msg}{nl}", LOG_DAEMON + sev)
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let debug = log::max_level() >= LevelFilter::Debug;
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        let t = self.start.elapsed();
        let msg = r.args().to_string();
        match &mut *sink {
            Sink::File(f) => f.write_entry(&format!("{}: {}{msg}", fmt_elapsed(t), file_tag(r.level())), t),
            // -d: "don't log to the system logger".
            Sink::Syslog(s) if !debug => {
                let _ = s.send(syslog_datagram(self.prog, r.level(), &msg).as_bytes());
            }
            Sink::Syslog(_) | Sink::None => {}
        }
        // With -d and no log file, upstream keeps printing to standard error
        // even once it is not ours any more.
        let file = matches!(*sink, Sink::File(_));
        if self.stderr.load(Ordering::Relaxed) || (debug && !file) {
            let _ = if debug && !file {
                writeln!(std::io::stderr(), "{}: {msg}", fmt_elapsed(t))
            } else {
                writeln!(std::io::stderr(), "{msg}")
            };
        }
    }

    fn flush(&self) {}
}

/// Install the logger for program `prog` ("passt" or "pasta") at the level
/// given by the flags. Messages go to standard error until [`to_file`] or
/// [`open_syslog`] adds a destination and [`to_background`] stops it.
pub fn init(prog: &'static str, quiet: bool, debug: bool, trace: bool) {
    let level = if trace {
        LevelFilter::Trace
    } else if debug {
        LevelFilter::Debug
    } else if quiet {
        LevelFilter::Warn
    } else {
        LevelFilter::Info
    };
    let l = LOGGER.get_or_init(|| Logger {
        prog,
        start: Instant::now(),
        sink: Mutex::new(Sink::None),
        stderr: AtomicBool::new(true),
    });
    let _ = log::set_logger(l);
    log::set_max_level(level);
}

fn set_sink(s: Sink) {
    if let Some(l) = LOGGER.get() {
        if let Ok(mut g) = l.sink.lock() {
            *g = s;
        }
    }
}

/// Log to the file at `path` from now on: created or truncated, with the
/// header line `PROG VERSION: EXE (PID)`, never larger than `size` bytes
/// (`--log-size`).
///
/// # Errors
/// The error of opening or writing the file.
///
/// Syscalls: openat, readlink, pwrite64.
pub fn to_file(path: &Path, size: u64) -> std::io::Result<()> {
    let prog = LOGGER.get().map_or("passt", |l| l.prog);
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default();
    let header = format!("{prog} {}: {exe} ({})", env!("CARGO_PKG_VERSION"), std::process::id());
    set_sink(Sink::File(LogFile::create(path, header, size)?));
    Ok(())
}

/// Without a log file: connect to syslog's socket `/dev/log` now, at
/// start-up (nothing is logged there if it is missing, or with `-d`).
///
/// Syscalls: socket, connect.
pub fn open_syslog() {
    if let Ok(s) = UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|()| s)) {
        set_sink(Sink::Syslog(s));
    }
}

/// After daemonizing, or once pasta's spawned command runs (it owns the
/// terminal): no more messages on standard error, except with `-d` and no
/// log file (upstream's rule); the log file or syslog remain.
pub fn to_background() {
    if let Some(l) = LOGGER.get() {
        l.stderr.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("passt-rs-log-{name}-{}", std::process::id()))
    }

    /// Fill a log of `size` bytes with `count` numbered entries; check the
    /// bound after every entry; return the file's text.
    fn fill(name: &str, size: u64, count: usize, collapse: bool) -> (String, LogFile) {
        let p = tmp(name);
        let mut l = LogFile::create(&p, "pasta 0.1: /x (7)".into(), size).unwrap();
        l.collapse = collapse;
        for i in 0..count {
            l.write_entry(
                &format!("{}.0000: info:    entry number {i:06} padding padding padding", i),
                Duration::from_secs(i as u64),
            );
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len < size, "entry {i}: file is {len} bytes, bound {size}");
            assert_eq!(len, l.written);
        }
        let s = std::fs::read_to_string(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        (s, l)
    }

    fn check_rotated(s: &str, count: usize) {
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("pasta 0.1: /x (7) - log truncated at "), "{:?}", lines[0]);
        // Every other line is whole, consecutive, and the last is the newest.
        let nums: Vec<usize> = lines[1..]
            .iter()
            .map(|l| {
                let n = l.split("entry number ").nth(1).unwrap_or_else(|| panic!("partial line {l:?}"));
                assert!(l.ends_with("padding padding padding"), "partial line {l:?}");
                n[..6].parse().unwrap()
            })
            .collect();
        assert_eq!(*nums.last().unwrap(), count - 1);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "gap in {nums:?}");
        assert!(nums[0] > 0, "nothing was cut");
    }

    #[test]
    fn copy_down_cuts_old_lines_at_line_boundaries_and_keeps_the_newest() {
        let (s, l) = fill("copy", LOG_SIZE_MIN, 3000, false);
        check_rotated(&s, 3000);
        assert!(!l.collapse);
    }

    #[test]
    fn collapse_or_fallback_cuts_old_lines_and_keeps_the_newest() {
        // Whichever the file system of the temporary directory supports.
        let (s, _) = fill("collapse", LOG_SIZE_MIN, 3000, true);
        check_rotated(&s, 3000);
    }

    #[test]
    fn collapse_mends_the_first_line_with_padding() {
        // Only where the file system collapses ranges (ext4, XFS); /var/tmp
        // is more often on disk than /tmp.
        let p = std::path::Path::new("/var/tmp").join(format!("passt-rs-log-mend-{}", std::process::id()));
        let Ok(mut l) = LogFile::create(&p, "pasta 0.1: /x (7)".into(), LOG_SIZE_MIN) else {
            return;
        };
        for i in 0..2000 {
            l.write_entry(&format!("{i}.0000: info:    entry number {i:06} padding padding padding"), Duration::ZERO);
        }
        let collapsed = l.collapse;
        let s = std::fs::read_to_string(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        if !collapsed {
            return;
        }
        let first = s.lines().next().unwrap();
        assert!(first.starts_with("pasta 0.1: /x (7) - log truncated at 0.0000 "), "{first:?}");
        assert!(first.trim_end().ends_with("0.0000"));
        check_rotated(&s, 2000);
    }

    #[test]
    fn header_is_the_first_line_and_entries_follow() {
        let p = tmp("header");
        let mut l = LogFile::create(&p, "passt 1.2: /usr/bin/passt (42)".into(), LOG_SIZE_DEFAULT).unwrap();
        l.write_entry("0.0001: info:    hello", Duration::ZERO);
        l.write_entry("0.0002: ERROR:   two\n", Duration::ZERO);
        let s = std::fs::read_to_string(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        assert_eq!(s, "passt 1.2: /usr/bin/passt (42)\n0.0001: info:    hello\n0.0002: ERROR:   two\n");
    }

    #[test]
    fn long_entries_are_capped_and_the_bound_holds() {
        let p = tmp("long");
        let mut l = LogFile::create(&p, "h".into(), LOG_SIZE_MIN).unwrap();
        let big = "é".repeat(LOG_LINE_MAX);
        for _ in 0..20 {
            l.write_entry(&big, Duration::ZERO);
            assert!(l.written < LOG_SIZE_MIN);
        }
        let s = std::fs::read_to_string(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        assert!(s.lines().skip(1).all(|x| x.len() < LOG_LINE_MAX));
    }

    #[test]
    fn cut_is_thirty_percent_rounded_to_pages() {
        let p = tmp("cut");
        let l = LogFile::create(&p, "h".into(), LOG_SIZE_DEFAULT).unwrap();
        let _ = std::fs::remove_file(&p);
        // 30 % of 1 MiB is 314572.8 bytes: 77 pages.
        assert_eq!(l.cut, 77 * 4096);
    }

    #[test]
    fn syslog_datagram_is_pri_prog_message() {
        assert_eq!(syslog_datagram("pasta", Level::Info, "hello"), "<30> pasta: hello\n");
        assert_eq!(syslog_datagram("passt", Level::Error, "bad\n"), "<27> passt: bad\n");
        assert_eq!(syslog_datagram("passt", Level::Warn, "w"), "<28> passt: w\n");
    }

    #[test]
    fn elapsed_has_four_fraction_digits() {
        assert_eq!(fmt_elapsed(Duration::from_micros(12_345_678)), "12.3456");
        assert_eq!(fmt_elapsed(Duration::from_micros(100)), "0.0001");
    }
}
