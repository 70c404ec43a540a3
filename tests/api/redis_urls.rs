//! `REDIS_URL` forms beyond a plain local URL: ACL user + password (in the URL or in
//! `REDIS_PASSWORD`) and Sentinel, each against real redis-server processes.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use wiremock::MockServer;

use crate::helpers::{
    free_port, graph_ok, spawn, text_delivery, wait_for_replies, wait_until_listening, AppOptions,
    RedisServer, APP_SECRET,
};

struct Process(Child, std::path::PathBuf);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn redis(args: &[&str]) -> (u16, RedisServer) {
    let server = RedisServer::start_with_args(false, args);
    (server.port, server)
}

async fn answers_through(url: &str, extra_env: Vec<(String, String)>) {
    let graph = graph_ok().await;
    let options = AppOptions {
        extra_env,
        ..AppOptions::default()
    };
    let app = spawn(AppOptions {
        redis_url: Some(url.to_string()),
        graph: Some(graph.clone()),
        ..options
    })
    .await;
    assert_eq!(app.get("/ready").await.status(), 200, "{url}");
    let body = text_delivery("123", "15550006666", "wamid.url", "through the url");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let got = wait_for_replies(&graph, 1, Duration::from_secs(30)).await;
    assert_eq!(got[0].text, "echo: through the url");
}

#[tokio::test]
async fn acl_user_and_password_in_the_url_or_in_redis_password() {
    let (port, _server) = redis(&[
        "--user",
        "default",
        "off",
        "--user",
        "wabot",
        "on",
        ">s3cret-pass",
        "~*",
        "&*",
        "+@all",
    ]);
    answers_through(
        &format!("redis://wabot:s3cret-pass@127.0.0.1:{port}/0"),
        Vec::new(),
    )
    .await;
    // A wrong password is refused: not ready, and deliveries get 503.
    let graph = Arc::new(MockServer::start().await);
    let wrong = spawn(AppOptions {
        redis_url: Some(format!("redis://wabot:wrong@127.0.0.1:{port}/0").to_string()),
        graph: Some(graph),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(wrong.get("/ready").await.status(), 503);

    let (port, _server) = redis(&["--requirepass", "only-a-password"]);
    answers_through(
        &format!("redis://127.0.0.1:{port}/0"),
        vec![("REDIS_PASSWORD".into(), "only-a-password".into())],
    )
    .await;
}

#[tokio::test]
async fn sentinel_url_finds_the_primary() {
    let (primary, _primary) = redis(&[]);
    let sentinel_port = free_port();
    let dir = std::env::temp_dir().join(format!("wabot-sentinel-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor wabotprimary 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds wabotprimary 5000\n"
        ),
    )
    .expect("sentinel.conf");
    let child = Command::new("redis-server")
        .args([conf.to_str().expect("utf-8"), "--sentinel"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel runs");
    let _sentinel = Process(child, dir);
    wait_until_listening(sentinel_port);
    answers_through(
        &format!("redis-sentinel://127.0.0.1:{sentinel_port}/0?sentinelServiceName=wabotprimary"),
        Vec::new(),
    )
    .await;
}

/// A CA and a server certificate for 127.0.0.1, written as PEM files into `dir`.
fn write_tls_files(dir: &std::path::Path) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wabot test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("server.crt"), server_cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("wabot-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    write_tls_files(&dir);
    let path = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();
    let tls_port = free_port();
    let (_plain_port, _server) = redis(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    wait_until_listening(tls_port);
    answers_through(
        &format!("rediss://127.0.0.1:{tls_port}/0"),
        vec![("WABOT_REDIS__TLS_CA_FILE".into(), path("ca.crt"))],
    )
    .await;
    // Without the CA the certificate is not trusted: the service stays not ready.
    let graph = Arc::new(MockServer::start().await);
    let untrusted = spawn(AppOptions {
        redis_url: Some(format!("rediss://127.0.0.1:{tls_port}/0").to_string()),
        graph: Some(graph),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(untrusted.get("/ready").await.status(), 503);
    let _ = std::fs::remove_dir_all(&dir);
}
