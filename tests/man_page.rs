//! The man page renders right and lints clean (issue 19, item 5): no roff
//! warning from mandoc or groff, the capability JSON keeps its quotes, and
//! every option `airlock --help` lists is documented.

mod support;

use std::time::Duration;
use support::process::{run, run_argv};
use support::AIRLOCK;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/airlock.1");

#[test]
fn mandoc_lint_is_clean() {
    let o = run_argv(
        &["mandoc", "-T", "lint", "-W", "warning", PAGE],
        Duration::from_secs(20),
    );
    assert!(
        o.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "mandoc -T lint -W warning: {}",
        o.describe()
    );
}

#[test]
fn groff_warns_about_nothing() {
    let o = run_argv(
        &["groff", "-ww", "-z", "-man", PAGE],
        Duration::from_secs(20),
    );
    assert!(
        o.success() && o.stderr.is_empty(),
        "groff -ww -z -man: {}",
        o.describe()
    );
}

#[test]
fn man_shows_the_capability_json_with_its_quotes() {
    let mut cmd = std::process::Command::new("man");
    cmd.args(["-l", "-P", "cat", PAGE])
        .env("MANWIDTH", "200")
        .env("LC_ALL", "C.UTF-8");
    let o = run(&mut cmd, Duration::from_secs(20));
    assert!(o.success(), "man -l: {}", o.describe());
    assert!(
        o.stdout
            .contains(r#"{"type": "slirp-helper", "features": [...]}"#),
        "the JSON lost its quotes:\n{}",
        o.stdout.lines().find(|l| l.contains("type")).unwrap_or("")
    );
}

#[test]
fn every_option_is_documented() {
    let help = run_argv(&[AIRLOCK, "--help"], Duration::from_secs(10));
    assert!(help.success(), "{}", help.describe());
    let page = std::fs::read_to_string(PAGE).unwrap();
    let mut missing = Vec::new();
    let mut seen = 0;
    for word in help.stdout.split(|c: char| c.is_whitespace() || c == ',') {
        let Some(name) = word.strip_prefix("--") else {
            continue;
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.is_empty() {
            continue;
        }
        seen += 1;
        // roff spells a literal '-' as '\-'.
        let roff = format!("\\-\\-{}", name.replace('-', "\\-"));
        if !page.contains(&roff) {
            missing.push(name);
        }
    }
    assert!(seen > 30, "parsed too few options from --help");
    assert!(missing.is_empty(), "not in docs/airlock.1: {missing:?}");
}
