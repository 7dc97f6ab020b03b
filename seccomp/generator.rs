//! The seccomp policy generator: module-doc annotations in, seccompiler JSON out.
//!
//! Shared by `build.rs` (which writes `seccomp/airlock.json`, the generated
//! section of `docs/security.md`, and compiles the BPF) and the crate's tests
//! (which regenerate both and fail when the checked-in copies are stale).
//! Only `std` here, so that both sides can use it; the syscall tables in
//! `seccomp/syscalls/` are seccompiler's own, so every name accepted here
//! compiles there.
//!
//! Grammar of one annotation line (see docs/security.md):
//!
//! ```text
//! line  := "//!" "#syscalls:" item*            (after lockdown: goes into the filter)
//!        | "//!" "#syscalls-startup:" item*    (before lockdown: checked, not allowed)
//! item  := [arch ":"] call ("|" call)*         (alternatives: every one the arch has)
//! call  := name ["(" cond ("," cond)* ")"]     (no spaces inside the parentheses)
//! cond  := index ["&" value] "=" value ("|" value)*
//! value := CONSTANT | decimal | 0xhex
//! ```
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Architectures the checked-in policy covers, in file order.
pub const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Most rules one annotation may expand to (the product of its value lists).
const MAX_RULES_PER_CALL: usize = 64;

/// Markers around the generated syscall section of docs/security.md.
pub const DOC_BEGIN: &str = "<!-- BEGIN GENERATED SYSCALL LIST (build.rs; do not edit) -->";
pub const DOC_END: &str = "<!-- END GENERATED SYSCALL LIST -->";

/// seccompiler's syscall table for `arch` ("name number" lines).
fn table(arch: &str) -> &'static str {
    match arch {
        "x86_64" => include_str!("syscalls/x86_64.txt"),
        "aarch64" => include_str!("syscalls/aarch64.txt"),
        _ => "",
    }
}

/// The number of syscall `name` on `arch`, if it has one.
pub fn syscall_number(arch: &str, name: &str) -> Option<i64> {
    table(arch).lines().find_map(|line| {
        let (n, nr) = line.split_once(' ')?;
        if n == name {
            nr.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Symbolic constants usable in argument filters. Identical on x86_64 and
/// aarch64 (asm-generic); a test checks them against `libc` on the host.
pub const CONSTANTS: &[(&str, u32)] = &[
    // socket(2) domain and type
    ("AF_UNIX", 1),
    ("AF_INET", 2),
    ("AF_INET6", 10),
    ("AF_NETLINK", 16),
    ("SOCK_STREAM", 1),
    ("SOCK_DGRAM", 2),
    ("SOCK_RAW", 3),
    ("SOCK_SEQPACKET", 5),
    ("SOCK_TYPE_MASK", 0xf),
    ("SOCK_NONBLOCK", 0o4000),
    ("SOCK_CLOEXEC", 0o2000000),
    // protocols and setsockopt/getsockopt levels
    ("IPPROTO_IP", 0),
    ("IPPROTO_ICMP", 1),
    ("IPPROTO_TCP", 6),
    ("IPPROTO_UDP", 17),
    ("IPPROTO_IPV6", 41),
    ("IPPROTO_ICMPV6", 58),
    ("SOL_SOCKET", 1),
    ("SOL_IP", 0),
    ("SOL_TCP", 6),
    ("SOL_UDP", 17),
    ("SOL_IPV6", 41),
    // socket options
    ("SO_REUSEADDR", 2),
    ("SO_ERROR", 4),
    ("SO_SNDBUF", 7),
    ("SO_RCVBUF", 8),
    ("SO_KEEPALIVE", 9),
    ("SO_LINGER", 13),
    ("SO_REUSEPORT", 15),
    ("SO_RCVLOWAT", 18),
    ("TCP_NODELAY", 1),
    ("TCP_MAXSEG", 2),
    ("TCP_INFO", 11),
    ("IP_TTL", 2),
    ("IP_RECVERR", 11),
    ("IPV6_UNICAST_HOPS", 16),
    ("IPV6_RECVERR", 25),
    ("IPV6_V6ONLY", 26),
    // fcntl(2) commands
    ("F_DUPFD", 0),
    ("F_GETFD", 1),
    ("F_SETFD", 2),
    ("F_GETFL", 3),
    ("F_SETFL", 4),
    ("F_GETLK", 5),
    ("F_SETLK", 6),
    ("F_SETLKW", 7),
    ("F_OFD_GETLK", 36),
    ("F_OFD_SETLK", 37),
    ("F_OFD_SETLKW", 38),
    ("F_DUPFD_CLOEXEC", 1030),
    // ioctl(2) requests
    ("TIOCOUTQ", 0x5411),
    ("FIONREAD", 0x541b),
    ("FIONBIO", 0x5421),
    ("SIOCINQ", 0x541b),
    ("SIOCOUTQ", 0x5411),
    ("SIOCGIFFLAGS", 0x8913),
    ("SIOCSIFFLAGS", 0x8914),
    ("SIOCGIFMTU", 0x8921),
    ("SIOCGIFHWADDR", 0x8927),
    ("SIOCGIFINDEX", 0x8933),
    ("TUNSETIFF", 0x400454ca),
    ("TUNSETOFFLOAD", 0x400454d0),
    ("TUNGETIFF", 0x800454d2),
    ("TUNSETVNETHDRSZ", 0x400454d8),
    // prctl(2) options
    ("PR_SET_PDEATHSIG", 1),
    ("PR_GET_DUMPABLE", 3),
    ("PR_SET_DUMPABLE", 4),
    ("PR_SET_NAME", 15),
    ("PR_GET_SECCOMP", 21),
    ("PR_CAPBSET_DROP", 24),
    ("PR_SET_NO_NEW_PRIVS", 38),
    ("PR_GET_NO_NEW_PRIVS", 39),
    // mmap(2) protection and flags
    ("PROT_NONE", 0),
    ("PROT_READ", 1),
    ("PROT_WRITE", 2),
    ("PROT_EXEC", 4),
    ("MAP_SHARED", 1),
    ("MAP_PRIVATE", 2),
    ("MAP_FIXED", 0x10),
    ("MAP_ANONYMOUS", 0x20),
    // miscellaneous
    ("CLOCK_REALTIME", 0),
    ("CLOCK_MONOTONIC", 1),
    ("CLOCK_BOOTTIME", 7),
    ("EPOLL_CTL_ADD", 1),
    ("EPOLL_CTL_DEL", 2),
    ("EPOLL_CTL_MOD", 3),
    ("SHUT_RD", 0),
    ("SHUT_WR", 1),
    ("SHUT_RDWR", 2),
];

/// When the annotated syscalls are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// After `sandbox::lock_down`: these go into the filter.
    Running,
    /// Only before `sandbox::lock_down`: checked for spelling, not allowed.
    Startup,
}

/// One argument condition: `arg[index] & mask == value` for one of `values`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgFilter {
    pub index: u8,
    /// (mask, how the annotation spelled it)
    pub mask: Option<(u32, String)>,
    /// (value, how the annotation spelled it)
    pub values: Vec<(u32, String)>,
}

/// One alternative of an item: a syscall name, optionally with conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    pub args: Vec<ArgFilter>,
}

/// One whitespace-separated item of an annotation line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    pub module: String,
    pub line: usize,
    pub phase: Phase,
    /// `Some` for arch-prefixed items (`x86_64:open`).
    pub arch: Option<String>,
    /// Alternatives (`a|b`): every one that exists on an arch is allowed there.
    pub calls: Vec<Call>,
}

/// One compared argument in a rule; ordered so rules can be deduplicated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cond {
    pub index: u8,
    pub mask: Option<u32>,
    pub value: u32,
}

/// A syscall's place in the filter for one arch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Every module that annotated it.
    pub modules: BTreeSet<String>,
    /// Some module allows it with any arguments.
    pub unconditional: bool,
    /// Otherwise: any of these rules (all conditions of one rule must hold),
    /// with the spelling of each condition (`AF_INET`, `PROT_EXEC=0` for a
    /// masked one) and the modules asking.
    pub rules: BTreeMap<Vec<Cond>, (Vec<String>, BTreeSet<String>)>,
}

/// The merged policy: per arch, syscall name -> entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub filters: Vec<(&'static str, BTreeMap<String, Entry>)>,
    /// Startup-only syscalls (name -> modules), for the documentation.
    pub startup: BTreeMap<String, BTreeSet<String>>,
}

fn constant(s: &str) -> Option<u32> {
    CONSTANTS.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
}

fn parse_value(s: &str) -> Result<u32, String> {
    if let Some(v) = constant(s) {
        return Ok(v);
    }
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse::<u32>(),
    };
    parsed.map_err(|_| format!("`{s}` is neither a known constant nor a 32-bit number"))
}

/// Splits `s` on `sep` outside parentheses.
fn split_top(s: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `)` in `{s}`"));
                }
            }
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced `(` in `{s}`"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_cond(s: &str) -> Result<ArgFilter, String> {
    let (lhs, rhs) = s
        .split_once('=')
        .ok_or_else(|| format!("condition `{s}` lacks `=`"))?;
    let (index, mask) = match lhs.split_once('&') {
        Some((i, m)) => (i, Some((parse_value(m)?, m.to_string()))),
        None => (lhs, None),
    };
    let index: u8 = index
        .parse()
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| format!("argument index `{index}` is not 0..=5"))?;
    let mut values = Vec::new();
    for v in rhs.split('|') {
        let value = parse_value(v)?;
        if let Some((m, _)) = &mask {
            if value & !m != 0 {
                return Err(format!("value `{v}` has bits outside its mask"));
            }
        }
        values.push((value, v.to_string()));
    }
    Ok(ArgFilter {
        index,
        mask,
        values,
    })
}

fn parse_call(s: &str) -> Result<Call, String> {
    let (name, args) = match s.split_once('(') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("`{s}`: text after `)`"))?;
            let mut args: Vec<ArgFilter> = Vec::new();
            for c in inner.split(',') {
                let cond = parse_cond(c).map_err(|e| format!("`{s}`: {e}"))?;
                if args.iter().any(|a| a.index == cond.index) {
                    return Err(format!("`{s}`: argument {} given twice", cond.index));
                }
                args.push(cond);
            }
            (name, args)
        }
        None => (s, Vec::new()),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!("`{name}` is not a syscall name"));
    }
    Ok(Call {
        name: name.to_string(),
        args,
    })
}

/// Parses one item such as `x86_64:epoll_wait|epoll_pwait`.
pub fn parse_item(
    module: &str,
    line: usize,
    phase: Phase,
    item: &str,
) -> Result<Annotation, String> {
    let paren = item.find('(').unwrap_or(item.len());
    let (arch, rest) = match item[..paren].split_once(':') {
        Some((arch, _)) => {
            if !ARCHES.contains(&arch) {
                return Err(format!("unknown architecture `{arch}` in `{item}`"));
            }
            (Some(arch.to_string()), &item[arch.len() + 1..])
        }
        None => (None, item),
    };
    let calls = split_top(rest, '|')?
        .into_iter()
        .map(parse_call)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Annotation {
        module: module.to_string(),
        line,
        phase,
        arch,
        calls,
    })
}

/// Every annotation in one source file's text.
pub fn parse_source(module: &str, text: &str) -> Result<Vec<Annotation>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let Some(doc) = raw.trim_start().strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim_start();
        let (phase, list) = if let Some(l) = doc.strip_prefix("#syscalls-startup:") {
            (Phase::Startup, l)
        } else if let Some(l) = doc.strip_prefix("#syscalls:") {
            (Phase::Running, l)
        } else {
            continue;
        };
        for item in list.split_whitespace() {
            let a = parse_item(module, n + 1, phase, item)
                .map_err(|e| format!("{module}:{}: {e}", n + 1))?;
            out.push(a);
        }
    }
    Ok(out)
}

/// `sandbox/mod.rs` -> `sandbox`, `link/tap.rs` -> `link::tap`.
pub fn module_name(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let parts = match parts.split_last() {
        Some((last, init)) if last == "mod" && !init.is_empty() => init.to_vec(),
        _ => parts,
    };
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every annotation in every `.rs` file below `src_dir`, in path order.
pub fn collect(src_dir: &Path) -> Result<Vec<Annotation>, String> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files)?;
    let mut out = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rel = path.strip_prefix(src_dir).unwrap_or(&path);
        out.extend(parse_source(&module_name(rel), &text)?);
    }
    Ok(out)
}

/// A rule's conditions with the spelling of each.
type LabelledRule = (Vec<Cond>, Vec<String>);

/// The product of a call's value lists: one rule per combination.
fn expand(call: &Call) -> Result<Vec<LabelledRule>, String> {
    let mut rules: Vec<LabelledRule> = vec![(Vec::new(), Vec::new())];
    let mut args = call.args.clone();
    args.sort_by_key(|a| a.index);
    for arg in &args {
        let mut next = Vec::new();
        for (conds, labels) in &rules {
            for (value, label) in &arg.values {
                let mut c = conds.clone();
                c.push(Cond {
                    index: arg.index,
                    mask: arg.mask.as_ref().map(|(m, _)| *m),
                    value: *value,
                });
                let mut l = labels.clone();
                l.push(match &arg.mask {
                    Some((_, mask)) => format!("{mask}={label}"),
                    None => label.clone(),
                });
                next.push((c, l));
            }
        }
        if next.len() > MAX_RULES_PER_CALL {
            return Err(format!(
                "`{}` expands to more than {MAX_RULES_PER_CALL} rules",
                call.name
            ));
        }
        rules = next;
    }
    Ok(rules)
}

/// Merges annotations into one filter per arch (the union of what every
/// module asks for), checking every name against the syscall tables.
pub fn build_policy(annotations: &[Annotation]) -> Result<Policy, String> {
    let mut policy = Policy {
        filters: ARCHES.iter().map(|a| (*a, BTreeMap::new())).collect(),
        startup: BTreeMap::new(),
    };
    for a in annotations {
        let at = |e: String| format!("{}:{}: {e}", a.module, a.line);
        let arches: Vec<&str> = match &a.arch {
            Some(arch) => vec![arch.as_str()],
            None => ARCHES.to_vec(),
        };
        for call in &a.calls {
            if !arches
                .iter()
                .any(|arch| syscall_number(arch, &call.name).is_some())
            {
                return Err(at(format!(
                    "no syscall `{}` on {}",
                    call.name,
                    arches.join(" or ")
                )));
            }
        }
        for arch in &arches {
            if !a
                .calls
                .iter()
                .any(|c| syscall_number(arch, &c.name).is_some())
            {
                let names: Vec<&str> = a.calls.iter().map(|c| c.name.as_str()).collect();
                return Err(at(format!(
                    "none of `{}` exists on {arch}: add an alternative or an arch prefix",
                    names.join("|")
                )));
            }
        }
        if a.phase == Phase::Startup {
            for call in &a.calls {
                policy
                    .startup
                    .entry(call.name.clone())
                    .or_default()
                    .insert(a.module.clone());
            }
            continue;
        }
        for (arch, filter) in policy.filters.iter_mut() {
            if !arches.contains(arch) {
                continue;
            }
            for call in &a.calls {
                if syscall_number(arch, &call.name).is_none() {
                    continue;
                }
                let rules = expand(call).map_err(at)?;
                let entry = filter.entry(call.name.clone()).or_default();
                entry.modules.insert(a.module.clone());
                if call.args.is_empty() {
                    entry.unconditional = true;
                    continue;
                }
                for (conds, labels) in rules {
                    entry
                        .rules
                        .entry(conds)
                        .or_insert_with(|| (labels, BTreeSet::new()))
                        .1
                        .insert(a.module.clone());
                }
            }
        }
    }
    Ok(policy)
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// One filter object in seccompiler's JSON format, indented by `indent`.
pub fn render_filter(
    filter: &BTreeMap<String, Entry>,
    mismatch_action: &str,
    indent: &str,
) -> String {
    let mut lines: Vec<String> = Vec::new();
    for (name, entry) in filter {
        if entry.unconditional || entry.rules.is_empty() {
            lines.push(format!(
                "{indent}        {{ \"syscall\": {}, \"comment\": {} }}",
                json_string(name),
                json_string(&join(&entry.modules))
            ));
            continue;
        }
        for (conds, (labels, modules)) in &entry.rules {
            let mut s = format!(
                "{indent}        {{\n{indent}            \"syscall\": {},\n{indent}            \"comment\": {},\n{indent}            \"args\": [\n",
                json_string(name),
                json_string(&join(modules))
            );
            let args: Vec<String> = conds
                .iter()
                .zip(labels)
                .map(|(c, label)| {
                    let op = match c.mask {
                        Some(m) => format!("{{ \"masked_eq\": {m} }}"),
                        None => "\"eq\"".to_string(),
                    };
                    format!(
                        "{indent}                {{ \"index\": {}, \"type\": \"dword\", \"op\": {op}, \"val\": {}, \"comment\": {} }}",
                        c.index,
                        c.value,
                        json_string(label)
                    )
                })
                .collect();
            s.push_str(&args.join(",\n"));
            let _ = write!(s, "\n{indent}            ]\n{indent}        }}");
            lines.push(s);
        }
    }
    format!(
        "{{\n{indent}    \"mismatch_action\": {},\n{indent}    \"match_action\": \"allow\",\n{indent}    \"filter\": [\n{}\n{indent}    ]\n{indent}}}",
        json_string(mismatch_action),
        lines.join(",\n")
    )
}

/// The checked-in `seccomp/airlock.json`: one filter per arch, named by arch.
pub fn render_json(policy: &Policy) -> String {
    let filters: Vec<String> = policy
        .filters
        .iter()
        .map(|(arch, f)| {
            format!(
                "    {}: {}",
                json_string(arch),
                render_filter(f, "kill_process", "    ")
            )
        })
        .collect();
    format!("{{\n{}\n}}\n", filters.join(",\n"))
}

/// A single-filter JSON document (`{"main": ...}`) for seccompiler, with
/// `mismatch_action` "kill_process" (enforce) or "log" (`--sandbox=log`).
pub fn render_compilable(policy: &Policy, arch: &str, mismatch_action: &str) -> Option<String> {
    let (_, filter) = policy.filters.iter().find(|(a, _)| *a == arch)?;
    Some(format!(
        "{{ \"main\": {} }}\n",
        render_filter(filter, mismatch_action, "")
    ))
}

fn describe_rules(entry: &Entry) -> String {
    if entry.unconditional || entry.rules.is_empty() {
        return "any".to_string();
    }
    let rules: Vec<String> = entry
        .rules
        .iter()
        .map(|(conds, (labels, _))| {
            conds
                .iter()
                .zip(labels)
                .map(|(c, l)| match c.mask {
                    Some(_) => format!("arg{} & {l}", c.index),
                    None => format!("arg{} = {l}", c.index),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    rules.join("; ")
}

/// The generated section of docs/security.md (between the markers).
pub fn render_markdown(policy: &Policy) -> String {
    let mut s = String::new();
    let first = policy.filters.first().map(|(_, f)| f);
    for (i, (arch, filter)) in policy.filters.iter().enumerate() {
        if let (Some(first), true) = (first, i > 0) {
            let without: Vec<String> = first
                .keys()
                .filter(|n| !filter.contains_key(*n))
                .map(|n| format!("`{n}`"))
                .collect();
            let with: Vec<String> = filter
                .keys()
                .filter(|n| !first.contains_key(*n))
                .map(|n| format!("`{n}`"))
                .collect();
            let same_args = filter.iter().all(|(n, e)| {
                first.get(n).map_or(true, |f| {
                    f.rules == e.rules && f.unconditional == e.unconditional
                })
            });
            if same_args {
                let mut diff = Vec::new();
                if !without.is_empty() {
                    diff.push(format!("without {}", without.join(", ")));
                }
                if !with.is_empty() {
                    diff.push(format!("with {}", with.join(", ")));
                }
                let diff = if diff.is_empty() {
                    String::new()
                } else {
                    format!(", {}", diff.join("; "))
                };
                let _ = writeln!(
                    s,
                    "\n**{arch}**: {} syscalls, the same rules as {}{diff}.",
                    filter.len(),
                    policy.filters[0].0,
                );
                continue;
            }
        }
        let _ = writeln!(
            s,
            "\n**{arch}**: {} syscalls allowed, anything else kills the process.\n",
            filter.len()
        );
        s.push_str("| syscall | arguments allowed | needed by |\n|---|---|---|\n");
        for (name, entry) in filter {
            let _ = writeln!(
                s,
                "| `{name}` | {} | {} |",
                describe_rules(entry).replace('|', "\\|"),
                join(&entry.modules)
            );
        }
    }
    let startup: Vec<String> = policy
        .startup
        .iter()
        .map(|(n, m)| format!("`{n}` ({})", join(m)))
        .collect();
    let _ = writeln!(
        s,
        "\nStartup only (made before the filter, so not allowed after it): {}.",
        if startup.is_empty() {
            "none".to_string()
        } else {
            startup.join(", ")
        }
    );
    s
}

/// `doc` with the text between [`DOC_BEGIN`] and [`DOC_END`] replaced by
/// `section`; `None` when the markers are missing.
pub fn splice_doc(doc: &str, section: &str) -> Option<String> {
    let begin = doc.find(DOC_BEGIN)? + DOC_BEGIN.len();
    let end = begin + doc[begin..].find(DOC_END)?;
    Some(format!(
        "{}\n{}\n{}",
        &doc[..begin],
        section.trim_matches('\n'),
        &doc[end..]
    ))
}
