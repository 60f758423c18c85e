//! `sekisho-lab`: the lab in network namespaces, its services and the demo.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = sekisho_lab::Args::parse();
    let bin_dir = match std::env::current_exe() {
        Ok(exe) => exe.parent().map(|d| d.to_path_buf()).unwrap_or_default(),
        Err(e) => {
            eprintln!("sekisho-lab: cannot find its own program: {e}");
            return ExitCode::from(2);
        }
    };
    match sekisho_lab::run(args, &bin_dir) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sekisho-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}
