//! Where the CPU time goes: user+system time per thread of this process and of the app's
//! (grouped by role) and of the private `redis-server`, read from `/proc`. Linux only; elsewhere
//! nothing is sampled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub type Tid = u32;

/// One thread's name and CPU time (clock ticks) at a moment.
#[derive(Debug, Clone)]
pub struct ThreadSample {
    pub name: String,
    pub ticks: u64,
}

/// Every thread of this process right now.
pub fn sample_threads() -> HashMap<Tid, ThreadSample> {
    sample_threads_of("self")
}

/// Every thread of another process (the app's) right now.
pub fn sample_process_threads(pid: u32) -> HashMap<Tid, ThreadSample> {
    sample_threads_of(&pid.to_string())
}

fn sample_threads_of(process: &str) -> HashMap<Tid, ThreadSample> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{process}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<Tid>().ok())
        else {
            continue;
        };
        if let Some((name, ticks)) = read_stat(&entry.path().join("stat")) {
            out.insert(tid, ThreadSample { name, ticks });
        }
    }
    out
}

/// The thread ids alive now (to tell which threads a component started).
pub fn thread_ids() -> HashSet<Tid> {
    sample_threads().into_keys().collect()
}

/// The threads started since `before` once at least `expected` of them are named `prefix*`
/// (actix starts its worker threads when the server is first polled), or after 3 s.
pub async fn new_threads(before: &HashSet<Tid>, prefix: &str, expected: usize) -> HashSet<Tid> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let new: HashMap<Tid, ThreadSample> = sample_threads()
            .into_iter()
            .filter(|(tid, _)| !before.contains(tid))
            .collect();
        let named = new.values().filter(|s| s.name.starts_with(prefix)).count();
        if named >= expected || std::time::Instant::now() >= deadline {
            return new.into_keys().collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// CPU ticks of another process (the private `redis-server`).
pub fn process_ticks(pid: u32) -> Option<u64> {
    read_stat(Path::new(&format!("/proc/{pid}/stat"))).map(|(_, ticks)| ticks)
}

/// Busy ticks of the whole machine, all cores (`/proc/stat`: everything but idle and iowait).
pub fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    Some(busy)
}

/// `utime + stime` of a `/proc/.../stat` file, with the thread name. The name is in parentheses
/// and may contain spaces, so fields are counted after the last `)`.
fn read_stat(path: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 (index 0), utime field 14 (index 11), stime 15 (index 12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on practically every Linux).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Which threads belong to which component.
#[derive(Debug, Default)]
pub struct Roles {
    pub fake_graph: HashSet<Tid>,
    pub app_http: HashSet<Tid>,
    /// The app runs in this process (`--in-process`): its threads are among ours.
    pub app_in_process: bool,
}

pub const APP_HTTP: &str = "app: HTTP intake (actix workers)";
pub const APP_WORKERS: &str = "app: workers (own runtime, lower priority)";
pub const APP_RUNTIME: &str = "app: intake's Redis client (tokio main)";
pub const LOAD: &str = "bench: load generator (reqwest)";
pub const FAKE_GRAPH: &str = "bench: fake Graph API (actix)";
pub const CONTROL: &str = "bench: main thread / other";
pub const APP_OTHER: &str = "app: other threads";

impl Roles {
    fn role(&self, tid: Tid, name: &str) -> &'static str {
        if self.fake_graph.contains(&tid) {
            FAKE_GRAPH
        } else if self.app_in_process
            && name.starts_with(wabot::pipeline::worker::runtime::THREAD_NAME)
        {
            APP_WORKERS
        } else if self.app_http.contains(&tid) {
            APP_HTTP
        } else if name.starts_with(crate::LOAD_THREAD_NAME) {
            LOAD
        } else if self.app_in_process && name.starts_with("tokio-r") {
            APP_RUNTIME
        } else {
            CONTROL
        }
    }

    /// CPU ticks spent per role between two samples (threads started in between count from 0).
    pub fn usage(
        &self,
        before: &HashMap<Tid, ThreadSample>,
        after: &HashMap<Tid, ThreadSample>,
    ) -> BTreeMap<&'static str, u64> {
        usage(before, after, |tid, name| self.role(tid, name))
    }
}

/// The same for the app's own process, whose threads are told apart by name alone.
pub fn app_usage(
    before: &HashMap<Tid, ThreadSample>,
    after: &HashMap<Tid, ThreadSample>,
) -> BTreeMap<&'static str, u64> {
    usage(before, after, |_, name| {
        if name.starts_with(wabot::pipeline::worker::runtime::THREAD_NAME) {
            APP_WORKERS
        } else if name.starts_with(crate::ACTIX_WORKER) {
            APP_HTTP
        } else if name.starts_with("tokio-r") {
            APP_RUNTIME
        } else {
            APP_OTHER
        }
    })
}

fn usage(
    before: &HashMap<Tid, ThreadSample>,
    after: &HashMap<Tid, ThreadSample>,
    role: impl Fn(Tid, &str) -> &'static str,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for (tid, sample) in after {
        let start = before.get(tid).map(|s| s.ticks).unwrap_or(0);
        *out.entry(role(*tid, &sample.name)).or_insert(0) += sample.ticks.saturating_sub(start);
    }
    out
}
