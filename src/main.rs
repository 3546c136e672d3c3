use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(shardctl::run(std::env::args_os().collect()))
}
