//! seccomp: the last layer, an allow-list generated from every module's
//! `#syscalls:` annotation (see docs/security.md for the syntax and the list).
//!
//! `build.rs` compiles `seccomp/airlock.json` with seccompiler for the target
//! arch, twice: default action kill-process (`--sandbox=enforce|strict`) and
//! log (`--sandbox=log`, which lets everything through and leaves an audit
//! record for each syscall the policy lacks). Both programs are embedded here
//! as 8-byte little-endian `struct sock_filter` records.
//! #syscalls-startup: prctl seccomp

use super::Error;
use seccompiler::sock_filter;
use std::fmt;

static ENFORCE_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp-enforce.bpf"));
static LOG_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp-log.bpf"));

/// How many syscalls the filter allows on the target arch.
pub const ALLOWED_SYSCALLS: &str = env!("AIRLOCK_SECCOMP_SYSCALLS");

/// What happens to a syscall the policy does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The process is killed by SIGSYS.
    Enforce,
    /// The syscall runs and the kernel logs it (SECCOMP_RET_LOG).
    Log,
    /// No filter.
    Off,
}

/// The filter this process runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    /// `Off` when no filter was installed (mode off, or unavailable).
    pub mode: Mode,
    /// BPF instructions in the installed program.
    pub instructions: usize,
}

impl fmt::Display for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::Off => write!(f, "seccomp off"),
            Mode::Enforce => write!(
                f,
                "seccomp kills outside {ALLOWED_SYSCALLS} syscalls ({} BPF instructions)",
                self.instructions
            ),
            Mode::Log => write!(
                f,
                "seccomp logs outside {ALLOWED_SYSCALLS} syscalls ({} BPF instructions)",
                self.instructions
            ),
        }
    }
}

/// The embedded program for `mode` (empty for `Off`, or when this target
/// arch has no policy).
pub fn program(mode: Mode) -> Vec<sock_filter> {
    let bytes = match mode {
        Mode::Enforce => ENFORCE_BPF,
        Mode::Log => LOG_BPF,
        Mode::Off => &[],
    };
    bytes
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// Whether the kernel can run our filter with `mode`'s default action, and
/// there is a policy for this arch.
pub fn available(mode: Mode) -> bool {
    let action: u32 = match mode {
        Mode::Enforce => libc::SECCOMP_RET_KILL_PROCESS,
        Mode::Log => libc::SECCOMP_RET_LOG,
        Mode::Off => return true,
    };
    if program(mode).is_empty() {
        return false;
    }
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from a valid pointer
    // that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    rc == 0
}

/// Installs the filter on the calling thread: airlock is single-threaded,
/// and threads or children created later inherit it. Also clears the
/// dumpable flag (no core dumps, no ptrace by the same uid) and sets
/// no_new_privs (seccompiler does; it is required for an unprivileged filter).
pub fn install(mode: Mode) -> Result<Installed, Error> {
    if mode == Mode::Off {
        return Ok(Installed {
            mode,
            instructions: 0,
        });
    }
    let program = program(mode);
    if program.is_empty() {
        return Err(Error::Seccomp(format!(
            "no policy for {}",
            std::env::consts::ARCH
        )));
    }
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| Error::Seccomp(format!("PR_SET_DUMPABLE: {e}")))?;
    seccompiler::apply_filter(&program).map_err(|e| Error::Seccomp(e.to_string()))?;
    Ok(Installed {
        mode,
        instructions: program.len(),
    })
}

#[cfg(test)]
#[path = "../../seccomp/generator.rs"]
mod generator;

#[cfg(test)]
mod tests {
    use super::generator::{self, Phase};
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;
    use std::path::Path;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn policy(lines: &[&str]) -> Result<generator::Policy, String> {
        let text = lines.join("\n");
        let anns = generator::parse_source("m", &text)?;
        generator::build_policy(&anns)
    }

    fn filter<'a>(p: &'a generator::Policy, arch: &str) -> &'a BTreeMap<String, generator::Entry> {
        &p.filters.iter().find(|(a, _)| *a == arch).unwrap().1
    }

    #[test]
    fn alternatives_keep_what_each_arch_has() {
        let p = policy(&["//! #syscalls: epoll_wait|epoll_pwait read"]).unwrap();
        let x86: Vec<&String> = filter(&p, "x86_64").keys().collect();
        let arm: Vec<&String> = filter(&p, "aarch64").keys().collect();
        assert_eq!(x86, ["epoll_pwait", "epoll_wait", "read"]);
        assert_eq!(arm, ["epoll_pwait", "read"]);
    }

    #[test]
    fn arch_prefix_limits_an_entry_to_one_arch() {
        let p = policy(&["//! #syscalls: x86_64:open aarch64:openat"]).unwrap();
        assert!(filter(&p, "x86_64").contains_key("open"));
        assert!(!filter(&p, "x86_64").contains_key("openat"));
        assert!(filter(&p, "aarch64").contains_key("openat"));
        assert!(!filter(&p, "aarch64").contains_key("open"));
    }

    #[test]
    fn bad_annotations_are_errors() {
        // Missing on one arch without an alternative or a prefix.
        assert!(policy(&["//! #syscalls: epoll_wait"]).is_err());
        // A typo exists nowhere.
        assert!(policy(&["//! #syscalls: epol_wait|epoll_pwait"]).is_err());
        assert!(policy(&["//! #syscalls: aarch64:open"]).is_err());
        assert!(policy(&["//! #syscalls: mips:read"]).is_err());
        assert!(policy(&["//! #syscalls: socket(0=AF_BOGUS)"]).is_err());
        assert!(policy(&["//! #syscalls: socket(6=1)"]).is_err());
        assert!(policy(&["//! #syscalls: socket(0=1,0=2)"]).is_err());
        assert!(policy(&["//! #syscalls: socket(0=1"]).is_err());
        assert!(policy(&["//! #syscalls: mmap(2&4=8)"]).is_err());
        assert!(policy(&["//! #syscalls: read(0=0x100000000)"]).is_err());
    }

    #[test]
    fn arg_filters_expand_to_one_rule_per_combination() {
        let p = policy(&[
            "//! #syscalls: socket(0=AF_INET|AF_INET6,1&SOCK_TYPE_MASK=SOCK_STREAM|SOCK_DGRAM)",
        ])
        .unwrap();
        let e = &filter(&p, "x86_64")["socket"];
        assert!(!e.unconditional);
        assert_eq!(e.rules.len(), 4);
        let (labels, _) = &e.rules[&vec![
            generator::Cond {
                index: 0,
                mask: None,
                value: 10,
            },
            generator::Cond {
                index: 1,
                mask: Some(0xf),
                value: 2,
            },
        ]];
        assert_eq!(labels, &["AF_INET6", "SOCK_TYPE_MASK=SOCK_DGRAM"]);
    }

    #[test]
    fn modules_merge_by_union() {
        let a = generator::parse_source("a", "//! #syscalls: ioctl(1=FIONREAD) read").unwrap();
        let b = generator::parse_source("b", "//! #syscalls: ioctl(1=0x541b|TUNSETIFF)").unwrap();
        let c = generator::parse_source("c", "//! #syscalls: read(0=3)").unwrap();
        let all: Vec<_> = a.iter().chain(&b).chain(&c).cloned().collect();
        let p = generator::build_policy(&all).unwrap();
        let f = filter(&p, "aarch64");
        let ioctl = &f["ioctl"];
        assert_eq!(ioctl.rules.len(), 2, "FIONREAD and 0x541b are one rule");
        let fionread = ioctl
            .rules
            .values()
            .find(|(l, _)| l[0] == "FIONREAD")
            .unwrap();
        assert_eq!(fionread.1.iter().collect::<Vec<_>>(), ["a", "b"]);
        // An unconditional use swallows a conditional one.
        assert!(f["read"].unconditional);
        assert_eq!(f["read"].modules.len(), 2);
        let json = generator::render_json(&p);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let rules = v["aarch64"]["filter"].as_array().unwrap();
        let reads: Vec<_> = rules.iter().filter(|r| r["syscall"] == "read").collect();
        assert_eq!(reads.len(), 1);
        assert!(reads[0].get("args").is_none());
        assert_eq!(reads[0]["comment"], "a, c");
    }

    #[test]
    fn startup_annotations_are_checked_but_not_allowed() {
        let anns = generator::parse_source("m", "//! #syscalls-startup: setresuid").unwrap();
        assert_eq!(anns[0].phase, Phase::Startup);
        let p = generator::build_policy(&anns).unwrap();
        assert!(filter(&p, "x86_64").is_empty());
        assert!(p.startup.contains_key("setresuid"));
        assert!(policy(&["//! #syscalls-startup: setresuidd"]).is_err());
    }

    #[test]
    fn only_module_doc_lines_count() {
        let text = [
            "// #syscalls: open",
            "/// #syscalls: open",
            "x // #syscalls: open",
        ]
        .join("\n");
        assert!(generator::parse_source("m", &text).unwrap().is_empty());
        let p = Path::new("link/mod.rs");
        assert_eq!(generator::module_name(p), "link");
        assert_eq!(
            generator::module_name(Path::new("link/tap.rs")),
            "link::tap"
        );
        assert_eq!(generator::module_name(Path::new("main.rs")), "main");
    }

    #[test]
    fn constants_match_libc() {
        let libc_values: &[(&str, i64)] = &[
            ("AF_UNIX", libc::AF_UNIX.into()),
            ("AF_INET", libc::AF_INET.into()),
            ("AF_INET6", libc::AF_INET6.into()),
            ("AF_NETLINK", libc::AF_NETLINK.into()),
            ("SOCK_STREAM", libc::SOCK_STREAM.into()),
            ("SOCK_DGRAM", libc::SOCK_DGRAM.into()),
            ("SOCK_RAW", libc::SOCK_RAW.into()),
            ("SOCK_SEQPACKET", libc::SOCK_SEQPACKET.into()),
            ("SOCK_NONBLOCK", libc::SOCK_NONBLOCK.into()),
            ("SOCK_CLOEXEC", libc::SOCK_CLOEXEC.into()),
            ("IPPROTO_ICMP", libc::IPPROTO_ICMP.into()),
            ("IPPROTO_TCP", libc::IPPROTO_TCP.into()),
            ("IPPROTO_UDP", libc::IPPROTO_UDP.into()),
            ("IPPROTO_IPV6", libc::IPPROTO_IPV6.into()),
            ("IPPROTO_ICMPV6", libc::IPPROTO_ICMPV6.into()),
            ("SOL_SOCKET", libc::SOL_SOCKET.into()),
            ("SOL_IP", libc::SOL_IP.into()),
            ("SOL_TCP", libc::SOL_TCP.into()),
            ("SOL_UDP", libc::SOL_UDP.into()),
            ("SOL_IPV6", libc::SOL_IPV6.into()),
            ("SO_REUSEADDR", libc::SO_REUSEADDR.into()),
            ("SO_ERROR", libc::SO_ERROR.into()),
            ("SO_SNDBUF", libc::SO_SNDBUF.into()),
            ("SO_RCVBUF", libc::SO_RCVBUF.into()),
            ("SO_KEEPALIVE", libc::SO_KEEPALIVE.into()),
            ("SO_LINGER", libc::SO_LINGER.into()),
            ("SO_REUSEPORT", libc::SO_REUSEPORT.into()),
            ("SO_RCVLOWAT", libc::SO_RCVLOWAT.into()),
            ("TCP_NODELAY", libc::TCP_NODELAY.into()),
            ("TCP_MAXSEG", libc::TCP_MAXSEG.into()),
            ("TCP_INFO", libc::TCP_INFO.into()),
            ("IP_TTL", libc::IP_TTL.into()),
            ("IP_RECVERR", libc::IP_RECVERR.into()),
            ("IPV6_UNICAST_HOPS", libc::IPV6_UNICAST_HOPS.into()),
            ("IPV6_RECVERR", libc::IPV6_RECVERR.into()),
            ("IPV6_V6ONLY", libc::IPV6_V6ONLY.into()),
            ("F_DUPFD", libc::F_DUPFD.into()),
            ("F_GETFD", libc::F_GETFD.into()),
            ("F_SETFD", libc::F_SETFD.into()),
            ("F_GETFL", libc::F_GETFL.into()),
            ("F_SETFL", libc::F_SETFL.into()),
            ("F_GETLK", libc::F_GETLK.into()),
            ("F_SETLK", libc::F_SETLK.into()),
            ("F_SETLKW", libc::F_SETLKW.into()),
            ("F_OFD_GETLK", libc::F_OFD_GETLK.into()),
            ("F_OFD_SETLK", libc::F_OFD_SETLK.into()),
            ("F_OFD_SETLKW", libc::F_OFD_SETLKW.into()),
            ("F_DUPFD_CLOEXEC", libc::F_DUPFD_CLOEXEC.into()),
            ("TIOCOUTQ", libc::TIOCOUTQ as i64),
            ("FIONREAD", libc::FIONREAD as i64),
            ("FIONBIO", libc::FIONBIO as i64),
            ("SIOCGIFFLAGS", libc::SIOCGIFFLAGS as i64),
            ("SIOCSIFFLAGS", libc::SIOCSIFFLAGS as i64),
            ("SIOCGIFMTU", libc::SIOCGIFMTU as i64),
            ("SIOCGIFHWADDR", libc::SIOCGIFHWADDR as i64),
            ("SIOCGIFINDEX", libc::SIOCGIFINDEX as i64),
            ("TUNSETIFF", libc::TUNSETIFF as i64),
            ("TUNSETOFFLOAD", libc::TUNSETOFFLOAD as i64),
            ("TUNGETIFF", libc::TUNGETIFF as i64),
            ("TUNSETVNETHDRSZ", libc::TUNSETVNETHDRSZ as i64),
            ("PR_SET_PDEATHSIG", libc::PR_SET_PDEATHSIG.into()),
            ("PR_GET_DUMPABLE", libc::PR_GET_DUMPABLE.into()),
            ("PR_SET_DUMPABLE", libc::PR_SET_DUMPABLE.into()),
            ("PR_SET_NAME", libc::PR_SET_NAME.into()),
            ("PR_GET_SECCOMP", libc::PR_GET_SECCOMP.into()),
            ("PR_CAPBSET_DROP", libc::PR_CAPBSET_DROP.into()),
            ("PR_SET_NO_NEW_PRIVS", libc::PR_SET_NO_NEW_PRIVS.into()),
            ("PR_GET_NO_NEW_PRIVS", libc::PR_GET_NO_NEW_PRIVS.into()),
            ("PROT_NONE", libc::PROT_NONE.into()),
            ("PROT_READ", libc::PROT_READ.into()),
            ("PROT_WRITE", libc::PROT_WRITE.into()),
            ("PROT_EXEC", libc::PROT_EXEC.into()),
            ("MAP_SHARED", libc::MAP_SHARED.into()),
            ("MAP_PRIVATE", libc::MAP_PRIVATE.into()),
            ("MAP_FIXED", libc::MAP_FIXED.into()),
            ("MAP_ANONYMOUS", libc::MAP_ANONYMOUS.into()),
            ("CLOCK_REALTIME", libc::CLOCK_REALTIME.into()),
            ("CLOCK_MONOTONIC", libc::CLOCK_MONOTONIC.into()),
            ("CLOCK_BOOTTIME", libc::CLOCK_BOOTTIME.into()),
            ("EPOLL_CTL_ADD", libc::EPOLL_CTL_ADD.into()),
            ("EPOLL_CTL_DEL", libc::EPOLL_CTL_DEL.into()),
            ("EPOLL_CTL_MOD", libc::EPOLL_CTL_MOD.into()),
            ("SHUT_RD", libc::SHUT_RD.into()),
            ("SHUT_WR", libc::SHUT_WR.into()),
            ("SHUT_RDWR", libc::SHUT_RDWR.into()),
        ];
        for (name, value) in generator::CONSTANTS {
            // Constants without a libc twin: the type mask, the queue aliases.
            if matches!(
                *name,
                "SOCK_TYPE_MASK" | "SIOCINQ" | "SIOCOUTQ" | "IPPROTO_IP"
            ) {
                continue;
            }
            let Some((_, expected)) = libc_values.iter().find(|(n, _)| n == name) else {
                panic!("{name}: no libc value to check against");
            };
            assert_eq!(i64::from(*value), *expected, "{name}");
        }
    }

    fn current_policy() -> generator::Policy {
        let anns = generator::collect(&root().join("src")).unwrap();
        generator::build_policy(&anns).unwrap()
    }

    #[test]
    fn checked_in_policy_is_current() {
        let expected = generator::render_json(&current_policy());
        let path = root().join("seccomp/airlock.json");
        let found = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            found == expected,
            "seccomp/airlock.json is stale: run `cargo build` outside CI and commit it"
        );
    }

    #[test]
    fn checked_in_docs_are_current() {
        let section = generator::render_markdown(&current_policy());
        let doc = std::fs::read_to_string(root().join("docs/security.md")).unwrap();
        let expected = generator::splice_doc(&doc, &section).expect("markers in docs/security.md");
        assert!(
            doc == expected,
            "docs/security.md's syscall list is stale: run `cargo build` outside CI and commit it"
        );
    }

    /// Compiles one filter of the checked-in JSON with seccompiler's backend,
    /// resolving names through the same tables its JSON frontend uses.
    fn compile(arch: &str, action: SeccompAction) -> BpfProgram {
        let text = std::fs::read_to_string(root().join("seccomp/airlock.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for r in json[arch]["filter"].as_array().unwrap() {
            let name = r["syscall"].as_str().unwrap();
            let nr = generator::syscall_number(arch, name).unwrap();
            let acc = rules.entry(nr).or_default();
            let Some(args) = r.get("args") else { continue };
            let conds = args
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let op = match &a["op"] {
                        serde_json::Value::String(s) if s == "eq" => SeccompCmpOp::Eq,
                        v => SeccompCmpOp::MaskedEq(v["masked_eq"].as_u64().unwrap()),
                    };
                    assert_eq!(a["type"], "dword");
                    SeccompCondition::new(
                        a["index"].as_u64().unwrap() as u8,
                        SeccompCmpArgLen::Dword,
                        op,
                        a["val"].as_u64().unwrap(),
                    )
                    .unwrap()
                })
                .collect();
            acc.push(SeccompRule::new(conds).unwrap());
        }
        let target = TargetArch::try_from(arch).unwrap();
        SeccompFilter::new(rules, action, SeccompAction::Allow, target)
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn policy_compiles_for_x86_64_and_aarch64() {
        for arch in generator::ARCHES {
            assert_eq!(json_action(arch), "kill_process");
            let bpf = compile(arch, SeccompAction::KillProcess);
            assert!(bpf.len() > 10, "{arch}: {} instructions", bpf.len());
        }
    }

    fn json_action(arch: &str) -> String {
        let text = std::fs::read_to_string(root().join("seccomp/airlock.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json[arch]["mismatch_action"].as_str().unwrap().to_string()
    }

    #[test]
    fn embedded_programs_are_the_checked_in_policy() {
        let arch = std::env::consts::ARCH;
        if !generator::ARCHES.contains(&arch) {
            return;
        }
        assert_eq!(
            super::program(super::Mode::Enforce),
            compile(arch, SeccompAction::KillProcess)
        );
        assert_eq!(
            super::program(super::Mode::Log),
            compile(arch, SeccompAction::Log)
        );
        assert!(super::program(super::Mode::Off).is_empty());
        let count: usize = super::ALLOWED_SYSCALLS.parse().unwrap();
        let policy = current_policy();
        let (_, filter) = policy.filters.iter().find(|(a, _)| *a == arch).unwrap();
        assert_eq!(count, filter.len());
    }
}
