//! `relay`: the floor under any hop between a TCP client and a worker's Unix socket. It copies
//! bytes both ways and does nothing else — no parsing, no routing, no headers, no log, no
//! pool: each client connection gets its own connection to the worker. Every thread runs a
//! runtime of its own that accepts on the same listening socket and keeps each connection it
//! accepts, so no event is relayed between threads (the proxy's model). What it adds in
//! latency and CPU per request is what the kernel's sockets and the scheduler cost for one
//! more process in the path; `bench/proxy.sh` measures it beside nginx and the proxy. It stops
//! by itself after `--seconds`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct RelayArgs {
    /// Where to listen: 127.0.0.1:PORT (0 picks a free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The worker's Unix socket.
    #[arg(long)]
    to: PathBuf,
    /// Threads, each with a runtime of its own.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Exit after this many seconds (at most 3600).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
}

pub fn relay(args: RelayArgs) -> Result<()> {
    let listener =
        TcpListener::bind(&args.listen).with_context(|| format!("binding {}", args.listen))?;
    listener.set_nonblocking(true)?;
    println!("{}", listener.local_addr()?);
    let lifetime = Duration::from_secs(args.seconds.clamp(1, 3600));
    let threads: Vec<_> = (0..args.threads.clamp(1, 64))
        .map(|_| {
            let listener = listener.try_clone()?;
            let to = args.to.clone();
            Ok(std::thread::spawn(move || serve(listener, to, lifetime)))
        })
        .collect::<Result<_>>()?;
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a relay thread panicked"))??;
    }
    Ok(())
}

fn serve(listener: TcpListener, to: PathBuf, lifetime: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let accept = async {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    // Out of descriptors, say: not in a busy loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let to = to.clone();
                tokio::spawn(async move {
                    client.set_nodelay(true).ok();
                    if let Ok(mut worker) = tokio::net::UnixStream::connect(&to).await {
                        tokio::io::copy_bidirectional(&mut client, &mut worker)
                            .await
                            .ok();
                    }
                });
            }
        };
        tokio::select! {
            () = accept => {}
            () = tokio::time::sleep(lifetime) => {}
        }
        Ok(())
    })
}
