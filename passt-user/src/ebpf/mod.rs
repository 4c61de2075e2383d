//! # Theory of operation
//!
//! Optional eBPF fast paths (`--ebpf`, pasta): programs from the
//! `passt-ebpf` crate, built by `cargo xtask build-ebpf` and embedded into
//! this binary by `build.rs` ([`OBJECT`]; `None` when built without the eBPF
//! toolchain).
//!
//! Each feature module says what it needs as a list of [`Attach`]ments
//! (program name and attach point); [`load`] has a loader load and attach
//! them ([`helper`] has the protocol), which keeps them attached while our
//! connection lasts and hands us the map file descriptors (SCM_RIGHTS):
//! updating maps and inserting sockets needs no privilege. The loader is
//! ([`Loader::prepare`]):
//! - a privileged `passt-ebpf-helper` daemon (`--ebpf-helper PATH`), for an
//!   unprivileged pasta;
//! - else, if we may load programs ([`probe_privileges`]: CAP_BPF and
//!   CAP_NET_ADMIN in the initial user namespace), our own child, forked
//!   before pasta moves into its user namespace (where it loses those
//!   capabilities for good, and the tap doesn't exist yet): it serves that
//!   one request, then drops every capability and only relays logs.
//!
//! The feature code only sees maps, by name ([`Loaded::take_map`]). When
//! there is no loader or it fails, the caller logs the one-line reason and
//! carries on with splice().
//!
//! Log records of the programs (aya-log) reach our log as text messages
//! relayed by the loader, on the same connection, polled by the main loop
//! ([`Loaded::log_fd`], [`Loaded::log_event`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use aya::maps::{Map, MapData, SockHash};
use aya::programs::{CgroupAttachMode, SchedClassifier, SkLookup, SkMsg, SockOps, TcAttachType};

pub mod helper;
pub mod lookup;
pub mod sockmap;
pub mod tap;

/// The eBPF state of a running pasta: what got loaded and each feature's
/// handle on its maps.
pub struct Accel {
    /// Programs and maps.
    pub loaded: Loaded,
    /// Tap classifier counters, if it is attached.
    pub tap: Option<tap::TapCounters>,
    /// Socket lookup maps, if the program is attached, until
    /// [`crate::listen::Listeners::steer`] takes them.
    pub lookup: Option<lookup::LookupMaps>,
    /// The spliced TCP short-circuit, once its maps are set up
    /// ([`sockmap::Sockmap::new`], by the caller of [`Accel::start`]).
    pub sockmap: Option<sockmap::Sockmap>,
}

impl Accel {
    /// Load what `--ebpf` asks for in pasta mode: the tap classifier on
    /// `ifname` in `netns` (none with `--splice-only`), socket lookup for
    /// forwarded ports in `lookup` (pasta's own namespace, the target
    /// namespace: see [`lookup::attaches`]), and the spliced TCP
    /// short-circuit's programs with sockops on cgroup `sockmap_cgroup`.
    ///
    /// # Errors
    /// One line saying why not (logged by the caller, which carries on
    /// without).
    pub fn start(
        loader: Loader,
        tap: Option<(OwnedFd, &str)>,
        lookup: (Option<OwnedFd>, Option<OwnedFd>),
        sockmap_cgroup: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let mut attaches = Vec::new();
        // Whether the tap classifier is asked for, not whether anything is:
        // other features add their own attachments.
        let with_tap = tap.is_some();
        if let Some((netns, ifname)) = tap {
            attaches.extend(tap::attaches(netns, ifname));
        }
        let with_lookup = lookup.0.is_some() || lookup.1.is_some();
        attaches.extend(lookup::attaches(lookup.0, lookup.1));
        if let Some(cg) = sockmap_cgroup {
            attaches.extend(sockmap::attaches(cg));
        }
        let mut loaded = load(loader, attaches)?;
        let lookup = if with_lookup {
            Some(lookup::LookupMaps::take(&mut loaded).map_err(|e| format!("socket lookup maps: {e:#}"))?)
        } else {
            None
        };
        let tap = if with_tap {
            use passt_ebpf::tc::{ANSWERS_MAP, CONF_MAP, COUNTERS_MAP};
            let mut take = |n: &str| loaded.take_map(n).ok_or(format!("no {n} map"));
            let (frames, answers, conf) = (take(COUNTERS_MAP)?, take(ANSWERS_MAP)?, take(CONF_MAP)?);
            Some(tap::TapCounters::new(frames, answers, conf).map_err(|e| format!("tap classifier maps: {e:#}"))?)
        } else {
            None
        };
        Ok(Self { loaded, tap, lookup, sockmap: None })
    }

    /// Lines for the exit summary.
    pub fn summary(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tap.iter().map(ToString::to_string).collect();
        v.extend(self.sockmap.iter().map(ToString::to_string));
        v
    }
}

/// The eBPF object (ELF, little-endian BPF), when built in.
#[cfg(passt_ebpf)]
pub static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/passt-ebpf.o")));
/// The eBPF object (ELF, little-endian BPF), when built in.
#[cfg(not(passt_ebpf))]
pub static OBJECT: Option<&[u8]> = None;

/// Where the cgroup v2 hierarchy is usually mounted (unified layout).
pub const DEFAULT_CGROUP: &str = "/sys/fs/cgroup";

/// The default cgroup for the sockops program (`--ebpf-cgroup`): the root
/// of the cgroup v2 hierarchy, as /proc/self/mountinfo shows it
/// (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid systems), else
/// [`DEFAULT_CGROUP`] if that is cgroup v2; `None` without cgroup v2.
pub fn default_cgroup() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    cgroup2_mount(&info)
        .or_else(|| Some(PathBuf::from(DEFAULT_CGROUP)))
        .filter(|p| is_cgroup2(p))
}

/// First cgroup2 mount point in mountinfo text (proc(5): field 5 is the
/// mount point, the filesystem type follows the " - " separator).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split(' ').next()? == "cgroup2").then(|| pre.split(' ').nth(4).map(PathBuf::from))?
    })
}

/// True if `path` is a directory of a cgroup v2 filesystem (statfs(2)).
pub fn is_cgroup2(path: &std::path::Path) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs(path).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// Where and how to attach one program of [`OBJECT`].
#[derive(Debug)]
pub enum Attach {
    /// A `classifier` on interface `ifname` of network namespace `netns`,
    /// egress (frames the interface transmits) or ingress. TCX on kernels
    /// that have it, else clsact + cls_bpf (aya picks).
    Tc {
        /// Program name.
        prog: String,
        /// Network namespace of the interface (an nsfs fd).
        netns: OwnedFd,
        /// Interface name.
        ifname: String,
        /// Egress if true, else ingress.
        egress: bool,
    },
    /// A `sock_ops` program on a cgroup v2 directory (single program mode).
    SockOps {
        /// Program name.
        prog: String,
        /// cgroup v2 directory.
        cgroup: PathBuf,
    },
    /// An `sk_msg` program on a sockhash of [`passt_ebpf::sockmap::SockKey`].
    SkMsg {
        /// Program name.
        prog: String,
        /// Map name.
        map: String,
    },
    /// An `sk_lookup` program on a network namespace.
    SkLookup {
        /// Program name.
        prog: String,
        /// The namespace (an nsfs fd).
        netns: OwnedFd,
    },
}

/// Loaded and attached programs: their maps, and where their log comes from.
pub struct Loaded {
    /// Maps by name, not yet taken.
    maps: HashMap<String, Map>,
    /// Where the program log comes from: the loader's connection, until
    /// it closes.
    log: Option<helper::Conn>,
    /// Who loaded them, for the log: "loaded" or "via helper at PATH".
    pub how: String,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("maps", &self.maps.keys().collect::<Vec<_>>()).field("how", &self.how).finish()
    }
}

impl Loaded {
    /// Take map `name` out (each map can be taken once).
    pub fn take_map(&mut self, name: &str) -> Option<Map> {
        self.maps.remove(name)
    }

    /// The fd to poll for program log records (readable: call
    /// [`Loaded::log_event`]), if any.
    pub fn log_fd(&self) -> Option<RawFd> {
        self.log.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Move waiting program log records to our log. Returns false when the
    /// source is gone for good (the helper closed its end, which also
    /// detached the programs); the fd must then leave epoll.
    pub fn log_event(&mut self) -> bool {
        let Some(c) = self.log.as_mut() else { return false };
        if c.relay_log() {
            return true;
        }
        log::warn!("eBPF loader closed the connection: the programs are detached, flows keep to splice()");
        self.log = None;
        false
    }
}

/// Check that this process may create a sockhash (the map every feature
/// needs the most privilege for): CAP_BPF and CAP_NET_ADMIN in the initial
/// user namespace, or CAP_SYS_ADMIN. An array map is not a test: CAP_BPF
/// alone may create one.
///
/// # Errors
/// The reason, as a sentence fragment for the fallback log line.
pub fn probe_privileges() -> Result<(), String> {
    #[repr(C)]
    #[derive(Default)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
    // bpf(2) takes a union that is zero past the fields a command uses; it
    // must be at least as large as the fields we fill.
    let mut attr = [0u8; 128];
    let create = MapCreate { map_type: BPF_MAP_TYPE_SOCKHASH, key_size: 4, value_size: 4, max_entries: 1, map_flags: 0 };
    // SAFETY: MapCreate is plain data smaller than attr.
    unsafe { std::ptr::copy_nonoverlapping(&create as *const MapCreate as *const u8, attr.as_mut_ptr(), std::mem::size_of::<MapCreate>()) };
    // SAFETY: BPF_MAP_CREATE reads `size` bytes of attr and returns an fd.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_mut_ptr(), attr.len() as libc::c_uint) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => format!(
                "not permitted to load eBPF programs ({e}): that needs CAP_BPF and CAP_NET_ADMIN in the initial user namespace, or a privileged helper (--ebpf-helper)"
            ),
            _ => format!("the kernel refused a sockhash map ({e})"),
        });
    }
    // SAFETY: fd was just returned to us.
    unsafe { libc::close(fd as RawFd) };
    Ok(())
}

/// Who loads and attaches the programs for us.
#[derive(Debug)]
pub enum Loader {
    /// A `passt-ebpf-helper` daemon listening at this path (`--ebpf-helper`).
    Helper(PathBuf),
    /// Our own privileged child, forked before we gave up our privileges
    /// ([`helper::fork_private`]): its end of a socket pair.
    Private(OwnedFd),
}

impl Loader {
    /// Pick the loader for `--ebpf` before pasta leaves the initial user
    /// namespace: the helper if one is given, else our own child if we are
    /// privileged enough.
    ///
    /// # Errors
    /// One line saying why eBPF can't be used (the caller logs it and keeps
    /// to splice()).
    pub fn prepare(helper_path: Option<&std::path::Path>) -> Result<Self, String> {
        if OBJECT.is_none() {
            return Err("this binary was built without the eBPF programs (cargo xtask build-ebpf builds them)".into());
        }
        if let Some(p) = helper_path {
            return Ok(Self::Helper(p.to_owned()));
        }
        probe_privileges()?;
        helper::fork_private().map(Self::Private).map_err(|e| format!("can't start the eBPF loader: {e:#}"))
    }
}

/// Have `loader` load [`OBJECT`] and attach `attaches`.
///
/// # Errors
/// Why not, as one line for the log (the caller then keeps to splice()).
pub fn load(loader: Loader, attaches: Vec<Attach>) -> Result<Loaded, String> {
    match loader {
        Loader::Helper(path) => helper::connect(&path)
            .and_then(|fd| helper::request(fd, attaches, format!("via helper at {}", path.display())))
            .map_err(|e| format!("eBPF helper at {}: {e:#}", path.display())),
        Loader::Private(fd) => helper::request(fd, attaches, "loaded by pasta".into()).map_err(|e| format!("{e:#}")),
    }
}

/// Map data behind the maps of `ebpf` that are left, by name (the helper
/// hands their fds over).
pub fn map_fds(ebpf: &aya::Ebpf) -> Vec<(String, std::os::fd::BorrowedFd<'_>)> {
    ebpf.maps()
        .filter_map(|(n, m)| map_data(m).map(|d| (n.to_owned(), d.fd().as_fd())))
        .collect()
}

/// The [`MapData`] inside any [`Map`].
fn map_data(m: &Map) -> Option<&MapData> {
    Some(match m {
        Map::Array(d)
        | Map::BloomFilter(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::XskMap(d) => d,
        _ => return None,
    })
}

/// A map received as a file descriptor.
///
/// # Errors
/// Not a BPF map fd.
pub fn map_from_fd(fd: OwnedFd) -> anyhow::Result<Map> {
    let data = MapData::from_fd(fd).context("not a BPF map")?;
    Map::from_map_data(data).context("unsupported map type")
}

fn program<'a, T>(ebpf: &'a mut aya::Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).with_context(|| format!("no program {name} in the object"))?;
    p.try_into().with_context(|| format!("program {name}: wrong type"))
}

/// Load one program of `ebpf` and attach it as `a` says. The link lives as
/// long as `ebpf`.
///
/// # Errors
/// The kernel's or aya's refusal, with the program's name.
pub fn attach(ebpf: &mut aya::Ebpf, a: &Attach) -> anyhow::Result<()> {
    match a {
        Attach::Tc { prog, netns, ifname, egress } => {
            let p: &mut SchedClassifier = program(ebpf, prog)?;
            p.load().with_context(|| format!("loading {prog}"))?;
            let kind = if *egress { TcAttachType::Egress } else { TcAttachType::Ingress };
            in_netns(netns, || -> anyhow::Result<()> {
                // Only needed (and only works) without TCX; harmless if it exists.
                let _ = aya::programs::tc::qdisc_add_clsact(ifname);
                p.attach(ifname, kind).with_context(|| format!("attaching {prog} to {ifname}"))?;
                Ok(())
            })?
        }
        Attach::SockOps { prog, cgroup } => {
            let cg = File::open(cgroup).with_context(|| format!("cgroup {}", cgroup.display()))?;
            let p: &mut SockOps = program(ebpf, prog)?;
            p.load().with_context(|| format!("loading {prog}"))?;
            p.attach(cg, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {prog} to cgroup {}", cgroup.display()))?;
        }
        Attach::SkMsg { prog, map } => {
            let fd = {
                let m = ebpf.map(map).with_context(|| format!("no map {map} in the object"))?;
                let h: SockHash<&MapData, passt_ebpf::sockmap::SockKey> =
                    SockHash::try_from(m).with_context(|| format!("map {map}"))?;
                h.fd().try_clone().context("dup")?
            };
            let p: &mut SkMsg = program(ebpf, prog)?;
            p.load().with_context(|| format!("loading {prog}"))?;
            p.attach(&fd).with_context(|| format!("attaching {prog} to {map}"))?;
        }
        Attach::SkLookup { prog, netns } => {
            let p: &mut SkLookup = program(ebpf, prog)?;
            p.load().with_context(|| format!("loading {prog}"))?;
            p.attach(netns.as_fd()).with_context(|| format!("attaching {prog} to a network namespace"))?;
        }
    }
    Ok(())
}

/// Run `f` on a short-lived thread that joined network namespace `netns`
/// (this thread's namespace is left alone).
fn in_netns<T: Send>(netns: &OwnedFd, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscall on a valid fd; affects this thread only.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(anyhow!("setns: {}", std::io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("namespace thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mount_point_from_mountinfo() {
        let hybrid = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
32 25 0:27 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
33 32 0:28 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
34 32 0:29 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd
";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "35 25 0:30 / /sys/fs/cgroup rw shared:12 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("32 25 0:27 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"), None);
        assert_eq!(cgroup2_mount("garbage\n\n - \n"), None);
    }

    #[test]
    fn cgroup2_check_tells_the_hierarchy_from_other_directories() {
        assert!(!is_cgroup2(std::path::Path::new("/tmp")));
        assert!(!is_cgroup2(std::path::Path::new("/nonexistent")));
        let root = default_cgroup().expect("this machine has cgroup v2");
        assert!(is_cgroup2(&root), "{} is not cgroup2", root.display());
    }
}
