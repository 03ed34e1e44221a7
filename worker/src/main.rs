use clap::Parser;

fn main() -> std::process::ExitCode {
    apotheca_worker::main(apotheca_worker::Cli::parse())
}
