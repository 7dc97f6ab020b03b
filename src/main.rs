use clap::Parser;

fn main() {
    let opts = airlock::cli::Options::parse();
    std::process::exit(airlock::startup::run(opts));
}
