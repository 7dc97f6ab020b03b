use clap::Parser;

fn main() {
    if std::env::var_os(airlock::lifecycle::REMOVER_ENV).is_some() {
        let paths: Vec<_> = std::env::args_os().skip(1).collect();
        std::process::exit(airlock::lifecycle::run_remover(&paths));
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    #[cfg(feature = "dbus")]
    if args.get(1).is_some_and(|a| a == "ctl") {
        std::process::exit(airlock::ctl::main(&args[1..]));
    }
    let (opts, passt) = match airlock::passt::wants_passt(&args) {
        Some(rest) => match airlock::passt::parse(rest) {
            Ok(airlock::passt::Parsed::Run(o, p)) => (*o, Some(p)),
            Ok(airlock::passt::Parsed::Done) => std::process::exit(0),
            Err(e) => {
                eprintln!("passt (airlock): {}", e.0);
                std::process::exit(airlock::startup::EXIT_USAGE);
            }
        },
        None => match airlock::cli::Options::try_parse_from(&args) {
            Ok(o) => (o, None),
            // Usage errors are one line naming the option, exit 2; --help
            // and --version print in full.
            Err(e) if e.use_stderr() => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                eprintln!("airlock: error: {first}");
                std::process::exit(airlock::startup::EXIT_USAGE);
            }
            Err(e) => e.exit(),
        },
    };
    std::process::exit(airlock::startup::run(opts, passt));
}
