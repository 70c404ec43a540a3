//! Memory of one realistic conversation: 20 user messages and 20 bot replies of the lengths a
//! support chat has (users 30–90 characters, replies 120–300, Spanish, Portuguese and English),
//! with Meta-shaped wamids and every reply marked read, written through the real store and
//! measured with `MEMORY USAGE` of its two keys. The load's own conversations (`u17 s42`) are
//! too short to say anything about the encoding's overhead.

use anyhow::Context;
use wabot::config::Settings;
use wabot::domain::language::Language;
use wabot::domain::{InboundMessage, MessageContent, PhoneNumberId, Sender, UserId, WaMessageId};
use wabot::store::conversation::{AdmitMode, LanguageClaim, Role, Turn};
use wabot::store::Client;

const USER_LINES: [&str; 10] = [
    "Hola, quería saber si tienen envío a Valparaíso",
    "Cuánto cuesta el plan básico al mes?",
    "Oi, meu pedido ainda não chegou, já faz uma semana",
    "Can I change the delivery address of order 48213?",
    "Gracias! Y el pago se puede hacer con transferencia?",
    "ok",
    "Vocês abrem no sábado? Queria passar na loja",
    "The app keeps logging me out every time I open it, any idea?",
    "Perfecto, entonces lo pido hoy y me llega el jueves?",
    "Quero falar com uma pessoa, por favor",
];

const BOT_LINES: [&str; 10] = [
    "¡Hola! Sí, enviamos a todo Chile. A Valparaíso el envío tarda de 2 a 3 días hábiles y \
     cuesta $3.990; es gratis en compras sobre $40.000.",
    "El plan básico cuesta $9.990 al mes e incluye hasta 3 usuarios, soporte por chat y \
     respaldo diario. Puedes cambiar de plan cuando quieras, sin costo.",
    "Sinto muito pela demora! Verifiquei aqui: seu pedido saiu do centro de distribuição ontem \
     e a previsão de entrega é amanhã até as 18h. Vou te avisar quando sair para entrega.",
    "Yes, as long as it has not shipped yet. Order 48213 is still being packed, so I can \
     change it now: please send me the new address with the postcode.",
    "¡Claro! Aceptamos transferencia, tarjeta de débito y crédito. Al confirmar el pedido te \
     enviamos los datos de la cuenta; el pedido se despacha cuando recibimos el pago.",
    "¿Algo más en lo que te pueda ayudar?",
    "Abrimos sim! Aos sábados a loja funciona das 9h às 14h. Fica na Rua Augusta, 1508, perto \
     da estação Consolação.",
    "That usually happens after an update. Please open Settings → Account → Sign out of all \
     devices, then sign in again; if it keeps happening, tell me your phone model and I will \
     open a ticket for our team.",
    "Exacto: si haces el pedido antes de las 14:00 de hoy, llega el jueves. Después de esa \
     hora, el viernes.",
    "Claro! Já estou chamando alguém da equipe, em poucos minutos uma pessoa continua a \
     conversa por aqui.",
];

/// Turns of the measured conversation (Meta's and our default `max_history`).
const TURNS: usize = 40;

pub struct ConversationMemory {
    pub bytes: u64,
    pub text_bytes: u64,
    pub turns: usize,
}

/// A wamid of Meta's shape: `wamid.` and ~52 characters of base64.
fn wamid(kind: &str, i: usize) -> String {
    format!("wamid.HBgNNTQ5MTE1NTUwMDAwMRUCABIYIDNB{kind}{i:04}QjlCOTg3NjU0MzIxMEFCQ0QA")
}

/// Writes the conversation under `settings`' prefix and measures it; its keys are deleted
/// afterwards.
pub async fn realistic(client: &Client, settings: &Settings) -> anyhow::Result<ConversationMemory> {
    let services = wabot::app::startup::Services::with_client(settings, client.clone());
    let store = &services.conversations;
    let pnid = PhoneNumberId::parse("106540352242922").context("pnid")?;
    let user = UserId::parse("5491155500001").context("user")?;
    for i in 0..TURNS / 2 {
        let message = InboundMessage {
            id: WaMessageId::parse(&wamid("IN", i)).context("wamid")?,
            phone_number_id: pnid.clone(),
            user: user.clone(),
            sender: Sender {
                phone: Some(user.as_str().to_string()),
                bsuid: None,
                profile_name: Some("Ana".into()),
                username: None,
            },
            timestamp: 1_796_000_000 + i as i64 * 60,
            reply_to: None,
            forwarded: false,
            origin: Default::default(),
            content: MessageContent::Text {
                body: USER_LINES[i % USER_LINES.len()].to_string(),
            },
        };
        store
            .admit(
                &message,
                &Turn::of_user(&message, Role::User),
                AdmitMode::Answer,
                false,
                // The language a conversation keeps (`conversation.language = auto`).
                Some(LanguageClaim {
                    language: Language::En,
                    chosen: false,
                }),
            )
            .await
            .context("admit")?;
        let sent = wamid("OUT", i);
        let reply = Turn::sent(
            Role::Bot,
            BOT_LINES[i % BOT_LINES.len()].to_string(),
            "text",
            &sent,
            message.timestamp + 2,
        );
        store
            .record_reply(&message, &[reply])
            .await
            .context("record")?;
        store
            .apply_status(&pnid, &user, &sent, "read", None)
            .await
            .context("status")?;
    }
    let view = store
        .get(&pnid, &user)
        .await
        .context("conversation")?
        .context("the conversation was not stored")?;
    let keys = &services.keys;
    let partition = keys.partition(&pnid, &user);
    let names = [
        keys.conversation(partition, &pnid, &user),
        keys.history(partition, &pnid, &user),
    ];
    let bytes = memory_usage(client, &names).await?;
    store.delete(&pnid, &user).await.context("clean-up")?;
    Ok(ConversationMemory {
        bytes,
        text_bytes: view.turns.iter().map(|t| t.text.len() as u64).sum(),
        turns: view.turns.len(),
    })
}

/// `MEMORY USAGE` of the keys, summed (a missing key counts 0).
pub async fn memory_usage(client: &Client, keys: &[String]) -> anyhow::Result<u64> {
    let mut bytes = 0u64;
    for key in keys {
        let command = fred::types::CustomCommand::new_static(
            "MEMORY",
            fred::types::ClusterHash::FirstKey,
            false,
        );
        let usage: Option<u64> = fred::interfaces::ClientLike::custom(
            client,
            command,
            vec![
                "USAGE".to_string(),
                key.clone(),
                "SAMPLES".to_string(),
                "0".to_string(),
            ],
        )
        .await
        .context("MEMORY USAGE")?;
        bytes += usage.unwrap_or(0);
    }
    Ok(bytes)
}
