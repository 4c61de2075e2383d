//! # Theory of operation
//!
//! The `log` facade's back-end, with upstream's destinations (passt(1):
//! -d, --trace, -q, -l, -f): standard error while in the foreground or before
//! daemonizing, a file with `-l/--log-file`, else syslog(3)'s socket
//! /dev/log once we run in the background. `-q` shows warnings and errors
//! only, `-d` adds debug messages, `--trace` adds per-packet ones.
//!
//! Syscalls: write, sendto (syslog), openat (log file).

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Where messages go.
enum Sink {
    Stderr,
    File(File),
    Syslog(UnixDatagram),
    Null,
}

struct Logger {
    prog: &'static str,
    start: Instant,
    sink: Mutex<Sink>,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let Ok(mut sink) = self.sink.lock() else { return };
        match &mut *sink {
            Sink::Stderr => {
                let _ = if log::max_level() >= LevelFilter::Debug {
                    let t = self.start.elapsed();
                    writeln!(std::io::stderr(), "{}.{:04}: {}", t.as_secs(), t.subsec_micros() / 100, r.args())
                } else {
                    writeln!(std::io::stderr(), "{}", r.args())
                };
            }
            Sink::File(f) => {
                // Upstream's log file layout: seconds since start, then a
                // fixed-width level tag.
                let tag = match r.level() {
                    Level::Error => "ERROR:   ",
                    Level::Warn => "WARNING: ",
                    Level::Info => "info:    ",
                    Level::Debug | Level::Trace => "         ",
                };
                let t = self.start.elapsed();
                let _ = writeln!(f, "{}.{:04}: {tag}{}", t.as_secs(), t.subsec_micros() / 100, r.args());
            }
            Sink::Syslog(s) => {
                // RFC 3164 style, facility daemon (3).
                let sev = match r.level() {
                    Level::Error => 3,
                    Level::Warn => 4,
                    Level::Info => 6,
                    Level::Debug | Level::Trace => 7,
                };
                let msg = format!("<{}>{}[{}]: {}", 3 * 8 + sev, self.prog, std::process::id(), r.args());
                let _ = s.send(msg.as_bytes());
            }
            Sink::Null => {}
        }
    }

    fn flush(&self) {}
}

/// Install the logger for program `prog` ("passt" or "pasta") at the level
/// given by the flags. Messages go to standard error until [`to_file`] or
/// [`to_background`] is called.
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
    let l = LOGGER.get_or_init(|| Logger { prog, start: Instant::now(), sink: Mutex::new(Sink::Stderr) });
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

/// Log to the file at `path` (created, appended to) from now on.
///
/// # Errors
/// The error of opening the file.
pub fn to_file(path: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    set_sink(Sink::File(f));
    Ok(())
}

/// After daemonizing without a log file: syslog, or nothing if /dev/log is
/// not there.
pub fn to_background() {
    let s = UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|()| s));
    set_sink(match s {
        Ok(s) => Sink::Syslog(s),
        Err(_) => Sink::Null,
    });
}
