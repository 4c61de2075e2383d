//! passt-ebpf-helper: loads and attaches pasta's eBPF programs for an
//! unprivileged pasta (`pasta --ebpf-helper PATH`) and passes it the maps.
//! See `passt::ebpf::helper` for the protocol and the trust model.

use std::process::ExitCode;

const USAGE: &str = "\
Usage: passt-ebpf-helper [-s PATH] [--allow-uid UID]... [-d]
  -s, --socket PATH     listen on PATH (default /run/passt-ebpf-helper.sock)
      --allow-uid UID   serve this uid too (root always is); repeatable
  -d, --debug           debug log
Needs CAP_BPF and CAP_NET_ADMIN (and CAP_SYS_ADMIN to enter namespaces).
";

fn main() -> ExitCode {
    let mut path = std::path::PathBuf::from(passt::ebpf::helper::DEFAULT_SOCKET);
    let mut allow = Vec::new();
    let mut debug = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-s" | "--socket" => match args.next() {
                Some(p) => path = p.into(),
                None => return usage("--socket needs a path"),
            },
            "--allow-uid" => match args.next().and_then(|u| u.parse::<u32>().ok()) {
                Some(u) => allow.push(u),
                None => return usage("--allow-uid needs a numeric uid"),
            },
            "-d" | "--debug" => debug = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown option '{other}'")),
        }
    }
    passt::log::init("passt-ebpf-helper", false, debug, false);
    match passt::ebpf::helper::serve(&path, &allow) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passt-ebpf-helper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprint!("passt-ebpf-helper: {msg}\n{USAGE}");
    ExitCode::FAILURE
}
