//! Password reset mail: sent through a plain SMTP relay when one is configured (typically the
//! host's own MTA on 127.0.0.1:25), otherwise the link is written to the log for the operator.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::settings::WorkerSettings;

pub async fn send_reset(
    settings: &WorkerSettings,
    email: Option<&str>,
    username: &str,
    link: &str,
) {
    let (Some(relay), Some(to)) = (settings.smtp_relay.as_deref(), email) else {
        tracing::info!(
            username,
            link,
            "password reset requested (no SMTP relay or no email: link logged)"
        );
        return;
    };
    let body = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: Reset your Apotheca password\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Someone asked to reset the password of {username}.\r\n\
         Open this link within an hour to choose a new one:\r\n\r\n{link}\r\n\r\n\
         If it was not you, ignore this message.\r\n",
        from = settings.mail_from,
    );
    match tokio::time::timeout(
        Duration::from_secs(10),
        smtp(relay, &settings.mail_from, to, &body),
    )
    .await
    {
        Ok(Ok(())) => tracing::info!(username, "password reset mail sent"),
        Ok(Err(e)) => {
            tracing::warn!(username, error = %e, link, "password reset mail failed; link logged instead")
        }
        Err(_) => tracing::warn!(
            username,
            link,
            "password reset mail timed out; link logged instead"
        ),
    }
}

async fn smtp(relay: &str, from: &str, to: &str, body: &str) -> std::io::Result<()> {
    if [from, to]
        .iter()
        .any(|a| a.contains(['\r', '\n', '<', '>']))
    {
        return Err(std::io::Error::other("address with forbidden characters"));
    }
    let stream = TcpStream::connect(relay).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut expect = async |code: &str| -> std::io::Result<()> {
        loop {
            let line = lines
                .next_line()
                .await?
                .ok_or_else(|| std::io::Error::other("relay closed"))?;
            if !line.starts_with(code) {
                return Err(std::io::Error::other(format!("relay said {line:?}")));
            }
            // Multi-line replies continue with "250-".
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect("220").await?;
    for (command, code) in [
        ("HELO apotheca\r\n".to_owned(), "250"),
        (format!("MAIL FROM:<{from}>\r\n"), "250"),
        (format!("RCPT TO:<{to}>\r\n"), "25"),
        ("DATA\r\n".to_owned(), "354"),
    ] {
        write.write_all(command.as_bytes()).await?;
        expect(code).await?;
    }
    // Dot-stuffing: a line starting with "." gets another.
    let stuffed = body.replace("\r\n.", "\r\n..");
    write.write_all(stuffed.as_bytes()).await?;
    write.write_all(b"\r\n.\r\n").await?;
    expect("250").await?;
    write.write_all(b"QUIT\r\n").await?;
    Ok(())
}
