//! sonoflow command line: parse, dispatch, map the outcome to a documented exit code.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::dispatch(args.command) {
        Ok(code) => code.into(),
        Err(failure) => {
            eprintln!("sonoflow: error: {:#}", failure.error);
            failure.code.into()
        }
    }
}
