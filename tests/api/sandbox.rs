//! `wabot sandbox --script` prints the expected transcript against a real redis-server.

use crate::helpers::RedisServer;

fn sandbox(redis_url: &str, script: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("wabot-sandbox-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("script.txt");
    std::fs::write(&path, script).expect("script written");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wabot"))
        .args([
            "sandbox",
            "--script",
            path.to_str().expect("utf-8 path"),
            "--user",
            "4915123456789",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("REDIS_URL", redis_url)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("wabot runs");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

#[test]
fn scripted_sandbox_prints_the_transcript() {
    let redis = RedisServer::start();
    let output = sandbox(
        &redis.url(),
        "hello\n# comments are skipped\nQual é o horário de funcionamento?\n/reset\nthank you\n",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = "\
you> hello
bot> Hello! 👋 How can I help you today? Type *help* to see what I can do.
you> Qual é o horário de funcionamento?
bot> We are open Monday to Friday, 9:00–18:00, and Saturday 10:00–14:00.
you> /reset
bot> Your conversation has been reset. How can I help you?
you> thank you
bot> You're welcome! 😊
";
    assert_eq!(stdout, expected);
}

#[test]
fn sandbox_without_redis_says_how_to_start_one() {
    let port = crate::helpers::free_port();
    let output = sandbox(&format!("redis://127.0.0.1:{port}/0"), "hello\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("redis-server"), "{stderr}");
}
