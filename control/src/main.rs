use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    apotheca_control::run(apotheca_control::Cli::parse()).await
}
