//! The bot answers in the user's language and menus work the way people answer them: scripted
//! conversations in Spanish, Portuguese and English through the real engine and the shipped
//! rules, each reply judged by a language detector. Real redis-server, wiremock Graph API.

use std::time::Duration;

use lingua::{Language as Lingua, LanguageDetector, LanguageDetectorBuilder};
use serde_json::Value;
use wabot::store::conversation::Owner;

use crate::helpers::{
    conversation_ids, graph_bodies, owner, spawn, text_delivery, wait_until_drained, AppOptions,
    TestApp,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

/// What a user reads in one Graph API send: a text's body, or an interactive message's text
/// with its options.
fn readable(body: &Value) -> Option<String> {
    if let Some(text) = body.pointer("/text/body").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let interactive = body.get("interactive")?;
    let mut text = interactive
        .pointer("/body/text")
        .and_then(Value::as_str)?
        .to_string();
    let titles = interactive
        .pointer("/action/buttons")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.pointer("/reply/title").and_then(Value::as_str))
        .chain(
            interactive
                .pointer("/action/sections")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("rows").and_then(Value::as_array))
                .flatten()
                .filter_map(|r| r.get("title").and_then(Value::as_str)),
        );
    for title in titles {
        text.push_str(" | ");
        text.push_str(title);
    }
    Some(text)
}

/// The sends to `user` so far (read receipts left out), as read.
async fn read_by(app: &TestApp, user: &str) -> Vec<String> {
    graph_bodies(&app.graph)
        .await
        .iter()
        .filter(|b| b.get("to").and_then(Value::as_str) == Some(&format!("+{user}")))
        .filter_map(readable)
        .collect()
}

/// Sends each line in turn, waiting for what it causes; returns, per line, what the bot said.
async fn converse(app: &TestApp, user: &str, lines: &[&str]) -> Vec<Vec<String>> {
    let mut said = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let before = read_by(app, user).await.len();
        app.deliver(&text_delivery(
            PNID,
            user,
            &format!("wamid.{user}.{i}"),
            line,
        ))
        .await;
        wait_until_drained(&app.queue().await, WAIT).await;
        said.push(read_by(app, user).await[before..].to_vec());
    }
    said
}

fn judge() -> LanguageDetector {
    LanguageDetectorBuilder::from_languages(&[Lingua::English, Lingua::Spanish, Lingua::Portuguese])
        .build()
}

/// Every reply of a dozen letters or more reads as `expected`.
fn all_in(detector: &LanguageDetector, said: &[Vec<String>], lines: &[&str], expected: Lingua) {
    for (line, replies) in lines.iter().zip(said) {
        assert!(!replies.is_empty(), "{line:?} was answered");
        for reply in replies {
            if reply.chars().filter(|c| c.is_alphabetic()).count() < 12 {
                continue;
            }
            assert_eq!(
                detector.detect_language_of(reply),
                Some(expected),
                "{line:?} answered in another language: {reply}"
            );
        }
    }
}

async fn rules_app() -> TestApp {
    spawn(AppOptions {
        extra_env: crate::helpers::env_vars(&[("RESPONDER", "rules")]),
        ..AppOptions::default()
    })
    .await
}

async fn handed_off(app: &TestApp, user: &str) -> bool {
    let (pnid, uid) = conversation_ids(PNID, user);
    owner(&app.conversations().await, &pnid, &uid).await == Owner::Human
}

#[tokio::test]
async fn spanish_portuguese_and_english_users_are_answered_in_their_language() {
    let app = rules_app().await;
    let detector = judge();

    let spanish = [
        "hola",
        "1",
        "ok",
        "Precios",
        "¿cuál es el horario de atención?",
        "/reset",
        "👍",
        "quiero hablar con una persona",
    ];
    let said = converse(&app, "34611000001", &spanish).await;
    all_in(&detector, &said, &spanish, Lingua::Spanish);
    assert!(said[0][0].starts_with("¡Hola!"), "{:?}", said[0]);
    // "1" picked the first row, "Precios" the button of that answer.
    assert!(said[1][0].starts_with("Abrimos de lunes"), "{:?}", said[1]);
    assert!(said[3][0].starts_with("Básico: 9 €/mes"), "{:?}", said[3]);
    assert!(said[5][0].starts_with("Tu conversación se ha reiniciado"));
    assert!(handed_off(&app, "34611000001").await);

    let portuguese = [
        "olá, bom dia",
        "dois",
        "sim",
        "menu",
        "horários",
        "/reset",
        "quanto custa o plano pro?",
        "quero falar com uma pessoa",
    ];
    let said = converse(&app, "5511900000002", &portuguese).await;
    all_in(&detector, &said, &portuguese, Lingua::Portuguese);
    assert!(said[1][0].starts_with("Básico: 9 €/mês"), "{:?}", said[1]);
    // "menu" is the prices answer's "Menu" button: the main menu again.
    assert!(said[3][0].starts_with("Olá! 👋"), "{:?}", said[3]);
    assert!(
        said[4][0].starts_with("Abrimos de segunda"),
        "{:?}",
        said[4]
    );
    assert!(handed_off(&app, "5511900000002").await);

    let english = [
        "hello",
        "2",
        "ok",
        "menu",
        "hours",
        "/reset",
        "what are your prices?",
        "I want to talk to a person",
    ];
    let said = converse(&app, "447700900003", &english).await;
    all_in(&detector, &said, &english, Lingua::English);
    assert!(said[1][0].starts_with("Basic: 9 €/month"), "{:?}", said[1]);
    assert!(said[4][0].starts_with("We are open"), "{:?}", said[4]);
    assert!(handed_off(&app, "447700900003").await);
}

#[tokio::test]
async fn a_users_choice_of_language_holds_and_the_language_menu_can_be_typed() {
    let app = rules_app().await;
    let detector = judge();
    let user = "34611000004";
    let lines = [
        "buenos días, ¿qué horario tienen?",
        "/idioma",
        "Português",
        "quiero hablar con una persona",
    ];
    let said = converse(&app, user, &lines).await;
    assert!(said[0][0].starts_with("Abrimos de lunes"), "{:?}", said[0]);
    // The choice as buttons, asked in the conversation's language...
    assert_eq!(
        said[1],
        ["¿En qué idioma prefieres que te escriba? | English | Español | Português"]
    );
    // ...answered by typing one: it holds against the Spanish that follows.
    assert!(
        said[2][0].starts_with("Pronto: a partir de agora"),
        "{:?}",
        said[2]
    );
    assert_eq!(
        detector.detect_language_of(&said[3][0]),
        Some(Lingua::Portuguese),
        "{:?}",
        said[3]
    );
}
