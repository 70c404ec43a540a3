//! The command line: `wabot serve`, `wabot worker`, `wabot sandbox` and the operator commands.

use clap::{Parser, Subcommand};

use crate::app::startup::{cancel_on_signals, Application, Services};
use crate::config::Settings;
use crate::domain::OutboundSource;
use crate::ops::telemetry;
use crate::pipeline::outbound;

#[derive(Debug, Parser)]
#[command(name = "wabot", version, about = "WhatsApp Cloud API bot worker")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook receiver (and the workers).
    Serve,
    /// Run only the workers (no HTTP): scale processing apart from intake.
    Worker,
    /// Exit 0 when the local server answers /health (for container HEALTHCHECKs without curl).
    Healthcheck {
        /// Port of the local server; defaults to the configured `server.port` (`PORT`).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Try the bot end to end without a Meta account: a terminal chat with a fake user, the real
    /// server and workers, and an in-process fake Graph API. Uses the configured Redis, or a
    /// private `redis-server` for the session when none answers.
    Sandbox {
        /// Send the lines of this file instead of reading the terminal, and print the transcript.
        #[arg(long)]
        script: Option<std::path::PathBuf>,
        /// The fake user's phone number (digits with country code).
        #[arg(long, default_value = "15550001234")]
        user: String,
    },
    /// Look into conversations (talks to Redis directly).
    #[command(subcommand)]
    Conversations(ConversationsCommand),
    /// Look into and replay dead letters (talks to Redis directly).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Load and validate the configuration, print it with secrets redacted.
    CheckConfig,
    /// WhatsApp Flows: the endpoint's key pair.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// The console's named operators (talks to Redis directly).
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// Check the WhatsApp setup against the Graph API with the configured token: the app's
    /// webhook subscription to the WABA, each number's status and throughput, the re-engagement
    /// template. Prints each problem with its fix; exit 1 when any check fails.
    Doctor {
        /// Subscribe the app to the WABA's webhooks when it is not.
        #[arg(long)]
        fix: bool,
        /// Check this tenant's token, WABA and numbers instead of the deployment's (a tenant
        /// file, else one stored through the admin API: then Redis is read).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Queue a notification (a template, or text inside the 24-hour window) to a user; sent by
    /// the workers in order with the user's conversation (talks to Redis directly).
    Send {
        phone_number_id: String,
        to: String,
        #[command(flatten)]
        message: MessageArgs,
    },
}

/// What to send: `--text`, or `--template` with `--language` (and `--components` JSON).
#[derive(Debug, clap::Args)]
pub struct MessageArgs {
    #[arg(long, conflicts_with = "template")]
    text: Option<String>,
    #[arg(long)]
    template: Option<String>,
    #[arg(long, default_value = "en")]
    language: String,
    /// The template's components as Meta documents them (a JSON array).
    #[arg(long)]
    components: Option<String>,
    /// Sending again with the same key sends once.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConversationsCommand {
    /// One page of active conversations (SCAN; pass the printed cursor for the next page).
    List {
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long, default_value_t = 100)]
        count: u32,
    },
    /// One conversation: turns, TTL left, count.
    Show {
        phone_number_id: String,
        user: String,
    },
    /// Delete one conversation.
    Delete {
        phone_number_id: String,
        user: String,
    },
    /// A person takes the conversation: the bot stays silent until `resume` or the timeout.
    Handoff {
        phone_number_id: String,
        user: String,
        /// How long (default `handoff.timeout_secs`).
        #[arg(long)]
        minutes: Option<u64>,
        #[arg(long)]
        note: Option<String>,
        /// Who takes it.
        #[arg(long)]
        by: Option<String>,
    },
    /// Give the conversation back to the bot.
    Resume {
        phone_number_id: String,
        user: String,
    },
    /// An operator's message to the user, in the conversation's order (recorded as `operator`).
    Send {
        phone_number_id: String,
        user: String,
        #[command(flatten)]
        message: MessageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Make a 2048-bit RSA key pair: the private key goes to `--out` (a new file only you can
    /// read; point `flows.private_key_file` at it), the public key to standard output.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Also upload the public key to this business number.
        #[arg(long)]
        upload: Option<String>,
    },
    /// Upload the public half of the configured `flows.private_key` to a business number.
    UploadKey { phone_number_id: String },
}

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Create an account, or give an existing one a new password and role (its sessions end).
    /// The password is read from the first line of standard input (at least 12 characters).
    Add {
        name: String,
        /// `operator` (conversations) or `admin` (also dead letters).
        #[arg(long, default_value = "operator")]
        role: String,
        /// A tenant whose conversations it sees (`default`: the deployment's own numbers);
        /// repeat for several. None: every conversation.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// Every account: name, role, created.
    List,
    /// Delete an account; its sessions end.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Failed messages and their last error.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send one back to its partition (`<partition>:<stream id>` as listed).
    Replay { id: String },
}

/// Runs one command; the exit code is derived from the result by `main`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let settings = Settings::load()?;
            print!("{}", settings.redacted_toml());
            let tenants = settings.tenant_files()?;
            eprintln!(
                "tenant files in {}: {}",
                settings.tenants_dir().display(),
                tenants.len()
            );
            for tenant in &tenants {
                eprintln!("  {}", tenant_line(tenant));
            }
            eprintln!(
                "configuration OK (tenants stored through the admin API are not read: \
                 `GET /admin/tenants` lists them)"
            );
            Ok(())
        }
        Command::Flows(command) => flows(command).await,
        Command::Operators(command) => operators(command).await,
        Command::Doctor { fix, tenant } => {
            let settings = Settings::load()?;
            let report = match tenant {
                Some(id) => {
                    crate::app::doctor::run_tenant(&find_tenant(&settings, &id).await?, fix).await?
                }
                None => crate::app::doctor::run(&settings, fix).await?,
            };
            print!("{report}");
            anyhow::ensure!(report.failures() == 0, "the setup has problems (see above)");
            Ok(())
        }
        Command::Serve => {
            let settings = Settings::load()?;
            telemetry::init(settings.log.format);
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                port = app.port(),
                redis = %crate::config::redact_url_userinfo(&settings.redis.url),
                "wabot listening"
            );
            cancel_on_signals(app.shutdown_token());
            let result = app.run_until_stopped().await;
            crate::ops::otel::shutdown();
            result?;
            Ok(())
        }
        Command::Healthcheck { port } => {
            let port = match port {
                Some(port) => port,
                None => crate::config::port_from_env(),
            };
            let url = format!("http://127.0.0.1:{port}/health");
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?
                .get(&url)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url} answered {}",
                response.status()
            );
            Ok(())
        }
        Command::Sandbox { script, user } => {
            telemetry::init_with_default(crate::config::LogFormat::Pretty, "warn");
            anyhow::ensure!(
                crate::domain::UserId::parse(&user).is_some_and(|u| u.is_phone()),
                "--user must be a phone number in digits, e.g. 15550001234"
            );
            crate::app::sandbox::run(crate::app::sandbox::SandboxOptions { script, user }).await
        }
        Command::Conversations(command) => {
            let settings = Settings::load()?;
            let services = Services::new(&settings)?.connected().await?;
            let store = &services.conversations;
            let ids = |pnid: &str, user: &str| {
                Ok::<_, anyhow::Error>((
                    crate::domain::PhoneNumberId::parse(pnid)
                        .ok_or_else(|| anyhow::anyhow!("invalid phone_number_id {pnid:?}"))?,
                    crate::domain::UserId::parse(user)
                        .ok_or_else(|| anyhow::anyhow!("invalid user {user:?}"))?,
                ))
            };
            match command {
                ConversationsCommand::List { cursor, count } => {
                    print_json(&store.list(cursor.as_deref(), count).await?)
                }
                ConversationsCommand::Show {
                    phone_number_id,
                    user,
                } => {
                    let (pnid, user) = ids(&phone_number_id, &user)?;
                    match store.get(&pnid, &user).await? {
                        Some(view) => print_json(&view),
                        None => anyhow::bail!(
                            "no such conversation (never started, expired or deleted)"
                        ),
                    }
                }
                ConversationsCommand::Delete {
                    phone_number_id,
                    user,
                } => {
                    let (pnid, user) = ids(&phone_number_id, &user)?;
                    anyhow::ensure!(store.delete(&pnid, &user).await?, "no such conversation");
                    record(
                        &services,
                        "delete",
                        Some((pnid.as_str(), user.as_str())),
                        "",
                    )
                    .await;
                    println!("deleted");
                    Ok(())
                }
                ConversationsCommand::Handoff {
                    phone_number_id,
                    user,
                    minutes,
                    note,
                    by,
                } => {
                    let (pnid, user) = ids(&phone_number_id, &user)?;
                    let minutes = minutes.unwrap_or(settings.handoff.timeout_secs.div_ceil(60));
                    anyhow::ensure!(minutes > 0, "--minutes must be at least 1");
                    let until = crate::domain::clock::unix_ms() + (minutes as i64) * 60_000;
                    let mut info = serde_json::json!({"reason": "operator"});
                    if let Some(note) = note {
                        info["note"] = note.into();
                    }
                    let detail = match &by {
                        Some(by) => format!("{minutes} min, for {by}"),
                        None => format!("{minutes} min"),
                    };
                    if let Some(by) = by {
                        info["by"] = by.into();
                    }
                    store.take_over(&pnid, &user, until, &info, None).await?;
                    record(
                        &services,
                        "take_over",
                        Some((pnid.as_str(), user.as_str())),
                        &detail,
                    )
                    .await;
                    println!("a person has the conversation for {minutes} min");
                    Ok(())
                }
                ConversationsCommand::Resume {
                    phone_number_id,
                    user,
                } => {
                    let (pnid, user) = ids(&phone_number_id, &user)?;
                    anyhow::ensure!(store.give_back(&pnid, &user).await?, "no such conversation");
                    record(
                        &services,
                        "give_back",
                        Some((pnid.as_str(), user.as_str())),
                        "",
                    )
                    .await;
                    println!("back with the bot");
                    Ok(())
                }
                ConversationsCommand::Send {
                    phone_number_id,
                    user,
                    message,
                } => {
                    let (pnid, user) = ids(&phone_number_id, &user)?;
                    queue_message(&services, pnid, user, OutboundSource::Operator, &message).await
                }
            }
        }
        Command::Send {
            phone_number_id,
            to,
            message,
        } => {
            let settings = Settings::load()?;
            let services = Services::new(&settings)?.connected().await?;
            let pnid = crate::domain::PhoneNumberId::parse(&phone_number_id)
                .ok_or_else(|| anyhow::anyhow!("invalid phone_number_id {phone_number_id:?}"))?;
            let to = crate::domain::UserId::parse(&to)
                .ok_or_else(|| anyhow::anyhow!("invalid recipient {to:?}"))?;
            queue_message(&services, pnid, to, OutboundSource::Notification, &message).await
        }
        Command::DeadLetters(command) => {
            let settings = Settings::load()?;
            let services = Services::new(&settings)?.connected().await?;
            let queue = &services.queue;
            match command {
                DeadLettersCommand::List { limit } => {
                    for letter in queue.dead_letters(limit).await? {
                        println!(
                            "{}\tattempts={}\terror={}\n  {}",
                            letter.public_id(),
                            letter.attempts,
                            letter.error,
                            letter.message_json
                        );
                    }
                    Ok(())
                }
                DeadLettersCommand::Replay { id } => {
                    let (partition, stream_id) = crate::store::queue::parse_dead_letter_id(&id)
                        .ok_or_else(|| {
                            anyhow::anyhow!("invalid id {id:?}: expected <partition>:<stream id>")
                        })?;
                    let number = queue
                        .find_dead_letter(partition, stream_id)
                        .await?
                        .and_then(|letter| letter.phone_number_id());
                    anyhow::ensure!(
                        queue.replay_dead_letter(partition, stream_id).await?,
                        "no dead letter {id}"
                    );
                    record(&services, "replay", number.as_deref().map(|n| (n, "")), &id).await;
                    println!("replayed {id}");
                    Ok(())
                }
            }
        }
        Command::Worker => {
            let settings = Settings::load()?;
            telemetry::init(settings.log.format);
            // No receiver in this process to keep fast: the workers take the main runtime.
            let workers = Services::new(&settings)?.spawn_workers_here(None)?;
            tracing::info!(replica = workers.replica(), "wabot worker running");
            let stop = tokio_util::sync::CancellationToken::new();
            cancel_on_signals(stop.clone());
            stop.cancelled().await;
            workers.shutdown().await;
            crate::ops::otel::shutdown();
            Ok(())
        }
    }
}

/// Records a command's action in the audit of the tenant whose conversation it concerns (the
/// deployment's for none); a failure to record is said on standard error, the action stands.
/// One tenant for `check-config`: id, name, numbers, responder, where it is declared.
fn tenant_line(tenant: &crate::config::tenants::Tenant) -> String {
    format!(
        "{} ({}): numbers {}; responder {}; max_concurrency {}{}",
        tenant.id,
        tenant.name,
        tenant.numbers.join(", "),
        tenant.settings.responder.kind.as_str(),
        tenant.max_concurrency,
        if tenant.api_token.is_some() {
            "; API token"
        } else {
            ""
        }
    )
}

/// Tenant `id`: of a file, else stored (Redis is read only then).
async fn find_tenant(
    settings: &Settings,
    id: &str,
) -> anyhow::Result<crate::config::tenants::Tenant> {
    if let Some(tenant) = settings.tenant_files()?.into_iter().find(|t| t.id == id) {
        return Ok(tenant);
    }
    let services = Services::new(settings)?;
    let directory = services.directory()?;
    directory.refresh().await.map_err(|e| {
        anyhow::anyhow!("no tenant file {id}.toml, and the stored tenants cannot be read: {e}")
    })?;
    let snapshot = directory.snapshot();
    if let Some(tenant) = snapshot.get(id) {
        return Ok((**tenant).clone());
    }
    if let Some((_, reason)) = snapshot.problems.iter().find(|(problem, _)| problem == id) {
        anyhow::bail!("tenant {id} is stored but left out: {reason}");
    }
    let known: Vec<&str> = snapshot.tenants.iter().map(|t| t.id.as_str()).collect();
    anyhow::bail!(
        "no tenant {id} (tenants: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

async fn record(
    services: &Services,
    action: &str,
    conversation: Option<(&str, &str)>,
    detail: &str,
) {
    let tenant = match (conversation, services.directory()) {
        (Some((number, _)), Ok(directory)) => {
            if let Err(error) = directory.refresh().await {
                eprintln!("warning: tenants not read ({error}); recorded in the default audit");
            }
            directory.snapshot().owner(number).map(str::to_string)
        }
        _ => None,
    }
    .unwrap_or_else(|| crate::config::tenants::DEFAULT_TENANT.to_string());
    let audit = crate::store::audit::AuditLog::new(services.redis.clone(), services.keys.clone());
    let entry = crate::store::audit::Action {
        by: "cli",
        action,
        conversation,
        detail,
    };
    if let Err(error) = audit.record(&tenant, &entry).await {
        eprintln!("warning: done, but not recorded in the audit: {error}");
    }
}

async fn queue_message(
    services: &Services,
    pnid: crate::domain::PhoneNumberId,
    to: crate::domain::UserId,
    source: OutboundSource,
    args: &MessageArgs,
) -> anyhow::Result<()> {
    let components: Vec<serde_json::Value> = match &args.components {
        Some(raw) => serde_json::from_str(raw)
            .map_err(|e| anyhow::anyhow!("--components is not a JSON array: {e}"))?,
        None => Vec::new(),
    };
    let content = outbound::content(
        args.text.as_deref(),
        args.template
            .as_deref()
            .map(|name| (name, args.language.as_str(), components.as_slice())),
        None,
    )?;
    let message = outbound::request(pnid, to, source, content, args.idempotency_key.as_deref())?;
    let id = message.id.clone();
    let (number, user) = (message.phone_number_id.clone(), message.to.clone());
    let new = outbound::enqueue(&services.inbox, message).await?;
    if new {
        let action = match source {
            OutboundSource::Notification => "notification",
            _ => "message",
        };
        record(services, action, Some((number.as_str(), user.as_str())), "").await;
    }
    println!("{id}\t{}", if new { "queued" } else { "duplicate" });
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn operators(command: OperatorsCommand) -> anyhow::Result<()> {
    use crate::store::operators::{Operator, OperatorRole, OperatorStore};
    let settings = Settings::load()?;
    let services = Services::new(&settings)?.connected().await?;
    let store = OperatorStore::new(services.redis.clone(), services.keys.clone());
    match command {
        OperatorsCommand::Add {
            name,
            role,
            tenants,
        } => {
            let role = OperatorRole::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role is `operator` or `admin`"))?;
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let account = tokio::task::spawn_blocking(move || {
                Operator::new(&name, role, &password, &tenants)
            })
            .await??;
            store.put(&account).await?;
            record(&services, "operator_saved", None, &account.summary()).await;
            println!(
                "{}\t{}\t{}",
                account.name,
                account.role.as_str(),
                account.tenant_list()
            );
        }
        OperatorsCommand::List => {
            for account in store.list().await? {
                println!(
                    "{}\t{}\t{}\tcreated {}",
                    account.name,
                    account.role.as_str(),
                    account.tenant_list(),
                    account.created_at
                );
            }
        }
        OperatorsCommand::Remove { name } => {
            anyhow::ensure!(store.remove(&name).await?, "no operator {name:?}");
            record(&services, "operator_removed", None, &name).await;
            println!("removed {name}");
        }
    }
    Ok(())
}

async fn flows(command: FlowsCommand) -> anyhow::Result<()> {
    use crate::meta::flows::FlowKey;
    use secrecy::ExposeSecret;
    let (key, upload) = match command {
        FlowsCommand::Keygen { out, upload } => {
            let key = FlowKey::generate()?;
            let pem = key.private_pem()?;
            write_private(&out, pem.expose_secret())?;
            eprintln!(
                "private key written to {} (set flows.private_key_file to it)",
                out.display()
            );
            (key, upload)
        }
        FlowsCommand::UploadKey { phone_number_id } => {
            let settings = Settings::load()?;
            let pem = settings.flows.private_key_pem()?.ok_or_else(|| {
                anyhow::anyhow!(
                    "no Flows key is configured: set flows.private_key or flows.private_key_file"
                )
            })?;
            (
                FlowKey::from_pem(pem.expose_secret())?,
                Some(phone_number_id),
            )
        }
    };
    let public = key.public_pem()?;
    print!("{public}");
    if let Some(number) = upload {
        let number = crate::domain::PhoneNumberId::parse(&number)
            .ok_or_else(|| anyhow::anyhow!("`{number}` is not a phone number id"))?;
        let settings = Settings::load()?;
        let api = crate::meta::cloud_api::CloudApi::new(&settings.whatsapp)?;
        anyhow::ensure!(
            api.upload_flows_key(&number, &public).await?,
            "Meta did not accept the key"
        );
        eprintln!("public key uploaded to {}", number.as_str());
    }
    Ok(())
}

/// A new file readable by its owner only: a private key never lands in a file others can read,
/// nor over one that exists.
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
