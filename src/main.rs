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

/// The error and its causes, each once: many of our errors already quote their cause in their
/// own message, and repeating it would double the line.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
