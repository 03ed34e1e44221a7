use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    apotheca_worker::run(apotheca_worker::Cli::parse()).await
}
