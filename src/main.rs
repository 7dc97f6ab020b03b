use clap::Parser;

fn main() {
    let opts = airlock::cli::Options::parse();
    match airlock::config::Config::from_options(&opts, None) {
        Ok(c) => println!("{c:?}"),
        Err(e) => {
            eprintln!("airlock: {e}");
            std::process::exit(2);
        }
    }
}
