use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let opts = match airlock::passt::wants_passt(&args) {
        Some(rest) => match airlock::passt::parse(rest) {
            Ok(airlock::passt::Parsed::Run(o)) => *o,
            Ok(airlock::passt::Parsed::Done) => std::process::exit(0),
            Err(e) => {
                eprintln!("passt (airlock): {}", e.0);
                std::process::exit(airlock::startup::EXIT_USAGE);
            }
        },
        None => airlock::cli::Options::parse(),
    };
    std::process::exit(airlock::startup::run(opts));
}
