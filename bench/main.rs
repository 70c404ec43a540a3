//! `wabot-bench`: load generator and benchmark for the durable pipeline.
//!
//! It runs the real application in a child process of its own (HTTP intake on 127.0.0.1:0, Redis
//! inbox, and in `e2e` mode the workers; `--in-process` runs it inside the bench instead), a
//! private `redis-server` child (or `--redis-url`), and a fake Graph API
//! that records every reply. Simulated users post signed text deliveries to `/webhook`, each user
//! strictly in order, many users concurrently, with a share of deliveries re-sent under the same
//! wamid. It then reports ingest throughput and ack latency, end-to-end throughput and latency
//! (POST sent → reply at the fake Graph API), lost and duplicate replies, per-user order
//! violations, Redis commands per message and where the CPU time went. The exit code is non-zero
//! when a reply is lost, duplicated or out of order, or a delivery is refused.
//!
//! ```text
//! cargo run --release --bin wabot-bench                          # e2e, as fast as possible
//! cargo run --release --bin wabot-bench -- --mode ingest         # intake only
//! cargo run --release --bin wabot-bench -- --mode ingest --rate 1000   # p99 ack at 1,000 req/s
//! cargo run --release --bin wabot-bench -- --mode bodies --concurrency 100   # RSS under 2 MiB bodies
//! ```

mod app;
mod bodies;
mod cpu;
mod fake_graph;
mod load;
mod memory;
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::{Parser, ValueEnum};
use fred::prelude::ClientLike;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use wabot::config::{redact_url_userinfo, Settings};

use fake_graph::{FakeGraph, Reply};
use load::{Shared, UserOutcome};
use redis::{CommandStats, PrivateRedis};

/// Threads of the load generator's own runtime are named after this (CPU attribution).
pub const LOAD_THREAD_NAME: &str = "bench-load";
/// actix-server names its worker threads `actix-server worker N` (truncated to 15 bytes).
pub const ACTIX_WORKER: &str = "actix-server wo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Webhook acceptance only: workers disabled, messages stay in the Redis inbox.
    Ingest,
    /// Intake, Redis inbox, workers and replies to the fake Graph API.
    E2e,
    /// Memory under `--concurrency` unauthenticated 2 MiB bodies at once (RSS before, peak,
    /// after).
    Bodies,
}

/// Load generator for wabot: webhook intake → Redis inbox → workers → Graph API.
#[derive(Debug, Parser)]
#[command(name = "wabot-bench", version)]
struct Args {
    /// Simulated WhatsApp users (conversations); each sends its messages in order.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Unique messages in total, spread evenly over the users.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Webhook POSTs in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Fraction of messages delivered a second time with the same wamid (0..=1).
    #[arg(long, default_value_t = 0.10)]
    duplicates: f64,
    /// Fixed request rate (deliveries per second, duplicates included); 0 = as fast as possible.
    /// Ack latency is then measured from each request's scheduled time.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, value_enum, default_value_t = Mode::E2e)]
    mode: Mode,
    /// Use this Redis (keys get a unique prefix, removed afterwards) instead of a private
    /// `redis-server` child on a free port.
    #[arg(long)]
    redis_url: Option<String>,
    /// HTTP worker threads of the app (`WABOT_SERVER__HTTP_WORKERS`).
    #[arg(long, default_value_t = 2)]
    http_workers: usize,
    /// Inbox partitions (`WABOT_WORKER__PARTITIONS`).
    #[arg(long, default_value_t = 64)]
    partitions: u32,
    /// Conversations processed at once (`WABOT_WORKER__CONCURRENCY`).
    #[arg(long, default_value_t = 256)]
    worker_concurrency: usize,
    /// How long to wait for outstanding replies after the last delivery was acknowledged.
    #[arg(long, default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Seed for picking the duplicated messages.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Extra app setting, e.g. `--env WABOT_WORKER__LEASE_TTL_MS=5000` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Keep the app's client-side Graph API pacing (80 messages/s per business number, 1 s
    /// between messages to one user). By default the bench lifts it to measure the pipeline.
    #[arg(long)]
    pacing: bool,
    /// Serve this many tenants (tenant files, each with its own token and `--numbers-per-tenant`
    /// numbers) and spread the users over all their numbers; 0: the deployment alone, one number.
    #[arg(long, default_value_t = 0)]
    tenants: usize,
    #[arg(long, default_value_t = 5)]
    numbers_per_tenant: usize,
    /// With `--tenants`: the first tenant's responder is an http backend that never answers
    /// (each message waits `--hung-timeout-ms`, then gets the fallback text). Its users are left
    /// out of the figures, which are then the other tenants'.
    #[arg(long, requires = "tenants")]
    hung_tenant: bool,
    #[arg(long, default_value_t = 1000)]
    hung_timeout_ms: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Run the app inside the bench's process instead of a child process of its own (RSS is
    /// then the bench's and the app's together).
    #[arg(long)]
    in_process: bool,
    /// Internal: be the app under test (started by the bench itself).
    #[arg(long, hide = true)]
    serve_app: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.serve_app {
        return app::serve_child();
    }
    let runtimes = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|main| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.client_threads.max(1))
                .thread_name(LOAD_THREAD_NAME)
                .enable_all()
                .build()
                .map(|load| (main, load))
        });
    let (main_runtime, load_runtime) = match runtimes {
        Ok(runtimes) => runtimes,
        Err(error) => {
            eprintln!("wabot-bench: cannot start the Tokio runtimes: {error}");
            return ExitCode::from(2);
        }
    };
    let result = main_runtime.block_on(run(args, load_runtime.handle().clone()));
    load_runtime.shutdown_timeout(Duration::from_secs(2));
    main_runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("wabot-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(args: &Args) -> anyhow::Result<()> {
    ensure!(args.users >= 1, "--users must be at least 1");
    ensure!(args.messages >= 1, "--messages must be at least 1");
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(
        (0.0..=1.0).contains(&args.duplicates),
        "--duplicates must be between 0 and 1"
    );
    ensure!(
        args.rate.is_finite() && args.rate >= 0.0,
        "--rate must be 0 (as fast as possible) or a positive number"
    );
    ensure!(args.users <= 10_000_000, "--users is limited to 10,000,000");
    Ok(())
}

/// Everything the run started, for the final clean-up.
struct Environment {
    private_redis: Option<PrivateRedis>,
    redis_url: String,
    graph: FakeGraph,
    settings: Settings,
    port: u16,
    roles: cpu::Roles,
    /// The app's own process (none with `--in-process`).
    app_pid: Option<u32>,
}

async fn run(args: Args, load: tokio::runtime::Handle) -> anyhow::Result<bool> {
    validate(&args)?;
    let private_redis = match &args.redis_url {
        Some(_) => None,
        None => Some(PrivateRedis::start().await?),
    };
    let redis_url = match (&args.redis_url, &private_redis) {
        (Some(url), _) => url.clone(),
        (None, Some(private)) => private.url(),
        (None, None) => bail!("no Redis to use"),
    };

    let mut roles = cpu::Roles::default();
    let threads_before = cpu::thread_ids();
    let graph = FakeGraph::start()?;
    roles.fake_graph = cpu::new_threads(&threads_before, ACTIX_WORKER, 1).await;

    let hung_backend = match args.hung_tenant {
        true => Some(hung_backend().await?),
        false => None,
    };
    let env = app_env(&args, &redis_url, &graph.url, hung_backend.as_deref())?;
    let settings = app::settings(&env)?;
    let (port, app) = if args.in_process {
        if std::env::var_os("RUST_LOG").is_some() {
            wabot::ops::telemetry::init(settings.log.format);
        }
        let threads_before = cpu::thread_ids();
        let started = app::start_in_process(settings.clone()).await?;
        roles.app_in_process = true;
        let http_workers = settings.server.http_workers.max(1);
        roles.app_http = cpu::new_threads(&threads_before, ACTIX_WORKER, http_workers).await;
        started
    } else {
        app::start_child(&env).await?
    };

    let environment = Environment {
        private_redis,
        redis_url,
        graph,
        settings,
        port,
        roles,
        app_pid: app.pid(),
    };
    // Interrupted or not, the app is stopped and the private redis-server killed below.
    let result = tokio::select! {
        result = measure(&args, &environment, &load) => result,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };

    app.stop().await;
    let Environment {
        private_redis,
        graph,
        settings,
        ..
    } = environment;
    graph.stop().await;
    if private_redis.is_none() {
        if let Err(error) = clean_external(&settings).await {
            eprintln!(
                "wabot-bench: could not remove the keys of prefix {}: {error:#}",
                settings.redis.key_prefix
            );
        }
    }
    drop(private_redis);
    result
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

/// An HTTP backend that accepts connections and never answers: `http://127.0.0.1:<port>/`.
async fn hung_backend() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // Read and drop the request; the connection stays open, unanswered, until the
            // client gives up on it.
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while tokio::io::AsyncReadExt::read(&mut socket, &mut sink)
                    .await
                    .is_ok_and(|n| n > 0)
                {}
            });
        }
    });
    Ok(url)
}

/// Users of the hung tenant (`--hung-tenant`): those writing to the first tenant's numbers.
fn hung_users(args: &Args) -> Vec<bool> {
    let numbers = tenant_numbers(args).len();
    (0..args.users)
        .map(|u| {
            args.hung_tenant && numbers > 0 && (u % numbers) / args.numbers_per_tenant.max(1) == 0
        })
        .collect()
}

/// The business numbers of `--tenants`: tenant `t`'s `n`-th is `2000<t:04><n:03>`.
fn tenant_numbers(args: &Args) -> Vec<String> {
    (0..args.tenants)
        .flat_map(|t| (0..args.numbers_per_tenant).map(move |n| format!("2000{t:04}{n:03}")))
        .collect()
}

/// Writes the tenant files of `--tenants` into a new directory; `None` without tenants.
fn tenant_files(
    args: &Args,
    hung_backend: Option<&str>,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    if args.tenants == 0 {
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!("wabot-bench-tenants-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).context("tenants directory")?;
    let numbers = tenant_numbers(args);
    for (t, numbers) in numbers.chunks(args.numbers_per_tenant.max(1)).enumerate() {
        let list: Vec<String> = numbers.iter().map(|n| format!("\"{n}\"")).collect();
        let mut document = format!(
            "[tenant]\nnumbers = [{}]\n\n[whatsapp]\naccess_token = \"bench-token-{t}\"\n",
            list.join(", ")
        );
        if let (0, Some(url)) = (t, hung_backend) {
            document.push_str(&format!(
                "\n[responder]\nkind = \"http\"\n\n[responder.http]\nurl = \"{url}\"\n\
                 secret = \"bench-hung-backend\"\ntimeout_ms = {}\nattempts = 1\n\
                 fallback = \"the backend did not answer\"\n",
                args.hung_timeout_ms
            ));
        }
        std::fs::write(dir.join(format!("t{t:04}.toml")), document).context("tenant file")?;
    }
    Ok(Some(dir))
}

/// The environment the app is configured from, as an operator would set it.
fn app_env(
    args: &Args,
    redis_url: &str,
    graph_url: &str,
    hung_backend: Option<&str>,
) -> anyhow::Result<HashMap<String, String>> {
    let prefix = format!("wbench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let mut env: HashMap<String, String> = [
        ("PORT", "0".to_string()),
        ("WABOT_SERVER__HOST", "127.0.0.1".to_string()),
        ("WABOT_SERVER__HTTP_WORKERS", args.http_workers.to_string()),
        ("WABOT_SERVER__SHUTDOWN_TIMEOUT_SECS", "5".to_string()),
        ("WHATSAPP_APP_SECRET", secret),
        ("WHATSAPP_VERIFY_TOKEN", "wabot-bench-verify".to_string()),
        (
            "WHATSAPP_ACCESS_TOKEN",
            "wabot-bench-access-token".to_string(),
        ),
        ("WHATSAPP_API_BASE_URL", graph_url.to_string()),
        ("WHATSAPP_API_VERSION", "v24.0".to_string()),
        ("REDIS_URL", redis_url.to_string()),
        ("WABOT_REDIS__KEY_PREFIX", prefix),
        ("RESPONDER", "echo".to_string()),
        // Each simulated user sends far more than a human would: no per-user rate limit.
        ("WABOT_RATE_LIMIT__MESSAGES", "1000000000".to_string()),
        (
            "WABOT_WORKER__ENABLED",
            (args.mode == Mode::E2e).to_string(),
        ),
        ("WABOT_WORKER__PARTITIONS", args.partitions.to_string()),
        (
            "WABOT_WORKER__CONCURRENCY",
            args.worker_concurrency.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if !args.pacing {
        // The fake Graph API has no limits: measure the pipeline, not Meta's 80 msg/s per number
        // and its pair limit per user (0 switches both limiters off).
        env.insert("WABOT_WHATSAPP__THROUGHPUT_PER_SEC".into(), "0".into());
        env.insert("WABOT_WHATSAPP__RECIPIENT_INTERVAL_MS".into(), "0".into());
    }
    if let Some(dir) = tenant_files(args, hung_backend)? {
        env.insert("WABOT_TENANTS__DIR".into(), dir.display().to_string());
    }
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

async fn clean_external(settings: &Settings) -> anyhow::Result<()> {
    let client = wabot::store::connect(&settings.redis)?;
    client.wait_for_connect().await?;
    let deleted = redis::delete_prefix(&client, &settings.redis.key_prefix).await?;
    eprintln!(
        "wabot-bench: removed {deleted} keys of prefix {}",
        settings.redis.key_prefix
    );
    let _ = client.quit().await;
    Ok(())
}

/// Waits for `/ready` (Redis reachable) to answer 200.
async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(response) = http.get(format!("{base}/ready")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("the app was not ready within 15 s (is Redis reachable?)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples taken at the start and the end of the measured window.
struct Sample {
    at: Instant,
    commands: CommandStats,
    threads: HashMap<cpu::Tid, cpu::ThreadSample>,
    /// The app process's threads (empty when it runs in the bench's process).
    app_threads: HashMap<cpu::Tid, cpu::ThreadSample>,
    redis_ticks: Option<u64>,
    machine_ticks: Option<u64>,
}

async fn sample(client: &fred::prelude::Client, env: &Environment) -> anyhow::Result<Sample> {
    Ok(Sample {
        commands: CommandStats::read(client).await?,
        threads: cpu::sample_threads(),
        app_threads: env
            .app_pid
            .map(cpu::sample_process_threads)
            .unwrap_or_default(),
        redis_ticks: env
            .private_redis
            .as_ref()
            .and_then(|r| cpu::process_ticks(r.pid())),
        machine_ticks: cpu::machine_busy_ticks(),
        at: Instant::now(),
    })
}

async fn measure(
    args: &Args,
    env: &Environment,
    load: &tokio::runtime::Handle,
) -> anyhow::Result<bool> {
    let base = format!("http://127.0.0.1:{}", env.port);
    wait_ready(&base).await?;
    let stats = wabot::store::connect(&env.settings.redis)?;
    stats
        .wait_for_connect()
        .await
        .context("connecting to Redis for statistics")?;

    if args.mode == Mode::Bodies {
        let app_pid = env.app_pid;
        let report = bodies::run(&base, args.concurrency, move || rss_bytes(app_pid)).await?;
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "wabot-bench: bodies ({} x 2 MiB, wrong signature)",
            args.concurrency
        );
        println!(
            "  MALLOC_MMAP_THRESHOLD_  {}",
            std::env::var("MALLOC_MMAP_THRESHOLD_").unwrap_or_else(|_| "unset".into())
        );
        println!("  answered 401           {}", report.refused);
        println!("  answered 503 (budget)  {}", report.over_budget);
        println!("  other answers/errors   {}", report.other);
        println!("  RSS before             {:.1} MB", mb(report.before));
        println!("  RSS peak               {:.1} MB", mb(report.peak));
        println!("  RSS 2 s after          {:.1} MB", mb(report.after));
        return Ok(report.other == 0);
    }
    // What the service does to Redis with no traffic at all (worker polling, heartbeats).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_start = CommandStats::read(&stats).await?;
    let idle_clock = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = CommandStats::read(&stats).await?.since(&idle_start);
    let idle_per_sec = idle.total() as f64 / idle_clock.elapsed().as_secs_f64();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let per_user: Vec<usize> = (0..args.users)
        .map(|u| args.messages / args.users + usize::from(u < args.messages % args.users))
        .collect();

    let before = sample(&stats, env).await?;
    let shared = Arc::new(Shared {
        client,
        webhook_url: format!("{base}/webhook"),
        app_secret: env
            .settings
            .whatsapp
            .app_secrets()
            .first()
            .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string())
            .context("no app secret")?,
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        permits: Semaphore::new(args.concurrency),
        rate: args.rate,
        start: Instant::now(),
        tickets: AtomicU64::new(0),
        duplicate_fraction: args.duplicates,
        seed: args.seed,
        acked: AtomicU64::new(0),
        numbers: tenant_numbers(args),
    });
    let tasks: Vec<_> = per_user
        .iter()
        .enumerate()
        .map(|(user, count)| load.spawn(load::run_user(shared.clone(), user, *count)))
        .collect();
    let progress = (!args.quiet).then(|| {
        let shared = shared.clone();
        let recorder = env.graph.recorder.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "[{:>5.1}s] deliveries acknowledged {:>7}, replies {:>7}",
                    shared.start.elapsed().as_secs_f64(),
                    shared.acked.load(Ordering::Relaxed),
                    recorder.total()
                );
            }
        })
    });
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("a user task failed")?);
    }
    let excluded = hung_users(args);
    let expected_replies: usize = outcomes
        .iter()
        .filter(|o| !excluded.get(o.user).copied().unwrap_or(false))
        .map(|o| o.sent_at.iter().filter(|s| s.is_some()).count())
        .sum();
    let mut drained = true;
    if args.mode == Mode::E2e {
        let deadline = Instant::now() + Duration::from_secs(args.drain_timeout_secs);
        while env.graph.recorder.unique() < expected_replies && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drained = env.graph.recorder.unique() >= expected_replies;
        // A little longer, so that a late duplicate reply is seen too.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let after = sample(&stats, env).await?;

    let stored = if args.mode == Mode::Ingest {
        Some(inbox_depth(&stats, &env.settings).await?)
    } else {
        None
    };
    let memory = if args.mode == Mode::E2e {
        let load = conversation_memory(&stats, &env.settings).await?;
        let realistic = memory::realistic(&stats, &env.settings).await?;
        Some((load, realistic))
    } else {
        None
    };
    let _ = stats.quit().await;

    let mut report = Report::build(
        args.mode,
        &outcomes,
        &per_user,
        &env.graph.recorder.replies(),
        env.graph.recorder.other_requests(),
        &excluded,
    );
    report.server_ack = server_ack_percentiles(&base).await;
    print_report(
        args,
        env,
        &report,
        &before,
        &after,
        idle_per_sec,
        &idle,
        stored,
        drained,
        memory,
    );
    Ok(report.passed(args.mode, stored))
}

/// Memory of one conversation after the run (`MEMORY USAGE` of its hash and its history list),
/// with the characters of text its kept turns hold and how many there are.
async fn conversation_memory(
    client: &fred::prelude::Client,
    settings: &Settings,
) -> anyhow::Result<Option<ConversationMemory>> {
    let services = wabot::app::startup::Services::with_client(settings, client.clone());
    let store = &services.conversations;
    let page = store.list(None, 1000).await.context("SCAN")?;
    let Some(found) = page.conversations.first() else {
        return Ok(None);
    };
    let (Some(pnid), Some(user)) = (
        wabot::domain::PhoneNumberId::parse(&found.phone_number_id),
        wabot::domain::UserId::parse(&found.user),
    ) else {
        return Ok(None);
    };
    let Some(view) = store.get(&pnid, &user).await.context("conversation")? else {
        return Ok(None);
    };
    let keys = &services.keys;
    let partition = keys.partition(&pnid, &user);
    let bytes = memory::memory_usage(
        client,
        &[
            keys.conversation(partition, &pnid, &user),
            keys.history(partition, &pnid, &user),
        ],
    )
    .await?;
    Ok(Some(ConversationMemory {
        bytes,
        text_bytes: view.turns.iter().map(|t| t.text.len() as u64).sum(),
        turns: view.turns.len(),
    }))
}

use memory::ConversationMemory;

/// Resident memory of the app's process, or of this one (`None`: the app runs in it).
fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` memory field (`VmRSS:`, `VmHWM:` the peak RSS) in bytes.
fn status_bytes(pid: Option<u32>, field: &str) -> Option<u64> {
    let process = pid.map_or_else(|| "self".to_string(), |pid| pid.to_string());
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Entries left in the inbox streams (ingest mode: every unique message, nothing more).
async fn inbox_depth(client: &fred::prelude::Client, settings: &Settings) -> anyhow::Result<u64> {
    let queue = wabot::app::startup::Services::with_client(settings, client.clone()).queue;
    let mut total = 0;
    for partition in 0..settings.worker.partitions {
        total += queue.depth(partition).await.context("XLEN")?;
    }
    Ok(total)
}

/// What the run measured.
struct Report {
    deliveries: u64,
    duplicates_sent: u64,
    acked: u64,
    rejected: u64,
    failed_attempts: u64,
    last_error: Option<String>,
    unique_acked: u64,
    ingest_secs: f64,
    ack: Option<Histogram<u64>>,
    replies: u64,
    first_replies: u64,
    e2e_secs: f64,
    e2e: Option<Histogram<u64>>,
    lost: u64,
    duplicate_replies: u64,
    order_violations: u64,
    unexpected: u64,
    /// Replies to the users left out of the figures (`--hung-tenant`).
    left_out_replies: u64,
    other_requests: usize,
    /// Replies that reached the fake Graph API in the busiest second (any 1-s window).
    busiest_second: usize,
    /// The app's own `wabot_webhook_duration_seconds{outcome="stored"}`: the bucket bounds
    /// (s) holding its p50 and p99.
    server_ack: Option<(f64, f64)>,
}

/// The upper bounds of the buckets holding p50 and p99 of the app's webhook histogram for
/// stored deliveries, from its `/metrics`.
async fn server_ack_percentiles(base: &str) -> Option<(f64, f64)> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("wabot_webhook_duration_seconds_bucket{")
                && l.contains("outcome=\"stored\"")
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let bound = |q: f64| {
        buckets
            .iter()
            .find(|(_, count)| *count >= q * total)
            .map(|(le, _)| *le)
    };
    Some((bound(0.5)?, bound(0.99)?))
}

/// The most instants within any window of `width` (a sliding window over the sorted times).
fn busiest_window(mut times: Vec<Instant>, width: Duration) -> usize {
    times.sort();
    let mut start = 0;
    let mut busiest = 0;
    for end in 0..times.len() {
        while times[end].saturating_duration_since(times[start]) >= width {
            start += 1;
        }
        busiest = busiest.max(end + 1 - start);
    }
    busiest
}

fn histogram(values: impl Iterator<Item = u64>) -> Option<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok()?;
    let mut any = false;
    for value in values {
        histogram.saturating_record(value.max(1));
        any = true;
    }
    any.then_some(histogram)
}

impl Report {
    fn build(
        mode: Mode,
        outcomes: &[UserOutcome],
        per_user: &[usize],
        replies: &[Reply],
        other_requests: usize,
        excluded: &[bool],
    ) -> Report {
        let deliveries: u64 = outcomes.iter().map(|o| o.deliveries).sum();
        let rejected: u64 = outcomes.iter().map(|o| o.rejected).sum();
        let first_send = outcomes.iter().filter_map(|o| o.first_send).min();
        let last_ack = outcomes.iter().filter_map(|o| o.last_ack).max();
        let ingest_secs = match (first_send, last_ack) {
            (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
            _ => 0.0,
        };

        // Per user: which messages were answered, and the highest sequence answered so far.
        let mut answered: Vec<Vec<bool>> = per_user.iter().map(|n| vec![false; *n]).collect();
        let mut highest: Vec<Option<usize>> = vec![None; per_user.len()];
        let mut sent_at: Vec<&[Option<Instant>]> = vec![&[]; per_user.len()];
        for outcome in outcomes {
            if let Some(slot) = sent_at.get_mut(outcome.user) {
                *slot = &outcome.sent_at;
            }
        }
        let phones: Vec<String> = (0..per_user.len())
            .map(|u| format!("+{}", load::user_phone(u)))
            .collect();
        let left_out = |user: usize| excluded.get(user).copied().unwrap_or(false);
        let left_out_phones: std::collections::HashSet<&str> = phones
            .iter()
            .enumerate()
            .filter(|(user, _)| left_out(*user))
            .map(|(_, phone)| phone.as_str())
            .collect();
        let (mut duplicate_replies, mut order_violations, mut unexpected) = (0, 0, 0);
        let mut e2e_us = Vec::with_capacity(replies.len());
        let mut last_first_reply: Option<Instant> = None;
        let mut left_out_replies = 0;
        for reply in replies {
            if left_out_phones.contains(reply.to.as_str()) {
                left_out_replies += 1;
                continue;
            }
            let Some((user, seq)) = load::parse_reply(&reply.text) else {
                unexpected += 1;
                continue;
            };
            let known = answered.get(user).is_some_and(|a| seq < a.len())
                && phones.get(user).is_some_and(|p| *p == reply.to);
            if !known {
                unexpected += 1;
                continue;
            }
            if answered[user][seq] {
                duplicate_replies += 1;
                continue;
            }
            answered[user][seq] = true;
            match highest[user] {
                Some(high) if seq < high => order_violations += 1,
                _ => highest[user] = Some(seq),
            }
            if let Some(Some(sent)) = sent_at[user].get(seq) {
                let micros = reply.at.saturating_duration_since(*sent).as_micros();
                e2e_us.push(u64::try_from(micros).unwrap_or(u64::MAX));
            }
            last_first_reply = Some(last_first_reply.map_or(reply.at, |t| t.max(reply.at)));
        }
        let mut lost = 0;
        let mut unique_acked = 0;
        for (user, sent) in sent_at.iter().enumerate() {
            if left_out(user) {
                continue;
            }
            for (seq, at) in sent.iter().enumerate() {
                if at.is_some() {
                    unique_acked += 1;
                    if !answered[user][seq] {
                        lost += 1;
                    }
                }
            }
        }
        let e2e_secs = match (first_send, last_first_reply) {
            (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let first_replies = e2e_us.len() as u64;
        Report {
            deliveries,
            duplicates_sent: outcomes.iter().map(|o| o.duplicates).sum(),
            acked: deliveries - rejected,
            rejected,
            failed_attempts: outcomes.iter().map(|o| o.failed_attempts).sum(),
            last_error: outcomes.iter().find_map(|o| o.last_error.clone()),
            unique_acked,
            ingest_secs,
            ack: histogram(outcomes.iter().flat_map(|o| o.ack_us.iter().copied())),
            replies: replies.len() as u64,
            first_replies,
            e2e_secs,
            e2e: histogram(e2e_us.into_iter()),
            lost: if mode == Mode::E2e { lost } else { 0 },
            duplicate_replies,
            order_violations,
            unexpected,
            other_requests,
            left_out_replies,
            busiest_second: busiest_window(
                replies.iter().map(|r| r.at).collect(),
                Duration::from_secs(1),
            ),
            server_ack: None,
        }
    }

    fn passed(&self, mode: Mode, stored: Option<u64>) -> bool {
        let intake_ok = self.rejected == 0 && stored.is_none_or(|s| s == self.unique_acked);
        match mode {
            Mode::Ingest | Mode::Bodies => intake_ok,
            Mode::E2e => {
                intake_ok
                    && self.lost == 0
                    && self.duplicate_replies == 0
                    && self.order_violations == 0
                    && self.unexpected == 0
            }
        }
    }
}

fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

fn percentiles(histogram: &Option<Histogram<u64>>) -> String {
    match histogram {
        Some(h) => format!(
            "p50 {}   p90 {}   p99 {}   p99.9 {}   max {}",
            fmt_us(h.value_at_quantile(0.50)),
            fmt_us(h.value_at_quantile(0.90)),
            fmt_us(h.value_at_quantile(0.99)),
            fmt_us(h.value_at_quantile(0.999)),
            fmt_us(h.max()),
        ),
        None => "n/a".to_string(),
    }
}

fn rate(count: u64, secs: f64) -> String {
    if secs > 0.0 {
        format!("{:.0}/s  ({count} in {secs:.2} s)", count as f64 / secs)
    } else {
        "n/a".to_string()
    }
}

fn row(label: &str, value: impl std::fmt::Display) {
    println!("  {label:<36} {value}");
}

#[allow(clippy::too_many_arguments)]
fn print_report(
    args: &Args,
    env: &Environment,
    report: &Report,
    before: &Sample,
    after: &Sample,
    idle_per_sec: f64,
    idle: &CommandStats,
    stored: Option<u64>,
    drained: bool,
    memory: Option<(Option<ConversationMemory>, ConversationMemory)>,
) {
    let mode = match args.mode {
        Mode::Ingest => "ingest (workers disabled)",
        Mode::E2e => "e2e (intake + workers + fake Graph API)",
        Mode::Bodies => "bodies",
    };
    let rate_text = if args.rate > 0.0 {
        format!("{} req/s", args.rate)
    } else {
        "as fast as possible".to_string()
    };
    let redis_text = match &env.private_redis {
        Some(private) => format!(
            "private redis-server on 127.0.0.1:{} (no persistence)",
            private.port()
        ),
        None => format!(
            "external {} (prefix {})",
            redact_url_userinfo(&env.redis_url),
            env.settings.redis.key_prefix
        ),
    };
    println!();
    println!("wabot-bench: {mode}");
    row(
        "load",
        format!(
            "{} users, {} messages, {} in flight, {:.0}% duplicates, {rate_text}",
            args.users,
            args.messages,
            args.concurrency,
            args.duplicates * 100.0
        ),
    );
    row(
        "app",
        format!(
            "{} HTTP workers, {} partitions, worker concurrency {}",
            env.settings.server.http_workers,
            env.settings.worker.partitions,
            env.settings.worker.concurrency
        ),
    );
    row(
        "graph api",
        format!(
            "fake, in-process; pacing {}; mark as read {}; {}",
            if args.pacing {
                "as configured (--pacing)"
            } else {
                "lifted"
            },
            env.settings.whatsapp.mark_as_read,
            if env.settings.whatsapp.http2 {
                "HTTP/2 (h2c, one connection)"
            } else {
                "HTTP/1.1"
            }
        ),
    );
    row("redis", redis_text);
    row(
        "machine",
        format!(
            "{} CPUs",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
    );

    println!();
    println!("INGEST (signed POST /webhook → 200)");
    row("deliveries sent", report.deliveries);
    row("  of which duplicates (same wamid)", report.duplicates_sent);
    row("  acknowledged (2xx)", report.acked);
    row("  refused after 5 attempts", report.rejected);
    row("  failed attempts (retried)", report.failed_attempts);
    if let Some(error) = &report.last_error {
        row("  last error", error);
    }
    if let Some(stored) = stored {
        row(
            "messages in the inbox",
            format!("{stored} (expected {})", report.unique_acked),
        );
    }
    row("ingest throughput", rate(report.acked, report.ingest_secs));
    if args.rate > 0.0 && report.ingest_secs > 0.0 {
        row(
            "  target rate",
            format!("{} req/s (latency from scheduled send time)", args.rate),
        );
    }
    row("ack latency", percentiles(&report.ack));
    if let Some((p50, p99)) = report.server_ack {
        row(
            "  inside wabot (stored)",
            format!(
                "p50 ≤ {} ms   p99 ≤ {} ms  (wabot_webhook_duration_seconds buckets)",
                p50 * 1e3,
                p99 * 1e3
            ),
        );
    }

    if args.mode == Mode::E2e {
        println!();
        println!("END TO END (POST sent → echo reply at the fake Graph API)");
        row("unique messages acknowledged", report.unique_acked);
        row("replies received", report.replies);
        row(
            "e2e throughput",
            rate(report.first_replies, report.e2e_secs),
        );
        row("e2e latency", percentiles(&report.e2e));
        row("busiest second (replies)", report.busiest_second);
        row(
            "lost replies",
            if drained {
                report.lost.to_string()
            } else {
                format!(
                    "{} (not drained within {} s)",
                    report.lost, args.drain_timeout_secs
                )
            },
        );
        row("duplicate replies", report.duplicate_replies);
        row("order violations", report.order_violations);
        row("unexpected replies", report.unexpected);
        if args.hung_tenant {
            row(
                "hung tenant's users (left out above)",
                format!("{} replies", report.left_out_replies),
            );
        }
        if report.other_requests > 0 {
            row("read receipts / other Graph calls", report.other_requests);
        }
    }

    println!();
    let window = after.at.saturating_duration_since(before.at).as_secs_f64();
    let commands = after.commands.since(&before.commands);
    let per_message = report.unique_acked.max(1) as f64;
    println!(
        "REDIS (measured window {window:.2} s{})",
        if env.private_redis.is_none() {
            "; shared server: other clients are counted too"
        } else {
            ""
        }
    );
    row(
        "redis commands per message",
        format!(
            "{:.2}  ({} commands; Lua-internal commands included)",
            commands.total() as f64 / per_message,
            commands.total()
        ),
    );
    row(
        "  script calls (EVALSHA) per message",
        format!("{:.2}", commands.script_calls() as f64 / per_message),
    );
    row(
        "  XREADGROUP per message",
        format!("{:.2}", commands.calls("xreadgroup") as f64 / per_message),
    );
    let top: Vec<String> = commands
        .by_calls()
        .iter()
        .filter(|(_, calls)| *calls as f64 / per_message >= 0.005)
        .map(|(name, calls)| format!("{name} {:.2}", *calls as f64 / per_message))
        .collect();
    row("  per message, by command", top.join(", "));
    if let Some((load, realistic)) = &memory {
        let describe = |memory: &ConversationMemory| {
            format!(
                "{} bytes for {} turns holding {} bytes of text ({:.2}x)",
                memory.bytes,
                memory.turns,
                memory.text_bytes,
                memory.bytes as f64 / memory.text_bytes.max(1) as f64
            )
        };
        row("memory of a support conversation", describe(realistic));
        if let Some(load) = load {
            row("  one of this load's (tiny texts)", describe(load));
        }
    }
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    match env.app_pid {
        Some(pid) => {
            if let (Some(rss), Some(peak)) = (
                status_bytes(Some(pid), "VmRSS:"),
                status_bytes(Some(pid), "VmHWM:"),
            ) {
                row(
                    "wabot RSS (app process)",
                    format!("{} at the end, peak {}", mb(rss), mb(peak)),
                );
            }
            if let Some(rss) = rss_bytes(None) {
                row("  the bench's own process", mb(rss));
            }
        }
        None => {
            if let Some(rss) = rss_bytes(None) {
                row("RSS (bench + app, one process)", mb(rss));
            }
        }
    }
    let idle_top: Vec<String> = idle
        .by_calls()
        .iter()
        .take(4)
        .map(|(name, calls)| format!("{name} {calls}"))
        .collect();
    row(
        "idle background (before the load)",
        if idle_top.is_empty() {
            "none".to_string()
        } else {
            format!("{idle_per_sec:.0} commands/s  ({})", idle_top.join(", "))
        },
    );

    let ticks_per_sec = cpu::ticks_per_second();
    let mut usage = env.roles.usage(&before.threads, &after.threads);
    for (role, ticks) in cpu::app_usage(&before.app_threads, &after.app_threads) {
        *usage.entry(role).or_insert(0) += ticks;
    }
    if !usage.is_empty() && window > 0.0 {
        println!();
        println!(
            "CPU (share of one core over the measured window; the machine has {} cores)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut rows: BTreeMap<&str, f64> = usage
            .into_iter()
            .map(|(role, ticks)| (role, ticks as f64 / ticks_per_sec / window * 100.0))
            .collect();
        if let (Some(start), Some(end)) = (before.redis_ticks, after.redis_ticks) {
            rows.insert(
                "redis-server",
                end.saturating_sub(start) as f64 / ticks_per_sec / window * 100.0,
            );
        }
        let total: f64 = rows.values().sum();
        let mut sorted: Vec<(&str, f64)> = rows.into_iter().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (role, percent) in sorted {
            row(role, format!("{percent:>5.1}%"));
        }
        row("total (bench, app and redis)", format!("{total:>5.1}%"));
        if let (Some(start), Some(end)) = (before.machine_ticks, after.machine_ticks) {
            let machine = end.saturating_sub(start) as f64 / ticks_per_sec / window * 100.0;
            row(
                "other processes on the machine",
                format!("{:>5.1}%", (machine - total).max(0.0)),
            );
        }
    }

    println!();
    let verdict = if report.passed(args.mode, stored) {
        "PASS"
    } else {
        "FAIL"
    };
    println!("RESULT: {verdict}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(user: usize, seq: usize, at: Instant) -> Reply {
        Reply {
            to: format!("+{}", load::user_phone(user)),
            text: format!("echo: {}", load::message_text(user, seq)),
            at,
        }
    }

    fn outcome(user: usize, count: usize, sent: Instant) -> UserOutcome {
        UserOutcome {
            user,
            sent_at: vec![Some(sent); count],
            ack_us: vec![1_000; count],
            deliveries: count as u64,
            first_send: Some(sent),
            last_ack: Some(sent + Duration::from_millis(5)),
            ..UserOutcome::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let t0 = Instant::now();
        let outcomes = vec![outcome(0, 3, t0), outcome(1, 2, t0)];
        let later = t0 + Duration::from_millis(10);
        let replies = vec![
            reply(0, 0, later),
            reply(1, 0, later),
            reply(0, 1, later),
            reply(1, 1, later),
            reply(0, 2, later),
        ];
        let report = Report::build(Mode::E2e, &outcomes, &[3, 2], &replies, 0, &[]);
        assert_eq!(report.unique_acked, 5);
        assert_eq!(report.first_replies, 5);
        assert_eq!(
            (
                report.lost,
                report.duplicate_replies,
                report.order_violations,
                report.unexpected
            ),
            (0, 0, 0, 0)
        );
        assert!(report.passed(Mode::E2e, None));
        let e2e = report.e2e.as_ref().map(|h| h.max());
        assert_eq!(e2e.map(|us| us / 1000), Some(10));
    }

    #[test]
    fn lost_duplicated_reordered_and_foreign_replies_are_counted() {
        let t0 = Instant::now();
        let outcomes = vec![outcome(0, 4, t0), outcome(1, 2, t0)];
        let mut replies = vec![
            reply(0, 1, t0),
            reply(0, 0, t0), // out of order
            reply(0, 1, t0), // answered twice
            reply(0, 3, t0), // 2 is never answered
            reply(1, 0, t0),
            reply(1, 1, t0),
            reply(7, 0, t0), // no such user
        ];
        replies.push(Reply {
            to: "+15550000000".into(),
            text: "Rate limited".into(),
            at: t0,
        });
        let report = Report::build(Mode::E2e, &outcomes, &[4, 2], &replies, 0, &[]);
        assert_eq!(report.lost, 1);
        assert_eq!(report.duplicate_replies, 1);
        assert_eq!(report.order_violations, 1);
        assert_eq!(report.unexpected, 2);
        assert!(!report.passed(Mode::E2e, None));
        // Ingest mode only checks the intake.
        assert!(report.passed(Mode::Ingest, Some(6)));
        assert!(!report.passed(Mode::Ingest, Some(7)));
    }
}
