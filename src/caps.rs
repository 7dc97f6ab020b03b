//! `--print-capabilities`: what this build of airlock really does, in the
//! vhost-user backend convention libvirt probes slirp-helpers with:
//! `{"type": "slirp-helper", "features": [...], "airlock-features": [...]}`.
//! `features` holds only words libvirt's `qemuSlirpNewForHelper` knows
//! (any other word costs a warning in libvirtd's log at every domain
//! start); airlock's other capabilities go under `airlock-features`, which
//! libvirt does not read. The shape is `docs/capabilities.schema.json`;
//! every word listed names the test that shows it works, and a unit test
//! checks that test exists. In passt's personality the answer is a
//! vhost-user `net` backend's, as passt's.
//!
//! #syscalls: write
use serde_json::{json, Value};
use std::io::Write;

/// The feature words libvirt's slirp-helper code knows
/// (`qemuSlirpFeature` in libvirt's `src/qemu/qemu_slirp.c`).
pub const LIBVIRT_WORDS: &[&str] = &[
    "ipv4",
    "ipv6",
    "tftp",
    "dbus-address",
    "dbus-p2p",
    "migrate",
    "restrict",
    "exit-with-parent",
];

/// Features in libvirt's vocabulary, each with the test that covers it
/// (`FILE::FUNCTION`). Add a word only together with its test.
pub const FEATURES: &[(&str, &str)] = &[
    // The guest leases an IPv4 address and talks to the host through it.
    ("ipv4", "tests/vmm.rs::libvirt_launch_dgram"),
    // SLAAC, DHCPv6, NDP and TCP over IPv6 (fec0::/64, slirp's defaults).
    (
        "ipv6",
        "tests/ipv6.rs::slaac_default_route_neighbour_echo_and_dad",
    ),
    // --restrict: no connections out; DNS and forwards keep working.
    (
        "restrict",
        "tests/udp_icmp_dns.rs::restrict_keeps_dns_and_forwards_only",
    ),
    // --exit-with-parent ends airlock when its parent dies.
    (
        "exit-with-parent",
        "tests/vmm.rs::exit_with_parent_ends_airlock",
    ),
    // --tftp DIR: TFTP at the virtual host address, PXE boot by iPXE.
    ("tftp", "tests/vmm.rs::pxe_boot_over_tftp"),
    // --dbus-address/--dbus-id: org.qemu.VMState1 on the domain's bus.
    #[cfg(feature = "dbus")]
    (
        "dbus-address",
        "tests/migration.rs::id_save_and_load_refusals_keep_airlock_serving",
    ),
    // Save/Load through QEMU's dbus-vmstate, --dbus-incoming.
    #[cfg(feature = "dbus")]
    ("migrate", "tests/vmm.rs::migrate_over_dbus_vmstate"),
];

/// airlock's own capabilities, under `airlock-features`, each with its test.
pub const AIRLOCK_FEATURES: &[(&str, &str)] = &[
    // --fd with a SOCK_DGRAM socket (libvirt's -netdev socket / dgram).
    ("link-dgram", "tests/vmm.rs::libvirt_launch_dgram"),
    // --fd with a SOCK_STREAM socket (QEMU -netdev stream,addr.type=fd).
    ("link-stream", "tests/vmm.rs::stream_fd_link"),
    // --socket PATH, daemonizing once it listens (passt's contract).
    ("socket-path", "tests/vmm.rs::socket_daemon_one_off"),
    // --pid FILE written by the daemon, removed at exit.
    ("pid-file", "tests/vmm.rs::socket_daemon_one_off"),
    // sd_notify READY=1 on $NOTIFY_SOCKET once the link is up.
    ("notify-socket", "tests/vmm.rs::notify_socket_ready"),
    // The virtual DNS address forwards to the host's resolver.
    ("dns-forward", "tests/vmm.rs::libvirt_launch_dgram"),
    // --hostfwd and -t/-u forwards from host ports into the guest.
    (
        "hostfwd",
        "tests/udp_icmp_dns.rs::udp_echo_round_trip_and_forwards",
    ),
    // --vhost-user: the virtio-net backend, frames in guest memory.
    (
        "vhost-user",
        "tests/vhost_user.rs::lease_ping_dns_forward_and_bulk_both_ways",
    ),
    // --netns PATH: a tap device in another network namespace.
    (
        "netns",
        "tests/foundation.rs::lease_netns_space_separated_options",
    ),
    // passt's command line, addressing and lifecycle (argv[0] `passt`).
    ("passt-compat", "tests/passt.rs::differential_against_passt"),
];

/// The sandbox layers, each with the test that shows it enforced; listed
/// only when this kernel can enforce them (see [`capabilities`]).
pub const LAYER_TESTS: &[(&str, &str)] = &[
    (
        "seccomp",
        "tests/sandbox.rs::enforce_kills_a_forbidden_syscall_with_sigsys",
    ),
    (
        "landlock",
        "tests/sandbox.rs::log_mode_lets_landlock_refuse_a_file_and_a_tcp_bind",
    ),
    (
        "landlock-net",
        "tests/sandbox.rs::log_mode_lets_landlock_refuse_a_file_and_a_tcp_bind",
    ),
    (
        "landlock-scope",
        "tests/sandbox.rs::landlock_scope_refuses_signals_outside_the_domain",
    ),
];

/// The capability document. `kernel_layers` is what the sandbox can enforce
/// on this kernel (`airlock::sandbox::kernel_layers()`); words outside
/// [`LAYER_TESTS`] are left out so the output always matches the schema.
pub fn capabilities(kernel_layers: &[&str]) -> Value {
    let features: Vec<&str> = FEATURES.iter().map(|(f, _)| *f).collect();
    let mut own: Vec<&str> = AIRLOCK_FEATURES.iter().map(|(f, _)| *f).collect();
    for layer in kernel_layers {
        if LAYER_TESTS.iter().any(|(l, _)| l == layer) && !own.contains(layer) {
            own.push(layer);
        }
    }
    json!({ "type": "slirp-helper", "features": features, "airlock-features": own })
}

/// passt's answer (`passt --print-capabilities`): a vhost-user `net`
/// backend with no optional features.
pub fn vhost_user_capabilities() -> Value {
    json!({ "type": "net" })
}

/// Print [`vhost_user_capabilities`] on stdout.
pub fn print_vhost_user_capabilities() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", vhost_user_capabilities())
        .and_then(|_| out.flush())
        .map_err(|e| format!("--print-capabilities: {e}"))
}

/// Print [`capabilities`] on stdout, one line. An error (stdout closed)
/// should end airlock with a non-zero status: libvirt then reports it.
pub fn print_capabilities(kernel_layers: &[&str]) -> Result<(), String> {
    let text = capabilities(kernel_layers).to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("--print-capabilities: {e}"))
}

/// The only `pattern` the schema uses: lowercase kebab-case words.
pub const KEBAB_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Check `doc` against the capability schema, by hand: the keywords that
/// schema uses (`type`, `const`, `required`, `additionalProperties: false`,
/// `uniqueItems`, `items.type`/`pattern`/`enum`). A keyword it does not
/// know is an error, so the schema cannot silently outgrow this check.
pub fn check_against_schema(doc: &Value, schema: &Value) -> Result<(), String> {
    let obj = doc.as_object().ok_or("document is not an object")?;
    if schema["type"] != "object" {
        return Err("schema: top-level type must be object".into());
    }
    let props = schema["properties"]
        .as_object()
        .ok_or("schema: no properties")?;
    for req in schema["required"].as_array().ok_or("schema: no required")? {
        let name = req.as_str().ok_or("schema: required entry not a string")?;
        if !obj.contains_key(name) {
            return Err(format!("missing property {name:?}"));
        }
    }
    if schema["additionalProperties"] == false {
        if let Some(k) = obj.keys().find(|k| !props.contains_key(*k)) {
            return Err(format!("unexpected property {k:?}"));
        }
    }
    for (name, rule) in props {
        let Some(v) = obj.get(name) else { continue };
        check_value(name, v, rule)?;
    }
    Ok(())
}

fn check_value(name: &str, v: &Value, rule: &Value) -> Result<(), String> {
    let rule = rule.as_object().ok_or("schema: rule is not an object")?;
    for (kw, arg) in rule {
        match kw.as_str() {
            "description" | "title" => {}
            "const" => {
                if v != arg {
                    return Err(format!("{name}: {v} is not {arg}"));
                }
            }
            "type" => {
                let ok = match arg.as_str() {
                    Some("array") => v.is_array(),
                    Some("string") => v.is_string(),
                    Some("object") => v.is_object(),
                    _ => return Err(format!("schema: unsupported type {arg}")),
                };
                if !ok {
                    return Err(format!("{name}: {v} is not of type {arg}"));
                }
            }
            "uniqueItems" => {
                if arg == true {
                    let a = v.as_array().ok_or(format!("{name}: not an array"))?;
                    for (i, x) in a.iter().enumerate() {
                        if a[..i].contains(x) {
                            return Err(format!("{name}: {x} appears twice"));
                        }
                    }
                }
            }
            "items" => {
                let a = v.as_array().ok_or(format!("{name}: not an array"))?;
                for x in a {
                    check_value(name, x, arg)?;
                }
            }
            "pattern" => {
                if arg != KEBAB_PATTERN {
                    return Err(format!("schema: unsupported pattern {arg}"));
                }
                let s = v.as_str().ok_or(format!("{name}: {v} is not a string"))?;
                if !is_kebab(s) {
                    return Err(format!("{name}: {s:?} is not kebab-case"));
                }
            }
            "enum" => {
                let allowed = arg.as_array().ok_or("schema: enum is not an array")?;
                if !allowed.contains(v) {
                    return Err(format!("{name}: {v} is not one of the schema's words"));
                }
            }
            other => return Err(format!("schema: unsupported keyword {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::from_str(include_str!("../docs/capabilities.schema.json")).unwrap()
    }

    #[test]
    fn output_matches_schema() {
        let s = schema();
        for layers in [&[][..], &["seccomp"][..], &["seccomp", "landlock"][..]] {
            check_against_schema(&capabilities(layers), &s).unwrap();
        }
        // Unknown layer words never leak into the output.
        let c = capabilities(&["landlock", "bogus", "landlock"]);
        check_against_schema(&c, &s).unwrap();
        assert!(!c.to_string().contains("bogus"));
    }

    #[test]
    fn shape_and_layers() {
        let c = capabilities(&["landlock"]);
        assert_eq!(c["type"], "slirp-helper");
        let f: Vec<&str> = c["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let own: Vec<&str> = c["airlock-features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(own.contains(&"landlock") && !own.contains(&"seccomp"));
        assert!(own.contains(&"link-dgram") && !f.contains(&"link-dgram"));
        // libvirt warns about any other word at every domain start.
        for w in &f {
            assert!(LIBVIRT_WORDS.contains(w), "{w} is not a word libvirt knows");
        }
        for (w, _) in AIRLOCK_FEATURES.iter().chain(LAYER_TESTS) {
            assert!(!f.contains(w));
        }
        assert_eq!(vhost_user_capabilities().to_string(), r#"{"type":"net"}"#);
    }

    #[test]
    fn checker_rejects_bad_documents() {
        let s = schema();
        let bad = [
            json!({"type": "vhost-user", "features": []}),
            json!({"type": "slirp-helper"}),
            json!({"type": "slirp-helper", "features": ["ipv4", "ipv4"]}),
            json!({"type": "slirp-helper", "features": ["link-dgram"]}),
            json!({"type": "slirp-helper", "features": [], "airlock-features": ["ipv4"]}),
            json!({"type": "slirp-helper", "features": ["IPv4"]}),
            json!({"type": "slirp-helper", "features": ["ipv4-"]}),
            json!({"type": "slirp-helper", "features": ["warp-drive"]}),
            json!({"type": "slirp-helper", "features": [4]}),
            json!({"type": "slirp-helper", "features": "ipv4"}),
            json!({"type": "slirp-helper", "features": [], "extra": 1}),
            json!([]),
        ];
        for b in bad {
            assert!(check_against_schema(&b, &s).is_err(), "{b} passed");
        }
    }

    #[test]
    fn schema_vocabulary_is_kebab() {
        let s = schema();
        for key in ["features", "airlock-features"] {
            for w in s["properties"][key]["items"]["enum"].as_array().unwrap() {
                assert!(is_kebab(w.as_str().unwrap()), "{w}");
            }
        }
        // The schema's `features` vocabulary is libvirt's, exactly.
        let words: Vec<&str> = s["properties"]["features"]["items"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(words, LIBVIRT_WORDS);
        for (l, _) in LAYER_TESTS {
            assert!(s.to_string().contains(&format!("\"{l}\"")));
        }
    }

    #[test]
    fn every_feature_has_its_test() {
        let root = env!("CARGO_MANIFEST_DIR");
        for (feature, test) in FEATURES.iter().chain(AIRLOCK_FEATURES).chain(LAYER_TESTS) {
            let (file, func) = test.split_once("::").unwrap();
            let text = std::fs::read_to_string(format!("{root}/{file}"))
                .unwrap_or_else(|e| panic!("{feature}: {file}: {e}"));
            assert!(
                text.contains(&format!("fn {func}(")),
                "{feature}: no test fn {func} in {file}"
            );
        }
    }
}
