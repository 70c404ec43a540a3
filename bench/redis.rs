//! Redis for the benchmark: a throw-away private `redis-server` child process (no persistence,
//! killed when dropped), per-command statistics from `INFO commandstats`, and removal of the
//! run's keys when an external server is used.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use fred::prelude::{Client, ClientLike, KeysInterface};
use fred::types::InfoKind;
use futures_util::StreamExt;

/// A `redis-server` on a free local port, with `--save "" --appendonly no`.
pub struct PrivateRedis {
    port: u16,
    pid: u32,
    child: Child,
    dir: PathBuf,
}

impl PrivateRedis {
    pub async fn start() -> anyhow::Result<PrivateRedis> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("wabot-bench-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir_arg = dir
            .to_str()
            .context("the temporary directory path is not UTF-8")?
            .to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir_arg,
                "--maxmemory-policy",
                "noeviction",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `redis-server` (is it on PATH? or pass --redis-url)")?;
        let mut redis = PrivateRedis {
            port,
            pid: child.id(),
            child,
            dir,
        };
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(redis);
            }
            if let Some(status) = redis.child.try_wait()? {
                bail!("redis-server exited at start-up ({status})");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("redis-server did not listen on port {port} within 5 s")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Calls per command (`cmdstat_<name>:calls=<n>,...`). Commands run by Lua scripts are counted
/// too, under their own names, besides the `evalsha` that ran the script.
#[derive(Debug, Clone, Default)]
pub struct CommandStats(BTreeMap<String, u64>);

impl CommandStats {
    pub async fn read(client: &Client) -> anyhow::Result<CommandStats> {
        let text: String = client
            .info(Some(InfoKind::CommandStats))
            .await
            .context("INFO commandstats")?;
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let count = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(count) = count {
                calls.insert(name.to_string(), count);
            }
        }
        Ok(CommandStats(calls))
    }

    /// What happened between `earlier` and `self`, without the benchmark's own `INFO` calls.
    pub fn since(&self, earlier: &CommandStats) -> CommandStats {
        let mut delta = BTreeMap::new();
        for (name, calls) in &self.0 {
            if name == "info" {
                continue;
            }
            let before = earlier.0.get(name).copied().unwrap_or(0);
            let diff = calls.saturating_sub(before);
            if diff > 0 {
                delta.insert(name.clone(), diff);
            }
        }
        CommandStats(delta)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Calls of script commands (`evalsha`, `eval`, `fcall`...): one client round trip each.
    pub fn script_calls(&self) -> u64 {
        self.0
            .iter()
            .filter(|(name, _)| {
                name.starts_with("eval")
                    || name.starts_with("fcall")
                    || name.as_str() == "script|load"
            })
            .map(|(_, calls)| calls)
            .sum()
    }

    pub fn calls(&self, command: &str) -> u64 {
        self.0.get(command).copied().unwrap_or(0)
    }

    /// Commands by calls, most frequent first.
    pub fn by_calls(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = self.0.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }
}

/// Deletes every key of the deployment `prefix` (`{prefix:N}:...` and `prefix:...`); returns
/// how many were removed. Only for a single-node server (SCAN is not cluster-wide here).
pub async fn delete_prefix(client: &Client, prefix: &str) -> anyhow::Result<u64> {
    let mut deleted = 0u64;
    for pattern in [format!("{{{prefix}:*"), format!("{prefix}:*")] {
        let mut keys = Vec::new();
        let mut scan = client.scan_buffered(pattern, Some(1000), None);
        while let Some(key) = scan.next().await {
            keys.push(key.context("SCAN")?);
        }
        for chunk in keys.chunks(512) {
            let results =
                futures_util::future::join_all(chunk.iter().map(|key| client.del::<i64, _>(key)))
                    .await;
            for result in results {
                deleted += u64::try_from(result.context("DEL")?).unwrap_or(0);
            }
        }
    }
    Ok(deleted)
}
