//! sonoflow command line: parse, dispatch, map the outcome to a documented exit code.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::dispatch(args.command) {
        Ok(code) => code.into(),
        Err(failure) => {
            eprintln!("sonoflow: error: {}", describe(&failure.error));
            failure.code.into()
        }
    }
}

/// The error and its causes, outermost first: each level prints only its own words.
fn describe(error: &anyhow::Error) -> String {
    error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
