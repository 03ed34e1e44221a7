use clap::Parser;

fn main() -> std::process::ExitCode {
    apotheca_proxy::run(apotheca_proxy::Cli::parse())
}
