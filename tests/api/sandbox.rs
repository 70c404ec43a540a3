//! `wabot sandbox`: the expected transcript against a real redis-server; a private redis-server
//! of its own when none answers, gone after the end of the script and after SIGTERM or Ctrl-C;
//! the install command when there is no redis-server at all.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{free_port, RedisServer};

/// The README's tour: the script, and the transcript the README shows for it.
const SCRIPT: &str = include_str!("../../examples/sandbox-tour.txt");
const README: &str = include_str!("../../README.md");

/// The transcript between the README's `sandbox-transcript` markers.
fn readme_transcript() -> &'static str {
    let start = README
        .find("<!-- sandbox-transcript: examples/sandbox-tour.txt -->")
        .expect("the README marks its sandbox transcript");
    let block = &README[start..];
    let open = block.find("```text\n").expect("a text block") + "```text\n".len();
    let close = block[open..].find("```").expect("the block ends") + open;
    &block[open..close]
}

const NOTICE: &str = "started a private redis-server on 127.0.0.1:";

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wabot-test-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// What the sandbox left of its private redis-server here.
    fn private_redis_dirs(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .expect("temp dir readable")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("wabot-sandbox-redis"))
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sandbox in a clean environment: `REDIS_URL`, `PATH`, and a `TMPDIR` of the test's own so
/// that what it leaves there can be checked.
fn sandbox(redis_url: &str, path: &str, tmp: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wabot"));
    command
        .args(["sandbox", "--user", "4915123456789"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("REDIS_URL", redis_url)
        .env("PATH", path)
        .env("TMPDIR", tmp.path());
    command
}

fn run_script(redis_url: &str, path: &str, tmp: &TempDir, script: &str) -> Output {
    let scripts = TempDir::new("sandbox-script");
    let file = scripts.path().join("script.txt");
    std::fs::write(&file, script).expect("script written");
    sandbox(redis_url, path, tmp)
        .arg("--script")
        .arg(&file)
        .output()
        .expect("wabot runs")
}

fn path_with_redis() -> String {
    std::env::var("PATH").unwrap_or_default()
}

/// A URL where nothing listens.
fn unreachable_redis() -> String {
    format!("redis://127.0.0.1:{}/0", free_port())
}

/// The port in the sandbox's notice about its private redis-server.
fn private_port(stderr: &str) -> Option<u16> {
    let rest = &stderr[stderr.find(NOTICE)? + NOTICE.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// redis-server processes on `port` other than this test binary's own (another test's server may
/// get the same port once it is free again).
fn foreign_redis_servers(port: u16) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            dir.file_name()?.to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim() != "redis-server" {
                return None;
            }
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_string();
            let on_port = cmdline.contains(&format!(":{port}"))
                || cmdline.contains(&format!("--port {port} "));
            (on_port && parent != me).then(|| format!("{} (parent {parent})", cmdline.trim()))
        })
        .collect()
}

/// Waits (bounded) until no redis-server of the sandbox's runs on `port` any more.
fn assert_private_redis_gone(port: u16) {
    let proc_fs = Path::new("/proc/self").exists();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = if proc_fs {
            foreign_redis_servers(port)
        } else if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            vec![format!("something listens on {port}")]
        } else {
            Vec::new()
        };
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox's redis-server outlived it: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn scripted_sandbox_prints_the_transcript() {
    let redis = RedisServer::start();
    let tmp = TempDir::new("sandbox-tmp");
    let output = run_script(&redis.url(), &path_with_redis(), &tmp, SCRIPT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), readme_transcript());
    assert!(!stderr.contains(NOTICE), "{stderr}");
}

#[test]
fn the_sandbox_shows_the_menu_and_taps_its_rows() {
    let redis = RedisServer::start();
    let tmp = TempDir::new("sandbox-tmp");
    let output = run_script(
        &redis.url(),
        &path_with_redis(),
        &tmp,
        "hola\n/tap menu_prices\n3\n",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "\
you> hola
bot> ¡Hola! 👋 ¿En qué te puedo ayudar?
       [1 Horarios]  /tap menu_hours
       [2 Precios]  /tap menu_prices
       [3 Hablar con alguien]  /tap menu_human
you> /tap menu_prices
bot> Básico: 9 €/mes, 1 usuario. Pro: 29 €/mes, hasta 5 usuarios y soporte prioritario. Empresa: hablemos.
       [Hablar con alguien]  /tap menu_human
       [Menú]  /tap menu_start
you> 3
bot> Lo siento, no te he entendido. Escribe *ayuda* para ver lo que puedo hacer.
"
    );
}

#[test]
fn sandbox_without_redis_starts_a_private_one_and_stops_it() {
    let tmp = TempDir::new("sandbox-tmp");
    let output = run_script(&unreachable_redis(), &path_with_redis(), &tmp, SCRIPT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), readme_transcript());
    assert_eq!(stderr.lines().count(), 1, "one line of notice: {stderr}");
    let port = private_port(&stderr).unwrap_or_else(|| panic!("no port in {stderr:?}"));
    assert!(stderr.contains("(removed on exit)"), "{stderr}");
    assert_private_redis_gone(port);
    assert_eq!(tmp.private_redis_dirs(), Vec::<String>::new());
}

#[test]
fn sandbox_without_redis_server_says_how_to_install_it() {
    let tmp = TempDir::new("sandbox-tmp");
    // An empty PATH: no redis-server (the binary itself is run by its absolute path).
    let empty = TempDir::new("sandbox-empty-path");
    let path = empty.path().to_str().expect("utf-8 temp dir").to_string();
    let output = run_script(&unreachable_redis(), &path, &tmp, "hello\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.contains("redis"), "{stderr}");
    assert!(stderr.to_lowercase().contains("install"), "{stderr}");
    assert!(stderr.lines().count() <= 3, "short: {stderr}");
    assert_eq!(tmp.private_redis_dirs(), Vec::<String>::new());
}

#[test]
fn sigterm_stops_the_interactive_sandbox_and_its_private_redis() {
    signal_stops_the_private_redis("TERM");
}

#[test]
fn ctrl_c_stops_the_interactive_sandbox_and_its_private_redis() {
    signal_stops_the_private_redis("INT");
}

/// Lines of `reader`, read by a thread of their own so that waiting for one can be bounded.
fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(lines: &mpsc::Receiver<String>, wanted: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(line) => seen.push(line),
            Err(error) => panic!("no line with {wanted:?} ({error}); got {seen:?}"),
        }
    }
}

/// An interactive session (stdin kept open) on a private redis-server, stopped by `kill -SIGNAL`.
fn signal_stops_the_private_redis(signal: &str) {
    let tmp = TempDir::new("sandbox-tmp");
    let mut child = sandbox(&unreachable_redis(), &path_with_redis(), &tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wabot runs");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let stdout = lines_of(child.stdout.take().expect("stdout piped"));
    let stderr = lines_of(child.stderr.take().expect("stderr piped"));
    let mut seen = Vec::new();

    let notice = wait_for_line(&stderr, NOTICE, &mut seen);
    let port = private_port(&notice).unwrap_or_else(|| panic!("no port in {notice:?}"));
    // A reply proves the session runs on the private server.
    writeln!(stdin, "hello").expect("line sent");
    wait_for_line(&stdout, "bot> Hi! 👋", &mut seen);

    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wabot") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wabot did not stop within 30 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIG{signal}: {status}");
    assert_private_redis_gone(port);
    assert_eq!(tmp.private_redis_dirs(), Vec::<String>::new());
    drop(stdin);
}

/// The booking example: the rules file sends its flow, the sandbox plays the phone (`/flow`,
/// `/submit`), the rules file's screens answer each step, and the completed flow is answered
/// with its answers.
#[test]
fn the_booking_example_books_a_visit_through_its_flow() {
    let redis = RedisServer::start();
    let tmp = TempDir::new("sandbox-tmp");
    let output = sandbox(&redis.url(), &path_with_redis(), &tmp)
        .env("WABOT_RESPONDER__RULES_FILE", "examples/booking/rules.toml")
        .args(["--script", "examples/booking/sandbox.txt"])
        .output()
        .expect("wabot runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        r#"you> I would like to book a visit
bot> Pick a day and a time for your visit.
       [Book]  /flow
you> /flow
flow> DETAILS {"days":[{"id":"Tuesday","title":"Tuesday"},{"id":"Wednesday","title":"Wednesday"}],"times":[{"id":"10:30","title":"10:30"},{"id":"16:00","title":"16:00"}]}
you> /submit day=Tuesday time=10:30
flow> CONFIRM {"day":"Tuesday","summary":"Tuesday at 10:30","time":"10:30"}
you> /submit day=Tuesday time=10:30
flow> done
bot> Booked: Tuesday at 10:30. See you then!
"#
    );
    let flow: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/booking/flow.json"
        ))
        .expect("flow.json"),
    )
    .expect("flow.json is JSON");
    let screens: Vec<&str> = flow["screens"]
        .as_array()
        .expect("screens")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(
        screens,
        ["DETAILS", "CONFIRM"],
        "the screens the rules file answers"
    );
}
