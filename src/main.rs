//! The `ballast` binary: parse etcd's flags and run the server.

use ballast::config::{self, Parsed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let code = match config::parse(&args, &env) {
        Ok(Parsed::Version) => {
            println!("{}", ballast::version_text());
            0
        }
        Ok(Parsed::Help) => {
            println!("{}", config::usage());
            0
        }
        Ok(Parsed::Run { config, warnings }) => {
            ballast::log::set_level(&config.log_level);
            for w in warnings {
                ballast::log::warn(&w, &[]);
            }
            ballast::server::run(config)
        }
        Err(e) => {
            eprintln!("{}", e.message);
            e.exit_code
        }
    };
    std::process::exit(code);
}
