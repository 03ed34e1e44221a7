//! The operator commands: `create-operator` (the password from standard input or a no-echo
//! prompt), `list-operators` and `delete-operator [--deactivate]`.

use std::io::{BufRead, IsTerminal, Write};

use super::Context;
use crate::error::{ControlError, Result};
use apotheca_tenancy::migrate;
use apotheca_tenancy::operators;

pub(super) async fn create(ctx: &Context, username: &str, password_stdin: bool) -> Result<()> {
    // Input first: a refused name or password must not start a cluster.
    let username = operators::parse_username(username)?;
    let password = if password_stdin {
        first_line_of_stdin()?
    } else {
        prompt_twice(&username)?
    };
    operators::check_password(&password)?;
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_operators_table(&client).await?;
    let hash = apotheca_pharmacy::accounts::hash_password_async(&password).await?;
    operators::create(&client, &username, &hash).await?;
    println!("created operator {username}; they log in at /operator/ on the public site");
    Ok(())
}

pub(super) async fn list(ctx: &Context, json: bool) -> Result<()> {
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_operators_table(&client).await?;
    let list = operators::list(&client).await?;
    if json {
        let text = serde_json::to_string_pretty(&list)?;
        println!("{text}");
        return Ok(());
    }
    if list.is_empty() {
        println!("no operators yet; add one with `apotheca create-operator --username NAME`");
        return Ok(());
    }
    let width = list
        .iter()
        .map(|o| o.username.chars().count())
        .max()
        .unwrap_or(0)
        .max("USERNAME".len());
    println!(
        "{:<width$}  STATUS    CREATED (UTC)     LAST LOGIN (UTC)",
        "USERNAME"
    );
    for o in &list {
        println!(
            "{:<width$}  {:<8}  {}  {}",
            o.username,
            if o.active { "active" } else { "inactive" },
            o.created_at.format("%Y-%m-%d %H:%M"),
            o.last_login_at
                .map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
        );
    }
    Ok(())
}

pub(super) async fn delete(ctx: &Context, username: &str, deactivate: bool) -> Result<()> {
    let username = operators::parse_username(username)?;
    let db = ctx.database().await?;
    let mut client = db.connect().await?;
    ensure_operators_table(&client).await?;
    if deactivate {
        if operators::deactivate(&mut client, &username).await? {
            println!("operator {username} is deactivated; their sessions have ended");
        } else {
            println!("operator {username} was already inactive");
        }
    } else {
        operators::delete(&client, &username).await?;
        println!("deleted operator {username}; their sessions have ended");
    }
    Ok(())
}

async fn ensure_operators_table(client: &tokio_postgres::Client) -> Result<()> {
    let row = client
        .query_one("SELECT to_regclass('public.operators') IS NOT NULL", &[])
        .await?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(ControlError::invalid(migrate::NOT_MIGRATED))
    }
}

fn first_line_of_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| ControlError::invalid(format!("reading the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(ControlError::invalid(
            "no password on standard input (--password-stdin reads its first line)",
        ));
    }
    Ok(password)
}

/// Asks for the password twice on the terminal, without echo.
fn prompt_twice(username: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(ControlError::invalid(
            "no terminal to ask for the password on; give it on standard input with --password-stdin",
        ));
    }
    let first = prompt(&format!("Password for operator {username}: "))?;
    let again = prompt("The same password again: ")?;
    if first != again {
        return Err(ControlError::invalid("the two passwords differ"));
    }
    Ok(first)
}

fn prompt(text: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let failed = |e: &dyn std::fmt::Display| ControlError::Other(format!("the terminal: {e}"));
    let stdin = std::io::stdin();
    let before = tcgetattr(&stdin).map_err(|e| failed(&e))?;
    let mut quiet = before.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| failed(&e))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // The echo comes back whatever happened.
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &before);
    read.map_err(|e| failed(&e))?;
    restored.map_err(|e| failed(&e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
