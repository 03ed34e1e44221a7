//! `deploy/nginx-free/apotheca-proxy.service` as systemd runs it, against real processes: the
//! unit's own ExecStartPre, ExecStart and ExecReload lines (the installed paths swapped for
//! this build's binaries and a test settings file, `$MAINPID` read from the unit's PIDFile
//! the way systemd reads it), under continuous requests. Start forks a daemon that writes its
//! PID file; reload hands the listeners to a successor without one failed request, the old
//! main process exits, and the PID file names the successor (what systemd re-reads when the
//! old main process exits); a second reload while the old one still drains is refused by the
//! unit's guard; a reload with a broken settings file stops before SIGQUIT and leaves the
//! running proxy alone. Then a stop as systemd does it: SIGTERM to the main PID.

use std::path::{Path, PathBuf};
use std::time::Duration;

use apotheca_testkit::system::daemon::{alive, signal, wait_gone, PATIENCE};
use apotheca_testkit::system::load::Load;
use apotheca_testkit::system::proxy::{listening_ports, logged_port, port_in_use, request};
use apotheca_testkit::system::Apotheca;
use nix::sys::signal::Signal;

const UNIT: &str = include_str!("../../deploy/nginx-free/apotheca-proxy.service");

/// The unit's `Key=value` lines of `[Service]`, in order.
fn service_lines(key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut out = vec![];
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service {
            if let Some(value) = line.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                out.push(value.to_owned());
            }
        }
    }
    out
}

/// The unit's paths, mapped into this test: binaries of this build, the settings file and
/// the runtime folder of the test.
struct Paths {
    bin_dir: PathBuf,
    config: PathBuf,
    runtime: PathBuf,
}

impl Paths {
    fn map(&self, word: &str) -> String {
        word.replace(
            "/usr/local/bin/",
            &format!("{}/", self.bin_dir.to_str().unwrap()),
        )
        .replace("/etc/apotheca/apotheca.toml", self.config.to_str().unwrap())
        .replace("/run/apotheca-proxy", self.runtime.to_str().unwrap())
    }

    fn pid_file(&self) -> PathBuf {
        let units: Vec<String> = service_lines("PIDFile");
        assert_eq!(units.len(), 1, "one PIDFile= in the unit");
        PathBuf::from(self.map(&units[0]))
    }

    /// The PID file's process (`None` while the file is missing or partial): what systemd
    /// takes as the main PID after start, and again when the main process exits.
    fn main_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Every process the test saw in the PID file, killed if still there when the test ends
/// (daemons are not our children: nothing else would stop them).
#[derive(Default)]
struct Started(Vec<i32>);

impl Drop for Started {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }
}

/// An Exec line split into words as systemd does: whitespace separates, quotes group (and
/// are removed), `$$` is a `$`, and `$MAINPID` / `${MAINPID}` are the main PID.
fn words(line: &str, main_pid: Option<i32>) -> Vec<String> {
    let pid = main_pid.map(|p| p.to_string()).unwrap_or_default();
    let (mut out, mut word, mut quote, mut started) = (vec![], String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (_, c) => (word, started) = (word + &c.to_string(), true),
        }
    }
    if started {
        out.push(word);
    }
    out.into_iter()
        .map(|w| {
            w.replace("${MAINPID}", &pid)
                .replace("$MAINPID", &pid)
                .replace("$$", "$")
        })
        .collect()
}

/// Runs one Exec line the way systemd does (no shell of its own), with the unit's
/// Environment= plus the test database; returns its exit status.
async fn exec(
    paths: &Paths,
    line: &str,
    main_pid: Option<i32>,
    db_url: &str,
    log: &Path,
) -> std::process::ExitStatus {
    let words: Vec<String> = words(line, main_pid).iter().map(|w| paths.map(w)).collect();
    let mut cmd = tokio::process::Command::new(&words[0]);
    cmd.args(&words[1..])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    if let Some(pid) = main_pid {
        cmd.env("MAINPID", pid.to_string());
    }
    for env in service_lines("Environment") {
        let (k, v) = env.split_once('=').expect("Environment=KEY=value");
        cmd.env(k, paths.map(v));
    }
    tokio::time::timeout(PATIENCE, cmd.status())
        .await
        .unwrap_or_else(|_| panic!("{line} did not finish within {PATIENCE:?}"))
        .unwrap()
}

/// Runs `lines` in order as systemd runs ExecReload=: the first that fails ends the reload;
/// returns it with its status.
async fn run_all(
    paths: &Paths,
    lines: &[String],
    main_pid: i32,
    db_url: &str,
    log: &Path,
) -> Result<(), (String, std::process::ExitStatus)> {
    for line in lines {
        let status = exec(paths, line, Some(main_pid), db_url, log).await;
        if !status.success() {
            return Err((line.clone(), status));
        }
    }
    Ok(())
}

/// Waits until the PID file names a live process other than `not`, holding `ports`.
async fn wait_main(paths: &Paths, not: Option<i32>, ports: &[u16], log: &Path) -> i32 {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(pid) = paths.main_pid().filter(|p| Some(*p) != not) {
            let held = listening_ports(pid as u32);
            if alive(pid) && ports.iter().all(|p| held.contains(p)) {
                return pid;
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no new main process listening on {ports:?} within {PATIENCE:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The HTTP and admin ports of the proxy's line "proxy serving" in `log` (written before the
/// daemon forks, so there once ExecStart has returned).
fn bound_ports(log: &Path) -> (u16, u16) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("proxy serving"))
        .unwrap_or_else(|| panic!("no \"proxy serving\" line in the proxy's log:\n{text}"));
    let port = |key: &str| -> u16 {
        logged_port(line, key).unwrap_or_else(|| panic!("no {key} port in {line:?}"))
    };
    (port("http"), port("admin"))
}

#[tokio::test]
async fn the_units_start_reload_and_stop_work_on_real_processes() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a.serve(&[]).await;
    let runtime = a.dir.path().join("run-proxy");
    std::fs::create_dir_all(&runtime).unwrap();
    let config = a.dir.path().join("proxy-unit.toml");
    // Port 0 at first; once the proxy has said which ports it got, they are written in, for
    // the successor a reload starts (it takes the sockets over by address).
    let upgrade_sock = runtime.join("upgrade.sock");
    let settings = |http: u16, admin: u16| {
        format!(
            "[proxy]\nhttp_listen = \"127.0.0.1:{http}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             control_socket = {:?}\nupgrade_sock = {:?}\nwake_timeout_ms = 30000\n",
            d.socket.to_str().unwrap(),
            upgrade_sock.to_str().unwrap(),
        )
    };
    std::fs::write(&config, settings(0, 0)).unwrap();
    let paths = Paths {
        bin_dir: apotheca_testkit::system::proxy::proxy_bin()
            .parent()
            .unwrap()
            .to_path_buf(),
        config: config.clone(),
        runtime,
    };
    // The unit's PIDFile is the proxy's upgrade_sock with .pid, as the proxy writes it.
    assert_eq!(paths.pid_file(), paths.runtime.join("upgrade.pid"));
    let log = a.dir.path().join("proxy-unit.log");
    let url = a.db.url();
    let mut seen = Started::default();

    // systemctl start: ExecStartPre, then ExecStart, which forks and exits 0.
    for line in service_lines("ExecStartPre")
        .iter()
        .chain(&service_lines("ExecStart"))
    {
        let status = exec(&paths, line, None, &url, &log).await;
        assert!(
            status.success(),
            "{line}: {status:?}\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
    let (http, admin) = bound_ports(&log);
    std::fs::write(&config, settings(http, admin)).unwrap();
    let first = wait_main(&paths, None, &[http, admin], &log).await;
    seen.0.push(first);
    let r = request(
        http,
        hyper::Method::GET,
        "/login",
        &[("host", "alpha.localhost")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // systemctl reload, under load: every ExecReload line in order, $MAINPID the main process
    // systemd knows, each exiting 0.
    let load = Load::start(http, "alpha.localhost", 2);
    load.wait_more(200, 20).await;
    let reload = service_lines("ExecReload");
    assert!(reload.iter().any(|l| l.contains("--upgrade")), "{reload:?}");
    if let Err((line, status)) = run_all(&paths, &reload, first, &url, &log).await {
        panic!(
            "{line}: {status:?}\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
    let second = wait_main(&paths, Some(first), &[http, admin], &log).await;
    seen.0.push(second);
    // While the old one drains, systemd's main PID is still the old one: another reload is
    // refused by its first line, and nothing is signalled.
    if alive(first) {
        let again = run_all(&paths, &reload, first, &url, &log).await;
        assert!(
            matches!(&again, Err((line, s)) if *line == reload[0] && s.code() == Some(1)),
            "{again:?}"
        );
        let log_text = std::fs::read_to_string(&log).unwrap();
        assert!(
            log_text.contains("the last reload is still finishing"),
            "{log_text}"
        );
    } else {
        println!("the old proxy was gone before the second reload could be tried");
    }
    // The old main process drains and exits by itself; systemd then re-reads the PID file,
    // which names the successor.
    wait_gone(&[first]).await;
    assert_eq!(paths.main_pid(), Some(second));
    assert!(alive(second));
    load.wait_more(200, 20).await;
    let answers = load.finish().await;
    println!(
        "unit reload under load: answers {:?} by process {:?}, no answer {}",
        answers.statuses,
        answers.by_process,
        answers.errors.len()
    );
    // Not one request without an answer: a connection the old process accepted in the instant
    // its listeners shut down still gets its first request answered.
    assert!(
        answers.errors.is_empty(),
        "requests without an answer: {:?}\n{}",
        answers.errors,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(answers.statuses.keys().collect::<Vec<_>>(), [&200]);
    assert_eq!(answers.by_process.len(), 2, "both processes answered");

    // A reload with a broken settings file: the check fails before SIGQUIT, so the running
    // proxy goes on, still the main process.
    std::fs::write(
        &config,
        format!("{}no_such_key = 1\n", settings(http, admin)),
    )
    .unwrap();
    let broken = run_all(&paths, &reload, second, &url, &log).await;
    assert!(
        matches!(&broken, Err((line, s)) if line.contains("--validate-config") && s.code() == Some(2)),
        "{broken:?}"
    );
    assert!(alive(second));
    assert_eq!(paths.main_pid(), Some(second));
    std::fs::write(&config, settings(http, admin)).unwrap();
    let r = request(
        http,
        hyper::Method::GET,
        "/login",
        &[("host", "alpha.localhost")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // systemctl stop: SIGTERM to the main process, which drains and exits.
    signal(second, Signal::SIGTERM);
    wait_gone(&[second]).await;
    for port in [http, admin] {
        assert!(!port_in_use(port), "port {port} still taken");
    }
    assert!(d.stop().await.success());
}
